// CPU speed: BLAS core detection and correction, thread defaults, measured matmul rate.
//
// Debian's OpenBLAS 0.3.21 mis-detects some AVX-512 CPUs as "Prescott" and then runs its
// generic kernels (~55 GFLOP/s instead of ~235 on a 2-core Skylake-X class VM). OpenBLAS reads
// OPENBLAS_CORETYPE only when the library is loaded, so the fix must happen before: the host
// checks the core at start-up and, when it is generic but the CPU has AVX-512 (or AVX2),
// re-executes itself with OPENBLAS_CORETYPE set. LMGRID_NO_BLAS_FIX=1 disables this.
#pragma once

#include <string>
#include <vector>

namespace lmgrid {

struct BlasInfo {
  std::string library;       // "openblas", "reference" or "unknown"
  std::string core;          // OpenBLAS core name in use, e.g. "SkylakeX" ("" if not OpenBLAS)
  std::string coretype_env;  // value of OPENBLAS_CORETYPE, "" if unset
  bool corrected = false;    // lmgrid set OPENBLAS_CORETYPE itself
};

BlasInfo blas_info();
// Best OpenBLAS core for this CPU from cpuid: "SkylakeX", "Haswell" or "" (leave alone).
std::string best_openblas_core();
// Call first thing in main(): re-execs the program with OPENBLAS_CORETYPE fixed when needed.
void ensure_fast_blas(int argc, char** argv);
// Cores this process may use: its CPU affinity mask, capped by a cgroup CPU quota (containers,
// Slurm), never below 1. hardware_concurrency() sees neither.
int available_cores();
// The threads per worker the user fixed with LMGRID_THREADS (at least 1), 0 when it is unset.
int requested_threads();
// Threads for one worker: LMGRID_THREADS, else the available cores divided among `workers`
// (at least 1).
int default_threads(int workers = 1);

// How a grid uses the machine: `workers` runs at once, each on `nproc` processes of `threads`
// threads. Asked for 0 (auto), the workers are as many as the cores allow (cores / (threads x
// nproc), at most the runs to run) and the threads the cores left to each; several one-thread
// workers beat one worker with the same threads here because a small model's step does not scale
// over threads (two 1-thread workers ~38K tokens/s in all, one 2-thread worker ~20K: issue 15).
// `why` says how the choice was made, for the line `lmgrid run` prints.
struct WorkerPlan {
  int workers = 1, threads = 1;
  std::string why;
};
// workers, threads: the user's (--workers N, --threads T or LMGRID_THREADS), 0 for auto.
WorkerPlan plan_workers(int cores, int runs_to_run, int nproc, int workers, int threads);
// The one place thread pools are sized: LibTorch's intra-op pool and OpenBLAS's (unless the
// user set OPENBLAS_NUM_THREADS).
void configure_threads(int threads);
// OpenBLAS's own thread pool (torch::set_num_threads does not size it): its size, -1 when the
// BLAS is not OpenBLAS; set_blas_threads does nothing then.
int blas_threads();
void set_blas_threads(int n);
// Measured fp32 matmul rate of an n x n x n product, median of `reps`, in GFLOP/s.
double measure_matmul_gflops(int n = 1024, int reps = 5);

// The CPU's bfloat16 instructions ("avx512_bf16", "amx_bf16"), empty when it has none: where
// `dtype = "bfloat16"` autocast runs native bf16 matmuls (elsewhere LibTorch emulates them).
std::vector<std::string> cpu_bf16_features();

// The denominator of MFU: this machine's fp32 matmul peak at `threads` threads, in GFLOP/s.
// A rate measured on a busy machine is low and would inflate MFU, so the best rate ever
// measured here is kept in cache_dir()/peak_gflops.tsv, keyed by CPU model, BLAS core and
// thread count, and the larger of it and a fresh measurement is returned (and stored).
// LMGRID_PEAK_GFLOPS=X fixes the peak for every thread count (e.g. a vendor figure).
struct PeakGflops {
  double gflops = 0;    // the peak used
  double measured = 0;  // measured just now (0 when LMGRID_PEAK_GFLOPS is set)
  std::string source;   // "measured", "cached best" or "LMGRID_PEAK_GFLOPS"
};
PeakGflops machine_peak_gflops(int threads);
// LMGRID_PEAK_GFLOPS as a number, 0 when unset; UserError when it is not a positive number.
double fixed_peak_gflops();
// The best of `gflops` and every rate cached under `key` (three tab-separated fields: CPU model,
// BLAS core, threads; or "gpu:<name>", dtype, "-"), stored back as the one line for that key.
double remember_best_gflops(const std::string& key, double gflops);

}  // namespace lmgrid
