// The training worker's allocator thresholds (see memory.hpp for why).
#include "lmgrid/sys/memory.hpp"

#if defined(__GLIBC__)
#include <malloc.h>
#endif

#include "lmgrid/base/env.hpp"

namespace lmgrid {

namespace {

constexpr int kMmapThreshold = 32 << 20;  // glibc refuses more (half its largest arena heap)
constexpr int kTrimThreshold = 256 << 20;
constexpr const char* kTuned = "mmap threshold 32 MB, trim threshold 256 MB";

// "" when tune_allocator may set the thresholds, else why it leaves them.
std::string reason_to_leave() {
#if defined(__GLIBC__)
  if (env_set("MALLOC_MMAP_THRESHOLD_") || env_set("MALLOC_TRIM_THRESHOLD_") ||
      env_or("GLIBC_TUNABLES", "").find("glibc.malloc.") != std::string::npos)
    return "as the environment sets it (a malloc setting is in the environment)";
  return "";
#else
  return "the C library's defaults (not glibc)";
#endif
}

}  // namespace

std::string allocator_plan() {
  const std::string why = reason_to_leave();
  return why.empty() ? kTuned : why;
}

std::string tune_allocator() {
  const std::string why = reason_to_leave();
  if (!why.empty()) return why;
#if defined(__GLIBC__)
  // The mmap threshold first: a trim threshold fixed alone also stops the mmap threshold's rise,
  // leaving it at 128 KB, and then every block over 128 KB is mapped afresh (4M page faults in
  // a 100-step TTT-MLP run, against 252K with the defaults).
  if (mallopt(M_MMAP_THRESHOLD, kMmapThreshold) != 1 || mallopt(M_TRIM_THRESHOLD, kTrimThreshold) != 1)
    return "glibc refused the thresholds: its defaults";
#endif
  return kTuned;
}

}  // namespace lmgrid
