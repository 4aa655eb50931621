// The run supervisor (see supervisor.hpp).
#include "lmgrid/run/supervisor.hpp"

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <stdexcept>

#include <fmt/format.h>

#include <chrono>
#include <map>
#include <set>
#include <optional>
#include <thread>

#include "lmgrid/base/errors.hpp"
#include "lmgrid/base/machine_error.hpp"
#include "lmgrid/dist/process_group.hpp"

#include "lmgrid/base/env.hpp"

extern char** environ;

namespace lmgrid {

namespace {

std::string signal_text(int sig) {
  const char* name = sigabbrev_np(sig);
  return name ? fmt::format("SIG{}", name) : fmt::format("signal {}", sig);
}

// The workers' environment: ours, with OpenBLAS's pool sized to the worker's threads (it reads
// the variable when it loads) and OpenMP waiting passively unless the user chose otherwise.
// OpenMP threads that spin between parallel regions take the cores OpenBLAS's own threads need:
// measured on 2 cores under load, a nanoGPT-size run fell from ~6K to 0.6-1K tok/s with 2
// spinning threads; passive waiting kept 5-6K.
bool has_prefix(const char* s, const char* prefix) { return std::strncmp(s, prefix, std::strlen(prefix)) == 0; }

std::vector<std::string> worker_environment(int threads, bool own_launch_vars) {
  std::vector<std::string> env;
  for (char** e = environ; *e; ++e) {
    if (has_prefix(*e, "OPENBLAS_NUM_THREADS=")) continue;
    // --nproc sets torchrun's variables itself for each rank
    if (own_launch_vars && (has_prefix(*e, "RANK=") || has_prefix(*e, "WORLD_SIZE=") || has_prefix(*e, "LOCAL_RANK=") ||
                            has_prefix(*e, "MASTER_ADDR=") || has_prefix(*e, "MASTER_PORT=")))
      continue;
    env.emplace_back(*e);
  }
  env.push_back(fmt::format("OPENBLAS_NUM_THREADS={}", threads));
  if (!env_set("OMP_WAIT_POLICY")) env.push_back("OMP_WAIT_POLICY=PASSIVE");
  return env;
}

std::vector<char*> c_strings(std::vector<std::string>& v) {
  std::vector<char*> out;
  for (auto& s : v) out.push_back(s.data());
  out.push_back(nullptr);
  return out;
}

class Supervisor {
 public:
  Supervisor(Store& store, const std::vector<int64_t>& ids, const SupervisorOptions& opt)
      : store_(store), ids_(ids), opt_(opt), env_(worker_environment(opt.threads, opt.nproc > 1)) {
    if (opt_.nproc > 1) {
      server_.emplace("127.0.0.1", 0, dist::timeout_from_environment());
    } else if (opt_.launcher_rank0) {
      dist::LaunchEnv le = dist::LaunchEnv::from_environment();
      server_.emplace("0.0.0.0", le.master_port, le.timeout);
    }
  }

  void run() {
    while (true) {
      while (!stopping() && machine_fault_.empty() && static_cast<int>(active_.size()) < opt_.workers) {
        // A run that ended here (even `interrupted` by a lost rank or a kill) is not claimed again
        // by this invocation: a fault that repeats must not loop; the next `lmgrid run` resumes it.
        std::vector<int64_t> open;
        for (int64_t id : ids_)
          if (!ended_.count(id)) open.push_back(id);
        std::optional<RunRow> claimed;
        try {
          claimed = store_.claim_next(open, getpid());
        } catch (const MachineError& e) {
          on_machine_fault(e.what());
          break;
        }
        if (!claimed) break;
        spawn_run(claimed->id);
      }
      if (children_.empty()) {
        if (wait_for_other_processes()) continue;
        break;
      }
      if (stopping()) forward_stop();
      reap();
    }
    if (opt_.launcher_rank0) end_grid();
  }

 private:
  struct Child {
    pid_t pid;
    int64_t run_id;
    int crash_fd;  // read end of the pipe on which the worker's crash handler names the plugin
    int rank;      // data parallel: the worker's rank (0 records the run)
  };

  bool stopping() const { return opt_.stop && opt_.stop->load(); }

  // A stop that reached only the supervisor (kill PID, timeout, a process manager) is passed on
  // once, so workers checkpoint and end `interrupted` instead of training on. Ctrl-C on a
  // terminal has signalled them already; a second SIGINT changes nothing for a worker.
  void forward_stop() {
    if (forwarded_) return;
    forwarded_ = true;
    for (const auto& c : children_) kill(c.pid, SIGINT);
  }

  // A run's worker, or its N ranks (rank 0 records it; the others follow it).
  void spawn_run(int64_t run_id) {
    active_[run_id] = {};
    const std::string prefix = fmt::format("run{}", run_id);
    if (opt_.nproc <= 1) {
      spawn(run_id, 0, env_, prefix);
      if (opt_.launcher_rank0) announce(prefix);
      return;
    }
    for (int r = 0; r < opt_.nproc; ++r) {
      std::vector<std::string> env = env_;
      env.push_back(fmt::format("RANK={}", r));
      env.push_back(fmt::format("LOCAL_RANK={}", r));
      env.push_back(fmt::format("WORLD_SIZE={}", opt_.nproc));
      env.push_back("MASTER_ADDR=127.0.0.1");
      env.push_back(fmt::format("MASTER_PORT={}", server_->port()));
      spawn(run_id, r, env, prefix);
    }
  }

  // Launcher mode: the other machines' hosts learn the next run's key prefix ("" ends the grid).
  void announce(const std::string& prefix) {
    dist::store_set(*server_->store(), fmt::format("grid/{}", announced_++), prefix);
  }
  void end_grid() {
    announce("");
    // Keep the store up until every other rank's host has read the end (or the timeout).
    dist::LaunchEnv le = dist::LaunchEnv::from_environment();
    auto deadline = std::chrono::steady_clock::now() + le.timeout;
    while (std::chrono::steady_clock::now() < deadline) {
      auto left = server_->store()->add("grid/ended", 0);
      if (left >= le.world - 1) break;
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
  }

  void spawn(int64_t run_id, int rank, std::vector<std::string>& env, const std::string& prefix) {
    std::vector<std::string> args{opt_.argv0, "worker", "--threads", std::to_string(opt_.threads)};
    if (rank == 0) {
      args.push_back("--db");
      args.push_back(store_.path().string());
      args.insert(args.end(), {"--run-id", std::to_string(run_id), "--peak-flops", fmt::format("{}", opt_.peak_flops)});
      if (opt_.progress_bar) args.push_back("--progress-bar");
    } else {
      args.push_back("--follow");
    }
    if (opt_.nproc > 1 || opt_.launcher_rank0) args.insert(args.end(), {"--dist-prefix", prefix});
    std::vector<char*> argv = c_strings(args);
    std::vector<char*> envp = c_strings(env);
    int fds[2];
    if (pipe2(fds, O_CLOEXEC) != 0) throw std::runtime_error(fmt::format("pipe: {}", std::strerror(errno)));
    // The worker's crash channel is fd 3. A write end that already is fd 3 is moved first: a
    // dup2 onto itself would keep its close-on-exec flag.
    if (fds[1] == 3) {
      int moved = fcntl(fds[1], F_DUPFD_CLOEXEC, 4);
      close(fds[1]);
      fds[1] = moved;
    }
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_adddup2(&actions, fds[1], 3);
    pid_t pid = 0;
    int rc = posix_spawn(&pid, opt_.exe.c_str(), &actions, nullptr, argv.data(), envp.data());
    posix_spawn_file_actions_destroy(&actions);
    close(fds[1]);
    if (rc != 0) {
      close(fds[0]);
      store_.set_status(run_id, RunStatus::pending);
      throw std::runtime_error(fmt::format("cannot start a worker ({}): {}", opt_.exe.string(), std::strerror(rc)));
    }
    children_.push_back({pid, run_id, fds[0], rank});
  }

  // Waits for one worker to end; records a failure when it died without an outcome.
  void reap() {
    int status = 0;
    pid_t pid = 0;
    if (leftovers_.empty()) {
      pid = waitpid(-1, &status, 0);
    } else {  // ranks of an ended run are being stopped: poll, and SIGKILL them at the deadline
      while ((pid = waitpid(-1, &status, WNOHANG)) == 0) {
        auto now = std::chrono::steady_clock::now();
        for (auto it = leftovers_.begin(); it != leftovers_.end();) {
          if (now >= it->second) {
            kill(it->first, SIGKILL);
            it = leftovers_.erase(it);
          } else {
            ++it;
          }
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(50));
        if (stopping() && !forwarded_) return;
      }
    }
    if (pid <= 0) {
      if (errno == EINTR) return;  // a stop signal: the loop decides
      throw std::runtime_error(fmt::format("waitpid: {}", std::strerror(errno)));
    }
    const bool stopped_by_us = leftovers_.erase(pid) > 0 || terminated_.count(pid) > 0;
    auto it = std::find_if(children_.begin(), children_.end(), [&](const Child& c) { return c.pid == pid; });
    if (it == children_.end()) return;
    char buf[256] = {0};
    ssize_t n = read(it->crash_fd, buf, sizeof(buf) - 1);
    close(it->crash_fd);
    std::string plugin = n > 0 ? std::string(buf, static_cast<size_t>(n)) : "";
    const int64_t run_id = it->run_id;
    const int rank = it->rank;
    children_.erase(it);
    bool abnormal =
        WIFSIGNALED(status) || (WIFEXITED(status) && WEXITSTATUS(status) != 0 && WEXITSTATUS(status) != 130);
    std::string why = WIFSIGNALED(status) ? "worker killed by " + signal_text(WTERMSIG(status))
                                          : fmt::format("worker exited with status {}", WEXITSTATUS(status));
    if (!plugin.empty()) why += " in plugin " + plugin;
    RunGroup& g = active_[run_id];
    const bool machine_exit = WIFEXITED(status) && WEXITSTATUS(status) == kMachineFaultExit;
    if (machine_exit) on_machine_fault(fmt::format("run {}: a fault of the machine (see its error)", run_id));
    if (opt_.nproc > 1) why = fmt::format("rank {} of {}: {}", rank, opt_.nproc, why);
    // Rank 0 has ended: its run is recorded, so ranks still alive (a hung peer) are stopped,
    // SIGTERM then SIGKILL after 5 s, rather than left to hold the grid.
    if (rank == 0 && opt_.nproc > 1)
      for (const auto& c : children_)
        if (c.run_id == run_id && !terminated_.count(c.pid)) {
          kill(c.pid, SIGTERM);
          terminated_.insert(c.pid);
          leftovers_[c.pid] = std::chrono::steady_clock::now() + std::chrono::seconds(5);
        }
    if (abnormal && !stopped_by_us && g.first_fault.empty()) {
      g.first_fault = why;
      // Signals sent from outside (an OOM killer, a scheduler's time limit, a user); a crash
      // signal (SIGSEGV, SIGABRT...) in host or plugin code is a failure of the run.
      const int sig = WIFSIGNALED(status) ? WTERMSIG(status) : 0;
      g.fault_is_kill = plugin.empty() && (sig == SIGKILL || sig == SIGTERM || sig == SIGINT || sig == SIGHUP);
    }
    if (std::any_of(children_.begin(), children_.end(), [&](const Child& c) { return c.run_id == run_id; })) return;
    // The run's last process: record an outcome where none was, and name the rank that failed first.
    auto row = store_.run(run_id);
    if (g.first_fault.empty()) g.first_fault = why;
    if (row && row->status == RunStatus::running) {  // died without recording an outcome: a crash or a kill
      // A kill from outside (SIGKILL from an OOM killer or a scheduler, SIGTERM) is a fault of
      // the machine: the run resumes on the next `lmgrid run`. A crash inside a plugin, or an
      // exit without an outcome, is the run's own failure.
      bool machine = g.fault_is_kill || machine_exit;
      try {
        store_.set_status(run_id, machine ? RunStatus::interrupted : RunStatus::failed,
                          machine
                              ? g.first_fault + "; the run resumes from its last checkpoint on the next `lmgrid run`"
                              : g.first_fault);
      } catch (const MachineError& e) {  // the database's disk is full too: the next run takes it over
        on_machine_fault(e.what());
      }
      std::fprintf(stderr, "lmgrid: run %lld %s: %s\n", static_cast<long long>(run_id),
                   machine ? "interrupted" : "failed", g.first_fault.c_str());
    } else if (row && row->status == RunStatus::interrupted && !g.first_fault.empty() && rank_fault_first(g, *row)) {
      // rank 0 saw its peers go (a DistError); say which one went first
      store_.set_status(run_id, RunStatus::interrupted, g.first_fault + " -> " + row->error);
    }
    active_.erase(run_id);
    ended_.insert(run_id);
  }

  // Another `lmgrid run` of the same grid on this host trains runs this one cannot claim: waits
  // (about a second) and returns true while it does, so that this command also returns with the
  // grid complete. A run whose process has died is released (interrupted) and claimed here.
  bool wait_for_other_processes() {
    if (stopping() || !machine_fault_.empty()) return false;
    std::vector<int64_t> open;
    for (int64_t id : ids_)
      if (!ended_.count(id)) open.push_back(id);
    Store::OtherRuns others;
    try {
      others = store_.runs_of_other_processes(open);
    } catch (const MachineError& e) {
      on_machine_fault(e.what());
      return false;
    }
    for (int64_t id : others.released)
      std::fprintf(stderr, "lmgrid: run %lld: the lmgrid process training it has ended; taking it over\n",
                   static_cast<long long>(id));
    if (!others.released.empty()) return true;
    const auto& held = others.held;
    if (held.empty()) return false;
    if (waiting_for_ != held.size()) {
      waiting_for_ = held.size();
      std::fprintf(stderr,
                   "lmgrid: waiting for %zu run%s that another lmgrid process on this host is training (run %lld%s)\n",
                   held.size(), held.size() == 1 ? "" : "s", static_cast<long long>(held.front()),
                   held.size() > 1 ? ", ..." : "");
    }
    for (int i = 0; i < 5 && !stopping(); ++i) std::this_thread::sleep_for(std::chrono::milliseconds(200));
    return true;
  }

  // Disk full, an I/O error: the runs still training finish or stop by themselves, no new one starts.
  void on_machine_fault(const std::string& why) {
    if (!machine_fault_.empty()) return;
    machine_fault_ = why;
    std::fprintf(stderr,
                 "lmgrid: %s; starting no new runs (the ones training go on); run the same command again once it "
                 "is cleared\n",
                 why.c_str());
  }

  struct RunGroup {
    std::string first_fault;     // the first rank that ended abnormally, and how
    bool fault_is_kill = false;  // ended by a signal from outside: a fault of the machine
  };
  static bool rank_fault_first(const RunGroup& g, const RunRow& row) {
    return row.error.rfind("data parallel:", 0) == 0 && g.first_fault.rfind("rank 0 ", 0) != 0;
  }

  Store& store_;
  const std::vector<int64_t>& ids_;
  const SupervisorOptions& opt_;
  std::vector<std::string> env_;
  std::vector<Child> children_;
  std::map<int64_t, RunGroup> active_;  // runs with a process alive
  std::set<int64_t> ended_;             // runs whose processes all ended in this invocation
  std::map<pid_t, std::chrono::steady_clock::time_point> leftovers_;  // ranks told to stop: SIGKILL deadline
  std::set<pid_t> terminated_;                                        // ranks the supervisor stopped itself
  std::optional<dist::StoreServer> server_;                           // data parallel: the rendezvous of every run
  int announced_ = 0;
  bool forwarded_ = false;
  size_t waiting_for_ = 0;     // runs of other processes last reported as waited for
  std::string machine_fault_;  // set: a fault of the machine was seen; nothing more is claimed
};

}  // namespace

void supervise(Store& store, const std::vector<int64_t>& ids, const SupervisorOptions& opt) {
  Supervisor(store, ids, opt).run();
}

int follow_grid(const SupervisorOptions& opt) {
  dist::LaunchEnv le = dist::LaunchEnv::from_environment();
  std::vector<std::string> env = worker_environment(opt.threads, false);
  auto store = dist::connect_store(le);
  for (int seq = 0;; ++seq) {
    const std::string key = fmt::format("grid/{}", seq);
    while (!dist::store_has(*store, key)) {
      if (opt.stop && opt.stop->load()) return 130;
      std::this_thread::sleep_for(std::chrono::milliseconds(200));
    }
    std::string prefix = dist::store_get(*store, key);
    if (prefix.empty()) {
      store->add("grid/ended", 1);
      return 0;
    }
    std::vector<std::string> args{opt.argv0,  "worker",        "--threads", std::to_string(opt.threads),
                                  "--follow", "--dist-prefix", prefix};
    std::vector<char*> argv = c_strings(args), envp = c_strings(env);
    pid_t pid = 0;
    int rc = posix_spawn(&pid, opt.exe.c_str(), nullptr, nullptr, argv.data(), envp.data());
    if (rc != 0) throw std::runtime_error(fmt::format("cannot start a worker: {}", std::strerror(rc)));
    int status = 0;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
  }
}

}  // namespace lmgrid
