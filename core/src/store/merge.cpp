// Merging results databases (merge.hpp): one ATTACH and one transaction per input.
#include "lmgrid/store/merge.hpp"

#include <optional>
#include <tuple>
#include <vector>

#include <fmt/format.h>

#include "lmgrid/base/errors.hpp"

namespace lmgrid {

namespace fs = std::filesystem;

namespace {

// The order of two copies of one run: done first, then the newest finished_at, then the
// furthest step. A copy replaces another only when strictly better.
struct RunRank {
  bool done = false;
  std::optional<double> finished_at;
  int64_t step = 0;
  auto tuple() const { return std::make_tuple(done, finished_at.has_value(), finished_at.value_or(0.0), step); }
  bool operator>(const RunRank& o) const { return tuple() > o.tuple(); }
};

RunRank rank_of(sql::Stmt& st, int status_col) {
  RunRank r;
  r.done = st.text(status_col) == status_name(RunStatus::done);
  if (!st.is_null(status_col + 1)) r.finished_at = st.f64(status_col + 1);
  r.step = st.i64(status_col + 2);
  return r;
}

// Every column of runs but id and run_dir, in one order for both databases.
const char* kCopiedCols =
    "experiment, config_hash, config, variant, seed, status, created_at, started_at, finished_at, error, n_params, "
    "step, host, device, worker_pid";

std::string run_folder(const std::string& hash) { return "runs/" + hash.substr(0, 16); }

bool same_file(const fs::path& a, const fs::path& b) {
  std::error_code ec;
  bool eq = fs::equivalent(a, b, ec);
  return !ec && eq;
}

// Hard-links (or copies) every file under `from` into `to`, replacing files of the same name.
int64_t link_tree(const fs::path& from, const fs::path& to) {
  int64_t n = 0;
  std::error_code ec;
  if (!fs::is_directory(from, ec)) return 0;
  fs::create_directories(to);
  for (auto it = fs::recursive_directory_iterator(from); it != fs::recursive_directory_iterator(); ++it) {
    fs::path dst = to / it->path().lexically_relative(from);
    if (it->is_directory()) {
      fs::create_directories(dst);
      continue;
    }
    if (!it->is_regular_file()) continue;
    fs::remove(dst, ec);
    fs::create_hard_link(it->path(), dst, ec);
    if (ec) fs::copy_file(it->path(), dst, fs::copy_options::overwrite_existing);
    ++n;
  }
  return n;
}

// DETACH on every way out (after the transaction's commit or rollback).
struct Attached {
  sql::Db& db;
  Attached(sql::Db& d, const fs::path& file) : db(d) {
    db.prepare("ATTACH DATABASE ? AS src").bind(1, file.string()).run();
  }
  ~Attached() {
    try {
      db.exec("DETACH DATABASE src");
    } catch (...) {
    }
  }
};

}  // namespace

void check_merge_input(const fs::path& out, const fs::path& in) {
  Store probe(in, true);  // throws UserError for what is not a (readable) lmgrid database
  if (same_file(probe.path(), out) || probe.path() == fs::absolute(out).lexically_normal())
    throw UserError(fmt::format("{} is the output database: it cannot also be an input", in.string()));
}

MergeStats merge_database(Store& out, const fs::path& in) {
  check_merge_input(out.path(), in);
  int in_schema = Store(in, true).schema_version();
  const fs::path in_dir = fs::absolute(in).lexically_normal().parent_path(), out_dir = out.path().parent_path();
  const bool same_dir = same_file(in_dir, out_dir);
  sql::Db& db = out.db();
  MergeStats stats;

  Attached attached(db, in);
  sql::Transaction tx(db);
  db.exec(
      "INSERT INTO main.experiments(name, description, source_file, source_toml, created_at, updated_at) "
      "SELECT name, description, source_file, source_toml, created_at, updated_at FROM src.experiments WHERE true "
      "ON CONFLICT(name) DO UPDATE SET description = excluded.description, source_file = excluded.source_file, "
      "source_toml = excluded.source_toml, updated_at = excluded.updated_at "
      "WHERE excluded.updated_at > main.experiments.updated_at");
  db.exec("CREATE TEMP TABLE IF NOT EXISTS merge_map(src_id INTEGER PRIMARY KEY, dst_id INTEGER NOT NULL)");
  db.exec("DELETE FROM temp.merge_map");

  struct Taken {
    int64_t src_id, dst_id;
    std::string hash;
    bool replaced;
  };
  std::vector<Taken> taken;
  {
    auto src_runs = db.prepare("SELECT id, config_hash, status, finished_at, step FROM src.runs ORDER BY id");
    auto find = db.prepare("SELECT id, status, finished_at, step FROM main.runs WHERE config_hash = ?");
    auto insert = db.prepare(
        fmt::format("INSERT INTO main.runs({0}, run_dir) SELECT {0}, ? FROM src.runs WHERE id = ?", kCopiedCols));
    auto update = db.prepare(fmt::format(
        "UPDATE main.runs SET ({0}, run_dir) = (SELECT {0}, ? FROM src.runs WHERE id = ?) WHERE id = ?", kCopiedCols));
    auto map = db.prepare("INSERT INTO temp.merge_map(src_id, dst_id) VALUES(?, ?)");
    std::vector<sql::Stmt> clear;
    for (const char* t : {"params", "metrics", "summaries", "plugins", "checkpoints"})
      clear.push_back(db.prepare(fmt::format("DELETE FROM main.{} WHERE run_id = ?", t)));
    while (src_runs.step()) {
      ++stats.runs;
      int64_t src_id = src_runs.i64(0);
      std::string hash = src_runs.text(1);
      RunRank incoming = rank_of(src_runs, 2);
      find.bind(1, hash);
      std::optional<int64_t> dst_id;
      RunRank existing;
      if (find.step()) {
        dst_id = find.i64(0);
        existing = rank_of(find, 1);
      }
      find.reset();
      if (dst_id && !(incoming > existing)) {
        ++stats.kept;
        continue;
      }
      const bool replaced = dst_id.has_value();
      if (replaced) {
        for (auto& c : clear) c.bind(1, *dst_id).run();
        update.bind(1, run_folder(hash)).bind(2, src_id).bind(3, *dst_id).run();
        ++stats.replaced;
      } else {
        insert.bind(1, run_folder(hash)).bind(2, src_id).run();
        dst_id = db.last_insert_id();
        ++stats.added;
      }
      map.bind(1, src_id).bind(2, *dst_id).run();
      taken.push_back({src_id, *dst_id, hash, replaced});
    }
  }
  if (taken.empty()) {
    tx.commit();
    return stats;
  }

  // The rows of the runs taken, in their input order (rowid), mapped to OUT's run ids.
  db.exec(
      "INSERT INTO main.params(run_id, key, value) SELECT m.dst_id, p.key, p.value FROM src.params p "
      "JOIN temp.merge_map m ON m.src_id = p.run_id");
  db.exec(
      "INSERT INTO main.metrics(run_id, step, tokens, elapsed_s, name, value, finite) "
      "SELECT m.dst_id, x.step, x.tokens, x.elapsed_s, x.name, x.value, x.finite FROM src.metrics x "
      "JOIN temp.merge_map m ON m.src_id = x.run_id ORDER BY x.rowid");
  stats.metric_rows = sqlite3_changes(db.raw());
  db.exec(
      "INSERT INTO main.summaries(run_id, key, value) SELECT m.dst_id, s.key, s.value FROM src.summaries s "
      "JOIN temp.merge_map m ON m.src_id = s.run_id ORDER BY s.rowid");
  db.exec(
      "INSERT INTO main.plugins(run_id, kind, name, version, file_sha256) "
      "SELECT m.dst_id, p.kind, p.name, p.version, p.file_sha256 FROM src.plugins p "
      "JOIN temp.merge_map m ON m.src_id = p.run_id ORDER BY p.rowid");

  // Checkpoints: the file's place relative to OUT's folder.
  {
    auto src_ck = db.prepare(
        "SELECT m.dst_id, r.config_hash, c.step, c.path, c.sha256, c.created_at FROM src.checkpoints c "
        "JOIN temp.merge_map m ON m.src_id = c.run_id JOIN src.runs r ON r.id = c.run_id ORDER BY c.rowid");
    auto ins = db.prepare("INSERT INTO main.checkpoints(run_id, step, path, sha256, created_at) VALUES(?,?,?,?,?)");
    while (src_ck.step()) {
      std::string hash = src_ck.text(1);
      fs::path stored = src_ck.text(3), file;
      if (in_schema < 2)
        file = in_dir / run_folder(hash) / stored.filename();  // v1: the layout, whatever was typed
      else
        file = stored.is_absolute() ? stored : in_dir / stored;
      file = file.lexically_normal();
      std::string path;
      if (same_dir && in_schema >= 2) {
        path = stored.generic_string();
      } else {
        fs::path in_run = in_dir / run_folder(hash), inside = file.lexically_relative(in_run);
        if (!inside.empty() && *inside.begin() != "..") {
          path = (fs::path(run_folder(hash)) / inside).generic_string();
        } else {
          fs::path rel = file.lexically_relative(out_dir);
          path = (!rel.empty() && *rel.begin() != ".." ? rel : file).generic_string();
        }
      }
      ins.bind(1, src_ck.i64(0)).bind(2, src_ck.i64(2)).bind(3, path).bind(4, src_ck.text(4));
      if (src_ck.is_null(5))
        ins.bind_null(5);
      else
        ins.bind(5, src_ck.f64(5));
      ins.run();
    }
  }

  // Run files: into OUT's runs/ folder when IN has its own.
  if (!same_dir) {
    for (const auto& t : taken) {
      fs::path from = in_dir / run_folder(t.hash), to = out_dir / run_folder(t.hash);
      if (same_file(from, to)) continue;
      std::error_code ec;
      if (t.replaced) fs::remove_all(to, ec);  // the files of the copy being replaced
      stats.files += link_tree(from, to);
    }
  }
  tx.commit();
  return stats;
}

}  // namespace lmgrid
