// BLAS detection/correction (see cpu.hpp for why), thread defaults and matmul measurement.
#include "lmgrid/cpu.hpp"

#include <dlfcn.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <thread>
#include <vector>

#include <torch/torch.h>

#include "lmgrid/util.hpp"

namespace lmgrid {

namespace {
using corename_fn = char* (*)();

corename_fn find_corename() {
  if (auto f = reinterpret_cast<corename_fn>(dlsym(RTLD_DEFAULT, "openblas_get_corename"))) return f;
  for (const char* lib : {"libblas.so.3", "libopenblas.so.0"}) {
    if (void* h = dlopen(lib, RTLD_LAZY | RTLD_NOLOAD))
      if (auto f = reinterpret_cast<corename_fn>(dlsym(h, "openblas_get_corename"))) return f;
  }
  return nullptr;
}

std::string lower(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return std::tolower(c); });
  return s;
}
}  // namespace

std::string best_openblas_core() {
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl"))
    return "SkylakeX";
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return "Haswell";
  return "";
}

BlasInfo blas_info() {
  BlasInfo info;
  info.coretype_env = env_or("OPENBLAS_CORETYPE", "");
  info.corrected = env_or("LMGRID_BLAS_CORRECTED", "") == "1";
  // Make sure LibTorch (and thereby its BLAS) is loaded before looking.
  (void)torch::get_num_threads();
  if (auto f = find_corename()) {
    info.library = "openblas";
    const char* c = f();
    info.core = c ? c : "";
  } else {
    info.library = dlsym(RTLD_DEFAULT, "sgemm_") ? "reference or other" : "unknown";
  }
  return info;
}

void ensure_fast_blas(int argc, char** argv) {
  if (env_or("LMGRID_NO_BLAS_FIX", "") == "1" || !env_or("OPENBLAS_CORETYPE", "").empty()) return;
  auto f = find_corename();
  if (!f) return;
  std::string core = f() ? lower(f()) : "";
  // Tests simulate a mis-detected core with LMGRID_TEST_BLAS_CORE (e.g. "Prescott").
  if (!env_or("LMGRID_TEST_BLAS_CORE", "").empty()) core = lower(env_or("LMGRID_TEST_BLAS_CORE", ""));
  std::string best = best_openblas_core();
  if (best.empty() || core == lower(best)) return;
  // Only override cores that are weaker than what the CPU supports (a mis-detection).
  static const std::vector<std::string> generic{"prescott", "core2", "katmai", "coppermine", "northwood",
                                                "penryn",   "dunnington", "nehalem", "atom", "unknown",
                                                "sandybridge", "banias"};
  bool weak = std::find(generic.begin(), generic.end(), core) != generic.end() ||
              (best == "SkylakeX" && core == "haswell");
  if (!weak) return;
  setenv("OPENBLAS_CORETYPE", best.c_str(), 1);
  setenv("LMGRID_BLAS_CORRECTED", "1", 1);
  std::vector<char*> args(argv, argv + argc);
  args.push_back(nullptr);
  execv("/proc/self/exe", args.data());
  // exec failed: continue on the slow path.
}

int default_threads(int workers) {
  std::string env = env_or("LMGRID_THREADS", "");
  if (!env.empty()) return std::max(1, std::atoi(env.c_str()));
  int cores = static_cast<int>(std::thread::hardware_concurrency());
  return std::max(1, cores / std::max(1, workers));
}

double measure_matmul_gflops(int n, int reps) {
  torch::NoGradGuard ng;
  auto a = torch::randn({n, n});
  auto b = torch::randn({n, n});
  auto c = torch::mm(a, b);  // warm-up
  std::vector<double> rates;
  for (int r = 0; r < reps; ++r) {
    double t0 = monotonic_seconds();
    c = torch::mm(a, b);
    double dt = monotonic_seconds() - t0;
    rates.push_back(2.0 * n * n * static_cast<double>(n) / dt / 1e9);
  }
  std::sort(rates.begin(), rates.end());
  return rates[rates.size() / 2];
}

}  // namespace lmgrid
