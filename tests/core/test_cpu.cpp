// MFU's peak: the best matmul rate measured on this machine is kept and reused, a fresh (lower)
// measurement does not replace it, other machines' lines survive, and LMGRID_PEAK_GFLOPS wins.
#include <catch2/catch.hpp>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include <lmgrid/sys/cpu.hpp>
#include <lmgrid/base/errors.hpp>

#include "../support.hpp"

using namespace lmgrid;
namespace fs = std::filesystem;

namespace {
std::vector<std::string> lines_of(const fs::path& f) {
  std::ifstream in(f);
  std::vector<std::string> out;
  for (std::string l; std::getline(in, l);) out.push_back(l);
  return out;
}
using test::ScopedEnv;
}  // namespace

TEST_CASE("machine_peak_gflops keeps the best rate measured here", "[unit]") {
  fs::path dir = fs::temp_directory_path() / ("lmgrid-peak-" + std::to_string(getpid()));
  fs::remove_all(dir);
  ScopedEnv cache("LMGRID_CACHE", dir.string());
  unsetenv("LMGRID_PEAK_GFLOPS");
  fs::path file = dir / "peak_gflops.tsv";

  PeakGflops first = machine_peak_gflops(1);
  CHECK(first.source == "measured");
  CHECK(first.measured > 0);
  CHECK(first.gflops == first.measured);
  auto lines = lines_of(file);
  REQUIRE(lines.size() == 1);

  // Pretend an earlier quiet-machine measurement was far higher, and another machine has a line.
  std::string key = lines[0].substr(0, lines[0].rfind('\t'));
  {
    std::ofstream out(file);
    out << "Other CPU\tHaswell\t1\t77.00\n" << key << "\t1000000.00\n";
  }
  PeakGflops cached = machine_peak_gflops(1);
  CHECK(cached.source == "cached best");
  CHECK(cached.gflops == Approx(1e6));
  CHECK(cached.measured > 0);
  CHECK(cached.measured < 1e6);
  lines = lines_of(file);
  REQUIRE(lines.size() == 2);
  CHECK(lines[0] == "Other CPU\tHaswell\t1\t77.00");
  CHECK(lines[1] == key + "\t1000000.00");

  // A lower cached value is replaced by the fresh measurement.
  {
    std::ofstream out(file);
    out << key << "\t0.01\n";
  }
  PeakGflops fresh = machine_peak_gflops(1);
  CHECK(fresh.source == "measured");
  CHECK(fresh.gflops > 0.01);
  lines = lines_of(file);
  REQUIRE(lines.size() == 1);
  CHECK(std::stod(lines[0].substr(lines[0].rfind('\t') + 1)) == Approx(fresh.gflops).epsilon(1e-3));

  {
    ScopedEnv fixed("LMGRID_PEAK_GFLOPS", "123.5");
    PeakGflops f = machine_peak_gflops(1);
    CHECK(f.source == "LMGRID_PEAK_GFLOPS");
    CHECK(f.gflops == 123.5);
  }
  {
    ScopedEnv bad("LMGRID_PEAK_GFLOPS", "fast");
    CHECK_THROWS_AS(machine_peak_gflops(1), UserError);
  }
  fs::remove_all(dir);
}

TEST_CASE("plan_workers: --workers auto fills the cores with one-thread workers, up to the runs", "[unit]") {
  auto p = plan_workers(2, 12, 1, 0, 0);  // this project's machines: 2 cores, a 12-run grid
  CHECK(p.workers == 2);
  CHECK(p.threads == 1);
  CHECK(p.why == "--workers auto: 2 usable cores, 12 runs to run");
  p = plan_workers(2, 1, 1, 0, 0);  // one run: one worker on every core
  CHECK(p.workers == 1);
  CHECK(p.threads == 2);
  CHECK(p.why == "--workers auto: 2 usable cores, 1 run to run");
  p = plan_workers(16, 3, 1, 0, 0);  // fewer runs than cores: the cores shared among them
  CHECK(p.workers == 3);
  CHECK(p.threads == 5);
  p = plan_workers(16, 40, 2, 0, 0);  // data parallel: each worker is 2 processes
  CHECK(p.workers == 8);
  CHECK(p.threads == 1);
  p = plan_workers(8, 40, 1, 0, 4);  // threads fixed (--threads or LMGRID_THREADS): workers from them
  CHECK(p.workers == 2);
  CHECK(p.threads == 4);
  p = plan_workers(2, 40, 1, 0, 4);  // more threads than cores: still one worker
  CHECK(p.workers == 1);
  CHECK(p.threads == 4);
  p = plan_workers(8, 40, 1, 3, 0);  // workers fixed: the cores divided among them
  CHECK(p.workers == 3);
  CHECK(p.threads == 2);
  CHECK(p.why == "threads auto: 8 usable cores / 3 workers");
  p = plan_workers(8, 0, 1, 0, 0);  // nothing to run
  CHECK(p.workers == 1);
  p = plan_workers(4, 10, 1, 5, 3);
  CHECK(p.workers == 5);
  CHECK(p.threads == 3);
  CHECK(p.why == "as asked");
}
