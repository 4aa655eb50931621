// lmgrid compare RUN_ID RUN_ID...: the config keys that differ between the runs (only those),
// then their status and summaries side by side, one column per run.
#include <set>

#include <fmt/format.h>

#include <lmgrid/base/errors.hpp>
#include <lmgrid/store/query.hpp>
#include <lmgrid/store/store.hpp>
#include <lmgrid/base/util.hpp>
#include <lmgrid/report/table.hpp>

#include "commands.hpp"

namespace lmgrid::cli {

static std::string summary_cell(const RunRecord& r, const std::string& key) {
  auto it = r.summaries.find(key);
  if (it == r.summaries.end()) return "";
  double v = it->second, a = std::abs(v);
  if (a != 0 && (a < 1e-3 || a >= 1e6)) return fmt::format("{:.4g}", v);
  return fmt::format("{:.6g}", v);
}

void add_compare(CLI::App& app) {
  struct Opt {
    std::string db, format = "table";
    std::vector<int64_t> ids;
  };
  auto opt = std::make_shared<Opt>();
  auto* cmd = app.add_subcommand("compare", "Compare runs: config keys that differ, then summaries side by side");
  cmd->add_option("run_id", opt->ids, "two or more run ids")->required();
  cmd->add_option("--db", opt->db, "results database (default $LMGRID_DB or results/lmgrid.db)");
  cmd->add_option("--format", opt->format, "table, csv or json");
  cmd->callback([opt] {
    Format format = parse_format(opt->format);
    if (opt->ids.size() < 2) throw UserError("compare needs at least two run ids");
    Store store(opt->db.empty() ? default_db_path() : std::filesystem::path(opt->db), true);
    RunQuery q;
    q.ids = opt->ids;
    auto found = query_runs(store.db(), q);
    std::map<int64_t, RunRecord> by_id;
    for (auto& r : found) by_id[r.id] = std::move(r);
    std::vector<RunRecord> runs;  // in the order given
    for (int64_t id : opt->ids) {
      auto it = by_id.find(id);
      if (it == by_id.end()) throw UserError(fmt::format("no run with id {} in {}", id, store.path().string()));
      runs.push_back(it->second);
    }
    std::vector<std::string> headers{"section", "key"};
    for (const auto& r : runs) headers.push_back(fmt::format("run {}", r.id));
    std::vector<std::vector<std::string>> config_rows, result_rows;
    for (const auto& k : varying_keys(runs)) {
      std::vector<std::string> row{"config", k};
      for (const auto& r : runs) {
        auto v = r.get(k);
        row.push_back(v ? to_string(*v) : "(unset)");
      }
      config_rows.push_back(std::move(row));
    }
    for (const char* k : {"experiment", "status", "step"}) {
      std::vector<std::string> row{"run", k};
      for (const auto& r : runs) row.push_back(to_string(*r.get(k)));
      result_rows.push_back(std::move(row));
    }
    std::set<std::string> skeys;
    for (const auto& r : runs)
      for (const auto& [k, v] : r.summaries) skeys.insert(k);
    for (const auto& k : skeys) {
      std::vector<std::string> row{"summary", k};
      for (const auto& r : runs) row.push_back(summary_cell(r, k));
      result_rows.push_back(std::move(row));
    }
    if (format == Format::table) {
      // Two blocks: what differs, then what came out.
      if (config_rows.empty())
        std::puts("config: identical (no key differs)");
      else
        std::fputs(render_rows(headers, config_rows, format).c_str(), stdout);
      std::puts("");
      std::fputs(render_rows(headers, result_rows, format).c_str(), stdout);
      return;
    }
    for (auto& row : result_rows) config_rows.push_back(std::move(row));
    std::fputs(render_rows(headers, config_rows, format).c_str(), stdout);
  });
}

}  // namespace lmgrid::cli
