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
std::vector<std::string> worker_environment(int threads) {
  std::vector<std::string> env;
  for (char** e = environ; *e; ++e)
    if (std::strncmp(*e, "OPENBLAS_NUM_THREADS=", 21) != 0) env.emplace_back(*e);
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
      : store_(store), ids_(ids), opt_(opt), env_(worker_environment(opt.threads)), envp_(c_strings(env_)) {}

  void run() {
    while (true) {
      while (!stopping() && static_cast<int>(children_.size()) < opt_.workers) {
        auto claimed = store_.claim_next(ids_, getpid());
        if (!claimed) break;
        spawn(claimed->id);
      }
      if (children_.empty()) break;
      if (stopping()) forward_stop();
      reap();
    }
  }

 private:
  struct Child {
    pid_t pid;
    int64_t run_id;
    int crash_fd;  // read end of the pipe on which the worker's crash handler names the plugin
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

  void spawn(int64_t run_id) {
    std::vector<std::string> args{opt_.argv0,     "worker",
                                  "--db",         store_.path().string(),
                                  "--run-id",     std::to_string(run_id),
                                  "--peak-flops", fmt::format("{}", opt_.peak_flops),
                                  "--threads",    std::to_string(opt_.threads)};
    if (opt_.progress_bar) args.push_back("--progress-bar");
    std::vector<char*> argv = c_strings(args);
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
    int rc = posix_spawn(&pid, opt_.exe.c_str(), &actions, nullptr, argv.data(), envp_.data());
    posix_spawn_file_actions_destroy(&actions);
    close(fds[1]);
    if (rc != 0) {
      close(fds[0]);
      store_.set_status(run_id, RunStatus::pending);
      throw std::runtime_error(fmt::format("cannot start a worker ({}): {}", opt_.exe.string(), std::strerror(rc)));
    }
    children_.push_back({pid, run_id, fds[0]});
  }

  // Waits for one worker to end; records a failure when it died without an outcome.
  void reap() {
    int status = 0;
    pid_t pid = waitpid(-1, &status, 0);
    if (pid <= 0) {
      if (errno == EINTR) return;  // a stop signal: the loop decides
      throw std::runtime_error(fmt::format("waitpid: {}", std::strerror(errno)));
    }
    auto it = std::find_if(children_.begin(), children_.end(), [&](const Child& c) { return c.pid == pid; });
    if (it == children_.end()) return;
    char buf[256] = {0};
    ssize_t n = read(it->crash_fd, buf, sizeof(buf) - 1);
    close(it->crash_fd);
    std::string plugin = n > 0 ? std::string(buf, static_cast<size_t>(n)) : "";
    auto row = store_.run(it->run_id);
    if (row && row->status == RunStatus::running) {  // died without recording an outcome: a crash or a kill
      std::string why = WIFSIGNALED(status) ? "worker killed by " + signal_text(WTERMSIG(status))
                                            : fmt::format("worker exited with status {}", WEXITSTATUS(status));
      if (!plugin.empty()) why += " in plugin " + plugin;
      store_.set_status(it->run_id, RunStatus::failed, why);
      std::fprintf(stderr, "lmgrid: run %lld failed: %s\n", static_cast<long long>(it->run_id), why.c_str());
    }
    children_.erase(it);
  }

  Store& store_;
  const std::vector<int64_t>& ids_;
  const SupervisorOptions& opt_;
  std::vector<std::string> env_;
  std::vector<char*> envp_;
  std::vector<Child> children_;
  bool forwarded_ = false;
};

}  // namespace

void supervise(Store& store, const std::vector<int64_t>& ids, const SupervisorOptions& opt) {
  Supervisor(store, ids, opt).run();
}

}  // namespace lmgrid
