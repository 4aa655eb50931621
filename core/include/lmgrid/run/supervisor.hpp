// The run supervisor (run layer): trains the runs of a grid, each in its own worker process
// (`lmgrid worker --db DB --run-id N`), at most `workers` at once, so that a plugin that throws
// or crashes fails only its run and the grid goes on. Runs are claimed atomically through the
// database, so several supervisors may share one grid.
//
// Workers are started with posix_spawn from an argv and envp prepared before any process is
// created: the supervisor already runs OpenMP and OpenBLAS threads (the MFU peak was measured),
// and after a plain fork() only async-signal-safe calls are allowed, not setenv or allocation.
#pragma once

#include <atomic>
#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include "lmgrid/store/store.hpp"

namespace lmgrid {

// A worker's exit status when a fault of the machine (MachineError: disk full, I/O error)
// stopped its run: the run is `interrupted`, and the supervisor starts no new run.
inline constexpr int kMachineFaultExit = 75;  // EX_TEMPFAIL

struct SupervisorOptions {
  std::string argv0;                             // argv[0] the workers get (the path the user ran)
  std::filesystem::path exe = "/proc/self/exe";  // the program started as a worker
  int workers = 1;                               // runs trained at once
  int threads = 1;                               // threads per worker (LibTorch and OpenBLAS)
  double peak_flops = 0;                         // MFU denominator handed to each worker (0 = none)
  bool progress_bar = false;                     // workers redraw one progress line (one worker on a terminal)
  const std::atomic<bool>* stop = nullptr;       // when set: claim nothing more, wait for the running
  // Data parallel on this machine (`--nproc N`): each run is N worker processes, ranks 0..N-1,
  // meeting at a TCP store the supervisor serves on loopback; `threads` is per rank.
  int nproc = 1;
  // Data parallel under a launcher (srun, torchrun: WORLD_SIZE > 1 and RANK = 0 in the
  // environment): one rank-0 worker per run, the store served on MASTER_PORT, and every run
  // announced to the other ranks' hosts (follow_grid) in order.
  bool launcher_rank0 = false;
};

// Trains every claimable (pending or interrupted) run of `ids`. A worker that dies without
// recording an outcome marks its run failed with the signal or exit status and the plugin its
// crash handler named. Returns when no worker is left.
void supervise(Store& store, const std::vector<int64_t>& ids, const SupervisorOptions& opt);

// The host of a launcher rank > 0: for each run rank 0 announces, starts a `worker --follow`
// with this environment and waits for it; returns when rank 0 says the grid is over (0), or 1
// when rank 0's store went away.
int follow_grid(const SupervisorOptions& opt);

}  // namespace lmgrid
