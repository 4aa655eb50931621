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
// Runs = variants x grid x zips x seeds, after overrides; identical configs are merged.
#pragma once

#include <filesystem>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "lmgrid/params.hpp"
#include "lmgrid/plugin.hpp"

namespace lmgrid {

class Registry;

inline const std::vector<std::string>& plugin_sections() {
  static const std::vector<std::string> s{"data", "tokenizer", "model", "optim"};
  return s;
}
PluginKind section_kind(const std::string& section);  // "model" -> arch ...

// One run: every key resolved, validated and typed. Keys are dotted: "model.n_layer",
// "model.plugin", "train.steps", "seed"; plus "experiment" (the experiment name).
struct RunConfig {
  std::string experiment;
  std::string variant;  // label of the [[variant]] it came from ("" if none); not hashed
  int64_t seed = 0;
  std::map<std::string, Value> values;

  // Parameters of one section without the "section." prefix and without "plugin".
  std::map<std::string, Value> section(const std::string& name) const;
  Params section_params(const std::string& name) const { return Params(section(name)); }
  const std::string& plugin(const std::string& section) const;
  // Canonical JSON: keys sorted, numbers normalised; includes experiment and seed.
  std::string canonical_json() const;
  // sha256 of canonical_json(), hex.
  std::string hash() const;
  // Rebuilds a RunConfig from canonical_json() (as stored in the database).
  static RunConfig from_json(const std::string& json);
};

// Raw key/value with its source position ("file:line:col") for error messages.
struct RawValue {
  Value value;
  std::string where;
  int level = 0;  // precedence: base 0 < variants/grid/zips (in file order) < --set
};

struct Experiment {
  std::string name;
  std::string description;
  std::filesystem::path file;
  std::string source_text;     // the TOML as read, stored in the database
  std::vector<RunConfig> runs;
  std::vector<std::string> varying_keys;  // keys whose value differs between runs
};

// Parses and expands `file`, applies `overrides` ("section.key=value"), validates every run
// against the plugins' declared params and the trainer's params. Throws UserError with
// file:line:col on any problem; nothing is run or written before this succeeds.
Experiment load_experiment(const std::filesystem::path& file, const std::vector<std::string>& overrides,
                           const Registry& registry);
// Same, from TOML text (tests); `name` is used as the file name in messages.
Experiment load_experiment_text(const std::string& text, const std::string& name,
                                const std::vector<std::string>& overrides, const Registry& registry);

// Parses a --set value: TOML scalar syntax (1, 1e-3, true, "x"), else the bare string.
Value parse_scalar(const std::string& text);

}  // namespace lmgrid
