// Hashing (OpenSSL), clocks, atomic file writes and output rendering.
#include "lmgrid/base/util.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <cstdlib>
#include <fstream>
#include <sstream>

#include <fmt/format.h>
#include <openssl/evp.h>

#include "lmgrid/base/errors.hpp"
#include "lmgrid/base/machine_error.hpp"

namespace lmgrid {

namespace {
struct Sha256 {
  EVP_MD_CTX* ctx = EVP_MD_CTX_new();
  Sha256() { EVP_DigestInit_ex(ctx, EVP_sha256(), nullptr); }
  ~Sha256() { EVP_MD_CTX_free(ctx); }
  void update(const void* p, size_t n) { EVP_DigestUpdate(ctx, p, n); }
  std::string hex() {
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int n = 0;
    EVP_DigestFinal_ex(ctx, md, &n);
    static const char* digits = "0123456789abcdef";
    std::string out;
    for (unsigned i = 0; i < n; ++i) out += digits[md[i] >> 4], out += digits[md[i] & 15];
    return out;
  }
};
}  // namespace

std::string sha256_hex(const std::string& data) {
  Sha256 h;
  h.update(data.data(), data.size());
  return h.hex();
}

std::string sha256_file(const std::filesystem::path& file) {
  std::ifstream in(file, std::ios::binary);
  if (!in) throw std::runtime_error("cannot read " + file.string());
  Sha256 h;
  std::vector<char> buf(1 << 16);
  while (in) {
    in.read(buf.data(), buf.size());
    h.update(buf.data(), static_cast<size_t>(in.gcount()));
  }
  return h.hex();
}

double now_unix() { return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count(); }
double monotonic_seconds() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}
std::string hostname() {
  char buf[256] = {0};
  gethostname(buf, sizeof(buf) - 1);
  return buf;
}
std::filesystem::path executable_prefix() {
  char buf[4096];
  ssize_t n = readlink("/proc/self/exe", buf, sizeof(buf) - 1);
  if (n <= 0) return {};
  return std::filesystem::path(std::string(buf, static_cast<size_t>(n))).parent_path().parent_path();
}

std::vector<std::string> split(const std::string& s, char sep) {
  std::vector<std::string> out;
  std::string cur;
  for (char c : s) {
    if (c == sep) {
      if (!cur.empty()) out.push_back(cur);
      cur.clear();
    } else {
      cur += c;
    }
  }
  if (!cur.empty()) out.push_back(cur);
  return out;
}

bool is_machine_errno(int err) { return err == ENOSPC || err == EDQUOT || err == EIO || err == EROFS; }

void throw_io_error(const std::string& what, int err) {
  std::string msg = what + ": " + std::strerror(err);
  if (is_machine_errno(err)) throw MachineError(msg);
  throw std::runtime_error(msg);
}

// Writes `data` to `file` through a temporary beside it, renamed over it only when complete and
// synced: a reader never sees half a file. A failure removes the temporary and says why (errno).
void write_file_atomic(const std::filesystem::path& file, const std::string& data) {
  std::error_code ec;
  if (file.has_parent_path()) {
    std::filesystem::create_directories(file.parent_path(), ec);
    if (ec) throw_io_error("cannot create " + file.parent_path().string(), ec.value());
  }
  std::filesystem::path tmp = file;
  tmp += fmt::format(".tmp.{}", getpid());
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  if (fd < 0) throw_io_error("cannot write " + tmp.string(), errno);
  auto fail = [&](const char* what, int err) {
    ::close(fd);
    std::filesystem::remove(tmp, ec);
    throw_io_error(std::string(what) + " " + tmp.string(), err);
  };
  size_t off = 0;
  while (off < data.size()) {
    ssize_t n = ::write(fd, data.data() + off, data.size() - off);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) fail("write failed:", n < 0 ? errno : ENOSPC);
    off += static_cast<size_t>(n);
  }
  if (::fsync(fd) != 0) fail("fsync failed:", errno);
  if (::close(fd) != 0) {
    int err = errno;
    std::filesystem::remove(tmp, ec);
    throw_io_error("close failed: " + tmp.string(), err);
  }
  std::filesystem::rename(tmp, file, ec);
  if (ec) {
    int err = ec.value();
    std::filesystem::remove(tmp, ec);
    throw_io_error("cannot rename " + tmp.string() + " to " + file.string(), err);
  }
}

std::string read_file(const std::filesystem::path& file) {
  errno = 0;
  std::ifstream in(file, std::ios::binary);
  if (!in) {
    const int err = errno;
    if (err == ENOENT) throw MissingInputError("cannot read file " + file.string() + ": " + std::strerror(err));
    throw UserError("cannot read file " + file.string() + (err ? std::string(": ") + std::strerror(err) : ""));
  }
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::string human_count(int64_t n) {
  double x = static_cast<double>(n);
  if (x >= 1e9) return fmt::format("{:.2f}B", x / 1e9);
  if (x >= 1e6) return fmt::format("{:.2f}M", x / 1e6);
  if (x >= 1e3) return fmt::format("{:.1f}K", x / 1e3);
  return std::to_string(n);
}

std::string human_duration(double s) {
  if (s < 0 || s != s) return "?";
  int64_t t = static_cast<int64_t>(s + 0.5);
  if (t >= 3600) return fmt::format("{}h{:02}m", t / 3600, (t % 3600) / 60);
  if (t >= 60) return fmt::format("{}m{:02}s", t / 60, t % 60);
  return fmt::format("{}s", t);
}

}  // namespace lmgrid
