// Grids on Slurm: the sbatch array script `lmgrid slurm FILE` writes. Task I of an array of N
// runs `lmgrid run FILE --shard I/N --db <db dir>/<experiment>.I.db --no-report` (absolute paths,
// the --set overrides passed through, every word shell-quoted), so the N tasks share nothing
// but the file system; `lmgrid merge` gathers their databases afterwards (store/merge.hpp).
// With nproc K each task runs `lmgrid run ... --nproc K` (K data-parallel ranks on its node).
//
// A data-parallel job (nodes > 0) is one job instead of an array: srun starts nodes x
// ntasks_per_node processes, each `lmgrid run FILE --db <db dir>/<experiment>.db` with torchrun's
// variables from Slurm's (RANK = SLURM_PROCID, LOCAL_RANK = SLURM_LOCALID, WORLD_SIZE =
// SLURM_NTASKS, MASTER_ADDR = the job's first host), so every run of the grid spans all of them.
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
  int64_t nproc = 1;  // array tasks: data-parallel ranks per task (lmgrid run --nproc)
  int64_t nodes = 0;  // > 0: one data-parallel job of nodes x ntasks_per_node ranks, no array
  int64_t ntasks_per_node = 1;
  int64_t master_port = 0;  // data-parallel job: 0 = 29500 + SLURM_JOB_ID % 1000
  std::string partition, time, gpus;
  int64_t cpus = 0;                                      // --cpus-per-task; 0: not given
  std::filesystem::path lmgrid;                          // the lmgrid binary, absolute
  std::filesystem::path experiment_file;                 // absolute
  std::vector<std::string> sets;                         // --set values, as given
  std::filesystem::path db_dir;                          // shard databases, absolute
  std::filesystem::path log_dir;                         // the script and the tasks' output files, absolute
  std::filesystem::path workdir;                         // tasks start here (where `lmgrid slurm` ran)
  std::vector<std::pair<std::string, std::string>> env;  // exported before the run

  bool data_parallel_job() const { return nodes > 0; }
  int64_t world_size() const { return data_parallel_job() ? nodes * ntasks_per_node : nproc; }
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
// --gpus ([type:]count), --cpus (1..100000), --array (1..kMaxShards), --nproc and
// --ntasks-per-node (1..256), --nodes (1..100000, nodes x ntasks_per_node > 1), --master-port
// (1..65535, only with --nodes), and not --nproc > 1 with --nodes.
void check_slurm_job(const SlurmJob& job);
// The shard database of task `index`: <db_dir>/<stem>.<index>.db.
// A data-parallel job's one database: <db_dir>/<stem>.db.
std::filesystem::path job_db_path(const SlurmJob& job);
std::filesystem::path shard_db_path(const SlurmJob& job, int64_t index);
// <log_dir>/<stem>.sbatch
std::filesystem::path sbatch_script_path(const SlurmJob& job);
// The script's text (bash): the array script, or the data-parallel job's srun script.
std::string sbatch_script(const SlurmJob& job);
// The LMGRID_* variables a task needs, from this process's environment when set: plugin and data
// search paths and the cache (each folder made absolute), LMGRID_OFFLINE, LMGRID_THREADS (else,
// when cpus > 0, max(1, cpus / ranks): the task's CPUs shared by the ranks it runs),
// LMGRID_PEAK_GFLOPS, LMGRID_NO_BLAS_FIX, LMGRID_DIST_TIMEOUT, LMGRID_DIST_BACKEND.
std::vector<std::pair<std::string, std::string>> slurm_task_env(int64_t cpus, int64_t ranks = 1);

}  // namespace lmgrid
