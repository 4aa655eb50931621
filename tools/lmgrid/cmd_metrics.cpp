// lmgrid metrics RUN_ID... [--name NAME]: export metric series (step, tokens, time, value).
#include <fmt/format.h>

#include <lmgrid/errors.hpp>
#include <lmgrid/store.hpp>
#include <lmgrid/util.hpp>

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
      std::string sql = "SELECT run_id, step, tokens, elapsed_s, name, value, finite FROM metrics WHERE run_id = ?";
      if (!opt->names.empty()) {
        sql += " AND name IN (";
        for (size_t i = 0; i < opt->names.size(); ++i) sql += i ? ",?" : "?";
        sql += ")";
      }
      sql += " ORDER BY name, step";
      auto st = store.db().prepare(sql);
      st.bind(1, id);
      for (size_t i = 0; i < opt->names.size(); ++i) st.bind(static_cast<int>(i + 2), opt->names[i]);
      while (st.step())
        rows.push_back({std::to_string(st.i64(0)), std::to_string(st.i64(1)), std::to_string(st.i64(2)),
                        fmt::format("{:.3f}", st.f64(3)), st.text(4), st.i64(6) ? fmt::format("{:.6g}", st.f64(5)) : "nan"});
    }
    std::fputs(render_rows({"run_id", "step", "tokens", "elapsed_s", "name", "value"}, rows, format).c_str(), stdout);
  });
}

}  // namespace lmgrid::cli
