// Helpers shared by tests that load the plugins of this build (build/plugins).
#pragma once

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <stdexcept>
#include <string>

#include <lmgrid/base/params.hpp>
#include <lmgrid/plugin/registry.hpp>

namespace lmgrid::test {

// The build folder: the test binary is <build>/bin/lmgrid_tests. Found at run time, not compiled
// in, so that no object depends on where the build folder is (ccache hits in every clone).
inline std::string build_path(const char* sub) {
  static const std::filesystem::path root = std::filesystem::canonical("/proc/self/exe").parent_path().parent_path();
  return (root / sub).string();
}
#define LMGRID_PLUGIN_DIR ::lmgrid::test::build_path("plugins")
#define LMGRID_TEST_PLUGIN_DIR ::lmgrid::test::build_path("test-plugins")

// The source tree (fixtures, README.md): LMGRID_SOURCE, which ctest sets. Not __FILE__: compiles
// through ccache get paths relative to the build folder (cmake/Ccache.cmake), so __FILE__ is
// "../tests/..." and names nothing from the test's working folder.
inline std::filesystem::path source_root() {
  const char* s = std::getenv("LMGRID_SOURCE");
  if (!s || !*s)
    throw std::runtime_error("LMGRID_SOURCE is not set: run the tests through ctest, or set it to the source tree");
  return s;
}

// AddressSanitizer builds (LMGRID_SANITIZE): gcc defines __SANITIZE_ADDRESS__, clang before 16
// only has __has_feature. The sentencepiece tokenizer refuses to load there (it needs
// RTLD_DEEPBIND, which ASan refuses), so tests that load every plugin skip it; ASan's malloc
// also ignores mallopt (tests/core/test_memory.cpp).
#if defined(__SANITIZE_ADDRESS__)
inline constexpr bool kAsanBuild = true;
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
inline constexpr bool kAsanBuild = true;
#else
inline constexpr bool kAsanBuild = false;
#endif
#else
inline constexpr bool kAsanBuild = false;
#endif

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
