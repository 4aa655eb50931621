// Experiment files (TOML) and their expansion into fully resolved run configs.
//
// Grammar (docs in README "Grid grammar"):
//   [experiment]  name = "..." (required), seeds = [1, 2] or seed = 1, description = "..."
//   [data] [tokenizer] [model] [optim]   plugin = "<name>" + that plugin's parameters
//   [model.<plugin>] ...                 parameters applied only when model.plugin == <plugin>
//                                        (same for every plugin section)
//   [train]                              trainer settings (see trainer_params())
//   [grid]     "<section>.<key>" = [v1, v2, ...]          Cartesian product over the keys
//   [[zip]]    "<section>.<key>" = [...] per key, equal lengths: the lists vary together
//   [[variant]] name = "...", then "<section>.<key>" = v or nested tables: named override sets,
//              each combined with every grid point
//   --set section.key=value              applied last, overriding base, grid and variants
//   [report]   optional: the report `lmgrid run` writes when the grid ends (see ReportSpec)
// Runs = variants x grid x zips x seeds, after overrides; identical configs are merged.
#pragma once

#include <filesystem>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "lmgrid/base/params.hpp"
#include "lmgrid/plugin/plugin.hpp"
#include "lmgrid/config/run_config.hpp"

namespace lmgrid {

class Registry;

PluginKind section_kind(const std::string& section);  // "model" -> arch ...

// Raw key/value with its source position ("file:line:col") for error messages.
struct RawValue {
  Value value;
  std::string where;
  int level = 0;  // precedence: base 0 < variants/grid/zips (in file order) < --set
};

// Parses and expands `file`, applies `overrides` ("section.key=value"), validates every run
// against the plugins' declared params and the trainer's params. Throws UserError with
// file:line:col on any problem; nothing is run or written before this succeeds.
Experiment load_experiment(const std::filesystem::path& file, const std::vector<std::string>& overrides,
                           const Registry& registry);
// Every resolved run as experiment TOML that load_experiment accepts back with the same config
// hashes (and variant labels): [experiment] with the seeds, [report], then one [[variant]]
// per distinct config holding every resolved key. `lmgrid grid FILE --dump` prints it.
std::string dump_experiment_toml(const Experiment& exp);
// Same, from TOML text (tests); `name` is used as the file name in messages.
Experiment load_experiment_text(const std::string& text, const std::string& name,
                                const std::vector<std::string>& overrides, const Registry& registry);

}  // namespace lmgrid
