// lmgrid report: write report.html (self-contained: inline CSS and SVG, no script) and
// report.md (+ SVG charts) comparing groups of runs. The logic is in core (lmgrid/report/report.hpp).
#include <cstdio>

#include <fmt/format.h>

#include <lmgrid/base/errors.hpp>
#include <lmgrid/report/report.hpp>
#include <lmgrid/store/store.hpp>

#include "commands.hpp"

namespace lmgrid::cli {

void add_report(CLI::App& app) {
  struct Opt {
    std::string db;
    ReportOptions r;
    double target = 0;
  };
  auto opt = std::make_shared<Opt>();
  auto* cmd = app.add_subcommand("report", "Write an HTML + Markdown report comparing groups of runs");
  cmd->add_option("--db", opt->db, "results database (default $LMGRID_DB or results/lmgrid.db)");
  cmd->add_option("--experiment,-e", opt->r.experiments, "only these experiments (repeatable; default all)");
  cmd->add_option("--group-by,-g", opt->r.group_by,
                  "group runs by this key (repeatable; default: every varying key except the seed)");
  cmd->add_option("--where,-w", opt->r.where,
                  "only runs where KEY OP VALUE holds, as lmgrid runs --where (repeatable, all must hold)");
  cmd->add_option("--best-over", opt->r.best_over, "per group of the other keys, the best value of this key");
  cmd->add_option("--x", opt->r.x, "x axis of the loss curves: step, tokens or time");
  auto* t = cmd->add_option("--target-loss", opt->target, "loss to reach for the tokens/time-to-target columns");
  cmd->add_option("--metric", opt->r.metric,
                  "what ranks groups and picks --best-over: loss (lowest mean best val loss), accuracy (highest "
                  "mean best val accuracy) or auto (accuracy when every finished run has per-slice accuracies)");
  cmd->add_option("--accuracy-x", opt->r.accuracy_x,
                  "charts of final val accuracy vs this config key, one per value of --accuracy-slice");
  cmd->add_option("--accuracy-slice", opt->r.accuracy_slice,
                  "slice key of the --accuracy-x charts (e.g. seq_len; default: the only one)");
  cmd->add_option("--title", opt->r.title, "page title");
  cmd->add_option("--out,-o", opt->r.out, "output folder (default: <db dir>/<experiment>/)");
  cmd->callback([opt, t] {
    if (t->count()) opt->r.target_loss = opt->target;
    std::filesystem::path db = opt->db.empty() ? default_db_path() : std::filesystem::path(opt->db);
    Store store(db, true);
    Report rep = build_report(store.db(), opt->r);
    auto dir = opt->r.out.empty() ? default_report_dir(db, rep.experiments) : std::filesystem::path(opt->r.out);
    auto html = write_report(rep, dir);
    std::printf("report: %s (%d runs, %zu groups)\n", html.c_str(), rep.n_runs, rep.groups.size());
    std::printf("        %s\n", (dir / "report.md").c_str());
  });
}

}  // namespace lmgrid::cli
