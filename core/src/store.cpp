// SQLite results store: schema, migrations, run claiming, metrics (docs/schema.md).
#include "lmgrid/store.hpp"

#include <signal.h>
#include <unistd.h>

#include <cerrno>
#include <cmath>
#include <fstream>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "lmgrid/errors.hpp"
#include "lmgrid/util.hpp"

namespace lmgrid {

namespace fs = std::filesystem;

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

fs::path default_db_path() { return env_or("LMGRID_DB", "results/lmgrid.db"); }

static std::string open_path(const fs::path& path, bool read_only) {
  if (read_only) {
    if (!fs::exists(path)) throw UserError("database not found: " + path.string());
  } else if (path.has_parent_path()) {
    fs::create_directories(path.parent_path());
  }
  return path.string();
}

Store::Store(const fs::path& path, bool read_only) : path_(path), db_(open_path(path, read_only), read_only) {
  db_.exec("PRAGMA foreign_keys = ON");
  if (read_only) {
    auto st = db_.prepare("PRAGMA user_version");
    st.step();
    int v = static_cast<int>(st.i64(0));
    if (v > kSchemaVersion)
      throw UserError(fmt::format("{} has schema version {}, newer than this lmgrid ({})", path.string(), v, kSchemaVersion));
    return;
  }
  {  // Switching to WAL needs a lock; an existing WAL database is left alone.
    auto jm = db_.prepare("PRAGMA journal_mode");
    bool wal = jm.step() && jm.text(0) == "wal";
    jm.reset();
    if (!wal) db_.exec("PRAGMA journal_mode = WAL");
  }
  db_.exec("PRAGMA synchronous = NORMAL");
  migrate();
}

void Store::migrate() {
  sql::Transaction tx(db_);
  auto st = db_.prepare("PRAGMA user_version");
  st.step();
  int v = static_cast<int>(st.i64(0));
  st.reset();
  if (v > kSchemaVersion)
    throw UserError(fmt::format("{} has schema version {}, newer than this lmgrid ({})", path_.string(), v, kSchemaVersion));
  if (v < 1) db_.exec(kSchemaV1);
  // Future migrations: if (v < 2) { ... }
  if (v != kSchemaVersion) db_.exec(fmt::format("PRAGMA user_version = {}", kSchemaVersion));
  tx.commit();
}

fs::path Store::run_dir(const std::string& config_hash) const {
  fs::path base = path_.has_parent_path() ? path_.parent_path() : fs::path(".");
  return base / "runs" / config_hash.substr(0, 16);
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
  r.status = st.text(4);
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
      .bind(1, exp.name).bind(2, exp.description).bind(3, exp.file.string()).bind(4, exp.source_text)
      .bind(5, now).bind(6, now).run();
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
      std::string status = find.text(1);
      std::optional<int64_t> pid;
      if (!find.is_null(2)) pid = find.i64(2);
      std::string run_host = find.text(3);
      find.reset();
      if (retry_failed && (status == "failed" || status == "diverged")) {
        // A retry starts from scratch: forget metrics, checkpoints and summaries.
        for (const char* t : {"metrics", "checkpoints", "summaries", "plugins"})
          db_.prepare(fmt::format("DELETE FROM {} WHERE run_id = ?", t)).bind(1, id).run();
        db_.prepare("UPDATE runs SET status='pending', error=NULL, step=0, started_at=NULL, finished_at=NULL WHERE id=?")
            .bind(1, id).run();
        std::error_code ec;
        fs::remove_all(run_dir(hash), ec);
      } else if (status == "running" && run_host == host && !(pid && process_alive(*pid))) {
        set_status.bind(1, "interrupted").bind(2, id).run();
      }
      ids.push_back(id);
      continue;
    }
    find.reset();
    insert.bind(1, rc.experiment).bind(2, hash).bind(3, rc.canonical_json()).bind(4, rc.variant)
        .bind(5, rc.seed).bind(6, now).bind(7, run_dir(hash).string()).run();
    int64_t id = db_.last_insert_id();
    insert_param.bind(1, id).bind(2, "seed").bind(3, rc.seed).run();
    if (!rc.variant.empty()) insert_param.bind(1, id).bind(2, "variant").bind(3, rc.variant).run();
    for (const auto& [k, v] : rc.values) {
      insert_param.bind(1, id).bind(2, k);
      if (std::holds_alternative<bool>(v)) insert_param.bind(3, std::get<bool>(v) ? "true" : "false");
      else insert_param.bind(3, v);
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
      .bind(1, pid).bind(2, hostname()).bind(3, r.id).run();
  tx.commit();
  r.status = "running";
  return r;
}

std::optional<RunRow> Store::run(int64_t id) {
  auto st = db_.prepare(fmt::format("SELECT {} FROM runs WHERE id = ?", kRunCols));
  st.bind(1, id);
  if (!st.step()) return std::nullopt;
  return read_run(st);
}

std::vector<RunRow> Store::runs(const std::string& where_sql, const std::vector<Value>& args) {
  auto st = db_.prepare(fmt::format("SELECT {} FROM runs {} ORDER BY id", kRunCols,
                                    where_sql.empty() ? "" : "WHERE " + where_sql));
  for (size_t i = 0; i < args.size(); ++i) st.bind(static_cast<int>(i + 1), args[i]);
  std::vector<RunRow> out;
  while (st.step()) out.push_back(read_run(st));
  return out;
}

void Store::mark_started(int64_t run_id, int64_t n_params, const std::string& device) {
  db_.prepare("UPDATE runs SET started_at = COALESCE(started_at, ?), n_params = ?, device = ?, worker_pid = ?, "
              "host = ? WHERE id = ?")
      .bind(1, now_unix()).bind(2, n_params).bind(3, device).bind(4, static_cast<int64_t>(getpid()))
      .bind(5, hostname()).bind(6, run_id).run();
}

void Store::set_status(int64_t run_id, const std::string& status, const std::string& error) {
  bool final = status == "done" || status == "failed" || status == "diverged";
  auto st = db_.prepare("UPDATE runs SET status = ?, error = ?, finished_at = ? WHERE id = ?");
  st.bind(1, status);
  if (error.empty()) st.bind_null(2); else st.bind(2, error);
  if (final) st.bind(3, now_unix()); else st.bind_null(3);
  st.bind(4, run_id).run();
}

void Store::set_step(int64_t run_id, int64_t step) {
  db_.prepare("UPDATE runs SET step = ? WHERE id = ?").bind(1, step).bind(2, run_id).run();
}

void Store::set_plugins(int64_t run_id, const std::vector<PluginRow>& plugins) {
  sql::Transaction tx(db_);
  auto st = db_.prepare("INSERT OR REPLACE INTO plugins(run_id, kind, name, version, file_sha256) VALUES(?,?,?,?,?)");
  for (const auto& p : plugins) st.bind(1, run_id).bind(2, p.kind).bind(3, p.name).bind(4, p.version).bind(5, p.file_sha256).run();
  tx.commit();
}

void Store::add_checkpoint(int64_t run_id, int64_t step, const std::string& path, const std::string& sha256) {
  db_.prepare("INSERT OR REPLACE INTO checkpoints(run_id, step, path, sha256, created_at) VALUES(?,?,?,?,?)")
      .bind(1, run_id).bind(2, step).bind(3, path).bind(4, sha256).bind(5, now_unix()).run();
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
  auto st = db_.prepare("INSERT INTO metrics(run_id, step, tokens, elapsed_s, name, value, finite) VALUES(?,?,?,?,?,?,?)");
  for (const auto& r : rows) {
    bool finite = std::isfinite(r.value);
    st.bind(1, r.run_id).bind(2, r.step).bind(3, r.tokens).bind(4, r.elapsed_s).bind(5, r.name);
    if (finite) st.bind(6, r.value); else st.bind_null(6);
    st.bind(7, static_cast<int64_t>(finite)).run();
  }
  tx.commit();
}

void Store::set_summary(int64_t run_id, const std::string& key, double value) {
  auto st = db_.prepare("INSERT OR REPLACE INTO summaries(run_id, key, value) VALUES(?,?,?)");
  st.bind(1, run_id).bind(2, key);
  if (std::isfinite(value)) st.bind(3, value); else st.bind_null(3);
  st.run();
}

MetricWriter::~MetricWriter() {
  try {
    flush();
  } catch (...) {
  }
}
void MetricWriter::add(int64_t step, int64_t tokens, double elapsed_s, const std::string& name, double value) {
  rows_.push_back(MetricRow{run_id_, step, tokens, elapsed_s, name, value});
}
void MetricWriter::flush() {
  store_.write_metrics(rows_);
  rows_.clear();
}

}  // namespace lmgrid
