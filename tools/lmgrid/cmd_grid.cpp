// lmgrid grid FILE: expand and validate a grid without running it; print each run's hash,
// the keys that vary and the parameter count of its model (and the non-embedding part: without
// the Embedding tables, a tied head counted with them). --dump prints every resolved run
// config as experiment TOML instead (as Marian's --dump-config), which `lmgrid run` accepts back.
#include <map>

#include <fmt/format.h>

#include <lmgrid/grid/experiment.hpp>
#include <lmgrid/plugin/registry.hpp>
#include <lmgrid/train/trainer.hpp>
#include <lmgrid/base/util.hpp>
#include <lmgrid/report/table.hpp>

#include "commands.hpp"

namespace lmgrid::cli {

void add_grid(CLI::App& app) {
  struct Opt {
    std::string file, format = "table";
    std::vector<std::string> sets;
    bool no_params = false, dump = false;
  };
  auto opt = std::make_shared<Opt>();
  auto* cmd = app.add_subcommand("grid", "Expand a grid and print its runs (hash, varying keys, parameters)");
  cmd->add_option("file", opt->file, "experiment TOML file")->required();
  cmd->add_option("--set", opt->sets, "override a key: section.key=value (repeatable)");
  cmd->add_option("--format", opt->format, "table, csv or json");
  cmd->add_flag("--no-params", opt->no_params, "skip building models to count parameters");
  cmd->add_flag("--dump", opt->dump, "print every resolved run config as TOML that `lmgrid run` accepts back");
  cmd->callback([opt] {
    Format format = parse_format(opt->format);
    const Registry& registry = Registry::instance();
    Experiment exp = load_experiment(opt->file, opt->sets, registry);
    if (opt->dump) {
      std::fputs(dump_experiment_toml(exp).c_str(), stdout);
      return;
    }
    std::vector<std::string> headers{"#", "hash"};
    bool variants = false;
    for (const auto& r : exp.runs) variants |= !r.variant.empty();
    if (variants) headers.push_back("variant");
    for (const auto& k : exp.varying_keys) headers.push_back(k);
    if (!opt->no_params) headers.insert(headers.end(), {"params", "non_embedding"});
    std::map<std::string, std::pair<int64_t, int64_t>> cache;  // same data+tokenizer+model -> same counts
    std::vector<std::vector<std::string>> rows;
    for (size_t i = 0; i < exp.runs.size(); ++i) {
      const auto& r = exp.runs[i];
      std::vector<std::string> row{std::to_string(i + 1), r.hash().substr(0, 12)};
      if (variants) row.push_back(r.variant);
      for (const auto& k : exp.varying_keys)
        row.push_back(k == "seed" ? std::to_string(r.seed)
                                  : (r.values.count(k) ? to_string(r.values.at(k)) : std::string("-")));
      if (!opt->no_params) {
        std::string key;
        for (const auto& [k, v] : r.values)
          if (k.rfind("train.", 0) != 0 && k.rfind("optim.", 0) != 0) key += k + "=" + to_string(v) + ";";
        if (!cache.count(key)) {
          auto model = build_run(r, registry, true).model;
          cache[key] = {model->parameter_count(), model->parameter_count() - model->embedding_parameter_count()};
        }
        row.push_back(std::to_string(cache[key].first));
        row.push_back(std::to_string(cache[key].second));
      }
      rows.push_back(row);
    }
    std::fputs(render_rows(headers, rows, format).c_str(), stdout);
    if (format == Format::table) std::printf("%zu runs in experiment '%s'\n", exp.runs.size(), exp.name.c_str());
  });
}

}  // namespace lmgrid::cli
