// lmgrid run: expand + validate the grid, register runs, then train each in its own worker
// process (`lmgrid worker`), so a crashing plugin fails one run and the grid goes on.
// Workers are claimed atomically through the database; Ctrl-C leaves runs resumable.
#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cstring>
#include <map>
#include <thread>

#include <fmt/format.h>

#include <lmgrid/cpu.hpp>
#include <lmgrid/errors.hpp>
#include <lmgrid/experiment.hpp>
#include <lmgrid/registry.hpp>
#include <lmgrid/report.hpp>
#include <lmgrid/store.hpp>
#include <lmgrid/util.hpp>

#include "commands.hpp"

namespace lmgrid::cli {

namespace {

std::atomic<bool> g_stop{false};
std::atomic<int> g_signals{0};

void on_stop_signal(int) {
  g_stop = true;
  ++g_signals;
}

struct Child {
  pid_t pid;
  int64_t run_id;
  int crash_fd;  // read end of the pipe on which the worker's crash handler names the plugin
};

std::string signal_text(int sig) {
  const char* name = sigabbrev_np(sig);
  return name ? fmt::format("SIG{}", name) : fmt::format("signal {}", sig);
}

struct RunOptions {
  std::string file;
  std::string db;
  int workers = 1;
  std::vector<std::string> sets;
  bool retry_failed = false;
  bool dry_run = false;
  bool no_report = false;
};

// The report of the experiment's runs ([report] settings), written when the grid ends. A report
// problem is printed but does not change the grid's exit status.
void write_run_report(Store& store, const Experiment& exp, const std::vector<int64_t>& ids,
                      const std::filesystem::path& db_path) {
  try {
    ReportOptions ro;
    ro.experiments = {exp.name};
    ro.run_ids = ids;
    ro.group_by = exp.report.group_by;
    ro.best_over = exp.report.best_over;
    ro.x = exp.report.x;
    ro.target_loss = exp.report.target_loss;
    Report rep = build_report(store.db(), ro);
    auto dir = exp.report.out.empty() ? default_report_dir(db_path, {exp.name}) : std::filesystem::path(exp.report.out);
    auto html = write_report(rep, dir);
    std::fprintf(stderr, "lmgrid: report: %s (and report.md beside it)\n", html.c_str());
  } catch (const std::exception& e) {
    std::fprintf(stderr, "lmgrid: could not write the report: %s\n", e.what());
  }
}

int run_grid(const RunOptions& opt) {
  const Registry& registry = Registry::instance();
  // Everything is validated before the database is touched: bad input writes nothing.
  Experiment exp = load_experiment(opt.file, opt.sets, registry);
  std::filesystem::path db_path = opt.db.empty() ? default_db_path() : std::filesystem::path(opt.db);

  if (opt.dry_run) {
    std::map<std::string, std::string> existing;
    if (std::filesystem::exists(db_path)) existing = Store(db_path, true).statuses_by_hash(exp.name);
    std::vector<std::vector<std::string>> rows;
    for (const auto& r : exp.runs) {
      std::string h = r.hash(), status = existing.count(h) ? existing[h] : "new";
      std::string action = status == "done" ? "skip" : status == "new" || status == "pending" ? "run"
                           : status == "interrupted" || status == "running" ? "resume"
                           : opt.retry_failed ? "retry" : "skip";
      std::string keys;
      for (const auto& k : exp.varying_keys) {
        if (k != "seed" && !r.values.count(k)) continue;  // a key of another variant's plugin
        keys += (keys.empty() ? "" : " ") + k + "=" + (k == "seed" ? std::to_string(r.seed) : to_string(r.values.at(k)));
      }
      rows.push_back({h.substr(0, 12), status, action, keys});
    }
    std::fputs(render_rows({"hash", "status", "action", "varying"}, rows, Format::table).c_str(), stdout);
    std::printf("%zu runs in experiment '%s' (dry run: nothing written)\n", exp.runs.size(), exp.name.c_str());
    return 0;
  }

  int workers = std::max(1, opt.workers);
  int threads = default_threads(workers);
  // MFU's denominator: one worker's share of the machine, i.e. the best matmul rate measured here
  // at the worker's thread count (machine_peak_gflops: a busy machine must not lower it), scaled
  // down when the workers together ask for more threads than there are cores.
  PeakGflops pk = machine_peak_gflops(threads);
  double cores = std::max(1u, std::thread::hardware_concurrency());
  double peak = pk.gflops * 1e9 * std::min(1.0, cores / (static_cast<double>(threads) * workers));

  Store store(db_path);
  db_path = store.path();  // absolute: workers and run files do not depend on the working directory
  std::vector<int64_t> ids = store.register_runs(exp, opt.retry_failed);
  {
    int done = 0, todo = 0;
    for (int64_t id : ids) {
      auto r = store.run(id);
      if (r->status == RunStatus::done) ++done;
      else if (r->status == RunStatus::pending || r->status == RunStatus::interrupted) ++todo;
    }
    std::fprintf(stderr, "lmgrid: experiment '%s': %zu runs (%d done, %d to run) -> %s\n", exp.name.c_str(), ids.size(),
                 done, todo, db_path.c_str());
  }

  struct sigaction sa {};
  sa.sa_handler = on_stop_signal;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGINT, &sa, nullptr);
  sigaction(SIGTERM, &sa, nullptr);

  bool tty = isatty(STDERR_FILENO) && workers == 1;
  std::vector<Child> children;
  auto reap = [&](bool block) {
    int status = 0;
    pid_t pid = waitpid(-1, &status, block ? 0 : WNOHANG);
    if (pid <= 0) return false;
    auto it = std::find_if(children.begin(), children.end(), [&](const Child& c) { return c.pid == pid; });
    if (it == children.end()) return true;
    char buf[256] = {0};
    ssize_t n = read(it->crash_fd, buf, sizeof(buf) - 1);
    close(it->crash_fd);
    std::string plugin = n > 0 ? std::string(buf, static_cast<size_t>(n)) : "";
    auto row = store.run(it->run_id);
    if (row && row->status == RunStatus::running) {
      // The worker died without recording an outcome: a crash (or a kill).
      std::string why = WIFSIGNALED(status) ? "worker killed by " + signal_text(WTERMSIG(status))
                                            : fmt::format("worker exited with status {}", WEXITSTATUS(status));
      if (!plugin.empty()) why += " in plugin " + plugin;
      store.set_status(it->run_id, RunStatus::failed, why);
      std::fprintf(stderr, "lmgrid: run %lld failed: %s\n", static_cast<long long>(it->run_id), why.c_str());
    }
    children.erase(it);
    return true;
  };

  while (true) {
    while (!g_stop && static_cast<int>(children.size()) < workers) {
      auto claimed = store.claim_next(ids, getpid());
      if (!claimed) break;
      int fds[2];
      if (pipe2(fds, O_CLOEXEC) != 0) throw std::runtime_error("pipe failed");
      std::vector<std::string> args{g_argv[0], "worker", "--db", db_path.string(), "--run-id",
                                    std::to_string(claimed->id), "--peak-flops", fmt::format("{}", peak),
                                    "--threads", std::to_string(threads)};
      if (tty) args.push_back("--progress-bar");
      pid_t pid = fork();
      if (pid == 0) {
        dup2(fds[1], 3);  // crash channel (dup2 clears O_CLOEXEC)
        setenv("OPENBLAS_NUM_THREADS", std::to_string(threads).c_str(), 1);
        // OpenMP threads that spin between parallel regions take the cores OpenBLAS's own threads
        // need, and collapse throughput when anything else runs on the machine: measured here on 2
        // cores under load, a nanoGPT-size run fell from ~6K to 0.6-1K tok/s with 2 spinning
        // threads; passive waiting kept 5-6K. A user's own OMP_WAIT_POLICY wins.
        setenv("OMP_WAIT_POLICY", "PASSIVE", 0);
        std::vector<char*> argv;
        for (auto& a : args) argv.push_back(a.data());
        argv.push_back(nullptr);
        execv("/proc/self/exe", argv.data());
        _exit(127);
      }
      close(fds[1]);
      if (pid < 0) {
        close(fds[0]);
        throw std::runtime_error("fork failed");
      }
      children.push_back({pid, claimed->id, fds[0]});
    }
    if (children.empty()) break;
    reap(true);
  }

  // Summary of this experiment's runs.
  std::vector<std::vector<std::string>> rows;
  int n_unsuccessful = 0;  // failed or diverged, in this invocation or an earlier one
  for (int64_t id : ids) {
    auto r = store.run(id);
    auto best = store.summary(id, "best_val_loss");
    if (is_unsuccessful(r->status)) ++n_unsuccessful;
    rows.push_back({std::to_string(id), r->config_hash.substr(0, 12), status_name(r->status), std::to_string(r->step),
                    best ? fmt::format("{:.4f}", *best) : "", r->error.substr(0, 80)});
  }
  std::fputs(render_rows({"id", "hash", "status", "step", "best_val_loss", "error"}, rows, Format::table).c_str(), stdout);
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
  return 0;
}

}  // namespace

void add_run(CLI::App& app) {
  auto opt = std::make_shared<RunOptions>();
  auto* cmd = app.add_subcommand("run", "Run an experiment grid (skips done runs, resumes interrupted ones)");
  cmd->add_option("file", opt->file, "experiment TOML file")->required();
  cmd->add_option("--db", opt->db, "results database (default $LMGRID_DB or results/lmgrid.db)");
  cmd->add_option("--workers,-j", opt->workers, "runs trained at once, each in its own process")->check(CLI::Range(1, 256));
  cmd->add_option("--set", opt->sets, "override a key: section.key=value (repeatable)");
  cmd->add_flag("--retry-failed", opt->retry_failed, "run failed and diverged runs again from scratch");
  cmd->add_flag("--dry-run", opt->dry_run, "validate and show what would run; write nothing");
  cmd->add_flag("--no-report", opt->no_report, "do not write the report when the grid ends");
  cmd->callback([opt] {
    int rc = run_grid(*opt);
    if (rc != 0) throw Exit{rc};
  });
}

}  // namespace lmgrid::cli
