// lmgrid runs: list runs, filtered by experiment, status and --where expressions, with chosen
// columns (config keys, summaries, run columns) and sorting.
#include <algorithm>

#include <fmt/format.h>

#include <lmgrid/base/errors.hpp>
#include <lmgrid/store/query.hpp>
#include <lmgrid/store/store.hpp>
#include <lmgrid/base/util.hpp>
#include <lmgrid/report/table.hpp>

#include "commands.hpp"

namespace lmgrid::cli {

static std::string cell(const std::optional<Value>& v) {
  if (!v) return "";
  if (auto* d = std::get_if<double>(&*v)) {
    double a = std::abs(*d);
    if (a != 0 && (a < 1e-3 || a >= 1e6)) return fmt::format("{:.4g}", *d);
    return fmt::format("{:.6g}", *d);
  }
  return to_string(*v);
}

void add_runs(CLI::App& app) {
  struct Opt {
    std::string db, format = "table", sort = "id";
    RunQuery q;
    std::vector<std::string> columns;
  };
  auto opt = std::make_shared<Opt>();
  auto* cmd = app.add_subcommand("runs", "List runs: filter, choose columns, sort");
  cmd->add_option("--db", opt->db, "results database (default $LMGRID_DB or results/lmgrid.db)");
  cmd->add_option("--experiment,-e", opt->q.experiments, "only these experiments (repeatable)");
  cmd->add_option("--status,-s", opt->q.statuses, "only these statuses (repeatable)");
  cmd->add_option("--where,-w", opt->q.where, "KEY OP VALUE, OP in = != > < >= <= ~ (repeatable, all must hold)");
  cmd->add_option("--columns,-c", opt->columns, "columns to show (comma-separated keys)")->delimiter(',');
  cmd->add_option("--sort", opt->sort, "sort by this key; prefix '-' for descending");
  cmd->add_option("--format", opt->format, "table, csv or json");
  cmd->callback([opt] {
    Format format = parse_format(opt->format);
    Store store(opt->db.empty() ? default_db_path() : std::filesystem::path(opt->db), true);
    auto runs = query_runs(store.db(), opt->q);
    std::vector<std::string> cols = opt->columns;
    if (cols.empty()) {
      cols = {"id", "experiment", "status", "step", "n_params"};
      for (const auto& k : varying_keys(runs)) cols.push_back(k);
      for (const char* s : {"best_val_loss", "tokens_per_s", "wall_time_s"}) cols.push_back(s);
    } else {
      auto keys = known_keys(store.db());
      keys.push_back("seed");
      for (const auto& c : cols)
        if (std::find(keys.begin(), keys.end(), c) == keys.end()) {
          std::string hint = nearest(c, keys);
          throw UserError(
              fmt::format("--columns: unknown key '{}'{}", c, hint.empty() ? "" : "; did you mean '" + hint + "'?"));
        }
    }
    std::string sort = opt->sort;
    bool desc = !sort.empty() && sort[0] == '-';
    if (desc) sort = sort.substr(1);
    if (sort != "id") {
      auto keys = known_keys(store.db());
      keys.push_back("seed");
      if (std::find(keys.begin(), keys.end(), sort) == keys.end())
        throw UserError(fmt::format("--sort: unknown key '{}'", sort));
    }
    std::stable_sort(runs.begin(), runs.end(), [&](const RunRecord& a, const RunRecord& b) {
      auto va = a.get(sort), vb = b.get(sort);
      if (!va || !vb) return static_cast<bool>(va) && !vb;  // missing values last
      auto num = [](const Value& v, double& out) {
        if (auto* d = std::get_if<double>(&v)) return out = *d, true;
        if (auto* i = std::get_if<int64_t>(&v)) return out = static_cast<double>(*i), true;
        return false;
      };
      double x, y;
      if (num(*va, x) && num(*vb, y)) return desc ? x > y : x < y;
      return desc ? to_string(*va) > to_string(*vb) : to_string(*va) < to_string(*vb);
    });
    std::vector<std::vector<std::string>> rows;
    for (const auto& r : runs) {
      std::vector<std::string> row;
      for (const auto& c : cols) row.push_back(cell(r.get(c)));
      rows.push_back(std::move(row));
    }
    std::fputs(render_rows(cols, rows, format).c_str(), stdout);
  });
}

}  // namespace lmgrid::cli
