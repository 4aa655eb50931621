// BLAS detection/correction (see cpu.hpp for why), thread defaults and matmul measurement.
#include "lmgrid/sys/cpu.hpp"

#include <dlfcn.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <cmath>
#include <sched.h>
#include <thread>
#include <vector>

#include <torch/torch.h>

#include <fmt/format.h>

#include "lmgrid/base/env.hpp"
#include "lmgrid/base/errors.hpp"
#include "lmgrid/base/util.hpp"
#include "lmgrid/sys/gpu.hpp"

namespace lmgrid {

namespace {
// A function of the loaded OpenBLAS (LibTorch links it as libblas.so.3 through Debian's
// alternatives, or directly), nullptr when the BLAS is not OpenBLAS.
template <typename Fn>
Fn find_openblas(const char* name) {
  if (auto f = reinterpret_cast<Fn>(dlsym(RTLD_DEFAULT, name))) return f;
  for (const char* lib : {"libblas.so.3", "libopenblas.so.0"}) {
    if (void* h = dlopen(lib, RTLD_LAZY | RTLD_NOLOAD))
      if (auto f = reinterpret_cast<Fn>(dlsym(h, name))) return f;
  }
  return nullptr;
}

std::string cpu_model() {
  std::ifstream in("/proc/cpuinfo");
  std::string line;
  while (std::getline(in, line))
    if (line.rfind("model name", 0) == 0) {
      auto colon = line.find(':');
      std::string m = colon == std::string::npos ? "" : line.substr(colon + 1);
      m.erase(0, m.find_first_not_of(" \t"));
      std::replace(m.begin(), m.end(), '\t', ' ');
      return m;
    }
  return "unknown cpu";
}

std::string lower(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return std::tolower(c); });
  return s;
}
}  // namespace

std::vector<std::string> cpu_bf16_features() {
  std::ifstream in("/proc/cpuinfo");
  std::string line;
  while (std::getline(in, line))
    if (line.rfind("flags", 0) == 0) {
      std::vector<std::string> found;
      std::stringstream ss(line.substr(line.find(':') + 1));
      for (std::string f; ss >> f;)
        if (f == "avx512_bf16" || f == "amx_bf16") found.push_back(f);
      return found;
    }
  return {};
}

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
  if (auto f = find_openblas<char* (*)()>("openblas_get_corename")) {
    info.library = "openblas";
    const char* c = f();
    info.core = c ? c : "";
  } else {
    // Not OpenBLAS: what LibTorch was built with (the wheel links MKL in), as its config says.
    std::string built = torch_build().blas;
    info.library = !built.empty() && built != "generic" ? built
                   : dlsym(RTLD_DEFAULT, "sgemm_")      ? "reference or other"
                                                        : "unknown";
  }
  return info;
}

void ensure_fast_blas(int argc, char** argv) {
  if (env_or("LMGRID_NO_BLAS_FIX", "") == "1" || !env_or("OPENBLAS_CORETYPE", "").empty()) return;
  auto f = find_openblas<char* (*)()>("openblas_get_corename");
  if (!f) return;
  std::string core = f() ? lower(f()) : "";
  // Tests simulate a mis-detected core with LMGRID_TEST_BLAS_CORE (e.g. "Prescott").
  if (!env_or("LMGRID_TEST_BLAS_CORE", "").empty()) core = lower(env_or("LMGRID_TEST_BLAS_CORE", ""));
  std::string best = best_openblas_core();
  if (best.empty() || core == lower(best)) return;
  // Only override cores that are weaker than what the CPU supports (a mis-detection).
  static const std::vector<std::string> generic{"prescott",  "core2",   "katmai",      "coppermine",
                                                "northwood", "penryn",  "dunnington",  "nehalem",
                                                "atom",      "unknown", "sandybridge", "banias"};
  bool weak =
      std::find(generic.begin(), generic.end(), core) != generic.end() || (best == "SkylakeX" && core == "haswell");
  if (!weak) return;
  setenv("OPENBLAS_CORETYPE", best.c_str(), 1);
  setenv("LMGRID_BLAS_CORRECTED", "1", 1);
  std::vector<char*> args(argv, argv + argc);
  args.push_back(nullptr);
  execv("/proc/self/exe", args.data());
  // exec failed: continue on the slow path.
}

// cgroup v2 (cpu.max: "max 100000" or "<quota> <period>") or v1 (cpu.cfs_quota_us and
// cpu.cfs_period_us) CPU quota of this process, in cores rounded up; 0 when there is none.
static int cgroup_quota_cores() {
  auto read = [](const std::string& path) {
    std::ifstream in(path);
    std::string s;
    std::getline(in, s);
    return s;
  };
  double quota = -1, period = 0;
  std::string v2 = read("/sys/fs/cgroup/cpu.max");
  if (!v2.empty()) {
    std::istringstream is(v2);
    std::string q;
    is >> q >> period;
    if (q != "max") quota = std::atof(q.c_str());
  } else {
    std::string q = read("/sys/fs/cgroup/cpu/cpu.cfs_quota_us"), p = read("/sys/fs/cgroup/cpu/cpu.cfs_period_us");
    if (!q.empty() && !p.empty()) quota = std::atof(q.c_str()), period = std::atof(p.c_str());
  }
  if (quota <= 0 || period <= 0) return 0;
  return std::max(1, static_cast<int>(std::ceil(quota / period)));
}

int available_cores() {
  int cores = 0;
  cpu_set_t set;
  CPU_ZERO(&set);
  if (sched_getaffinity(0, sizeof(set), &set) == 0) cores = CPU_COUNT(&set);
  if (cores <= 0) cores = static_cast<int>(std::thread::hardware_concurrency());
  int quota = cgroup_quota_cores();
  if (quota > 0) cores = std::min(cores, quota);
  return std::max(1, cores);
}

int requested_threads() {
  const std::string env = env_or("LMGRID_THREADS", "");
  return env.empty() ? 0 : std::max(1, std::atoi(env.c_str()));
}

int default_threads(int workers) {
  if (int t = requested_threads(); t > 0) return t;
  return std::max(1, available_cores() / std::max(1, workers));
}

WorkerPlan plan_workers(int cores, int runs_to_run, int nproc, int workers, int threads) {
  cores = std::max(1, cores);
  nproc = std::max(1, nproc);
  const int runs = std::max(1, runs_to_run);
  WorkerPlan plan;
  if (workers > 0 && threads > 0) {
    plan.workers = workers, plan.threads = threads;
    plan.why = "as asked";
  } else if (workers > 0) {
    plan.workers = workers;
    plan.threads = std::max(1, cores / (workers * nproc));
    plan.why =
        nproc > 1 ? fmt::format("threads auto: {} usable cores / ({} workers x {} processes)", cores, workers, nproc)
                  : fmt::format("threads auto: {} usable cores / {} worker{}", cores, workers, workers == 1 ? "" : "s");
  } else {
    plan.threads = threads > 0 ? threads : 1;
    plan.workers = std::max(1, std::min(runs, cores / (plan.threads * nproc)));
    if (threads <= 0) plan.threads = std::max(1, cores / (plan.workers * nproc));
    plan.why = fmt::format("--workers auto: {} usable cores, {} run{} to run{}", cores, runs_to_run,
                           runs_to_run == 1 ? "" : "s", nproc > 1 ? fmt::format(", {} processes each", nproc) : "");
  }
  return plan;
}

void configure_threads(int threads) {
  torch::set_num_threads(std::max(1, threads));
  // LibTorch sizes only its own pool; OpenBLAS's is sized here unless the user set it.
  if (!env_set("OPENBLAS_NUM_THREADS")) set_blas_threads(threads);
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

int blas_threads() {
  (void)torch::get_num_threads();  // loads LibTorch and its BLAS
  auto f = find_openblas<int (*)()>("openblas_get_num_threads");
  return f ? f() : -1;
}

void set_blas_threads(int n) {
  if (auto f = find_openblas<void (*)(int)>("openblas_set_num_threads")) f(std::max(1, n));
}

double fixed_peak_gflops() {
  const std::string fixed = env_or("LMGRID_PEAK_GFLOPS", "");
  if (fixed.empty()) return 0;
  char* end = nullptr;
  const double v = std::strtod(fixed.c_str(), &end);
  if (end && *end == '\0' && v > 0) return v;
  throw UserError("LMGRID_PEAK_GFLOPS='" + fixed + "' is not a positive number of GFLOP/s");
}

PeakGflops machine_peak_gflops(int threads) {
  PeakGflops p;
  if (const double v = fixed_peak_gflops(); v > 0) return {v, 0, "LMGRID_PEAK_GFLOPS"};
  threads = std::max(1, threads);
  // A worker runs `threads` LibTorch threads and as many OpenBLAS threads (OPENBLAS_NUM_THREADS),
  // so measure with both pools at that size; torch::set_num_threads alone leaves OpenBLAS at all
  // cores. 512^3 takes ~1 ms, so take the best of 3 medians of 7 to skip thread wake-up noise.
  int before = torch::get_num_threads(), blas_before = blas_threads();
  torch::set_num_threads(threads);
  set_blas_threads(threads);
  for (int i = 0; i < 3; ++i) p.measured = std::max(p.measured, measure_matmul_gflops(512, 7));
  torch::set_num_threads(before);
  if (blas_before > 0) set_blas_threads(blas_before);
  p.gflops = p.measured;
  p.source = "measured";

  // Cache key: model <TAB> blas core <TAB> threads.
  const double best =
      remember_best_gflops(cpu_model() + "\t" + blas_info().core + "\t" + std::to_string(threads), p.measured);
  if (best > p.measured) p = {best, p.measured, "cached best"};
  return p;
}

double remember_best_gflops(const std::string& key, double gflops) {
  // Lines: key (three tab-separated fields) <TAB> best GFLOP/s. A missing or unreadable cache
  // only means no history; failing to write it is not an error either.
  namespace fs = std::filesystem;
  fs::path file = cache_dir() / "peak_gflops.tsv";
  std::vector<std::string> keep;
  double best = gflops;
  {
    std::ifstream in(file);
    std::string line;
    while (std::getline(in, line)) {
      auto tab = line.rfind('\t');
      if (tab != std::string::npos && line.compare(0, tab, key) == 0 && tab == key.size())
        best = std::max(best, std::atof(line.c_str() + tab + 1));
      else if (!line.empty())
        keep.push_back(line);
    }
  }
  keep.push_back(key + "\t" + fmt::format("{:.2f}", best));
  std::error_code ec;
  fs::create_directories(file.parent_path(), ec);
  fs::path tmp = file;
  tmp += fmt::format(".tmp{}", static_cast<long>(getpid()));
  {
    std::ofstream out(tmp);
    for (const auto& l : keep) out << l << "\n";
    if (!out) {
      fs::remove(tmp, ec);
      return best;
    }
  }
  fs::rename(tmp, file, ec);
  if (ec) fs::remove(tmp, ec);
  return best;
}

}  // namespace lmgrid
