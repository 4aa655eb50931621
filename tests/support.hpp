// Helpers shared by tests that load the plugins of this build (build/plugins).
#pragma once

#include <algorithm>
#include <cstdlib>
#include <map>
#include <string>

#include <lmgrid/base/params.hpp>
#include <lmgrid/plugin/registry.hpp>

namespace lmgrid::test {

// One registry over build/plugins for the whole test binary (libraries stay loaded).
inline const Registry& built_plugins() {
  static Registry r({LMGRID_PLUGIN_DIR});
  return r;
}
inline const ArchPlugin& arch_plugin(const std::string& name) {
  return static_cast<const ArchPlugin&>(*built_plugins().get(PluginKind::arch, name).plugin);
}
// The plugin's declared defaults with `values` applied, validated as a [model] table would be.
inline Params arch_params(const std::string& name, const std::map<std::string, Value>& values) {
  return validate_params(arch_plugin(name).params(), values, name);
}

// Sets an environment variable for one scope and restores (or unsets) it after, so that no
// test leaks settings into the ones after it.
struct ScopedEnv {
  std::string name, old;
  bool had;
  ScopedEnv(std::string n, const std::string& v) : name(std::move(n)) {
    const char* o = std::getenv(name.c_str());
    had = o != nullptr;
    if (had) old = o;
    setenv(name.c_str(), v.c_str(), 1);
  }
  ScopedEnv(const ScopedEnv&) = delete;
  ~ScopedEnv() {
    if (had)
      setenv(name.c_str(), old.c_str(), 1);
    else
      unsetenv(name.c_str());
  }
};

// max |a - b| / max |b|: one scale for the whole tensor, so tiny entries do not dominate.
inline double rel_err(const torch::Tensor& a, const torch::Tensor& b) {
  return (a - b).abs().max().item<double>() / std::max(b.abs().max().item<double>(), 1e-300);
}

}  // namespace lmgrid::test
