// The environment variables lmgrid reads (see env.hpp).
#include "lmgrid/base/env.hpp"

#include <cstdlib>
#include <cstring>
#include <stdexcept>

namespace lmgrid {

const std::vector<EnvVar>& env_vars() {
  static const std::vector<EnvVar> vars{
      {"LMGRID_DB", "results database (default `results/lmgrid.db`; `--db` wins)"},
      {"LMGRID_DATA_PATH", "folders searched in order for named data sources (e.g. `../shared/data`)"},
      {"LMGRID_CACHE",
       "cache folder: downloaded data, the MFU peak (default `$XDG_CACHE_HOME/lmgrid` or "
       "`~/.cache/lmgrid`)"},
      {"LMGRID_OFFLINE", "`1`: never download; a missing source says which file to put where"},
      {"LMGRID_PLUGIN_PATH", "extra plugin folders (colon-separated), searched after `build/plugins/`"},
      {"LMGRID_THREADS",
       "threads per worker, for LibTorch and OpenBLAS (`--threads` wins; default: the usable cores / (workers x "
       "`--nproc`), see \"CPU speed\")"},
      {"LMGRID_CPU_ATTENTION",
       "`auto` or `tiled` (default: lmgrid's tiled kernel, on both LibTorch sources) or `library` "
       "(LibTorch's own: SDPA on 2.x, the plain math on 1.13), for CPU tensors"},
      {"LMGRID_CPU_KERNELS",
       "`auto` (default: float32 and float64 CPU tensors take lmgrid's fused CPU kernels for the SSD scan, the "
       "causal convolution, RMSNorm, the TTT dual form, RoPE, the gated activations and AdamW) or `composite` "
       "(LibTorch ops throughout), see docs/performance.md"},
      {"LMGRID_CPU_SPLIT",
       "`auto` (default: a CPU run with T threads splits each micro-batch into T parts trained at once, one "
       "thread each, see docs/performance.md) or a count of parts (`1` turns them off)"},
      {"LMGRID_PEAK_GFLOPS", "fixes the peak that MFU is measured against"},
      {"LMGRID_PROFILE",
       "`phases`: each run prints where its training loop's time went (data, forward, backward, optimizer, "
       "evaluation, logging, checkpoints; CUDA synchronised at each phase); `ops:PATH`: LibTorch's operator "
       "profiler over steps 11-20, a Chrome trace at PATH (tools/bench/trace_ops.py sums it); see "
       "docs/performance.md"},
      {"LMGRID_NO_BLAS_FIX", "`1`: keep OpenBLAS's own core choice (no re-exec with `OPENBLAS_CORETYPE`)"},
      {"LMGRID_BLAS_CORRECTED", "internal: set by lmgrid on the re-exec that corrected OpenBLAS's core"},
      {"LMGRID_TEST_BLAS_CORE", "tests only: pretend OpenBLAS detected this core"},
      {"OPENBLAS_CORETYPE", "respected when set (lmgrid then never corrects the core)"},
      {"OPENBLAS_NUM_THREADS",
       "respected by commands run directly; training workers always get their own thread count"},
      {"OMP_WAIT_POLICY", "respected when set (workers default to `PASSIVE`)"},
      {"MALLOC_MMAP_THRESHOLD_",
       "glibc's own; when it, `MALLOC_TRIM_THRESHOLD_` or a `glibc.malloc` tunable is set, workers keep the "
       "allocator as set (else they fix its thresholds, see \"CPU speed\")"},
      {"MALLOC_TRIM_THRESHOLD_", "glibc's own; respected as `MALLOC_MMAP_THRESHOLD_`"},
      {"GLIBC_TUNABLES", "glibc's own; a `glibc.malloc.*` setting in it is respected as `MALLOC_MMAP_THRESHOLD_`"},
      {"RANK", "data parallel (torchrun convention): this process's rank among `WORLD_SIZE`"},
      {"WORLD_SIZE", "data parallel: the number of processes of one run (over all machines); > 1 turns it on"},
      {"LOCAL_RANK", "data parallel: the rank on this machine (picks the GPU of a CUDA run)"},
      {"MASTER_ADDR", "data parallel: the address of rank 0 (its TCP store)"},
      {"MASTER_PORT", "data parallel: the port of rank 0's TCP store"},
      {"LMGRID_DB_TIMEOUT",
       "seconds a database statement waits for a lock another process holds before it gives up (default 30)"},
      {"LMGRID_DIST_TIMEOUT", "data parallel: seconds a rank waits for its peers before the run ends (default 300)"},
      {"LMGRID_DIST_BACKEND",
       "data parallel: `auto` (NCCL for CUDA tensors where LibTorch has it, Gloo otherwise), `gloo` or `nccl`"},
      {"GLOO_SOCKET_IFNAME",
       "data parallel: the network interface Gloo uses (e.g. `ib0`; default: the host name's address)"},
      {"XDG_CACHE_HOME", "base of the default cache folder"},
      {"HOME", "base of the default cache folder when `XDG_CACHE_HOME` is unset"},
  };
  return vars;
}

static const char* lookup(const char* name) {
  for (const auto& v : env_vars())
    if (std::strcmp(v.name, name) == 0) return std::getenv(name);
  throw std::logic_error(std::string("environment variable ") + name + " is read but not listed in env_vars()");
}

std::string env_or(const char* name, const std::string& fallback) {
  const char* v = lookup(name);
  return v && *v ? std::string(v) : fallback;
}

bool env_set(const char* name) { return lookup(name) != nullptr; }

std::filesystem::path cache_dir() {
  std::string c = env_or("LMGRID_CACHE", "");
  if (!c.empty()) return c;
  std::string xdg = env_or("XDG_CACHE_HOME", "");
  if (!xdg.empty()) return std::filesystem::path(xdg) / "lmgrid";
  return std::filesystem::path(env_or("HOME", "/tmp")) / ".cache" / "lmgrid";
}

}  // namespace lmgrid
