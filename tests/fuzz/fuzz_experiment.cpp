// libFuzzer target: experiment TOML parsing, grid expansion and validation against the plugins
// (core/src/grid/experiment.cpp), as `lmgrid run` and `lmgrid grid` do before anything runs.
// Input: an experiment file's text. Contract:
//  - load_experiment_text returns the expanded, validated runs or throws UserError (exit 2 with
//    file:line:col), never another exception;
//  - an accepted experiment dumps (`lmgrid grid --dump`) to TOML that loads back to the same
//    runs: the same config hashes, in the same order, with the same variant labels.
#include <cstdint>
#include <cstdlib>
#include <string>

#include <lmgrid/base/errors.hpp>
#include <lmgrid/grid/experiment.hpp>
#include <lmgrid/plugin/registry.hpp>

#include "fuzz_support.hpp"

namespace {
const lmgrid::Registry& registry() {
  static lmgrid::Registry r({LMGRID_FUZZ_PLUGIN_DIR});
  return r;
}
}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  setenv("LMGRID_OFFLINE", "1", 1);  // validation finds data sets on LMGRID_DATA_PATH, never downloads
  registry();
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace lmgrid;
  const std::string text(reinterpret_cast<const char*>(data), size);
  Experiment exp;
  try {
    exp = load_experiment_text(text, "fuzz.toml", {}, registry());
  } catch (const UserError&) {
    return 0;
  } catch (const std::exception& e) {
    fuzz::contract_broken("load_experiment_text threw " + fuzz::describe(e));
  }
  std::string dumped;
  Experiment again;
  try {
    dumped = dump_experiment_toml(exp);
    again = load_experiment_text(dumped, "dump.toml", {}, registry());
  } catch (const std::exception& e) {
    fuzz::contract_broken("the dump of an accepted experiment does not load back: " + fuzz::describe(e) +
                          "\n--- dump ---\n" + dumped);
  }
  if (again.runs.size() != exp.runs.size())
    fuzz::contract_broken("the dump loads back to " + std::to_string(again.runs.size()) + " runs, not " +
                          std::to_string(exp.runs.size()));
  for (size_t i = 0; i < exp.runs.size(); ++i)
    if (again.runs[i].hash() != exp.runs[i].hash() || again.runs[i].variant != exp.runs[i].variant)
      fuzz::contract_broken("run " + std::to_string(i + 1) + " of the dump differs from the original:\n" +
                            exp.runs[i].canonical_json() + "\n" + again.runs[i].canonical_json());
  return 0;
}
