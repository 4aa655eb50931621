// Resolved run configurations and expanded experiments: plain data, no LibTorch, so that the
// results side (store, queries, reports) and the light `lmgrid` commands never load it.
// Parsing and validation against plugins live in experiment.hpp.
#pragma once

#include <filesystem>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "lmgrid/base/params.hpp"

namespace lmgrid {

inline const std::vector<std::string>& plugin_sections() {
  static const std::vector<std::string> s{"data", "tokenizer", "model", "optim"};
  return s;
}

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

// The optional [report] table: the same settings as `lmgrid report`'s flags.
//   group_by = "key" or ["key", ...]   best_over = "key"   x = "step" | "tokens" | "time"
//   target_loss = 1.5 (> 0)            out = "folder" (default: results/<experiment>/, beside the db)
//   metric = "auto" | "loss" | "accuracy"   (what ranks groups and picks best_over's winner)
//   accuracy_x = "key"                 (charts of accuracy vs this config key, one per slice value)
//   accuracy_slice = "slice key"       (the slice key of those charts, e.g. "seq_len")
// Keys named must be config keys of the experiment's runs (or "seed", "experiment").
struct ReportSpec {
  std::vector<std::string> group_by;
  std::string best_over;
  std::string x = "step";
  std::optional<double> target_loss;
  std::string out;
  std::string metric = "auto";
  std::string accuracy_x;
  std::string accuracy_slice;
};

struct Experiment {
  std::string name;
  std::string description;
  std::filesystem::path file;
  std::string source_text;  // the TOML as read, stored in the database
  std::vector<RunConfig> runs;
  std::vector<std::string> varying_keys;  // keys whose value differs between runs
  ReportSpec report;                      // [report], defaults when the table is absent
};

// Parses a --set value: TOML scalar syntax (1, 1e-3, true, "x"), else the bare string.
// An integer beyond int64 throws UserError ("... is out of the int64 range ...").
Value parse_scalar(const std::string& text);

}  // namespace lmgrid
