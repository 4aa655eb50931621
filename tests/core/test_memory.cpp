// The training worker's allocator thresholds (lmgrid/sys/memory.hpp): freed activations stay with
// the process for the next step instead of being faulted in and zeroed again; a malloc setting in
// the environment is left as it is.
#include <catch2/catch.hpp>

#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <vector>

#include <lmgrid/sys/memory.hpp>

#include "../support.hpp"

using namespace lmgrid;

namespace {

const char* const kMallocVars[] = {"MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "GLIBC_TUNABLES"};

// A training step's pattern: 40 blocks of 1 MB allocated, written and freed, 5 times. Runs in a
// child process (so this process's allocator is left as it was) with no malloc setting in its
// environment, optionally tuned first; returns the page faults of rounds 2-5 (round 1 grows the
// heap either way).
long churn_faults(bool tune) {
  int fd[2];
  REQUIRE(pipe(fd) == 0);
  const pid_t pid = fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    close(fd[0]);
    for (const char* v : kMallocVars) unsetenv(v);
    if (tune) tune_allocator();
    long faults = 0;
    for (int round = 0; round < 5; ++round) {
      rusage before{};
      getrusage(RUSAGE_SELF, &before);
      std::vector<char*> blocks;
      for (int i = 0; i < 40; ++i) {
        blocks.push_back(static_cast<char*>(std::malloc(1 << 20)));
        std::memset(blocks.back(), round + 1, 1 << 20);
      }
      for (auto it = blocks.rbegin(); it != blocks.rend(); ++it) std::free(*it);
      rusage after{};
      getrusage(RUSAGE_SELF, &after);
      if (round > 0) faults += after.ru_minflt - before.ru_minflt;
    }
    (void)!write(fd[1], &faults, sizeof faults);
    _exit(0);
  }
  close(fd[1]);
  long faults = -1;
  REQUIRE(read(fd[0], &faults, sizeof faults) == static_cast<ssize_t>(sizeof faults));
  close(fd[0]);
  int status = 0;
  REQUIRE(waitpid(pid, &status, 0) == pid);
  REQUIRE(WIFEXITED(status));
  return faults;
}

}  // namespace

TEST_CASE("tune_allocator: a step's freed blocks are reused without page faults", "[unit]") {
  if (test::kAsanBuild) {
    WARN("skipped: the sanitizer's malloc ignores mallopt");
    return;
  }
  const long plain = churn_faults(false), tuned = churn_faults(true);
  INFO("page faults of 4 rounds of 40 x 1 MB: glibc's defaults " << plain << ", tuned " << tuned);
  // 4 x 40 MB is 40960 pages: glibc's moving trim threshold gives them back every round.
  CHECK(plain > 20000);
  CHECK(tuned < 1000);
}

TEST_CASE("tune_allocator leaves a malloc setting of the environment alone", "[unit]") {
  const std::string tuned = "mmap threshold 32 MB, trim threshold 256 MB";
  std::vector<std::unique_ptr<test::ScopedEnv>> cleared;
  for (const char* v : kMallocVars) {
    cleared.push_back(std::make_unique<test::ScopedEnv>(v, ""));
    unsetenv(v);  // the guard restores the old value (or unsets) at the end
  }
#if defined(__GLIBC__)
  CHECK(allocator_plan() == tuned);
  {
    test::ScopedEnv trim("MALLOC_TRIM_THRESHOLD_", "1000000");
    CHECK(allocator_plan().find("environment") != std::string::npos);
    CHECK(tune_allocator() == allocator_plan());  // left alone: changes nothing
  }
  {
    test::ScopedEnv t("GLIBC_TUNABLES", "glibc.malloc.tcache_count=0");
    CHECK(allocator_plan().find("environment") != std::string::npos);
  }
  {
    test::ScopedEnv t("GLIBC_TUNABLES", "glibc.cpu.hwcaps=-AVX512F");  // not a malloc setting
    CHECK(allocator_plan() == tuned);
  }
#else
  CHECK(allocator_plan().find("not glibc") != std::string::npos);
#endif
}
