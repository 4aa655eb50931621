// Shards of a grid (grid/shard.hpp): `--shard I/N` parsing, and N shards partitioning any grid.
#include <catch2/catch.hpp>

#include <map>
#include <random>
#include <set>

#include <fmt/format.h>

#include <lmgrid/base/errors.hpp>
#include <lmgrid/grid/experiment.hpp>
#include <lmgrid/grid/shard.hpp>
#include <lmgrid/grid/slurm.hpp>
#include <lmgrid/plugin/registry.hpp>
#include "../support.hpp"

using namespace lmgrid;

TEST_CASE("--shard I/N parses, and bad input is a UserError naming it", "[unit]") {
  CHECK(parse_shard("0/1").index == 0);
  CHECK(parse_shard("0/1").count == 1);
  CHECK(parse_shard("3/8").index == 3);
  CHECK(parse_shard("3/8").count == 8);
  CHECK(parse_shard("999999/1000000").index == 999999);
  for (const char* bad :
       {"",    "1",   "/",    "1/",   "/2",    "2/2",  "5/3",   "0/0",   "-1/2",      "1/-2",
        "a/2", "1/b", " 1/2", "1/2 ", "1/2/3", "+1/2", "0x1/2", "1.0/2", "0/1000001", "99999999999999999999/2"}) {
    INFO(bad);
    CHECK_THROWS_AS(parse_shard(bad), UserError);
  }
  try {
    parse_shard("4/4");
  } catch (const UserError& e) {
    CHECK_THAT(e.what(), Catch::Contains("--shard '4/4'") && Catch::Contains("below the count"));
  }
}

TEST_CASE("a run's shard is the first 16 hex digits of its hash modulo N", "[unit]") {
  std::string h = "00000000000000ff" + std::string(48, 'e');
  CHECK(shard_of(h, 1) == 0);
  CHECK(shard_of(h, 16) == 15);
  CHECK(shard_of(h, 255) == 0);
  CHECK(shard_of(h, 7) == 255 % 7);
  CHECK(shard_of("ffffffffffffffff", 10) == static_cast<int64_t>(UINT64_MAX % 10));
  CHECK(shard_of("FFFFFFFFFFFFFFFF", 10) == shard_of("ffffffffffffffff", 10));
  CHECK_THROWS(shard_of("abc", 2));
  CHECK_THROWS(shard_of("zzzzzzzzzzzzzzzz", 2));
  CHECK_THROWS(shard_of(h, 0));
}

static const Registry& registry() {
  static Registry r({LMGRID_PLUGIN_DIR, LMGRID_TEST_PLUGIN_DIR});
  return r;
}

TEST_CASE("over 100 random grids, the N shards partition the runs exactly", "[unit]") {
  std::mt19937 rng(20261201);
  auto pick = [&](int lo, int hi) { return std::uniform_int_distribution<int>(lo, hi)(rng); };
  // Grid keys and a pool of distinct values for each.
  const std::vector<std::pair<std::string, std::vector<std::string>>> keys{
      {"optim.lr", {"1e-3", "2e-3", "3e-3", "5e-4", "1e-4", "7e-3", "4e-4", "9e-4"}},
      {"train.steps", {"10", "20", "30", "40", "50", "60", "70", "80"}},
      {"model.n_layer", {"1", "2", "3", "4", "5", "6", "7", "8"}},
      {"train.batch_size", {"2", "3", "4", "5", "6", "7", "8", "9"}},
  };
  int64_t total_runs = 0;
  for (int g = 0; g < 100; ++g) {
    int n_keys = pick(0, static_cast<int>(keys.size()));
    std::string grid = "[grid]\n";
    for (int k = 0; k < n_keys; ++k) {
      const auto& [key, pool] = keys[static_cast<size_t>(k)];
      int n = pick(1, 4);
      grid += fmt::format("\"{}\" = [", key);
      for (int i = 0; i < n; ++i) grid += (i ? ", " : "") + pool[static_cast<size_t>(i)];
      grid += "]\n";
    }
    int n_seeds = pick(1, 8);
    std::string seeds;
    for (int i = 0; i < n_seeds; ++i) seeds += (i ? ", " : "") + std::to_string(pick(0, 1000) * 8 + i);
    std::string text = fmt::format(R"(
[experiment]
name = "shard{}"
seeds = [{}]
[data]
plugin = "text"
source = "tiny_shakespeare"
[tokenizer]
plugin = "char"
[model]
plugin = "gpt"
[optim]
plugin = "adamw"
[train]
steps = 10
{})",
                                   g, seeds, n_keys ? grid : "");
    Experiment exp = load_experiment_text(text, "random.toml", {}, registry());
    std::map<std::string, int> in_grid;
    for (const auto& r : exp.runs) ++in_grid[r.hash()];
    REQUIRE(in_grid.size() == exp.runs.size());
    total_runs += static_cast<int64_t>(exp.runs.size());
    int64_t n = pick(1, 8);
    std::map<std::string, int> seen;
    size_t sum = 0;
    for (int64_t i = 0; i < n; ++i) {
      auto part = shard_runs(exp.runs, {i, n});
      sum += part.size();
      for (const auto& r : part) {
        ++seen[r.hash()];
        CHECK(shard_of(r.hash(), n) == i);
      }
    }
    INFO("grid " << g << ": " << exp.runs.size() << " runs in " << n << " shards");
    CHECK(sum == exp.runs.size());  // no run in two shards
    CHECK(seen == in_grid);         // every run in exactly one
  }
  CHECK(total_runs > 300);
}

TEST_CASE("slurm: shell quoting, file stems and option checks", "[unit]") {
  CHECK(shell_quote("abc/d-1.toml") == "abc/d-1.toml");
  CHECK(shell_quote("") == "''");
  CHECK(shell_quote("a b") == "'a b'");
  CHECK(shell_quote("it's") == "'it'\\''s'");
  CHECK(shell_quote("$HOME") == "'$HOME'");
  CHECK(slurm_file_stem("my exp/1") == "my_exp_1");
  CHECK(slurm_file_stem("") == "experiment");
  CHECK(default_array_size(0) == 1);
  CHECK(default_array_size(3) == 3);
  CHECK(default_array_size(100) == 8);
  SlurmJob job;
  job.experiment = "e";
  CHECK_NOTHROW(check_slurm_job(job));
  job.time = "1-02:03:04";
  CHECK_NOTHROW(check_slurm_job(job));
  job.time = "10 minutes";
  CHECK_THROWS_AS(check_slurm_job(job), UserError);
  job.time = "";
  job.partition = "gpu\n#SBATCH --x";
  CHECK_THROWS_AS(check_slurm_job(job), UserError);
  job.partition = "gpu,cpu";
  job.gpus = "a100:2";
  CHECK_NOTHROW(check_slurm_job(job));
  job.gpus = "two";
  CHECK_THROWS_AS(check_slurm_job(job), UserError);
  job.gpus = "";
  job.array = 0;
  CHECK_THROWS_AS(check_slurm_job(job), UserError);
}

TEST_CASE("slurm: data-parallel jobs (--nproc, --nodes, --ntasks-per-node)", "[unit]") {
  SlurmJob job;
  job.experiment = "e";
  job.lmgrid = "/bin/lmgrid";
  job.experiment_file = "/x/e.toml";
  job.db_dir = "/x/shards";
  job.log_dir = "/x/slurm";
  job.workdir = "/x";
  job.nproc = 4;
  CHECK(job.world_size() == 4);
  CHECK_NOTHROW(check_slurm_job(job));
  CHECK(sbatch_script(job).find(" --shard \"$SLURM_ARRAY_TASK_ID\"/1 --nproc 4 --db ") != std::string::npos);
  job.nproc = 0;
  CHECK_THROWS_AS(check_slurm_job(job), UserError);
  job.nproc = 2;
  job.nodes = 3;  // --nproc with --nodes
  CHECK_THROWS_AS(check_slurm_job(job), UserError);
  job.nproc = 1;
  CHECK(job.world_size() == 3);
  job.ntasks_per_node = 2;
  CHECK(job.world_size() == 6);
  CHECK_NOTHROW(check_slurm_job(job));
  std::string s = sbatch_script(job);
  CHECK(s.find("#SBATCH --array") == std::string::npos);
  CHECK(s.find("#SBATCH --ntasks=6\n") != std::string::npos);
  CHECK(s.find("export MASTER_PORT=$((29500 + SLURM_JOB_ID % 1000))\n") != std::string::npos);
  CHECK(s.find("exec srun --nodes=3 --ntasks-per-node=2 --ntasks=6 --kill-on-bad-exit=1 bash -c 'RANK=$SLURM_PROCID "
               "LOCAL_RANK=$SLURM_LOCALID WORLD_SIZE=$SLURM_NTASKS exec /bin/lmgrid run /x/e.toml --db /x/shards/e.db "
               "--no-report'\n") != std::string::npos);
  job.master_port = 70000;
  CHECK_THROWS_AS(check_slurm_job(job), UserError);
  job.master_port = 29999;
  CHECK(sbatch_script(job).find("export MASTER_PORT=29999\n") != std::string::npos);
  job.nodes = 1;
  job.ntasks_per_node = 1;  // one rank is not a data-parallel job
  CHECK_THROWS_AS(check_slurm_job(job), UserError);
}
