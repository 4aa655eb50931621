// libFuzzer target: the llm.c token-shard header reader (core/src/data/shards.cpp).
// Input: the first bytes of a shard; the file's size is the input's size, or, when the input
// starts with "SIZE" and 8 more bytes, those bytes (a header that lies about a longer file).
// Contract: parse_shard_header accepts only a header that agrees with the file size, and refuses
// everything else with UserError.
#include <cstdint>
#include <cstring>
#include <string>

#include <lmgrid/base/errors.hpp>
#include <lmgrid/data/shards.hpp>

#include "fuzz_support.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace lmgrid;
  uint64_t file_size = size;
  if (size >= 12 && std::memcmp(data, "SIZE", 4) == 0) {
    std::memcpy(&file_size, data + 4, 8);
    data += 12;
    size -= 12;
    file_size = std::max<uint64_t>(file_size, size);  // a file holds at least what was read of it
  }
  try {
    ShardHeader h = parse_shard_header("fuzz.bin", data, size, file_size);
    // Accepted: the header must describe exactly this file.
    const uint64_t expect = kShardHeaderBytes + static_cast<uint64_t>(h.ntok) * h.token_bytes();
    if (h.ntok < 0 || expect != file_size ||
        !((h.magic == kShardMagicV1 && h.version == 1) || (h.magic == kShardMagicV7 && h.version == 7)))
      fuzz::contract_broken("accepted a header that does not describe the file");
  } catch (const UserError&) {
  } catch (const std::exception& e) {
    fuzz::contract_broken("parse_shard_header threw " + fuzz::describe(e));
  }
  return 0;
}
