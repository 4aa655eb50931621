// Shards of a grid by config hash (shard.hpp).
#include "lmgrid/grid/shard.hpp"

#include <fmt/format.h>

#include "lmgrid/base/errors.hpp"

namespace lmgrid {

namespace {

// A non-negative decimal integer of at most 18 digits (no sign, no spaces); -1 otherwise.
int64_t parse_count(const std::string& s) {
  if (s.empty() || s.size() > 18) return -1;
  int64_t v = 0;
  for (char c : s) {
    if (c < '0' || c > '9') return -1;
    v = v * 10 + (c - '0');
  }
  return v;
}

}  // namespace

Shard parse_shard(const std::string& text, const std::string& what) {
  auto bad = [&](const std::string& why) {
    return UserError(fmt::format("{} '{}': {} (expected I/N with 0 <= I < N, e.g. 0/4)", what, text, why));
  };
  auto slash = text.find('/');
  if (slash == std::string::npos) throw bad("no '/'");
  int64_t index = parse_count(text.substr(0, slash)), count = parse_count(text.substr(slash + 1));
  if (index < 0) throw bad(fmt::format("the index '{}' is not a non-negative integer", text.substr(0, slash)));
  if (count < 0) throw bad(fmt::format("the count '{}' is not a non-negative integer", text.substr(slash + 1)));
  if (count < 1) throw bad("the count must be at least 1");
  if (count > kMaxShards) throw bad(fmt::format("the count must be at most {}", kMaxShards));
  if (index >= count) throw bad("the index must be below the count");
  return {index, count};
}

int64_t shard_of(const std::string& config_hash, int64_t count) {
  if (count < 1) throw std::invalid_argument("shard_of: count must be at least 1");
  if (config_hash.size() < 16) throw std::invalid_argument("shard_of: not a config hash: '" + config_hash + "'");
  uint64_t key = 0;
  for (size_t i = 0; i < 16; ++i) {
    char c = config_hash[i];
    int d = c >= '0' && c <= '9'   ? c - '0'
            : c >= 'a' && c <= 'f' ? c - 'a' + 10
            : c >= 'A' && c <= 'F' ? c - 'A' + 10
                                   : -1;
    if (d < 0) throw std::invalid_argument("shard_of: not a config hash: '" + config_hash + "'");
    key = key << 4 | static_cast<uint64_t>(d);
  }
  return static_cast<int64_t>(key % static_cast<uint64_t>(count));
}

std::vector<RunConfig> shard_runs(const std::vector<RunConfig>& runs, const Shard& shard) {
  std::vector<RunConfig> out;
  for (const auto& r : runs)
    if (shard_of(r.hash(), shard.count) == shard.index) out.push_back(r);
  return out;
}

}  // namespace lmgrid
