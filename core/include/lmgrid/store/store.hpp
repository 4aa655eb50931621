// The results store: one SQLite database (WAL mode) per project, schema in docs/schema.md.
//
// Schema version is PRAGMA user_version; opening an older database migrates it in one
// transaction; a newer one is refused. Every statement is prepared with bound parameters.
// Metrics are buffered by MetricWriter and written in batched transactions.
#pragma once

#include <cstdint>
#include <filesystem>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "lmgrid/config/run_config.hpp"
#include "lmgrid/store/sqlite.hpp"

namespace lmgrid {

// 2: run_dir and checkpoints.path are stored relative to the database's folder (v1 stored them
// as typed from --db, so a grid resumed from another working directory lost its checkpoints).
inline constexpr int kSchemaVersion = 2;

// The statuses a run moves through: pending -> running -> done | failed | diverged | interrupted
// (interrupted -> running again on resume). status_name is the one string form: the
// database's CHECK constraint, queries and the CLI use it.
enum class RunStatus { pending, running, done, failed, diverged, interrupted };
const char* status_name(RunStatus s);
// The status a name stands for; nullopt for anything else.
std::optional<RunStatus> parse_run_status(const std::string& name);
// Every status name, in lifecycle order.
const std::vector<std::string>& run_statuses();
// done, failed and diverged end a run; interrupted and the others do not.
inline bool is_final(RunStatus s) { return s == RunStatus::done || s == RunStatus::failed || s == RunStatus::diverged; }
// failed or diverged: the run did not finish and a rerun skips it unless --retry-failed.
inline bool is_unsuccessful(RunStatus s) { return s == RunStatus::failed || s == RunStatus::diverged; }

struct RunRow {
  int64_t id = 0;
  std::string experiment;
  std::string config_hash;
  std::string config;  // canonical JSON
  RunStatus status = RunStatus::pending;
  std::optional<double> started_at, finished_at;
  std::string error;
  int64_t n_params = 0;
  int64_t step = 0;  // last step reached
  std::optional<int64_t> worker_pid;
  std::string host;
  std::string run_dir;  // as stored: relative to the database's folder (Store::run_dir resolves it)
};

// A checkpoint row with its file resolved against the database's folder.
struct CheckpointRow {
  int64_t step = 0;
  std::filesystem::path path;  // absolute
  std::string sha256;
};

// Finite values of one metric series of one run.
struct MetricStats {
  int64_t count = 0;
  double first = 0, last = 0, min = 0, max = 0, mean = 0;
};

struct MetricRow {
  int64_t run_id;
  int64_t step;
  int64_t tokens;
  double elapsed_s;
  std::string name;
  double value;  // NaN/Inf allowed: stored as NULL value with is_finite = 0
};

struct PluginRow {
  std::string kind, name, version, file_sha256;
};

// Default database path: $LMGRID_DB, else results/lmgrid.db.
std::filesystem::path default_db_path();

class Store {
 public:
  // Opens (creating and migrating when writable) the database at `path`.
  // read_only: the file must exist; nothing can be written through this connection.
  // A file that is not an lmgrid database (not SQLite, foreign tables, empty when read-only)
  // throws UserError naming it, as does a schema newer than this lmgrid.
  Store(const std::filesystem::path& path, bool read_only = false);

  sql::Db& db() { return db_; }
  // Throws a runtime error naming the file and the first problem SQLite's quick_check finds (a
  // truncated file, a page overwritten): called before a grid writes hours of results into it.
  // It reads the whole file: 0.1 s of CPU for a 75 MB database of a million metric rows here.
  void check_integrity();
  // The database file, absolute: run files are found from any working directory.
  const std::filesystem::path& path() const { return path_; }
  int schema_version() const { return schema_; }
  // Folder for per-run files (checkpoints, tokenizer): <db dir>/runs/<hash[:16]>, absolute.
  // Derived from the database's own location, so a database moved together with its runs/
  // folder keeps working.
  std::filesystem::path run_dir(const std::string& config_hash) const;

  // Registers the experiment and its runs. Existing runs (same hash) are kept as they are,
  // except: failed/diverged runs become pending when retry_failed; running runs whose worker
  // process is gone become interrupted. Returns the run ids in grid order.
  std::vector<int64_t> register_runs(const Experiment& exp, bool retry_failed);

  // Atomically claims the next runnable run (pending or interrupted) among `ids`: sets status
  // running, worker_pid and host. Returns nullopt when none is left.
  std::optional<RunRow> claim_next(const std::vector<int64_t>& ids, int64_t pid);
  // The `running` runs of `ids` on this host, outside this process's own workers (another
  // `lmgrid run` of the same grid on the same database): `held` still have a live lmgrid process;
  // `released` had none (it was killed) and are marked interrupted here, claimable again. Runs
  // `running` on other hosts are in neither: their processes cannot be checked from here.
  struct OtherRuns {
    std::vector<int64_t> held, released;
  };
  OtherRuns runs_of_other_processes(const std::vector<int64_t>& ids);
  std::optional<RunRow> run(int64_t id);
  std::vector<RunRow> runs(const std::string& where_sql = "", const std::vector<Value>& args = {});

  void mark_started(int64_t run_id, int64_t n_params, const std::string& device);
  void set_status(int64_t run_id, RunStatus status, const std::string& error = "");
  void set_step(int64_t run_id, int64_t step);
  void set_plugins(int64_t run_id, const std::vector<PluginRow>& plugins);
  // `file` lies in the run's folder; it is stored relative to the database's folder.
  void add_checkpoint(int64_t run_id, int64_t step, const std::filesystem::path& file, const std::string& sha256);
  // The run's checkpoints, newest first, files resolved (they may be missing on disk).
  std::vector<CheckpointRow> checkpoints(int64_t run_id);
  void delete_checkpoint(int64_t run_id, int64_t step);
  void delete_checkpoints(int64_t run_id);
  void delete_checkpoint_rows_after(int64_t run_id, int64_t step);
  // Names of the metric series a run has, sorted.
  std::vector<std::string> metric_names(int64_t run_id);
  // A run's metric rows ordered by name, then step; only `names` when not empty.
  std::vector<MetricRow> metric_rows(int64_t run_id, const std::vector<std::string>& names = {});
  // Statistics of a run's finite values of metric `name` in step order; nullopt when none.
  std::optional<MetricStats> metric_stats(int64_t run_id, const std::string& name);
  std::optional<double> summary(int64_t run_id, const std::string& key);
  // Status of each run of an experiment, by config hash.
  std::map<std::string, std::string> statuses_by_hash(const std::string& experiment);
  // Removes metrics logged after `step` (used when resuming from a checkpoint at `step`).
  void delete_metrics_after(int64_t run_id, int64_t step);
  void write_metrics(const std::vector<MetricRow>& rows);  // one transaction
  void set_summary(int64_t run_id, const std::string& key, double value);

  // True if a process with this pid exists on this host (used to detect dead workers).
  static bool process_alive(int64_t pid);

 private:
  void check_lmgrid(bool read_only);
  void migrate();
  std::filesystem::path path_;
  sql::Db db_;
  int schema_ = kSchemaVersion;
};

// Buffers metric rows and writes them in one transaction per flush.
class MetricWriter {
 public:
  MetricWriter(Store& store, int64_t run_id) : store_(store), run_id_(run_id) {}
  ~MetricWriter();
  void add(int64_t step, int64_t tokens, double elapsed_s, const std::string& name, double value);
  void flush();
  size_t pending() const { return rows_.size(); }

 private:
  Store& store_;
  int64_t run_id_;
  std::vector<MetricRow> rows_;
};

}  // namespace lmgrid
