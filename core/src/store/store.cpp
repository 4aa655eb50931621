// SQLite results store: schema, migrations, run claiming, metrics (docs/schema.md).
#include "lmgrid/store/store.hpp"

#include <signal.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <algorithm>
#include <cmath>
#include <fstream>
#include <tuple>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "lmgrid/base/errors.hpp"
#include "lmgrid/base/machine_error.hpp"
#include "lmgrid/base/util.hpp"
#include "lmgrid/base/env.hpp"

namespace lmgrid {

namespace fs = std::filesystem;

// The tables. v2 changed only what run_dir and checkpoints.path mean (see store.hpp).
static const char* kSchemaV1 = R"SQL(
CREATE TABLE experiments(
  name        TEXT PRIMARY KEY,
  description TEXT,
  source_file TEXT,
  source_toml TEXT,
  created_at  REAL,
  updated_at  REAL
);
CREATE TABLE runs(
  id          INTEGER PRIMARY KEY,
  experiment  TEXT NOT NULL REFERENCES experiments(name),
  config_hash TEXT NOT NULL UNIQUE,
  config      TEXT NOT NULL,
  variant     TEXT,
  seed        INTEGER,
  status      TEXT NOT NULL CHECK(status IN ('pending','running','done','failed','diverged','interrupted')),
  created_at  REAL,
  started_at  REAL,
  finished_at REAL,
  error       TEXT,
  n_params    INTEGER,
  step        INTEGER NOT NULL DEFAULT 0,
  host        TEXT,
  device      TEXT,
  worker_pid  INTEGER,
  run_dir     TEXT
);
CREATE INDEX runs_experiment ON runs(experiment, status);
CREATE TABLE params(
  run_id INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
  key    TEXT NOT NULL,
  value,
  PRIMARY KEY(run_id, key)
) WITHOUT ROWID;
CREATE INDEX params_key_value ON params(key, value);
CREATE TABLE metrics(
  run_id    INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
  step      INTEGER NOT NULL,
  tokens    INTEGER NOT NULL,
  elapsed_s REAL NOT NULL,
  name      TEXT NOT NULL,
  value     REAL,
  finite    INTEGER NOT NULL DEFAULT 1
);
CREATE INDEX metrics_run_name_step ON metrics(run_id, name, step);
CREATE TABLE plugins(
  run_id      INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
  kind        TEXT NOT NULL,
  name        TEXT NOT NULL,
  version     TEXT,
  file_sha256 TEXT,
  PRIMARY KEY(run_id, kind)
);
CREATE TABLE checkpoints(
  run_id     INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
  step       INTEGER NOT NULL,
  path       TEXT NOT NULL,
  sha256     TEXT NOT NULL,
  created_at REAL,
  PRIMARY KEY(run_id, step)
);
CREATE TABLE summaries(
  run_id INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
  key    TEXT NOT NULL,
  value  REAL,
  PRIMARY KEY(run_id, key)
);
)SQL";

const char* status_name(RunStatus s) {
  switch (s) {
    case RunStatus::pending: return "pending";
    case RunStatus::running: return "running";
    case RunStatus::done: return "done";
    case RunStatus::failed: return "failed";
    case RunStatus::diverged: return "diverged";
    case RunStatus::interrupted: return "interrupted";
  }
  return "?";
}

static constexpr RunStatus kAllStatuses[] = {RunStatus::pending, RunStatus::running,  RunStatus::done,
                                             RunStatus::failed,  RunStatus::diverged, RunStatus::interrupted};

const std::vector<std::string>& run_statuses() {
  static const std::vector<std::string> names = [] {
    std::vector<std::string> v;
    for (auto s : kAllStatuses) v.push_back(status_name(s));
    return v;
  }();
  return names;
}

std::optional<RunStatus> parse_run_status(const std::string& name) {
  for (auto s : kAllStatuses)
    if (name == status_name(s)) return s;
  return std::nullopt;
}

fs::path default_db_path() { return env_or("LMGRID_DB", "results/lmgrid.db"); }

static fs::path absolute_db_path(const fs::path& path) {
  std::error_code ec;
  fs::path abs = fs::absolute(path, ec);
  return (ec ? path : abs).lexically_normal();
}

static std::string open_path(const fs::path& path, bool read_only) {
  if (read_only) {
    if (!fs::exists(path)) throw UserError("database not found: " + path.string());
    if (fs::is_directory(path)) throw UserError(path.string() + " is a folder, not an lmgrid database");
  } else if (path.has_parent_path()) {
    fs::create_directories(path.parent_path());
  }
  return path.string();
}

Store::Store(const fs::path& path, bool read_only)
    : path_(absolute_db_path(path)), db_(open_path(path_, read_only), read_only) {
  db_.retry_busy([&] { check_lmgrid(read_only); });
  db_.exec("PRAGMA foreign_keys = ON");
  if (read_only) return;
  // Switching to WAL needs an exclusive lock; an existing WAL database is left alone. When two
  // hosts open the same new file at once, SQLite fails one's switch at once (its busy handler
  // could deadlock there), so the switch is retried for the busy timeout.
  db_.retry_busy([&] {
    auto jm = db_.prepare("PRAGMA journal_mode");
    bool wal = jm.step() && jm.text(0) == "wal";
    jm.reset();
    if (!wal) db_.exec("PRAGMA journal_mode = WAL");
  });
  db_.exec("PRAGMA synchronous = NORMAL");
  migrate();
}

void Store::check_integrity() {
  std::string problem;
  try {
    auto st = db_.prepare("PRAGMA quick_check(1)");
    if (st.step()) problem = st.text(0);
  } catch (const MachineError&) {
    throw;
  } catch (const std::runtime_error& e) {
    problem = e.what();
  }
  if (problem == "ok") return;
  std::replace(problem.begin(), problem.end(), '\n', ' ');  // "*** in database main ***\nPage 13: ..."
  throw std::runtime_error(sql::corrupted_message(path_.string(), problem));
}

// Refuses what is not an lmgrid database before anything is read or written: a file SQLite
// cannot read, a database with tables of its own but no lmgrid schema, an empty file opened
// for reading, a schema newer than this lmgrid. An empty file opened for writing becomes one.
void Store::check_lmgrid(bool read_only) {
  int version = 0;
  int64_t tables = 0;
  bool has_runs = false;
  try {
    auto uv = db_.prepare("PRAGMA user_version");
    uv.step();
    version = static_cast<int>(uv.i64(0));
    auto t = db_.prepare("SELECT count(*), COALESCE(SUM(name = 'runs'), 0) FROM sqlite_master WHERE type = 'table'");
    t.step();
    tables = t.i64(0);
    has_runs = t.i64(1) > 0;
  } catch (const MachineError&) {
    throw;  // locked past the timeout, an I/O error: said as such
  } catch (const std::runtime_error&) {
    throw UserError(
        fmt::format("{} is not an lmgrid database, or is corrupted ({})", path_.string(), sqlite3_errmsg(db_.raw())));
  }
  if (version > kSchemaVersion)
    throw UserError(
        fmt::format("{} has schema version {}, newer than this lmgrid ({})", path_.string(), version, kSchemaVersion));
  if (version == 0 && tables > 0)
    throw UserError(fmt::format("{} is not an lmgrid database (an SQLite database with {} other table{})",
                                path_.string(), tables, tables == 1 ? "" : "s"));
  if (version == 0 && read_only)
    throw UserError(
        fmt::format("{} is not an lmgrid database (it is empty: no lmgrid run has written to it)", path_.string()));
  if (version > 0 && !has_runs)
    throw UserError(
        fmt::format("{} is not an lmgrid database (schema version {} but no runs table)", path_.string(), version));
  schema_ = version == 0 ? kSchemaVersion : version;
}

// v1 -> v2: run files stored relative to the database's folder. v1 always laid them out as
// <db dir>/runs/<hash[:16]>/<file>, so the relative form follows from the hash and file name
// whatever the working directory was when they were written.
static void migrate_v1_to_v2(sql::Db& db) {
  db.exec("UPDATE runs SET run_dir = 'runs/' || substr(config_hash, 1, 16)");
  std::vector<std::tuple<int64_t, int64_t, std::string>> rows;
  auto st = db.prepare(
      "SELECT c.run_id, c.step, 'runs/' || substr(r.config_hash, 1, 16) || '/', c.path FROM checkpoints c "
      "JOIN runs r ON r.id = c.run_id");
  while (st.step()) rows.emplace_back(st.i64(0), st.i64(1), st.text(2) + fs::path(st.text(3)).filename().string());
  auto up = db.prepare("UPDATE checkpoints SET path = ? WHERE run_id = ? AND step = ?");
  for (const auto& [run_id, step, rel] : rows) up.bind(1, rel).bind(2, run_id).bind(3, step).run();
}

void Store::migrate() {
  sql::Transaction tx(db_);
  auto st = db_.prepare("PRAGMA user_version");
  st.step();
  int v = static_cast<int>(st.i64(0));
  st.reset();
  if (v > kSchemaVersion)
    throw UserError(
        fmt::format("{} has schema version {}, newer than this lmgrid ({})", path_.string(), v, kSchemaVersion));
  if (v < 1) {
    db_.exec(kSchemaV1);
  } else if (v < 2) {
    migrate_v1_to_v2(db_);
  }
  if (v != kSchemaVersion) db_.exec(fmt::format("PRAGMA user_version = {}", kSchemaVersion));
  tx.commit();
  schema_ = kSchemaVersion;
}

static std::string stored_run_dir(const std::string& config_hash) { return "runs/" + config_hash.substr(0, 16); }

fs::path Store::run_dir(const std::string& config_hash) const {
  return path_.parent_path() / stored_run_dir(config_hash);
}

bool Store::process_alive(int64_t pid) {
  if (pid <= 0) return false;
  if (kill(static_cast<pid_t>(pid), 0) != 0 && errno != EPERM) return false;
  // Guard against pid reuse: the process must be an lmgrid program.
  std::ifstream in(fmt::format("/proc/{}/cmdline", pid), std::ios::binary);
  std::string cmd((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  std::ifstream st(fmt::format("/proc/{}/stat", pid));
  std::string stat((std::istreambuf_iterator<char>(st)), std::istreambuf_iterator<char>());
  if (stat.find(") Z") != std::string::npos) return false;  // zombie
  return cmd.find("lmgrid") != std::string::npos;
}

static RunRow read_run(sql::Stmt& st) {
  RunRow r;
  r.id = st.i64(0);
  r.experiment = st.text(1);
  r.config_hash = st.text(2);
  r.config = st.text(3);
  auto status = parse_run_status(st.text(4));
  if (!status) throw std::runtime_error(fmt::format("run {} has an unknown status '{}'", r.id, st.text(4)));
  r.status = *status;
  if (!st.is_null(5)) r.started_at = st.f64(5);
  if (!st.is_null(6)) r.finished_at = st.f64(6);
  r.error = st.text(7);
  r.n_params = st.i64(8);
  r.step = st.i64(9);
  if (!st.is_null(10)) r.worker_pid = st.i64(10);
  r.host = st.text(11);
  r.run_dir = st.text(12);
  return r;
}
static const char* kRunCols =
    "id, experiment, config_hash, config, status, started_at, finished_at, error, n_params, step, worker_pid, host, "
    "run_dir";

std::vector<int64_t> Store::register_runs(const Experiment& exp, bool retry_failed) {
  sql::Transaction tx(db_);
  double now = now_unix();
  db_.prepare(
         "INSERT INTO experiments(name, description, source_file, source_toml, created_at, updated_at) "
         "VALUES(?,?,?,?,?,?) ON CONFLICT(name) DO UPDATE SET description=excluded.description, "
         "source_file=excluded.source_file, source_toml=excluded.source_toml, updated_at=excluded.updated_at")
      .bind(1, exp.name)
      .bind(2, exp.description)
      .bind(3, exp.file.string())
      .bind(4, exp.source_text)
      .bind(5, now)
      .bind(6, now)
      .run();
  auto find = db_.prepare("SELECT id, status, worker_pid, host FROM runs WHERE config_hash = ?");
  auto insert = db_.prepare(
      "INSERT INTO runs(experiment, config_hash, config, variant, seed, status, created_at, run_dir) "
      "VALUES(?,?,?,?,?,'pending',?,?)");
  auto insert_param = db_.prepare("INSERT INTO params(run_id, key, value) VALUES(?,?,?)");
  auto set_status = db_.prepare("UPDATE runs SET status = ?, error = NULL WHERE id = ?");
  std::string host = hostname();
  std::vector<int64_t> ids;
  for (const auto& rc : exp.runs) {
    std::string hash = rc.hash();
    find.bind(1, hash);
    if (find.step()) {
      int64_t id = find.i64(0);
      RunStatus status = parse_run_status(find.text(1)).value_or(RunStatus::failed);
      std::optional<int64_t> pid;
      if (!find.is_null(2)) pid = find.i64(2);
      std::string run_host = find.text(3);
      find.reset();
      if (retry_failed && is_unsuccessful(status)) {
        // A retry starts from scratch: forget metrics, checkpoints and summaries.
        for (const char* t : {"metrics", "checkpoints", "summaries", "plugins"})
          db_.prepare(fmt::format("DELETE FROM {} WHERE run_id = ?", t)).bind(1, id).run();
        db_.prepare(
               "UPDATE runs SET status='pending', error=NULL, step=0, started_at=NULL, finished_at=NULL WHERE id=?")
            .bind(1, id)
            .run();
        std::error_code ec;
        fs::remove_all(run_dir(hash), ec);
      } else if (status == RunStatus::running && run_host == host && !(pid && process_alive(*pid))) {
        set_status.bind(1, status_name(RunStatus::interrupted)).bind(2, id).run();
      }
      ids.push_back(id);
      continue;
    }
    find.reset();
    insert.bind(1, rc.experiment)
        .bind(2, hash)
        .bind(3, rc.canonical_json())
        .bind(4, rc.variant)
        .bind(5, rc.seed)
        .bind(6, now)
        .bind(7, stored_run_dir(hash))
        .run();
    int64_t id = db_.last_insert_id();
    insert_param.bind(1, id).bind(2, "seed").bind(3, rc.seed).run();
    if (!rc.variant.empty()) insert_param.bind(1, id).bind(2, "variant").bind(3, rc.variant).run();
    for (const auto& [k, v] : rc.values) {
      insert_param.bind(1, id).bind(2, k);
      if (std::holds_alternative<bool>(v))
        insert_param.bind(3, std::get<bool>(v) ? "true" : "false");
      else
        insert_param.bind(3, v);
      insert_param.run();
    }
    ids.push_back(id);
  }
  tx.commit();
  return ids;
}

std::optional<RunRow> Store::claim_next(const std::vector<int64_t>& ids, int64_t pid) {
  sql::Transaction tx(db_);
  nlohmann::json arr = ids;
  auto st = db_.prepare(fmt::format(
      "SELECT {} FROM runs WHERE id IN (SELECT value FROM json_each(?)) AND status IN ('pending','interrupted') "
      "ORDER BY id LIMIT 1",
      kRunCols));
  st.bind(1, arr.dump());
  if (!st.step()) return std::nullopt;
  RunRow r = read_run(st);
  st.reset();
  db_.prepare("UPDATE runs SET status='running', worker_pid=?, host=? WHERE id=?")
      .bind(1, pid)
      .bind(2, hostname())
      .bind(3, r.id)
      .run();
  tx.commit();
  r.status = RunStatus::running;
  return r;
}

Store::OtherRuns Store::runs_of_other_processes(const std::vector<int64_t>& ids) {
  sql::Transaction tx(db_);
  nlohmann::json arr = ids;
  auto st = db_.prepare(
      "SELECT id, worker_pid FROM runs WHERE id IN (SELECT value FROM json_each(?)) AND status = 'running' AND "
      "host = ? ORDER BY id");
  st.bind(1, arr.dump()).bind(2, hostname());
  OtherRuns out;
  while (st.step()) (!st.is_null(1) && process_alive(st.i64(1)) ? out.held : out.released).push_back(st.i64(0));
  st.reset();
  auto mark = db_.prepare(
      "UPDATE runs SET status = 'interrupted', error = 'its lmgrid process ended without recording an outcome' "
      "WHERE id = ?");
  for (int64_t id : out.released) mark.bind(1, id).run();
  tx.commit();
  return out;
}

std::optional<RunRow> Store::run(int64_t id) {
  auto st = db_.prepare(fmt::format("SELECT {} FROM runs WHERE id = ?", kRunCols));
  st.bind(1, id);
  if (!st.step()) return std::nullopt;
  return read_run(st);
}

std::vector<RunRow> Store::runs(const std::string& where_sql, const std::vector<Value>& args) {
  auto st = db_.prepare(
      fmt::format("SELECT {} FROM runs {} ORDER BY id", kRunCols, where_sql.empty() ? "" : "WHERE " + where_sql));
  for (size_t i = 0; i < args.size(); ++i) st.bind(static_cast<int>(i + 1), args[i]);
  std::vector<RunRow> out;
  while (st.step()) out.push_back(read_run(st));
  return out;
}

void Store::mark_started(int64_t run_id, int64_t n_params, const std::string& device) {
  db_.prepare(
         "UPDATE runs SET started_at = COALESCE(started_at, ?), n_params = ?, device = ?, worker_pid = ?, "
         "host = ? WHERE id = ?")
      .bind(1, now_unix())
      .bind(2, n_params)
      .bind(3, device)
      .bind(4, static_cast<int64_t>(getpid()))
      .bind(5, hostname())
      .bind(6, run_id)
      .run();
}

void Store::set_status(int64_t run_id, RunStatus status, const std::string& error) {
  bool final = is_final(status);
  auto st = db_.prepare("UPDATE runs SET status = ?, error = ?, finished_at = ? WHERE id = ?");
  st.bind(1, status_name(status));
  if (error.empty())
    st.bind_null(2);
  else
    st.bind(2, error);
  if (final)
    st.bind(3, now_unix());
  else
    st.bind_null(3);
  st.bind(4, run_id).run();
}

void Store::set_step(int64_t run_id, int64_t step) {
  db_.prepare("UPDATE runs SET step = ? WHERE id = ?").bind(1, step).bind(2, run_id).run();
}

void Store::set_plugins(int64_t run_id, const std::vector<PluginRow>& plugins) {
  sql::Transaction tx(db_);
  auto st = db_.prepare("INSERT OR REPLACE INTO plugins(run_id, kind, name, version, file_sha256) VALUES(?,?,?,?,?)");
  for (const auto& p : plugins)
    st.bind(1, run_id).bind(2, p.kind).bind(3, p.name).bind(4, p.version).bind(5, p.file_sha256).run();
  tx.commit();
}

void Store::add_checkpoint(int64_t run_id, int64_t step, const fs::path& file, const std::string& sha256) {
  fs::path rel = file.lexically_relative(path_.parent_path());
  bool inside = !rel.empty() && *rel.begin() != "..";
  db_.prepare("INSERT OR REPLACE INTO checkpoints(run_id, step, path, sha256, created_at) VALUES(?,?,?,?,?)")
      .bind(1, run_id)
      .bind(2, step)
      .bind(3, (inside ? rel : file).generic_string())
      .bind(4, sha256)
      .bind(5, now_unix())
      .run();
}

std::vector<CheckpointRow> Store::checkpoints(int64_t run_id) {
  auto st = db_.prepare(
      "SELECT c.step, c.path, c.sha256, r.config_hash FROM checkpoints c JOIN runs r ON r.id = c.run_id "
      "WHERE c.run_id = ? ORDER BY c.step DESC");
  st.bind(1, run_id);
  std::vector<CheckpointRow> out;
  while (st.step()) {
    fs::path stored = st.text(1);
    fs::path file;
    if (schema_ < 2)
      file = run_dir(st.text(3)) / stored.filename();  // a v1 file read without migrating
    else
      file = stored.is_absolute() ? stored : path_.parent_path() / stored;
    out.push_back({st.i64(0), file.lexically_normal(), st.text(2)});
  }
  return out;
}

void Store::delete_checkpoint(int64_t run_id, int64_t step) {
  db_.prepare("DELETE FROM checkpoints WHERE run_id = ? AND step = ?").bind(1, run_id).bind(2, step).run();
}

void Store::delete_checkpoints(int64_t run_id) {
  db_.prepare("DELETE FROM checkpoints WHERE run_id = ?").bind(1, run_id).run();
}

std::vector<std::string> Store::metric_names(int64_t run_id) {
  auto st = db_.prepare("SELECT DISTINCT name FROM metrics WHERE run_id = ? ORDER BY name");
  st.bind(1, run_id);
  std::vector<std::string> out;
  while (st.step()) out.push_back(st.text(0));
  return out;
}

std::vector<MetricRow> Store::metric_rows(int64_t run_id, const std::vector<std::string>& names) {
  std::string sql = "SELECT step, tokens, elapsed_s, name, value, finite FROM metrics WHERE run_id = ?";
  if (!names.empty()) {
    sql += " AND name IN (";
    for (size_t i = 0; i < names.size(); ++i) sql += i ? ",?" : "?";
    sql += ")";
  }
  auto st = db_.prepare(sql + " ORDER BY name, step");
  st.bind(1, run_id);
  for (size_t i = 0; i < names.size(); ++i) st.bind(static_cast<int>(i + 2), names[i]);
  std::vector<MetricRow> out;
  while (st.step()) out.push_back({run_id, st.i64(0), st.i64(1), st.f64(2), st.text(3), st.i64(5) ? st.f64(4) : NAN});
  return out;
}

std::optional<MetricStats> Store::metric_stats(int64_t run_id, const std::string& name) {
  auto st = db_.prepare("SELECT value FROM metrics WHERE run_id = ? AND name = ? AND finite = 1 ORDER BY step");
  st.bind(1, run_id).bind(2, name);
  MetricStats m;
  double sum = 0;
  while (st.step()) {
    double v = st.f64(0);
    if (m.count == 0) m.first = m.min = m.max = v;
    m.min = std::min(m.min, v), m.max = std::max(m.max, v), m.last = v;
    sum += v;
    ++m.count;
  }
  if (m.count == 0) return std::nullopt;
  m.mean = sum / static_cast<double>(m.count);
  return m;
}

std::optional<double> Store::summary(int64_t run_id, const std::string& key) {
  auto st = db_.prepare("SELECT value FROM summaries WHERE run_id = ? AND key = ? AND value IS NOT NULL");
  st.bind(1, run_id).bind(2, key);
  if (!st.step()) return std::nullopt;
  return st.f64(0);
}

std::map<std::string, std::string> Store::statuses_by_hash(const std::string& experiment) {
  auto st = db_.prepare("SELECT config_hash, status FROM runs WHERE experiment = ?");
  st.bind(1, experiment);
  std::map<std::string, std::string> out;
  while (st.step()) out[st.text(0)] = st.text(1);
  return out;
}

void Store::delete_checkpoint_rows_after(int64_t run_id, int64_t step) {
  db_.prepare("DELETE FROM checkpoints WHERE run_id = ? AND step > ?").bind(1, run_id).bind(2, step).run();
}

void Store::delete_metrics_after(int64_t run_id, int64_t step) {
  db_.prepare("DELETE FROM metrics WHERE run_id = ? AND step > ?").bind(1, run_id).bind(2, step).run();
}

void Store::write_metrics(const std::vector<MetricRow>& rows) {
  if (rows.empty()) return;
  sql::Transaction tx(db_);
  auto st =
      db_.prepare("INSERT INTO metrics(run_id, step, tokens, elapsed_s, name, value, finite) VALUES(?,?,?,?,?,?,?)");
  for (const auto& r : rows) {
    bool finite = std::isfinite(r.value);
    st.bind(1, r.run_id).bind(2, r.step).bind(3, r.tokens).bind(4, r.elapsed_s).bind(5, r.name);
    if (finite)
      st.bind(6, r.value);
    else
      st.bind_null(6);
    st.bind(7, static_cast<int64_t>(finite)).run();
  }
  tx.commit();
}

void Store::set_summary(int64_t run_id, const std::string& key, double value) {
  auto st = db_.prepare("INSERT OR REPLACE INTO summaries(run_id, key, value) VALUES(?,?,?)");
  st.bind(1, run_id).bind(2, key);
  if (std::isfinite(value))
    st.bind(3, value);
  else
    st.bind_null(3);
  st.run();
}

// The trainer flushes explicitly (a failure there fails the run with SQLite's message); rows
// still pending here are from a run that is already ending with an exception, so a failure is
// reported, not thrown.
MetricWriter::~MetricWriter() {
  try {
    flush();
  } catch (const std::exception& e) {
    std::fprintf(stderr, "lmgrid: WARNING: %s\n", e.what());
  }
}
void MetricWriter::add(int64_t step, int64_t tokens, double elapsed_s, const std::string& name, double value) {
  rows_.push_back(MetricRow{run_id_, step, tokens, elapsed_s, name, value});
}
void MetricWriter::flush() {
  if (rows_.empty()) return;
  try {
    store_.write_metrics(rows_);
  } catch (const MachineError& e) {  // a full disk, a lock past the timeout: the run is interrupted
    throw MachineError(fmt::format("writing {} metric rows of run {} failed: {}", rows_.size(), run_id_, e.what()));
  } catch (const std::exception& e) {
    throw std::runtime_error(
        fmt::format("writing {} metric rows of run {} failed: {}", rows_.size(), run_id_, e.what()));
  }
  rows_.clear();
}

}  // namespace lmgrid
