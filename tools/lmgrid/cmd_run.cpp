// lmgrid run: expand + validate the grid, register runs, then hand them to the run supervisor
// (core: supervisor.hpp), which trains each in its own worker process (`lmgrid worker`).
// Ctrl-C leaves runs resumable; the grid ends with a summary table and the report.
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <cstring>
#include <map>

#include <fmt/format.h>

#include <lmgrid/sys/cpu.hpp>
#include <lmgrid/base/errors.hpp>
#include <lmgrid/config/train_settings.hpp>
#include <lmgrid/dist/process_group.hpp>
#include <lmgrid/grid/experiment.hpp>
#include <lmgrid/grid/shard.hpp>
#include <lmgrid/plugin/registry.hpp>
#include <lmgrid/report/report.hpp>
#include <lmgrid/store/store.hpp>
#include <lmgrid/train/batch_split.hpp>
#include <lmgrid/run/supervisor.hpp>
#include <lmgrid/base/util.hpp>
#include <lmgrid/report/table.hpp>

#include "commands.hpp"

namespace lmgrid::cli {

namespace {

std::atomic<bool> g_stop{false};
std::atomic<int> g_signals{0};

void on_stop_signal(int) {
  g_stop = true;
  ++g_signals;
}

struct RunOptions {
  std::string file;
  std::string db;
  std::string workers = "auto";  // "auto" or a count (parse_workers)
  int threads = 0;               // --threads; 0: LMGRID_THREADS, else auto
  int nproc = 1;                 // data-parallel ranks per run on this machine
  std::vector<std::string> sets;
  bool retry_failed = false;
  bool dry_run = false;
  bool no_report = false;
  std::string shard;  // "I/N": only the runs of that shard (grid/shard.hpp)
};

// The report of the experiment's runs ([report] settings), written when the grid ends. A report
// problem is printed but does not change the grid's exit status.
void write_run_report(Store& store, const Experiment& exp, const std::vector<int64_t>& ids,
                      const std::filesystem::path& db_path) {
  try {
    ReportOptions ro;
    static_cast<ReportSpec&>(ro) = exp.report;
    ro.experiments = {exp.name};
    ro.run_ids = ids;
    Report rep = build_report(store.db(), ro);
    auto dir = exp.report.out.empty() ? default_report_dir(db_path, {exp.name}) : std::filesystem::path(exp.report.out);
    auto html = write_report(rep, dir);
    std::fprintf(stderr, "lmgrid: report: %s (and report.md beside it)\n", html.c_str());
  } catch (const std::exception& e) {
    std::fprintf(stderr, "lmgrid: could not write the report: %s\n", e.what());
  }
}

// --workers: "auto" is 0; else a count from 1 to 256.
int parse_workers(const std::string& v) {
  if (v == "auto") return 0;
  size_t used = 0;
  int n = 0;
  try {
    n = std::stoi(v, &used);
  } catch (const std::exception&) {
    used = 0;
  }
  if (used != v.size() || used == 0 || n < 1 || n > 256)
    throw UserError("--workers " + v + ": expected auto or a number of workers from 1 to 256");
  return n;
}

// Threads per process the user fixed: --threads, else LMGRID_THREADS; 0 when neither.
int asked_threads(const RunOptions& opt) { return opt.threads > 0 ? opt.threads : requested_threads(); }

int run_grid(const RunOptions& opt) {
  const int workers_asked = parse_workers(opt.workers);
  const Registry& registry = Registry::instance();
  // Everything is validated before the database is touched: bad input writes nothing.
  Experiment exp = load_experiment(opt.file, opt.sets, registry);
  if (!opt.shard.empty()) exp.runs = shard_runs(exp.runs, parse_shard(opt.shard));
  // Data parallel splits every global batch over the ranks: it must split evenly.
  int ranks = std::max(opt.nproc, dist::LaunchEnv::from_environment().world);
  for (const auto& r : exp.runs) {
    int64_t bs = TrainSettings::from(r.section_params("train")).batch_size;
    if (ranks > 1 && bs % ranks != 0)
      throw UserError(
          fmt::format("{}: [train] batch_size = {} does not split over {} data-parallel ranks (make it a "
                      "multiple of {})",
                      opt.file, bs, ranks, ranks));
  }
  std::filesystem::path db_path = opt.db.empty() ? default_db_path() : std::filesystem::path(opt.db);

  if (opt.dry_run) {
    std::map<std::string, std::string> existing;
    if (std::filesystem::exists(db_path)) existing = Store(db_path, true).statuses_by_hash(exp.name);
    std::vector<std::vector<std::string>> rows;
    for (const auto& r : exp.runs) {
      std::string h = r.hash(), status = existing.count(h) ? existing[h] : "new";
      std::string action = status == "done"                                 ? "skip"
                           : status == "new" || status == "pending"         ? "run"
                           : status == "interrupted" || status == "running" ? "resume"
                           : opt.retry_failed                               ? "retry"
                                                                            : "skip";
      std::string keys;
      for (const auto& k : exp.varying_keys) {
        if (k != "seed" && !r.values.count(k)) continue;  // a key of another variant's plugin
        keys +=
            (keys.empty() ? "" : " ") + k + "=" + (k == "seed" ? std::to_string(r.seed) : to_string(r.values.at(k)));
      }
      rows.push_back({h.substr(0, 12), status, action, keys});
    }
    std::fputs(render_rows({"hash", "status", "action", "varying"}, rows, Format::table).c_str(), stdout);
    std::printf("%zu runs in experiment '%s' (dry run: nothing written)\n", exp.runs.size(), exp.name.c_str());
    return 0;
  }

  // Data parallel under a launcher (srun, torchrun): every process runs `lmgrid run` with the
  // same file; rank 0 is the host below, the others follow the runs it announces.
  dist::LaunchEnv launch = dist::LaunchEnv::from_environment();
  if (launch.distributed() && opt.nproc > 1)
    throw UserError(fmt::format("--nproc {} under a launcher (WORLD_SIZE={} in the environment): use one or the other",
                                opt.nproc, launch.world));
  if (launch.distributed() && workers_asked > 1)
    throw UserError("--workers > 1 under a launcher (WORLD_SIZE > 1): one run at a time spans every rank");
  int procs_per_run = launch.distributed() ? 1 : std::max(1, opt.nproc);
  if (launch.distributed() && launch.rank > 0) {
    SupervisorOptions fo;
    fo.argv0 = g_argv[0];
    fo.threads = asked_threads(opt) > 0 ? asked_threads(opt) : default_threads(1);
    fo.stop = &g_stop;
    std::fprintf(stderr, "lmgrid: rank %d of %d: following the runs of rank 0 (%s:%d)\n", launch.rank, launch.world,
                 launch.master_addr.c_str(), launch.master_port);
    return follow_grid(fo);
  }
  // Bad input writes nothing: a bad LMGRID_PEAK_GFLOPS or LMGRID_CPU_SPLIT is refused here, before
  // the database exists (the peak itself is taken below, once the thread count is known; each run
  // plans its split when it starts).
  (void)fixed_peak_gflops();
  (void)batch_split_setting();
  Store store(db_path);
  store.check_integrity();
  db_path = store.path();  // absolute: workers and run files do not depend on the working directory
  std::vector<int64_t> ids = store.register_runs(exp, opt.retry_failed);
  int todo = 0;
  {
    int done = 0;
    for (int64_t id : ids) {
      auto r = store.run(id);
      if (r->status == RunStatus::done)
        ++done;
      else if (r->status == RunStatus::pending || r->status == RunStatus::interrupted)
        ++todo;
    }
    std::fprintf(stderr, "lmgrid: experiment '%s': %zu runs (%d done, %d to run) -> %s\n", exp.name.c_str(), ids.size(),
                 done, todo, db_path.c_str());
  }
  const int cores = available_cores();
  const WorkerPlan plan =
      plan_workers(cores, todo, procs_per_run, launch.distributed() ? 1 : workers_asked, asked_threads(opt));
  const int workers = plan.workers, threads = plan.threads;
  std::fprintf(stderr, "lmgrid: %d worker%s x %d thread%s%s (%s)\n", workers, workers == 1 ? "" : "s", threads,
               threads == 1 ? "" : "s", procs_per_run > 1 ? fmt::format(" x {} processes", procs_per_run).c_str() : "",
               plan.why.c_str());
  // MFU's denominator: one worker's share of the machine, i.e. the best matmul rate measured here
  // at the worker's thread count (machine_peak_gflops: a busy machine must not lower it), scaled
  // down when the workers together ask for more threads than there are cores.
  PeakGflops pk = machine_peak_gflops(threads);
  double peak = pk.gflops * 1e9 * std::min(1.0, cores / (static_cast<double>(threads) * workers * procs_per_run));

  struct sigaction sa {};
  sa.sa_handler = on_stop_signal;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGINT, &sa, nullptr);
  sigaction(SIGTERM, &sa, nullptr);

  SupervisorOptions so;
  so.argv0 = g_argv[0];
  so.workers = workers;
  so.threads = threads;
  so.peak_flops = peak;
  so.progress_bar = isatty(STDERR_FILENO) && workers == 1;
  so.nproc = procs_per_run;
  so.launcher_rank0 = launch.distributed();
  so.stop = &g_stop;
  supervise(store, ids, so);

  // Summary of this experiment's runs.
  std::vector<std::vector<std::string>> rows;
  int n_unsuccessful = 0;  // failed or diverged, in this invocation or an earlier one
  int n_interrupted = 0;   // stopped by a fault of the machine (a killed worker, a lost rank)
  for (int64_t id : ids) {
    auto r = store.run(id);
    auto best = store.summary(id, "best_val_loss");
    if (is_unsuccessful(r->status)) ++n_unsuccessful;
    // A run this invocation claimed that is still `running`: its end could not be recorded (the
    // database's disk is full); the next `lmgrid run` takes it over.
    bool unrecorded = r->status == RunStatus::running && r->host == hostname() &&
                      (!r->worker_pid || kill(static_cast<pid_t>(*r->worker_pid), 0) != 0);
    if (r->status == RunStatus::interrupted || unrecorded) ++n_interrupted;
    rows.push_back({std::to_string(id), r->config_hash.substr(0, 12), status_name(r->status), std::to_string(r->step),
                    best ? fmt::format("{:.4f}", *best) : "", r->error.substr(0, 80)});
  }
  std::fputs(render_rows({"id", "hash", "status", "step", "best_val_loss", "error"}, rows, Format::table).c_str(),
             stdout);
  std::fflush(stdout);  // the table before the report's line, also when both go to one file
  if (!g_stop && !opt.no_report) write_run_report(store, exp, ids, db_path);
  if (g_stop) {
    std::fprintf(stderr, "lmgrid: interrupted; run the same command again to resume\n");
    return 130;
  }
  // README: exit 1 for a grid in which a run failed. A diverged run did not finish either, and
  // a failed run skipped on a rerun still leaves the grid unfinished.
  if (n_unsuccessful > 0) {
    std::fprintf(stderr, "lmgrid: %d of %zu runs failed or diverged%s\n", n_unsuccessful, ids.size(),
                 opt.retry_failed ? "" : "; `lmgrid run --retry-failed` runs them again from scratch");
    return 1;
  }
  if (n_interrupted > 0) {
    std::fprintf(stderr,
                 "lmgrid: %d of %zu runs were interrupted (see the error column); run the same command again "
                 "to resume them\n",
                 n_interrupted, ids.size());
    return 1;
  }
  return 0;
}

}  // namespace

void add_run(CLI::App& app) {
  auto opt = std::make_shared<RunOptions>();
  auto* cmd = app.add_subcommand("run", "Run an experiment grid (skips done runs, resumes interrupted ones)");
  cmd->add_option("file", opt->file, "experiment TOML file")->required();
  cmd->add_option("--db", opt->db, "results database (default $LMGRID_DB or results/lmgrid.db)");
  cmd->add_option("--workers,-j", opt->workers,
                  "runs trained at once, each in its own process: auto (default: as many as the cores and runs "
                  "allow, the cores shared among them) or N");
  cmd->add_option("--threads", opt->threads, "threads per worker process (default: LMGRID_THREADS, else auto)")
      ->check(CLI::Range(1, 1024));
  cmd->add_option("--nproc", opt->nproc,
                  "data-parallel processes per run on this machine (c10d Gloo; [train] batch_size is split over them)")
      ->check(CLI::Range(1, 256));
  cmd->add_option("--set", opt->sets, "override a key: section.key=value (repeatable)");
  cmd->add_flag("--retry-failed", opt->retry_failed, "run failed and diverged runs again from scratch");
  cmd->add_flag("--dry-run", opt->dry_run, "validate and show what would run; write nothing");
  cmd->add_flag("--no-report", opt->no_report, "do not write the report when the grid ends");
  cmd->add_option("--shard", opt->shard, "I/N: only the runs whose config hash falls in shard I of N");
  cmd->callback([opt] {
    int rc = run_grid(*opt);
    if (rc != 0) throw Exit{rc};
  });
}

}  // namespace lmgrid::cli
