// lmgrid metrics RUN_ID... [--name NAME]: export metric series (step, tokens, time, value).
#include <algorithm>
#include <cmath>

#include <fmt/format.h>

#include <lmgrid/base/errors.hpp>
#include <lmgrid/base/params.hpp>
#include <lmgrid/store/store.hpp>
#include <lmgrid/base/util.hpp>
#include <lmgrid/report/table.hpp>

#include "commands.hpp"

namespace lmgrid::cli {

void add_metrics(CLI::App& app) {
  struct Opt {
    std::string db, format = "table";
    std::vector<int64_t> ids;
    std::vector<std::string> names;
  };
  auto opt = std::make_shared<Opt>();
  auto* cmd = app.add_subcommand("metrics", "Export the metric series of runs");
  cmd->add_option("run_id", opt->ids, "run ids")->required();
  cmd->add_option("--name,-n", opt->names, "only these metrics, e.g. val/loss (repeatable)");
  cmd->add_option("--db", opt->db, "results database (default $LMGRID_DB or results/lmgrid.db)");
  cmd->add_option("--format", opt->format, "table, csv or json");
  cmd->callback([opt] {
    Format format = parse_format(opt->format);
    Store store(opt->db.empty() ? default_db_path() : std::filesystem::path(opt->db), true);
    std::vector<std::vector<std::string>> rows;
    for (int64_t id : opt->ids) {
      if (!store.run(id)) throw UserError(fmt::format("no run with id {} in {}", id, store.path().string()));
      // A name the run does not have is a typo, not an empty series: say which names exist.
      auto known = store.metric_names(id);
      for (const auto& n : opt->names)
        if (std::find(known.begin(), known.end(), n) == known.end()) {
          std::string list;
          for (const auto& k : known) list += (list.empty() ? "" : ", ") + k;
          std::string hint = nearest(n, known);
          throw UserError(fmt::format("run {} has no metric '{}'{}; its metrics: {}", id, n,
                                      hint.empty() ? "" : "; did you mean '" + hint + "'?",
                                      list.empty() ? "(none yet)" : list));
        }
      for (const auto& m : store.metric_rows(id, opt->names))
        rows.push_back({std::to_string(id), std::to_string(m.step), std::to_string(m.tokens),
                        fmt::format("{:.3f}", m.elapsed_s), m.name,
                        std::isfinite(m.value) ? fmt::format("{:.6g}", m.value) : "nan"});
    }
    std::fputs(render_rows({"run_id", "step", "tokens", "elapsed_s", "name", "value"}, rows, format).c_str(), stdout);
  });
}

}  // namespace lmgrid::cli
