// Small shared helpers: hashing, time, text splitting, atomic files, human-readable numbers.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

namespace lmgrid {

std::string sha256_hex(const std::string& data);
std::string sha256_file(const std::filesystem::path& file);  // throws std::runtime_error if unreadable

double now_unix();           // seconds since the epoch (wall clock)
double monotonic_seconds();  // steady clock
std::string hostname();
std::vector<std::string> split(const std::string& s, char sep);  // keeps no empty parts
// The folder above the running executable's bin/ (build/ in the tree, the prefix when installed),
// from /proc/self/exe; empty when it cannot be read.
std::filesystem::path executable_prefix();

// Writes `data` to `file` atomically: temp file in the same folder, fsync, rename.
void write_file_atomic(const std::filesystem::path& file, const std::string& data);
std::string read_file(const std::filesystem::path& file);  // throws UserError naming the file

std::string human_count(int64_t n);    // 874240 -> "874.2K"
std::string human_duration(double s);  // 125 -> "2m05s"

}  // namespace lmgrid
