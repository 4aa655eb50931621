// Grids on Slurm: the sbatch array script `lmgrid slurm FILE` writes. Task I of an array of N
// runs `lmgrid run FILE --shard I/N --db <db dir>/<experiment>.I.db --no-report` (absolute paths,
// the --set overrides passed through, every word shell-quoted), so the N tasks share nothing
// but the file system; `lmgrid merge` gathers their databases afterwards (store/merge.hpp).
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <utility>
#include <vector>

namespace lmgrid {

struct SlurmJob {
  std::string experiment;  // the experiment's name (file names use slurm_file_stem of it)
  int64_t n_runs = 0;
  int64_t array = 1;  // tasks = shards
  std::string partition, time, gpus;
  int64_t cpus = 0;                                      // --cpus-per-task; 0: not given
  std::filesystem::path lmgrid;                          // the lmgrid binary, absolute
  std::filesystem::path experiment_file;                 // absolute
  std::vector<std::string> sets;                         // --set values, as given
  std::filesystem::path db_dir;                          // shard databases, absolute
  std::filesystem::path log_dir;                         // the script and the tasks' output files, absolute
  std::filesystem::path workdir;                         // tasks start here (where `lmgrid slurm` ran)
  std::vector<std::pair<std::string, std::string>> env;  // exported before the run
};

// The default array size: one task per run up to 8 tasks (at least 1).
int64_t default_array_size(int64_t n_runs);
// A word for a POSIX shell: unchanged when made of safe characters only, else single-quoted
// ('it'\''s').
std::string shell_quote(const std::string& word);
// The experiment name as a file name: characters other than [A-Za-z0-9._-] become '_'.
std::string slurm_file_stem(const std::string& experiment);
// Throws UserError when a value would not make a valid #SBATCH line: --partition (letters,
// digits, _ . - and commas), --time (minutes, MM:SS, HH:MM:SS, D-HH[:MM[:SS]], or UNLIMITED),
// --gpus ([type:]count), --cpus (1..100000), --array (1..kMaxShards).
void check_slurm_job(const SlurmJob& job);
// The shard database of task `index`: <db_dir>/<stem>.<index>.db.
std::filesystem::path shard_db_path(const SlurmJob& job, int64_t index);
// <log_dir>/<stem>.sbatch
std::filesystem::path sbatch_script_path(const SlurmJob& job);
// The script's text (bash).
std::string sbatch_script(const SlurmJob& job);
// The LMGRID_* variables a task needs, from this process's environment when set: plugin and data
// search paths and the cache (each folder made absolute), LMGRID_OFFLINE, LMGRID_THREADS (else
// the job's --cpus), LMGRID_PEAK_GFLOPS, LMGRID_NO_BLAS_FIX.
std::vector<std::pair<std::string, std::string>> slurm_task_env(int64_t cpus);

}  // namespace lmgrid
