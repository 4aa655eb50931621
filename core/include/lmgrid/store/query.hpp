// Run queries shared by `lmgrid runs`, `compare` and `report`: filters on experiment, status
// and `--where` expressions over config keys, summaries and run columns.
//
// A where expression is KEY OP VALUE, OP one of = != > < >= <= ~ (~ is a glob: "gp*").
// KEY is a config key ("optim.lr", "model.plugin", "seed"), a summary ("best_val_loss") or a
// run column (id, experiment, status, step, n_params, variant). Unknown keys and malformed
// expressions throw UserError naming the problem.
#pragma once

#include <functional>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "lmgrid/store/sqlite.hpp"

namespace lmgrid {

struct RunQuery {
  std::vector<std::string> experiments;
  std::vector<std::string> statuses;
  std::vector<std::string> where;
  std::vector<int64_t> ids;  // only these run ids (empty: any)
};

struct WhereExpr {
  std::string key, op;
  Value value;
};
WhereExpr parse_where(const std::string& expr);  // throws UserError

// One run with everything a listing needs.
struct RunRecord {
  int64_t id = 0;
  std::string experiment, status, config_hash, variant, error, host, device;
  int64_t step = 0, n_params = 0, seed = 0;
  std::optional<double> started_at, finished_at;
  std::map<std::string, Value> params;      // flattened config
  std::map<std::string, double> summaries;  // best_val_loss, tokens_per_s, ...
  // Value of any key: run column, config key or summary; nullopt if absent.
  std::optional<Value> get(const std::string& key) const;
};

// Runs matching the query, ordered by id, with params and summaries loaded.
std::vector<RunRecord> query_runs(sql::Db& db, const RunQuery& q);
// All keys a query may name (columns, config keys, summaries) present in the database.
std::vector<std::string> known_keys(sql::Db& db);
// Keys whose values differ among `runs` (config keys only, seed included).
std::vector<std::string> varying_keys(const std::vector<RunRecord>& runs);
// Names of the experiments in the database, sorted.
std::vector<std::string> experiment_names(sql::Db& db);

// One finite point of a loss series (train/loss or val/loss).
struct LossPoint {
  int64_t run_id = 0, step = 0, tokens = 0;
  bool is_val = false;
  double elapsed_s = 0, value = 0;
};
// Every finite train/loss and val/loss point of runs lo..hi, in (run, name, step) order: one
// scan in index order, no sort.
void scan_loss_series(sql::Db& db, int64_t lo, int64_t hi, const std::function<void(const LossPoint&)>& visit);

}  // namespace lmgrid
