// The sbatch array script of a grid (slurm.hpp).
#include "lmgrid/grid/slurm.hpp"

#include <algorithm>
#include <regex>

#include <fmt/format.h>

#include "lmgrid/base/env.hpp"
#include "lmgrid/base/errors.hpp"
#include "lmgrid/base/util.hpp"
#include "lmgrid/grid/shard.hpp"

namespace lmgrid {

namespace fs = std::filesystem;

int64_t default_array_size(int64_t n_runs) { return std::clamp<int64_t>(n_runs, 1, 8); }

std::string shell_quote(const std::string& word) {
  static const std::string safe = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-.,/:=+@%";
  if (!word.empty() && word.find_first_not_of(safe) == std::string::npos) return word;
  std::string out = "'";
  for (char c : word) out += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return out + "'";
}

std::string slurm_file_stem(const std::string& experiment) {
  std::string s = experiment;
  for (char& c : s)
    if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '_' || c == '-')) c = '_';
  return s.empty() ? "experiment" : s;
}

// An #SBATCH option's value: sbatch reads these lines itself (no shell), taking a double-quoted
// value whole. A value it could not read back (a double quote, backslash or newline) is refused.
static std::string sbatch_quote(const std::string& value) {
  if (shell_quote(value) == value) return value;
  if (value.find_first_of("\"\\\n") != std::string::npos)
    throw UserError(
        fmt::format("'{}' cannot be written on an #SBATCH line (it holds a double quote, backslash or "
                    "newline): run lmgrid slurm from another folder",
                    value));
  return "\"" + value + "\"";
}

// --nproc, --nodes, --ntasks-per-node and --master-port, alone and together.
static void check_data_parallel(const SlurmJob& job) {
  if (job.nproc < 1 || job.nproc > 256)
    throw UserError(fmt::format("--nproc {}: must be between 1 and 256", job.nproc));
  if (job.ntasks_per_node < 1 || job.ntasks_per_node > 256)
    throw UserError(fmt::format("--ntasks-per-node {}: must be between 1 and 256", job.ntasks_per_node));
  if (job.nodes < 0 || job.nodes > 100000)
    throw UserError(fmt::format("--nodes {}: must be between 1 and 100000", job.nodes));
  if (job.master_port < 0 || job.master_port > 65535)
    throw UserError(fmt::format("--master-port {}: must be between 1 and 65535", job.master_port));
  if (!job.data_parallel_job()) return;
  if (job.nproc > 1)
    throw UserError(
        fmt::format("--nproc {} with --nodes {}: a data-parallel job's ranks are its srun tasks (--ntasks-per-node)",
                    job.nproc, job.nodes));
  if (job.world_size() < 2)
    throw UserError(
        "--nodes 1 --ntasks-per-node 1 is one process: a data-parallel job needs at least 2 ranks (without "
        "--nodes the grid runs as an array)");
}

void check_slurm_job(const SlurmJob& job) {
  if (job.array < 1 || job.array > kMaxShards)
    throw UserError(fmt::format("--array {}: the number of tasks must be between 1 and {}", job.array, kMaxShards));
  if (!job.partition.empty() && !std::regex_match(job.partition, std::regex("[A-Za-z0-9_.-]+(,[A-Za-z0-9_.-]+)*")))
    throw UserError(
        fmt::format("--partition '{}': not a partition name (letters, digits, _ . - ; several "
                    "separated by commas)",
                    job.partition));
  if (!job.time.empty() && !std::regex_match(job.time, std::regex("(\\d+-)?\\d+(:\\d+){0,2}|UNLIMITED|unlimited|"
                                                                  "INFINITE|infinite")))
    throw UserError(
        fmt::format("--time '{}': not a Slurm time limit (minutes, MM:SS, HH:MM:SS, D-HH, "
                    "D-HH:MM, D-HH:MM:SS or UNLIMITED)",
                    job.time));
  if (!job.gpus.empty() && !std::regex_match(job.gpus, std::regex("([A-Za-z0-9_.-]+:)?[0-9]+")))
    throw UserError(fmt::format("--gpus '{}': not a GPU count (N or TYPE:N)", job.gpus));
  if (job.cpus < 0 || job.cpus > 100000)
    throw UserError(fmt::format("--cpus {}: must be between 1 and 100000", job.cpus));
  check_data_parallel(job);
}

fs::path shard_db_path(const SlurmJob& job, int64_t index) {
  return job.db_dir / fmt::format("{}.{}.db", slurm_file_stem(job.experiment), index);
}

fs::path job_db_path(const SlurmJob& job) { return job.db_dir / (slurm_file_stem(job.experiment) + ".db"); }

fs::path sbatch_script_path(const SlurmJob& job) { return job.log_dir / (slurm_file_stem(job.experiment) + ".sbatch"); }

// The #SBATCH lines both kinds of job share (after --job-name and the kind's own lines).
static std::string resource_lines(const SlurmJob& job) {
  std::string s;
  if (!job.partition.empty()) s += fmt::format("#SBATCH --partition={}\n", job.partition);
  if (!job.time.empty()) s += fmt::format("#SBATCH --time={}\n", job.time);
  // A data-parallel job: GPUs per node, every rank on a node sees them all (LOCAL_RANK picks one).
  if (!job.gpus.empty())
    s += fmt::format("#SBATCH --{}={}\n", job.data_parallel_job() ? "gpus-per-node" : "gpus", job.gpus);
  if (job.cpus > 0) s += fmt::format("#SBATCH --cpus-per-task={}\n", job.cpus);
  return s;
}

// `lmgrid run FILE [SHARD] [--nproc K] --db DB --no-report [--set K=V]...` with every word
// shell-quoted; SHARD and DB are inserted as given (the caller quotes them).
static std::string run_command(const SlurmJob& job, const std::string& shard, const std::string& db_word) {
  std::string cmd = fmt::format("{} run {}{}{} --db {} --no-report", shell_quote(job.lmgrid.string()),
                                shell_quote(job.experiment_file.string()), shard,
                                job.nproc > 1 ? fmt::format(" --nproc {}", job.nproc) : "", db_word);
  for (const auto& set : job.sets) cmd += " --set " + shell_quote(set);
  return cmd;
}

static std::string environment_lines(const SlurmJob& job) {
  std::string s;
  for (const auto& [k, v] : job.env) s += fmt::format("export {}={}\n", k, shell_quote(v));
  s += fmt::format("cd {}\n", shell_quote(job.workdir.string()));
  return s;
}

static std::string array_script(const SlurmJob& job) {
  const std::string stem = slurm_file_stem(job.experiment);
  // One line per #SBATCH option; Slurm reads them up to the first command.
  std::string s = "#!/bin/bash\n";
  s += fmt::format("#SBATCH --job-name={}\n", shell_quote("lmgrid-" + stem));
  s += fmt::format("#SBATCH --array=0-{}\n", job.array - 1);
  s += fmt::format("#SBATCH --output={}\n", sbatch_quote((job.log_dir / (stem + ".%A_%a.out")).string()));
  s += resource_lines(job);
  s += fmt::format(
      "# Written by `lmgrid slurm`: experiment '{}' ({} runs) as an array of {} tasks; task I runs the runs\n"
      "# whose config hash falls in shard I of {} into its own database{}. When the array is done:\n"
      "#   {} merge OUT.db {}\n",
      job.experiment, job.n_runs, job.array, job.array,
      job.nproc > 1 ? fmt::format(", each run on {} data-parallel ranks", job.nproc) : "",
      shell_quote(job.lmgrid.string()),
      shell_quote((job.db_dir / (stem + ".")).string()) + "{0.." + std::to_string(job.array - 1) + "}.db");
  s += "set -eu\n";
  s += "if [ -z \"${SLURM_ARRAY_TASK_ID:-}\" ]; then\n";
  s += "  echo \"$0: SLURM_ARRAY_TASK_ID is not set: submit this script with sbatch (it is an array job)\" >&2\n";
  s += "  exit 2\n";
  s += "fi\n";
  s += environment_lines(job);
  return s + "exec " +
         run_command(job, fmt::format(" --shard \"$SLURM_ARRAY_TASK_ID\"/{}", job.array),
                     shell_quote((job.db_dir / (stem + ".")).string()) + "\"$SLURM_ARRAY_TASK_ID\".db") +
         "\n";
}

// One job, srun starting every rank; each rank's variables come from Slurm's inside the task
// (single-quoted for the task's own bash).
static std::string data_parallel_script(const SlurmJob& job) {
  const std::string stem = slurm_file_stem(job.experiment);
  const int64_t world = job.world_size();
  std::string s = "#!/bin/bash\n";
  s += fmt::format("#SBATCH --job-name={}\n", shell_quote("lmgrid-" + stem));
  s += fmt::format("#SBATCH --nodes={}\n", job.nodes);
  s += fmt::format("#SBATCH --ntasks-per-node={}\n", job.ntasks_per_node);
  s += fmt::format("#SBATCH --ntasks={}\n", world);
  s += fmt::format("#SBATCH --output={}\n", sbatch_quote((job.log_dir / (stem + ".%j.out")).string()));
  s += resource_lines(job);
  s += fmt::format(
      "# Written by `lmgrid slurm`: experiment '{}' ({} runs) as one data-parallel job: srun starts {} ranks\n"
      "# ({} nodes x {}), which train the runs one after another, each run on all of them; rank 0 (on the\n"
      "# first node) writes the database {}\n",
      job.experiment, job.n_runs, world, job.nodes, job.ntasks_per_node, job_db_path(job).string());
  s += "set -eu\n";
  s += "if [ -z \"${SLURM_JOB_ID:-}\" ] || [ -z \"${SLURM_JOB_NODELIST:-}\" ]; then\n";
  s += "  echo \"$0: SLURM_JOB_ID is not set: submit this script with sbatch (its ranks are started by srun)\" >&2\n";
  s += "  exit 2\n";
  s += "fi\n";
  s += environment_lines(job);
  s += "MASTER_ADDR=$(scontrol show hostnames \"$SLURM_JOB_NODELIST\" | head -n1)\n";
  s += "if [ -z \"$MASTER_ADDR\" ]; then echo \"$0: no host in SLURM_JOB_NODELIST=$SLURM_JOB_NODELIST\" >&2; exit 1; "
       "fi\n";
  s += "export MASTER_ADDR\n";
  if (job.master_port > 0)
    s += fmt::format("export MASTER_PORT={}\n", job.master_port);
  else
    s += "export MASTER_PORT=$((29500 + SLURM_JOB_ID % 1000))\n";
  // srun reads no --cpus-per-task from the job since Slurm 22.05: given again here.
  std::string srun =
      fmt::format("exec srun --nodes={} --ntasks-per-node={} --ntasks={}", job.nodes, job.ntasks_per_node, world);
  if (job.cpus > 0) srun += fmt::format(" --cpus-per-task={}", job.cpus);
  srun += " --kill-on-bad-exit=1";
  const std::string rank_cmd = "RANK=$SLURM_PROCID LOCAL_RANK=$SLURM_LOCALID WORLD_SIZE=$SLURM_NTASKS exec " +
                               run_command(job, "", shell_quote(job_db_path(job).string()));
  return s + srun + " bash -c " + shell_quote(rank_cmd) + "\n";
}

std::string sbatch_script(const SlurmJob& job) {
  return job.data_parallel_job() ? data_parallel_script(job) : array_script(job);
}

std::vector<std::pair<std::string, std::string>> slurm_task_env(int64_t cpus, int64_t ranks) {
  std::vector<std::pair<std::string, std::string>> env;
  auto absolute_list = [](const std::string& list) {
    std::string out;
    for (const auto& dir : split(list, ':'))
      out += (out.empty() ? "" : ":") + fs::absolute(dir).lexically_normal().string();
    return out;
  };
  for (const char* name : {"LMGRID_PLUGIN_PATH", "LMGRID_DATA_PATH", "LMGRID_CACHE"}) {
    std::string v = env_or(name, "");
    if (!v.empty()) env.emplace_back(name, absolute_list(v));
  }
  for (const char* name : {"LMGRID_OFFLINE", "LMGRID_THREADS", "LMGRID_PEAK_GFLOPS", "LMGRID_NO_BLAS_FIX",
                           "LMGRID_DIST_TIMEOUT", "LMGRID_DIST_BACKEND"}) {
    std::string v = env_or(name, "");
    if (!v.empty()) env.emplace_back(name, v);
  }
  if (cpus > 0 && env_or("LMGRID_THREADS", "").empty())
    env.emplace_back("LMGRID_THREADS", std::to_string(std::max<int64_t>(1, cpus / std::max<int64_t>(1, ranks))));
  return env;
}

}  // namespace lmgrid
