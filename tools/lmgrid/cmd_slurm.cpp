// lmgrid slurm FILE: validate the grid as `lmgrid run` does, then write an sbatch array script in
// which task I runs shard I of N into its own database (--nproc K: on K data-parallel ranks), or
// with --nodes one data-parallel job whose srun tasks are the ranks of every run (core:
// lmgrid/grid/slurm.hpp); --submit hands it to sbatch. Bad input (the grid, the options, a
// batch_size the ranks cannot split, no sbatch for --submit) writes nothing.
#include <cstdio>
#include <map>

#include <fmt/format.h>

#include <lmgrid/base/errors.hpp>
#include <lmgrid/base/util.hpp>
#include <lmgrid/config/train_settings.hpp>
#include <lmgrid/grid/experiment.hpp>
#include <lmgrid/grid/shard.hpp>
#include <lmgrid/grid/slurm.hpp>
#include <lmgrid/plugin/registry.hpp>
#include <lmgrid/store/store.hpp>

#include "commands.hpp"

namespace lmgrid::cli {

namespace {

namespace fs = std::filesystem;

struct SlurmOptions {
  std::string file;
  int64_t array = 0;  // 0 (not given): default_array_size
  std::string partition, time, gpus;
  int64_t cpus = 0;
  int64_t nproc = 1, nodes = 0, ntasks_per_node = 1, master_port = 0;
  std::string db_dir = "results/shards";
  std::vector<std::string> sets;
  bool submit = false;
};

// The first line `sh -c CMD` prints, and its exit status.
std::pair<std::string, int> run_shell(const std::string& cmd, std::string* all = nullptr) {
  FILE* p = popen(cmd.c_str(), "r");
  if (!p) throw std::runtime_error("cannot run: " + cmd);
  std::string out;
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, p)) > 0) out.append(buf, n);
  int status = pclose(p);
  if (all) *all = out;
  std::string first = out.substr(0, out.find('\n'));
  return {first, WIFEXITED(status) ? WEXITSTATUS(status) : 128};
}

// As `lmgrid run --nproc`: every global batch must split evenly over the ranks.
void check_batch_split(const Experiment& exp, const std::string& file, int64_t ranks) {
  if (ranks < 2) return;
  for (const auto& r : exp.runs) {
    int64_t bs = TrainSettings::from(r.section_params("train")).batch_size;
    if (bs % ranks != 0)
      throw UserError(
          fmt::format("{}: [train] batch_size = {} does not split over {} data-parallel ranks (make it a "
                      "multiple of {})",
                      file, bs, ranks, ranks));
  }
}

// stderr: what the job will do and how to gather its results.
void print_plan(const SlurmJob& job, const std::vector<int64_t>& sizes) {
  if (job.data_parallel_job()) {
    std::fprintf(stderr,
                 "lmgrid: experiment '%s': %lld runs, one after another, in one job of %lld nodes x %lld ranks "
                 "(WORLD_SIZE %lld)\n",
                 job.experiment.c_str(), static_cast<long long>(job.n_runs), static_cast<long long>(job.nodes),
                 static_cast<long long>(job.ntasks_per_node), static_cast<long long>(job.world_size()));
    std::fprintf(stderr, "lmgrid: database: %s (rank 0 writes it); when the job is done:\n  %s report --db %s\n",
                 job_db_path(job).c_str(), job.lmgrid.c_str(), shell_quote(job_db_path(job).string()).c_str());
    return;
  }
  int64_t empty = std::count(sizes.begin(), sizes.end(), 0);
  std::string shards;
  for (size_t i = 0; i < sizes.size() && i < 64; ++i) shards += (i ? " " : "") + std::to_string(sizes[i]);
  if (sizes.size() > 64) shards += " ...";
  std::fprintf(stderr, "lmgrid: experiment '%s': %lld runs in %lld tasks (runs per task: %s)%s%s\n",
               job.experiment.c_str(), static_cast<long long>(job.n_runs), static_cast<long long>(job.array),
               shards.c_str(), empty ? fmt::format("; {} tasks have no run", empty).c_str() : "",
               job.nproc > 1 ? fmt::format("; each run on {} data-parallel ranks", job.nproc).c_str() : "");
  std::fprintf(stderr, "lmgrid: shard databases: %s; when the array is done:\n  %s merge %s %s{0..%lld}.db\n",
               shard_db_path(job, 0).parent_path().c_str(), job.lmgrid.c_str(),
               shell_quote(default_db_path().string()).c_str(),
               shell_quote((job.db_dir / (slurm_file_stem(job.experiment) + ".")).string()).c_str(),
               static_cast<long long>(job.array - 1));
}

int write_slurm(const SlurmOptions& opt) {
  const Registry& registry = Registry::instance();
  Experiment exp = load_experiment(opt.file, opt.sets, registry);  // bad input: nothing written

  SlurmJob job;
  job.experiment = exp.name;
  job.n_runs = static_cast<int64_t>(exp.runs.size());
  job.array = opt.array != 0 ? opt.array : default_array_size(job.n_runs);
  job.partition = opt.partition;
  job.time = opt.time;
  job.gpus = opt.gpus;
  job.cpus = opt.cpus;
  job.nproc = opt.nproc;
  job.nodes = opt.nodes;
  job.ntasks_per_node = opt.ntasks_per_node;
  job.master_port = opt.master_port;
  if (job.data_parallel_job()) job.array = 1;
  check_slurm_job(job);
  check_batch_split(exp, opt.file, job.world_size());
  std::error_code ec;
  job.lmgrid = fs::read_symlink("/proc/self/exe", ec);
  if (ec || job.lmgrid.empty()) job.lmgrid = fs::absolute(g_argv[0]);
  job.experiment_file = fs::absolute(opt.file).lexically_normal();
  job.sets = opt.sets;
  job.workdir = fs::current_path();
  job.db_dir = fs::absolute(opt.db_dir).lexically_normal();
  job.log_dir = fs::absolute("results/slurm").lexically_normal();
  // --cpus is per Slurm task: an array task's ranks share it, a data-parallel job's rank has it all.
  job.env = slurm_task_env(job.cpus, job.data_parallel_job() ? 1 : job.nproc);

  std::string sbatch;
  if (opt.submit) {
    sbatch = run_shell("command -v sbatch 2>/dev/null").first;
    if (sbatch.empty())
      throw UserError(
          "--submit: sbatch not found on PATH (is this a Slurm login node?); without --submit lmgrid slurm only "
          "writes the script");
  }

  // How the runs fall into the shards (by config hash: some may be empty).
  std::vector<int64_t> sizes(static_cast<size_t>(job.array), 0);
  for (const auto& r : exp.runs) ++sizes[static_cast<size_t>(shard_of(r.hash(), job.array))];

  const std::string text = sbatch_script(job);  // throws UserError for a path sbatch cannot read
  fs::create_directories(job.log_dir);
  fs::create_directories(job.db_dir);
  fs::path script = sbatch_script_path(job);
  write_file_atomic(script, text);
  fs::permissions(script, fs::perms::owner_exec | fs::perms::group_exec, fs::perm_options::add, ec);
  std::printf("%s\n", script.c_str());
  print_plan(job, sizes);

  if (opt.submit) {
    std::string all;
    auto [line, rc] = run_shell(shell_quote(sbatch) + " --parsable " + shell_quote(script.string()) + " 2>&1", &all);
    if (rc != 0) throw std::runtime_error(fmt::format("sbatch failed (exit {}): {}", rc, all));
    std::string id = line.substr(0, line.find(';'));  // --parsable: "ID" or "ID;CLUSTER"
    if (id.empty() || id.find_first_not_of("0123456789") != std::string::npos)
      throw std::runtime_error("sbatch printed no job id: " + all);
    std::printf("submitted job %s\n", id.c_str());
  }
  return 0;
}

}  // namespace

void add_slurm(CLI::App& app) {
  auto opt = std::make_shared<SlurmOptions>();
  auto* cmd =
      app.add_subcommand("slurm", "Write (and --submit) an sbatch array script: task I runs shard I of the grid");
  cmd->add_option("file", opt->file, "experiment TOML file")->required();
  auto* array = cmd->add_option("--array", opt->array, "tasks (= shards; default: the number of runs, at most 8)");
  cmd->add_option("--nproc", opt->nproc,
                  "array tasks: data-parallel ranks per run on the task's node (lmgrid run --nproc)")
      ->check(CLI::Range(1, 256));
  auto* nodes = cmd->add_option("--nodes", opt->nodes,
                                "one data-parallel job on N nodes instead of an array: srun's tasks are the ranks of "
                                "every run");
  auto* per_node =
      cmd->add_option("--ntasks-per-node", opt->ntasks_per_node, "with --nodes: ranks per node (default 1)");
  auto* port = cmd->add_option("--master-port", opt->master_port,
                               "with --nodes: rank 0's port (default 29500 + SLURM_JOB_ID % 1000)");
  cmd->add_option("--partition", opt->partition, "#SBATCH --partition");
  cmd->add_option("--time", opt->time, "#SBATCH --time (per task)");
  cmd->add_option("--gpus", opt->gpus, "#SBATCH --gpus (per array task; with --nodes: --gpus-per-node)");
  cmd->add_option("--cpus", opt->cpus,
                  "#SBATCH --cpus-per-task (and LMGRID_THREADS = max(1, C / --nproc); with --nodes C per rank)");
  cmd->add_option("--db-dir", opt->db_dir, "folder of the shard databases (default results/shards)");
  cmd->add_option("--set", opt->sets, "override a key: section.key=value (repeatable; passed to every task)");
  cmd->add_flag("--submit", opt->submit, "submit the script with sbatch and print the job id");
  cmd->callback([opt, array, nodes, per_node, port] {
    if (array->count() && opt->array < 1)
      throw UserError(fmt::format("--array {}: the number of tasks must be at least 1", opt->array));
    if (nodes->count() && opt->nodes < 1) throw UserError(fmt::format("--nodes {}: must be at least 1", opt->nodes));
    if (nodes->count() && array->count())
      throw UserError(
          "--nodes and --array together: --nodes makes one data-parallel job that runs the whole grid, --array an "
          "array of shards (each task's runs on --nproc ranks); use one or the other");
    if (!nodes->count() && per_node->count())
      throw UserError(
          "--ntasks-per-node without --nodes: a data-parallel job needs --nodes N (an array task takes --nproc)");
    if (!nodes->count() && port->count())
      throw UserError("--master-port without --nodes: only a data-parallel job has one");
    if (port->count() && opt->master_port < 1)
      throw UserError(fmt::format("--master-port {}: must be between 1 and 65535", opt->master_port));
    int rc = write_slurm(*opt);
    if (rc != 0) throw Exit{rc};
  });
}

}  // namespace lmgrid::cli
