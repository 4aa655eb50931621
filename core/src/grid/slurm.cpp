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
}

fs::path shard_db_path(const SlurmJob& job, int64_t index) {
  return job.db_dir / fmt::format("{}.{}.db", slurm_file_stem(job.experiment), index);
}

fs::path sbatch_script_path(const SlurmJob& job) { return job.log_dir / (slurm_file_stem(job.experiment) + ".sbatch"); }

std::string sbatch_script(const SlurmJob& job) {
  const std::string stem = slurm_file_stem(job.experiment);
  // One line per #SBATCH option; Slurm reads them up to the first command.
  std::string s = "#!/bin/bash\n";
  s += fmt::format("#SBATCH --job-name={}\n", shell_quote("lmgrid-" + stem));
  s += fmt::format("#SBATCH --array=0-{}\n", job.array - 1);
  s += fmt::format("#SBATCH --output={}\n", sbatch_quote((job.log_dir / (stem + ".%A_%a.out")).string()));
  if (!job.partition.empty()) s += fmt::format("#SBATCH --partition={}\n", job.partition);
  if (!job.time.empty()) s += fmt::format("#SBATCH --time={}\n", job.time);
  if (!job.gpus.empty()) s += fmt::format("#SBATCH --gpus={}\n", job.gpus);
  if (job.cpus > 0) s += fmt::format("#SBATCH --cpus-per-task={}\n", job.cpus);
  s += fmt::format(
      "# Written by `lmgrid slurm`: experiment '{}' ({} runs) as an array of {} tasks; task I runs the runs\n"
      "# whose config hash falls in shard I of {} into its own database. When the array is done:\n"
      "#   {} merge OUT.db {}\n",
      job.experiment, job.n_runs, job.array, job.array, shell_quote(job.lmgrid.string()),
      shell_quote((job.db_dir / (stem + ".")).string()) + "{0.." + std::to_string(job.array - 1) + "}.db");
  s += "set -eu\n";
  s += "if [ -z \"${SLURM_ARRAY_TASK_ID:-}\" ]; then\n";
  s += "  echo \"$0: SLURM_ARRAY_TASK_ID is not set: submit this script with sbatch (it is an array job)\" >&2\n";
  s += "  exit 2\n";
  s += "fi\n";
  for (const auto& [k, v] : job.env) s += fmt::format("export {}={}\n", k, shell_quote(v));
  s += fmt::format("cd {}\n", shell_quote(job.workdir.string()));
  std::string cmd = fmt::format("exec {} run {} --shard \"$SLURM_ARRAY_TASK_ID\"/{} --db {}\"$SLURM_ARRAY_TASK_ID\".db",
                                shell_quote(job.lmgrid.string()), shell_quote(job.experiment_file.string()), job.array,
                                shell_quote((job.db_dir / (stem + ".")).string()));
  cmd += " --no-report";
  for (const auto& set : job.sets) cmd += " --set " + shell_quote(set);
  return s + cmd + "\n";
}

std::vector<std::pair<std::string, std::string>> slurm_task_env(int64_t cpus) {
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
  for (const char* name : {"LMGRID_OFFLINE", "LMGRID_THREADS", "LMGRID_PEAK_GFLOPS", "LMGRID_NO_BLAS_FIX"}) {
    std::string v = env_or(name, "");
    if (!v.empty()) env.emplace_back(name, v);
  }
  if (cpus > 0 && env_or("LMGRID_THREADS", "").empty()) env.emplace_back("LMGRID_THREADS", std::to_string(cpus));
  return env;
}

}  // namespace lmgrid
