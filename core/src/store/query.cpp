// Run filters (see query.hpp): SQL built from bound parameters only.
#include "lmgrid/store/query.hpp"

#include <algorithm>
#include <set>

#include <fmt/format.h>

#include "lmgrid/base/errors.hpp"
#include "lmgrid/config/run_config.hpp"
#include "lmgrid/store/store.hpp"

namespace lmgrid {

namespace {
const std::vector<std::string> kColumns{"id",      "experiment",  "status", "step",   "n_params",
                                        "variant", "config_hash", "host",   "device", "error"};
}

WhereExpr parse_where(const std::string& expr) {
  static const std::vector<std::string> ops{"!=", ">=", "<=", "=", ">", "<", "~"};
  size_t best = std::string::npos;
  std::string op;
  for (const auto& o : ops) {
    size_t p = expr.find(o);
    if (p != std::string::npos && (p < best || (p == best && o.size() > op.size()))) best = p, op = o;
  }
  if (best == std::string::npos || best == 0)
    throw UserError(fmt::format("--where '{}': expected KEY OP VALUE with OP one of = != > < >= <= ~", expr));
  WhereExpr w;
  w.key = expr.substr(0, best);
  w.op = op;
  std::string rhs = expr.substr(best + op.size());
  while (!w.key.empty() && w.key.back() == ' ') w.key.pop_back();
  while (!rhs.empty() && rhs.front() == ' ') rhs.erase(rhs.begin());
  if (w.key.empty() || rhs.empty()) throw UserError(fmt::format("--where '{}': key and value must not be empty", expr));
  w.value = op == "~" ? Value(rhs) : parse_scalar(rhs);
  if ((op == ">" || op == "<" || op == ">=" || op == "<=") && std::holds_alternative<std::string>(w.value))
    throw UserError(fmt::format("--where '{}': {} needs a number, got '{}'", expr, op, rhs));
  return w;
}

std::vector<std::string> known_keys(sql::Db& db) {
  std::set<std::string> keys(kColumns.begin(), kColumns.end());
  auto a = db.prepare("SELECT DISTINCT key FROM params");
  while (a.step()) keys.insert(a.text(0));
  auto b = db.prepare("SELECT DISTINCT key FROM summaries");
  while (b.step()) keys.insert(b.text(0));
  return {keys.begin(), keys.end()};
}

std::optional<Value> RunRecord::get(const std::string& key) const {
  if (key == "id") return id;
  if (key == "experiment") return experiment;
  if (key == "status") return status;
  if (key == "step") return step;
  if (key == "n_params") return n_params;
  if (key == "variant") return variant;
  if (key == "config_hash" || key == "hash") return config_hash;
  if (key == "host") return host;
  if (key == "device") return device;
  if (key == "error") return error;
  if (key == "seed") return seed;
  if (auto it = params.find(key); it != params.end()) return it->second;
  if (auto it = summaries.find(key); it != summaries.end()) return it->second;
  return std::nullopt;
}

namespace {

// A WHERE clause over `runs` under construction: SQL text with ? placeholders and their values.
struct WhereClause {
  std::string sql = "1";
  std::vector<Value> args;
  // Appends "AND col IN (?,...)" over vals; nothing when vals is empty.
  template <class T>
  void in_list(const std::string& col, const std::vector<T>& vals) {
    if (vals.empty()) return;
    sql += " AND " + col + " IN (";
    for (size_t i = 0; i < vals.size(); ++i) {
      sql += i ? ",?" : "?";
      args.push_back(vals[i]);
    }
    sql += ")";
  }
};

// Throws UserError for a --status that is not a run status.
void check_statuses(const std::vector<std::string>& statuses) {
  for (const auto& s : statuses)
    if (std::find(run_statuses().begin(), run_statuses().end(), s) == run_statuses().end())
      throw UserError(
          fmt::format("--status '{}' is not one of pending, running, done, failed, diverged, interrupted", s));
}

// Appends one condition per --where expression (run column, summary or config key; UserError
// for an unknown key, with the nearest known one).
void add_where_exprs(sql::Db& db, const std::vector<std::string>& exprs, WhereClause& where) {
  if (exprs.empty()) return;
  auto keys = known_keys(db);
  std::set<std::string> summary_keys;
  auto sk = db.prepare("SELECT DISTINCT key FROM summaries");
  while (sk.step()) summary_keys.insert(sk.text(0));
  for (const auto& expr : exprs) {
    WhereExpr w = parse_where(expr);
    std::string sql_op = w.op == "~" ? "GLOB" : w.op;
    bool is_column = std::find(kColumns.begin(), kColumns.end(), w.key) != kColumns.end();
    if (is_column) {
      where.sql += fmt::format(" AND runs.{} {} ?", w.key, sql_op);
    } else if (std::find(keys.begin(), keys.end(), w.key) == keys.end()) {
      std::string hint = nearest(w.key, keys);
      throw UserError(fmt::format("--where '{}': unknown key '{}'{}", expr, w.key,
                                  hint.empty() ? "" : "; did you mean '" + hint + "'?"));
    } else if (summary_keys.count(w.key)) {
      where.sql += fmt::format(
          " AND EXISTS (SELECT 1 FROM summaries s WHERE s.run_id = runs.id AND s.key = ? AND s.value {} ?)", sql_op);
      where.args.push_back(w.key);
    } else {
      where.sql += fmt::format(
          " AND EXISTS (SELECT 1 FROM params p WHERE p.run_id = runs.id AND p.key = ? AND p.value {} ?)", sql_op);
      where.args.push_back(w.key);
    }
    Value v = w.value;
    if (auto* b = std::get_if<bool>(&v)) v = std::string(*b ? "true" : "false");  // bools are stored as text
    where.args.push_back(v);
  }
}

// The WHERE clause of a query: experiments, ids, statuses, then the --where expressions.
WhereClause where_clause(sql::Db& db, const RunQuery& q) {
  check_statuses(q.statuses);
  WhereClause where;
  where.in_list("experiment", q.experiments);
  where.in_list("id", q.ids);
  where.in_list("status", q.statuses);
  add_where_exprs(db, q.where, where);
  return where;
}

// The run columns of every run matching `where`, ordered by id (no params or summaries yet).
std::vector<RunRecord> load_run_rows(sql::Db& db, const WhereClause& where) {
  std::vector<RunRecord> out;
  auto st = db.prepare(
      "SELECT id, experiment, status, config_hash, COALESCE(variant,''), COALESCE(error,''), "
      "COALESCE(host,''), COALESCE(device,''), step, COALESCE(n_params,0), COALESCE(seed,0), "
      "started_at, finished_at FROM runs WHERE " +
      where.sql + " ORDER BY id");
  for (size_t i = 0; i < where.args.size(); ++i) st.bind(static_cast<int>(i + 1), where.args[i]);
  while (st.step()) {
    RunRecord r;
    r.id = st.i64(0), r.experiment = st.text(1), r.status = st.text(2), r.config_hash = st.text(3);
    r.variant = st.text(4), r.error = st.text(5), r.host = st.text(6), r.device = st.text(7);
    r.step = st.i64(8), r.n_params = st.i64(9), r.seed = st.i64(10);
    if (!st.is_null(11)) r.started_at = st.f64(11);
    if (!st.is_null(12)) r.finished_at = st.f64(12);
    out.push_back(std::move(r));
  }
  return out;
}

// A stored param value: integers and floats as they are, "true"/"false" as bools, else text.
Value param_value(const sql::Stmt& st, int col) {
  switch (st.type(col)) {
    case SQLITE_INTEGER: return st.i64(col);
    case SQLITE_FLOAT: return st.f64(col);
    default: {
      std::string t = st.text(col);
      return t == "true" ? Value(true) : t == "false" ? Value(false) : Value(t);
    }
  }
}

// Fills params and summaries of `runs` (sorted by id, not empty) with one range scan each.
void load_params_and_summaries(sql::Db& db, std::vector<RunRecord>& runs) {
  std::map<int64_t, size_t> index;
  for (size_t i = 0; i < runs.size(); ++i) index[runs[i].id] = i;
  int64_t lo = runs.front().id, hi = runs.back().id;
  auto ps = db.prepare("SELECT run_id, key, value FROM params WHERE run_id BETWEEN ? AND ?");
  ps.bind(1, lo).bind(2, hi);
  while (ps.step()) {
    auto it = index.find(ps.i64(0));
    if (it != index.end()) runs[it->second].params[ps.text(1)] = param_value(ps, 2);
  }
  auto ss = db.prepare("SELECT run_id, key, value FROM summaries WHERE run_id BETWEEN ? AND ? AND value IS NOT NULL");
  ss.bind(1, lo).bind(2, hi);
  while (ss.step()) {
    auto it = index.find(ss.i64(0));
    if (it != index.end()) runs[it->second].summaries[ss.text(1)] = ss.f64(2);
  }
}

}  // namespace

std::vector<RunRecord> query_runs(sql::Db& db, const RunQuery& q) {
  auto runs = load_run_rows(db, where_clause(db, q));
  if (!runs.empty()) load_params_and_summaries(db, runs);
  return runs;
}

std::vector<std::string> varying_keys(const std::vector<RunRecord>& runs) {
  std::set<std::string> keys;
  for (const auto& r : runs)
    for (const auto& [k, v] : r.params) keys.insert(k);
  std::vector<std::string> out;
  for (const auto& k : keys) {
    if (k == "variant") continue;
    std::set<std::string> vals;
    for (const auto& r : runs) {
      auto it = r.params.find(k);
      vals.insert(it == r.params.end() ? "\x01" : to_string(it->second));
    }
    if (vals.size() > 1) out.push_back(k);
  }
  return out;
}

std::vector<std::string> experiment_names(sql::Db& db) {
  std::vector<std::string> names;
  auto st = db.prepare("SELECT name FROM experiments ORDER BY name");
  while (st.step()) names.push_back(st.text(0));
  return names;
}

void scan_loss_series(sql::Db& db, int64_t lo, int64_t hi, const std::function<void(const LossPoint&)>& visit) {
  auto st = db.prepare(
      "SELECT run_id, name, step, tokens, elapsed_s, value FROM metrics "
      "WHERE run_id BETWEEN ? AND ? AND name IN ('train/loss', 'val/loss') AND finite = 1 "
      "ORDER BY run_id, name, step");
  st.bind(1, lo).bind(2, hi);
  while (st.step()) {
    LossPoint p;
    p.run_id = st.i64(0), p.is_val = st.text(1) == "val/loss", p.step = st.i64(2), p.tokens = st.i64(3);
    p.elapsed_s = st.f64(4), p.value = st.f64(5);
    visit(p);
  }
}

}  // namespace lmgrid
