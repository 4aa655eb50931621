// lmgrid worker (internal): trains one run claimed by `lmgrid run`. On a crash signal it writes
// the id of the plugin being called to fd 3 (the parent's crash channel) and dies with the
// signal; on SIGINT/SIGTERM it checkpoints and marks the run interrupted.
//
// Data parallel (WORLD_SIZE > 1 in the environment, torchrun's variables): rank 0 is started
// with --run-id and records the run; ranks > 0 with --follow get the run from rank 0's store.
// Both name the run's key prefix in the store (--dist-prefix). A lost peer ends rank 0's run
// `interrupted` (a fault of the machine, not of the run): the next `lmgrid run` resumes it.
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <cstring>
#include <new>
#include <optional>
#include <stdexcept>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <lmgrid/dist/process_group.hpp>
#include <lmgrid/plugin/boundary.hpp>
#include <lmgrid/base/errors.hpp>
#include <lmgrid/base/machine_error.hpp>
#include <lmgrid/sys/cpu.hpp>
#include <lmgrid/sys/gpu.hpp>
#include <lmgrid/sys/memory.hpp>
#include <lmgrid/plugin/registry.hpp>
#include <lmgrid/run/supervisor.hpp>
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
  bool follow = false;      // a data-parallel rank > 0
  std::string dist_prefix;  // the run's keys in rank 0's store
};

int follow(const WorkerOptions& opt, const dist::LaunchEnv& denv);

// A fault of the machine stopped the run: it ends `interrupted`, and the exit status tells the
// supervisor to start no new run. Recording it may fail on the same full disk or locked database;
// the supervisor then records it.
int machine_fault(Store& store, int64_t run_id, const std::string& what) {
  try {
    store.set_status(run_id, RunStatus::interrupted, what);
  } catch (const std::exception&) {
  }
  std::fprintf(stderr, "lmgrid: run %lld interrupted: %s\n", static_cast<long long>(run_id), what.c_str());
  return kMachineFaultExit;
}

bool is_out_of_memory(const std::exception& e) {
  if (dynamic_cast<const std::bad_alloc*>(&e) || dynamic_cast<const std::length_error*>(&e)) return true;
  const std::string what = e.what();
  return what.find("can't allocate memory") != std::string::npos ||
         what.find("CUDA out of memory") != std::string::npos;
}

int work(const WorkerOptions& opt) {
  tune_allocator();  // before the run allocates: keep freed activations for the next step
  for (int sig : {SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGABRT}) signal(sig, on_crash);
  struct sigaction sa {};
  sa.sa_handler = on_stop;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGINT, &sa, nullptr);
  sigaction(SIGTERM, &sa, nullptr);
  // The supervisor started this worker with OPENBLAS_NUM_THREADS (OpenBLAS reads it when it
  // loads) and --threads; configure_threads sizes LibTorch's pool (and leaves OpenBLAS's).
  if (opt.threads > 0) configure_threads(opt.threads);

  dist::LaunchEnv denv = dist::LaunchEnv::from_environment();
  if (opt.follow) return follow(opt, denv);
  Store store(opt.db);
  TrainHooks hooks;
  hooks.stop = &g_stop;
  hooks.progress_bar = opt.progress_bar;
  hooks.peak_flops = opt.peak_flops;
  hooks.gpu_peak_flops = [](const torch::Device& d, c10::ScalarType dtype) { return gpu_peak_flops(d.index(), dtype); };
  hooks.label = fmt::format("run {}", opt.run_id);
  try {
    std::optional<dist::Group> group;
    if (denv.distributed()) {
      group.emplace(denv, dist::connect_store(denv), opt.dist_prefix);
      auto row = store.run(opt.run_id);
      if (!row) throw std::runtime_error(fmt::format("run {} not found", opt.run_id));
      group->set("run", nlohmann::json{{"id", row->id}, {"hash", row->config_hash}, {"config", row->config}}.dump());
      hooks.group = &*group;
      hooks.label = fmt::format("run {} ({} ranks)", opt.run_id, denv.world);
    }
    RunOutcome out = train_run(store, opt.run_id, Registry::instance(), hooks);
    return out == RunOutcome::interrupted ? 130 : 0;
  } catch (const MachineError& e) {
    // The disk filled, an I/O error: the run resumes once it clears.
    return machine_fault(store, opt.run_id,
                         std::string(e.what()) + " (a fault of the machine: the run resumes on the next `lmgrid run`)");
  } catch (const MissingInputError& e) {
    // An input file the grid was validated with is gone (deleted, unmounted): every later run
    // would fail the same way, so the grid starts no new run; the run resumes once it is back.
    return machine_fault(store, opt.run_id,
                         std::string(e.what()) +
                             " (it was there when the grid started: the run resumes on the next `lmgrid run` once it "
                             "is back)");
  } catch (const dist::DistError& e) {
    std::string what = std::string(e.what()) + "; the run resumes from its last checkpoint on the next `lmgrid run`";
    store.set_status(opt.run_id, RunStatus::interrupted, what);
    std::fprintf(stderr, "lmgrid: run %lld interrupted: %s\n", static_cast<long long>(opt.run_id), what.c_str());
    return 1;
  } catch (const std::exception& e) {
    std::string what = e.what();
    // Out of memory is a fault of the machine (other processes may hold the memory): the run is
    // interrupted and resumes on the next `lmgrid run`; the grid goes on with its other runs.
    // Allocation failures say little by themselves ("std::bad_alloc", "vector::_M_default_append";
    // LibTorch's "DefaultCPUAllocator: can't allocate memory", "CUDA out of memory").
    const bool oom = is_out_of_memory(e);
    if (oom)
      what = "out of memory (" + what.substr(0, 300) +
             "); the run resumes on the next `lmgrid run`: free memory, or try a smaller batch or model";
    try {
      store.set_status(opt.run_id, oom ? RunStatus::interrupted : RunStatus::failed, what);
    } catch (const MachineError& me) {
      // The outcome cannot be recorded (the database's disk is full, or it is locked): the
      // supervisor records the run as interrupted, and the next `lmgrid run` takes it over.
      std::fprintf(stderr, "lmgrid: run %lld: %s; recording its outcome failed: %s\n",
                   static_cast<long long>(opt.run_id), what.c_str(), me.what());
      return kMachineFaultExit;
    }
    std::fprintf(stderr, "lmgrid: run %lld %s: %s\n", static_cast<long long>(opt.run_id),
                 oom ? "interrupted" : "failed", what.c_str());
    return 1;
  }
}

// A rank > 0: joins the run's group, takes the run rank 0 published, trains in lockstep.
int follow(const WorkerOptions& opt, const dist::LaunchEnv& denv) {
  if (!denv.distributed() || denv.rank == 0)
    throw UserError("lmgrid worker --follow: needs WORLD_SIZE > 1 and RANK > 0 in the environment");
  TrainHooks hooks;
  hooks.stop = &g_stop;
  try {
    dist::Group group(denv, dist::connect_store(denv), opt.dist_prefix);
    auto j = nlohmann::json::parse(group.get("run"));
    RunRow row;
    row.id = j.at("id").get<int64_t>();
    row.config_hash = j.at("hash").get<std::string>();
    row.config = j.at("config").get<std::string>();
    hooks.group = &group;
    hooks.label = fmt::format("run {} rank {}", row.id, denv.rank);
    RunOutcome out = train_follower(row, Registry::instance(), hooks);
    return out == RunOutcome::interrupted ? 130 : 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "lmgrid: rank %d of %d (%s): %s\n", denv.rank, denv.world, opt.dist_prefix.c_str(), e.what());
    return 1;
  }
}

}  // namespace

void add_worker(CLI::App& app) {
  auto opt = std::make_shared<WorkerOptions>();
  auto* cmd = app.add_subcommand("worker", "")->group("");  // internal: hidden from --help
  cmd->add_option("--db", opt->db);
  cmd->add_option("--run-id", opt->run_id);
  cmd->add_flag("--follow", opt->follow);
  cmd->add_option("--dist-prefix", opt->dist_prefix);
  cmd->add_option("--peak-flops", opt->peak_flops);
  cmd->add_option("--threads", opt->threads);
  cmd->add_flag("--progress-bar", opt->progress_bar);
  cmd->callback([opt] {
    int rc = work(*opt);
    if (rc != 0) throw Exit{rc};
  });
}

}  // namespace lmgrid::cli
