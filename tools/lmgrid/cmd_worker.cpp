// lmgrid worker (internal): trains one run claimed by `lmgrid run`. On a crash signal it writes
// the id of the plugin being called to fd 3 (the parent's crash channel) and dies with the
// signal; on SIGINT/SIGTERM it checkpoints and marks the run interrupted.
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <cstring>
#include <new>
#include <stdexcept>

#include <fmt/format.h>

#include <lmgrid/plugin/boundary.hpp>
#include <lmgrid/base/errors.hpp>
#include <lmgrid/sys/cpu.hpp>
#include <lmgrid/sys/gpu.hpp>
#include <lmgrid/plugin/registry.hpp>
#include <lmgrid/store/store.hpp>
#include <lmgrid/train/trainer.hpp>

#include "commands.hpp"

namespace lmgrid::cli {

namespace {

std::atomic<bool> g_stop{false};

void on_stop(int) { g_stop = true; }

void on_crash(int sig) {
  const char* plugin = current_plugin();
  size_t n = std::strlen(plugin);
  if (n > 0) (void)!write(3, plugin, n);
  const char* msg = "lmgrid worker: fatal signal in plugin ";
  (void)!write(STDERR_FILENO, msg, std::strlen(msg));
  (void)!write(STDERR_FILENO, n ? plugin : "(none: host code)", n ? n : 17);
  (void)!write(STDERR_FILENO, "\n", 1);
  signal(sig, SIG_DFL);
  raise(sig);
}

struct WorkerOptions {
  std::string db;
  int64_t run_id = 0;
  double peak_flops = 0;
  int threads = 0;
  bool progress_bar = false;
};

int work(const WorkerOptions& opt) {
  for (int sig : {SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGABRT}) signal(sig, on_crash);
  struct sigaction sa {};
  sa.sa_handler = on_stop;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGINT, &sa, nullptr);
  sigaction(SIGTERM, &sa, nullptr);
  // The supervisor started this worker with OPENBLAS_NUM_THREADS (OpenBLAS reads it when it
  // loads) and --threads; configure_threads sizes LibTorch's pool (and leaves OpenBLAS's).
  if (opt.threads > 0) configure_threads(opt.threads);

  Store store(opt.db);
  TrainHooks hooks;
  hooks.stop = &g_stop;
  hooks.progress_bar = opt.progress_bar;
  hooks.peak_flops = opt.peak_flops;
  hooks.gpu_peak_flops = [](const torch::Device& d, c10::ScalarType dtype) { return gpu_peak_flops(d.index(), dtype); };
  hooks.label = fmt::format("run {}", opt.run_id);
  try {
    RunOutcome out = train_run(store, opt.run_id, Registry::instance(), hooks);
    return out == RunOutcome::interrupted ? 130 : 0;
  } catch (const std::exception& e) {
    std::string what = e.what();
    // Allocation failures say little by themselves ("std::bad_alloc", "vector::_M_default_append").
    if (dynamic_cast<const std::bad_alloc*>(&e) || dynamic_cast<const std::length_error*>(&e))
      what = "out of memory (" + what + "): the run asks for more than this machine has; try a smaller batch or model";
    store.set_status(opt.run_id, RunStatus::failed, what);
    std::fprintf(stderr, "lmgrid: run %lld failed: %s\n", static_cast<long long>(opt.run_id), what.c_str());
    return 1;
  }
}

}  // namespace

void add_worker(CLI::App& app) {
  auto opt = std::make_shared<WorkerOptions>();
  auto* cmd = app.add_subcommand("worker", "")->group("");  // internal: hidden from --help
  cmd->add_option("--db", opt->db)->required();
  cmd->add_option("--run-id", opt->run_id)->required();
  cmd->add_option("--peak-flops", opt->peak_flops);
  cmd->add_option("--threads", opt->threads);
  cmd->add_flag("--progress-bar", opt->progress_bar);
  cmd->callback([opt] {
    int rc = work(*opt);
    if (rc != 0) throw Exit{rc};
  });
}

}  // namespace lmgrid::cli
