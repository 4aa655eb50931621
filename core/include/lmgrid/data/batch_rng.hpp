// The random streams datasets draw training windows from. Every batch index has a stream of its
// own, seeded from (run seed, index), so batch i is the same whether a run reaches it directly or
// after a resume (the data cursor in checkpoints is just the next index). data/text and
// data/shards use these; a dataset plugin of one's own may too (header-only).
#pragma once

#include <cstdint>
#include <random>

namespace lmgrid {

// SplitMix64's output function: spreads nearby seeds (seed*k + index) over the whole state space.
inline uint64_t splitmix64(uint64_t x) {
  x += 0x9E3779B97F4A7C15ull;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}

// The stream of training batch `index`.
inline std::mt19937_64 batch_rng(uint64_t seed, int64_t index) {
  return std::mt19937_64(splitmix64(seed * 0x100000001B3ull + static_cast<uint64_t>(index)));
}

// The stream that shuffles epoch `epoch`'s windows (sampling = "epoch").
inline std::mt19937_64 epoch_rng(uint64_t seed, int64_t epoch) {
  return std::mt19937_64(splitmix64(seed * 0x9E3779B1ull + static_cast<uint64_t>(epoch) + 1));
}

}  // namespace lmgrid
