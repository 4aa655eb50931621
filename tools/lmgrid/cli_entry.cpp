// liblmgrid_cli: the commands that need LibTorch (train, load plugins, sample, measure), loaded by
// the `lmgrid` front end only when one of them is asked for. Loading LibTorch costs ~0.4 s of CPU
// in static initialisers, which the query commands (runs, metrics, sql, compare, report) never pay.
#include <cstdlib>

#include <torch/torch.h>

#include <lmgrid/sys/cpu.hpp>

#include "commands.hpp"

namespace lmgrid::cli {
int g_argc = 0;
char** g_argv = nullptr;
}  // namespace lmgrid::cli

// Registers the LibTorch commands on the front end's app. Fixes the BLAS core first: this may
// re-exec the process (the front end again, with the same arguments).
extern "C" __attribute__((visibility("default"))) void lmgrid_cli_register(CLI::App* app, int argc, char** argv) {
  lmgrid::ensure_fast_blas(argc, argv);
  lmgrid::cli::g_argc = argc;
  lmgrid::cli::g_argv = argv;
  lmgrid::configure_threads(lmgrid::default_threads());
  using namespace lmgrid::cli;
  add_run(*app);
  add_slurm(*app);
  add_worker(*app);
  add_grid(*app);
  add_plugins(*app);
  add_sample(*app);
  add_env(*app);
  add_data(*app);
  add_tokenize(*app);
  add_export(*app);
}
