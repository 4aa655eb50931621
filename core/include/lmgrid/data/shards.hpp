// llm.c's token shards (.bin): read, validate, map and write them.
//
// A shard is a 1024-byte header of 256 little-endian int32 followed by ntok tokens:
//   header[0]  magic    20240520 (llm.c, GPT-2) or 20240801 (LM2's Llama-3 data)
//   header[1]  version  1 with magic 20240520: uint16 tokens; 7 with magic 20240801: uint32 tokens
//   header[2]  ntok     tokens after the header (the file is exactly 1024 + ntok x 2 or 4 bytes)
//   header[3..255] zero when written here, ignored when read
// Readers map the file read-only (mmap) and keep the mapping for their lifetime; nothing is
// copied or cached. Every malformed shard is a UserError naming the file and the field, e.g.
// "data/x.bin: header[0] (magic) is 12345, expected 20240520 or 20240801". Writers write a
// temporary file beside the target, fsync it and rename it, so a crash leaves no half shard.
//
// This file deliberately knows nothing about tokenizers, datasets or tensors: the `shards`
// data plugin and `lmgrid data tokenize/inspect` build on it.
#pragma once

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

namespace lmgrid {

inline constexpr int32_t kShardMagicV1 = 20240520;  // version 1, uint16 tokens (llm.c GPT-2)
inline constexpr int32_t kShardMagicV7 = 20240801;  // version 7, uint32 tokens (LM2 Llama-3)
inline constexpr size_t kShardHeaderInts = 256;
inline constexpr size_t kShardHeaderBytes = kShardHeaderInts * sizeof(int32_t);

struct ShardHeader {
  int32_t magic = 0;
  int32_t version = 0;
  int64_t ntok = 0;
  // Bytes per token: 2 (version 1) or 4 (version 7).
  int token_bytes() const { return version == 1 ? 2 : 4; }
};

// Validates the first bytes of a shard (`data`, `size` bytes: at least the header when the file
// has one) against the file's total size `file_size`. `file` names the shard in messages.
// Throws UserError: file shorter than the header, wrong magic, unknown version, version not
// matching the magic, ntok negative or not matching the file size.
ShardHeader parse_shard_header(const std::string& file, const void* data, size_t size, uint64_t file_size);
// Reads and validates the header of `file` (only the header is read).
ShardHeader read_shard_header(const std::filesystem::path& file);

// A read-only view of `size` tokens of one width.
template <class T>
struct TokenSpan {
  const T* data = nullptr;
  size_t size = 0;
  const T* begin() const { return data; }
  const T* end() const { return data + size; }
  T operator[](size_t i) const { return data[i]; }
};

// One shard, memory-mapped read-only for the object's lifetime; the header is validated on
// open. Movable, not copyable.
class MappedShard {
 public:
  explicit MappedShard(const std::filesystem::path& file);  // throws UserError
  ~MappedShard();
  MappedShard(MappedShard&& other) noexcept;
  MappedShard& operator=(MappedShard&& other) noexcept;
  MappedShard(const MappedShard&) = delete;
  MappedShard& operator=(const MappedShard&) = delete;

  const std::filesystem::path& path() const { return path_; }
  const ShardHeader& header() const { return header_; }
  int64_t size() const { return header_.ntok; }  // tokens
  // The tokens at their stored width: tokens16() for version 1, tokens32() for version 7
  // (the other one throws std::logic_error).
  TokenSpan<uint16_t> tokens16() const;
  TokenSpan<uint32_t> tokens32() const;
  // Token i widened (no bounds check).
  int64_t at(int64_t i) const;
  // Tokens [start, start + count) widened into out (bounds are the caller's: 0 <= start,
  // start + count <= size()).
  void copy(int64_t start, int64_t count, int64_t* out) const;
  // Address of token i (for prefetching).
  const void* address(int64_t i) const { return map_ + kShardHeaderBytes + i * header_.token_bytes(); }
  // The largest token id (-1 for an empty shard): one sequential pass over the mapping.
  int64_t max_token() const;
  // Throws UserError naming the file, the first offending token's index and its id when any id
  // is >= vocab_size, e.g. "x.bin: token 17 is 50300, not below the vocabulary size 50257".
  void check_vocab(int64_t vocab_size) const;

 private:
  std::filesystem::path path_;
  ShardHeader header_;
  const unsigned char* map_ = nullptr;
  size_t map_size_ = 0;
};

// Several shards read as one concatenated stream of tokens (in the given order).
class ShardStream {
 public:
  ShardStream() = default;
  explicit ShardStream(const std::vector<std::filesystem::path>& files);
  const std::vector<MappedShard>& shards() const { return shards_; }
  int64_t size() const { return total_; }  // tokens in all shards
  // Stream tokens [start, start + count) widened into out, across shard boundaries.
  void copy(int64_t start, int64_t count, int64_t* out) const;
  // Hints the CPU to start loading tokens [start, start + count) (a window to be copied next):
  // random windows read at sequential speed when each is prefetched while the one before is
  // copied. No effect on results.
  void prefetch(int64_t start, int64_t count) const;

 private:
  std::vector<MappedShard> shards_;
  std::vector<int64_t> offsets_;  // offsets_[k]: stream position of shard k's first token
  int64_t total_ = 0;
};

// The files matching a glob(3) pattern, sorted. Throws UserError naming the pattern when
// nothing matches ("no file matches data/fineweb_train_*.bin").
std::vector<std::filesystem::path> expand_shard_glob(const std::string& pattern);

enum class ShardFormat { v1, v7 };
// v1 when every id fits uint16 (vocab_size <= 65536), else v7.
ShardFormat shard_format_for_vocab(int64_t vocab_size);

// Writes one shard in a streaming way: tokens are appended to a temporary file beside `file`
// (<file>.tmp.<pid>); commit() fills in the header, fsyncs and renames it to `file`. A writer
// destroyed without commit() removes its temporary file, so `file` is either absent (or its old
// version) or complete.
class ShardWriter {
 public:
  ShardWriter(const std::filesystem::path& file, ShardFormat format);
  ~ShardWriter();
  ShardWriter(const ShardWriter&) = delete;
  ShardWriter& operator=(const ShardWriter&) = delete;

  // Appends ids; throws std::invalid_argument for an id that does not fit the format (negative,
  // or >= 65536 in v1).
  void append(const int64_t* ids, size_t n);
  void append(const std::vector<int64_t>& ids) { append(ids.data(), ids.size()); }
  int64_t tokens() const { return ntok_; }
  // Writes the header, fsyncs the file and its folder, renames. Returns the header written.
  ShardHeader commit();

 private:
  void flush();
  std::filesystem::path file_, tmp_;
  ShardFormat format_;
  int fd_ = -1;
  int64_t ntok_ = 0;
  std::vector<unsigned char> buf_;
};

// One call: writes `ids` to `file` atomically. Without a format: v1 when every id < 65536,
// else v7.
ShardHeader write_shard(const std::filesystem::path& file, const std::vector<int64_t>& ids);
ShardHeader write_shard(const std::filesystem::path& file, const std::vector<int64_t>& ids, ShardFormat format);

}  // namespace lmgrid
