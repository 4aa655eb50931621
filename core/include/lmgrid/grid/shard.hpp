// Shards of a grid: `lmgrid run FILE --shard I/N` trains only the runs of shard I, so that N
// processes (a Slurm array, several machines) can split one grid without talking to each other.
// A run's shard is a stable function of its config hash alone (the first 16 hex digits as a
// uint64, modulo N): the same run lands in the same shard whatever the order of the grid, the
// other runs or the machine, and the N shards partition the grid exactly.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "lmgrid/config/run_config.hpp"

namespace lmgrid {

struct Shard {
  int64_t index = 0;  // 0 <= index < count
  int64_t count = 1;
};

// The largest shard count accepted: far above any array a scheduler runs.
inline constexpr int64_t kMaxShards = 1000000;

// "I/N" -> {I, N}. Anything else (not two decimal integers, N < 1, N > kMaxShards, I >= N)
// throws UserError naming the text, e.g. "--shard '3/2': the index must be below the count".
Shard parse_shard(const std::string& text, const std::string& what = "--shard");
// The shard (0..count-1) of a config hash (64 hex digits; at least the first 16 are read).
int64_t shard_of(const std::string& config_hash, int64_t count);
// The runs of `runs` in shard `shard`, in grid order.
std::vector<RunConfig> shard_runs(const std::vector<RunConfig>& runs, const Shard& shard);

}  // namespace lmgrid
