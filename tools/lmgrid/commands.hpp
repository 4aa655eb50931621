// The `lmgrid` host program: one file per subcommand, each registering itself on the CLI.
// Every command throws UserError for bad input (exit 2); other exceptions exit 1.
#pragma once

#include <filesystem>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>

namespace lmgrid::cli {

// Set by main() from argv[0]/proc: used to spawn worker processes.
extern int g_argc;
extern char** g_argv;

// Thrown by a command to end the program with this status (after its own output).
struct Exit {
  int code;
};

void add_run(CLI::App& app);         // run FILE [--workers] [--set] [--retry-failed] [--dry-run]
void add_worker(CLI::App& app);      // worker (internal): trains one claimed run
void add_grid(CLI::App& app);        // grid FILE: expanded runs, varying keys, parameter counts
void add_plugins(CLI::App& app);     // plugins [--kind], plugins show NAME
void add_runs(CLI::App& app);        // runs: list and filter
void add_metrics(CLI::App& app);     // metrics RUN_ID...
void add_sql(CLI::App& app);         // sql "SELECT ..." (read-only)
void add_sample(CLI::App& app);      // sample --run ID
void add_env(CLI::App& app);         // env: versions, threads, BLAS, measured matmul rate
void add_new_plugin(CLI::App& app);  // new-plugin KIND NAME --dir DIR
void add_data(CLI::App& app);        // data list | fetch NAME | tokenize SOURCE | inspect FILE...
void add_tokenize(CLI::App& app);    // tokenize --tokenizer NAME [--set] [--fit] [--decode] [--stats]
void add_export(CLI::App& app);      // export --run ID --format hf|raw --out DIR [--force] [--reference TEXT]
void add_compare(CLI::App& app);     // compare RUN_ID RUN_ID...
void add_slurm(CLI::App& app);       // slurm FILE [--array N] [--partition] [--time] [--gpus] [--cpus] [--submit]
void add_merge(CLI::App& app);       // merge OUT.db IN.db...: shard databases into one, by config hash
void add_report(CLI::App& app);      // report [--experiment] [--group-by] [--best-over] [--x] [--target-loss] [--out]

}  // namespace lmgrid::cli
