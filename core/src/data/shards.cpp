// llm.c token shards: header validation, read-only mappings, atomic streaming writer.
#include "lmgrid/data/shards.hpp"

#include <fcntl.h>
#include <glob.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <stdexcept>

#include <fmt/format.h>

#include "lmgrid/base/errors.hpp"

// The tokens and header are read in place: little-endian hosts only (x86-64, aarch64).
static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "shards are little-endian and mapped in place");

namespace lmgrid {

namespace {

std::string sys_error(const std::string& what, const std::filesystem::path& file) {
  return fmt::format("{}: {}: {}", file.string(), what, std::strerror(errno));
}

void write_all(int fd, const void* data, size_t n, const std::filesystem::path& file) {
  const auto* p = static_cast<const unsigned char*>(data);
  while (n > 0) {
    ssize_t w = ::write(fd, p, n);
    if (w < 0 && errno == EINTR) continue;
    if (w < 0) throw std::runtime_error(sys_error("write", file));
    p += w, n -= static_cast<size_t>(w);
  }
}

void fsync_dir(const std::filesystem::path& dir) {
  int d = ::open(dir.empty() ? "." : dir.c_str(), O_RDONLY | O_DIRECTORY);
  if (d >= 0) {
    ::fsync(d);
    ::close(d);
  }
}

}  // namespace

ShardHeader parse_shard_header(const std::string& file, const void* data, size_t size, uint64_t file_size) {
  if (file_size < kShardHeaderBytes || size < kShardHeaderBytes)
    throw UserError(fmt::format("{}: the file is {} bytes, shorter than the {}-byte header (256 x int32)", file,
                                file_size, kShardHeaderBytes));
  int32_t h[3];
  std::memcpy(h, data, sizeof(h));
  ShardHeader out{h[0], h[1], h[2]};
  if (out.magic != kShardMagicV1 && out.magic != kShardMagicV7)
    throw UserError(
        fmt::format("{}: header[0] (magic) is {}, expected {} or {}", file, out.magic, kShardMagicV1, kShardMagicV7));
  if (out.version != 1 && out.version != 7)
    throw UserError(fmt::format("{}: header[1] (version) is {}, expected 1 (uint16 tokens) or 7 (uint32 tokens)", file,
                                out.version));
  int expected_version = out.magic == kShardMagicV1 ? 1 : 7;
  if (out.version != expected_version)
    throw UserError(fmt::format("{}: header[1] (version) is {}, but magic {} goes with version {}", file, out.version,
                                out.magic, expected_version));
  uint64_t body = file_size - kShardHeaderBytes;
  if (out.ntok < 0 || static_cast<uint64_t>(out.ntok) * static_cast<uint64_t>(out.token_bytes()) != body)
    throw UserError(fmt::format(
        "{}: header[2] (ntok) is {}, but the file holds {} bytes after the header: {} tokens of {} bytes{}", file,
        out.ntok, body, body / static_cast<uint64_t>(out.token_bytes()), out.token_bytes(),
        body % static_cast<uint64_t>(out.token_bytes()) ? fmt::format(" and {} stray bytes", body % out.token_bytes())
                                                        : std::string()));
  return out;
}

ShardHeader read_shard_header(const std::filesystem::path& file) {
  int fd = ::open(file.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) throw UserError(sys_error("cannot open the shard", file));
  struct stat st {};
  unsigned char buf[kShardHeaderBytes];
  ssize_t got = 0;
  if (::fstat(fd, &st) == 0) got = ::pread(fd, buf, sizeof(buf), 0);
  ::close(fd);
  return parse_shard_header(file.string(), buf, got > 0 ? static_cast<size_t>(got) : 0,
                            static_cast<uint64_t>(st.st_size));
}

MappedShard::MappedShard(const std::filesystem::path& file) : path_(file) {
  int fd = ::open(file.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) throw UserError(sys_error("cannot open the shard", file));
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    ::close(fd);
    throw UserError(sys_error("cannot stat the shard", file));
  }
  if (!S_ISREG(st.st_mode)) {
    ::close(fd);
    throw UserError(file.string() + ": not a regular file");
  }
  auto file_size = static_cast<uint64_t>(st.st_size);
  if (file_size < kShardHeaderBytes) {
    ::close(fd);
    parse_shard_header(file.string(), nullptr, 0, file_size);  // throws: shorter than the header
  }
  void* m = ::mmap(nullptr, file_size, PROT_READ, MAP_SHARED, fd, 0);
  ::close(fd);  // the mapping keeps the file
  if (m == MAP_FAILED) throw UserError(sys_error("cannot map the shard", file));
  map_ = static_cast<const unsigned char*>(m);
  map_size_ = file_size;
  try {
    header_ = parse_shard_header(file.string(), map_, map_size_, file_size);
  } catch (...) {
    ::munmap(const_cast<unsigned char*>(map_), map_size_);
    map_ = nullptr;
    throw;
  }
}

MappedShard::~MappedShard() {
  if (map_) ::munmap(const_cast<unsigned char*>(map_), map_size_);
}

MappedShard::MappedShard(MappedShard&& o) noexcept
    : path_(std::move(o.path_)), header_(o.header_), map_(o.map_), map_size_(o.map_size_) {
  o.map_ = nullptr;
  o.map_size_ = 0;
}

MappedShard& MappedShard::operator=(MappedShard&& o) noexcept {
  if (this != &o) {
    if (map_) ::munmap(const_cast<unsigned char*>(map_), map_size_);
    path_ = std::move(o.path_);
    header_ = o.header_;
    map_ = o.map_;
    map_size_ = o.map_size_;
    o.map_ = nullptr;
    o.map_size_ = 0;
  }
  return *this;
}

TokenSpan<uint16_t> MappedShard::tokens16() const {
  if (header_.version != 1) throw std::logic_error(path_.string() + ": tokens16() of a version 7 shard");
  return {reinterpret_cast<const uint16_t*>(map_ + kShardHeaderBytes), static_cast<size_t>(header_.ntok)};
}

TokenSpan<uint32_t> MappedShard::tokens32() const {
  if (header_.version != 7) throw std::logic_error(path_.string() + ": tokens32() of a version 1 shard");
  return {reinterpret_cast<const uint32_t*>(map_ + kShardHeaderBytes), static_cast<size_t>(header_.ntok)};
}

int64_t MappedShard::at(int64_t i) const {
  const unsigned char* body = map_ + kShardHeaderBytes;
  return header_.version == 1 ? reinterpret_cast<const uint16_t*>(body)[i] : reinterpret_cast<const uint32_t*>(body)[i];
}

void MappedShard::copy(int64_t start, int64_t count, int64_t* out) const {
  if (header_.version == 1) {
    const uint16_t* src = tokens16().data + start;
    for (int64_t i = 0; i < count; ++i) out[i] = src[i];
  } else {
    const uint32_t* src = tokens32().data + start;
    for (int64_t i = 0; i < count; ++i) out[i] = src[i];
  }
}

int64_t MappedShard::max_token() const {
  if (header_.ntok == 0) return -1;
  uint32_t m = 0;
  if (header_.version == 1) {
    for (uint16_t t : tokens16()) m = std::max<uint32_t>(m, t);
  } else {
    for (uint32_t t : tokens32()) m = std::max(m, t);
  }
  return m;
}

void MappedShard::check_vocab(int64_t vocab_size) const {
  if (max_token() < vocab_size) return;  // the fast path: one vectorised pass
  for (int64_t i = 0; i < header_.ntok; ++i)
    if (at(i) >= vocab_size)
      throw UserError(
          fmt::format("{}: token {} is {}, not below the vocabulary size {}", path_.string(), i, at(i), vocab_size));
}

ShardStream::ShardStream(const std::vector<std::filesystem::path>& files) {
  for (const auto& f : files) {
    offsets_.push_back(total_);
    shards_.emplace_back(f);
    total_ += shards_.back().size();
  }
}

void ShardStream::copy(int64_t start, int64_t count, int64_t* out) const {
  if (start < 0 || count < 0 || start + count > total_)
    throw std::out_of_range(fmt::format("tokens [{}, {}) outside the stream of {}", start, start + count, total_));
  // The shard holding `start`: the last one whose first token is at or before it.
  auto k = static_cast<size_t>(std::upper_bound(offsets_.begin(), offsets_.end(), start) - offsets_.begin() - 1);
  while (count > 0) {
    int64_t local = start - offsets_[k], n = std::min(count, shards_[k].size() - local);
    shards_[k].copy(local, n, out);
    out += n, start += n, count -= n, ++k;
  }
}

void ShardStream::prefetch(int64_t start, int64_t count) const {
  if (start < 0 || count <= 0 || start + count > total_) return;
  auto k = static_cast<size_t>(std::upper_bound(offsets_.begin(), offsets_.end(), start) - offsets_.begin() - 1);
  while (count > 0) {
    const MappedShard& s = shards_[k];
    int64_t local = start - offsets_[k], n = std::min(count, s.size() - local);
    const char* p = static_cast<const char*>(s.address(local));
    for (int64_t b = 0; b < n * s.header().token_bytes(); b += 64) __builtin_prefetch(p + b);
    start += n, count -= n, ++k;
  }
}

std::vector<std::filesystem::path> expand_shard_glob(const std::string& pattern) {
  glob_t g{};
  int rc = ::glob(pattern.c_str(), GLOB_ERR, nullptr, &g);
  std::vector<std::filesystem::path> out;
  if (rc == 0)
    for (size_t i = 0; i < g.gl_pathc; ++i) out.emplace_back(g.gl_pathv[i]);
  ::globfree(&g);
  if (rc == GLOB_NOMATCH || (rc == 0 && out.empty())) throw UserError("no file matches " + pattern);
  if (rc != 0) throw UserError("cannot expand " + pattern + " (a folder on the way is unreadable)");
  std::sort(out.begin(), out.end());
  return out;
}

ShardFormat shard_format_for_vocab(int64_t vocab_size) {
  return vocab_size <= 65536 ? ShardFormat::v1 : ShardFormat::v7;
}

ShardWriter::ShardWriter(const std::filesystem::path& file, ShardFormat format)
    : file_(file), tmp_(file.string() + ".tmp." + std::to_string(::getpid())), format_(format) {
  fd_ = ::open(tmp_.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd_ < 0) throw UserError(sys_error("cannot create", tmp_));
  std::vector<unsigned char> zero(kShardHeaderBytes, 0);  // the header is filled in by commit()
  write_all(fd_, zero.data(), zero.size(), tmp_);
  buf_.reserve(1 << 20);
}

ShardWriter::~ShardWriter() {
  if (fd_ >= 0) {
    ::close(fd_);
    ::unlink(tmp_.c_str());
  }
}

void ShardWriter::append(const int64_t* ids, size_t n) {
  const bool v1 = format_ == ShardFormat::v1;
  const int64_t limit = v1 ? 65536 : int64_t{1} << 32;
  const size_t width = v1 ? 2 : 4, old = buf_.size();
  buf_.resize(old + n * width);
  unsigned char* p = buf_.data() + old;
  for (size_t i = 0; i < n; ++i, p += width) {
    if (ids[i] < 0 || ids[i] >= limit) {
      buf_.resize(old);
      throw std::invalid_argument(fmt::format("{}: token id {} does not fit a version {} shard ({} tokens)",
                                              file_.string(), ids[i], v1 ? 1 : 7, v1 ? "uint16" : "uint32"));
    }
    auto v = static_cast<uint32_t>(ids[i]);
    std::memcpy(p, &v, width);  // little-endian: the low bytes first
  }
  ntok_ += static_cast<int64_t>(n);
  if (buf_.size() >= (1 << 20)) flush();
}

void ShardWriter::flush() {
  write_all(fd_, buf_.data(), buf_.size(), tmp_);
  buf_.clear();
}

ShardHeader ShardWriter::commit() {
  if (fd_ < 0) throw std::logic_error("ShardWriter::commit() called twice");
  flush();
  ShardHeader h{format_ == ShardFormat::v1 ? kShardMagicV1 : kShardMagicV7, format_ == ShardFormat::v1 ? 1 : 7, ntok_};
  if (ntok_ > INT32_MAX) throw std::invalid_argument(file_.string() + ": more tokens than header[2] (int32) holds");
  int32_t header[kShardHeaderInts] = {};
  header[0] = h.magic, header[1] = h.version, header[2] = static_cast<int32_t>(ntok_);
  if (::pwrite(fd_, header, sizeof(header), 0) != static_cast<ssize_t>(sizeof(header)))
    throw std::runtime_error(sys_error("write", tmp_));
  if (::fsync(fd_) != 0) throw std::runtime_error(sys_error("fsync", tmp_));
  ::close(fd_);
  fd_ = -1;
  if (::rename(tmp_.c_str(), file_.c_str()) != 0) {
    std::string msg = sys_error("rename to " + file_.string(), tmp_);
    ::unlink(tmp_.c_str());
    throw std::runtime_error(msg);
  }
  fsync_dir(file_.parent_path());
  return h;
}

ShardHeader write_shard(const std::filesystem::path& file, const std::vector<int64_t>& ids, ShardFormat format) {
  ShardWriter w(file, format);
  w.append(ids);
  return w.commit();
}

ShardHeader write_shard(const std::filesystem::path& file, const std::vector<int64_t>& ids) {
  bool narrow = std::all_of(ids.begin(), ids.end(), [](int64_t id) { return id < 65536; });
  return write_shard(file, ids, narrow ? ShardFormat::v1 : ShardFormat::v7);
}

}  // namespace lmgrid
