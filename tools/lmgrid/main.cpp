// lmgrid: entry point. Fixes the BLAS core first (may re-exec), then dispatches subcommands.
// Exit status: 0 success, 2 bad input, 1 runtime failure.
#include <cstdio>

#include <fmt/format.h>
#include <torch/torch.h>

#include <lmgrid/cpu.hpp>
#include <lmgrid/errors.hpp>

#include "commands.hpp"

namespace lmgrid::cli {
int g_argc = 0;
char** g_argv = nullptr;
}  // namespace lmgrid::cli

int main(int argc, char** argv) {
  lmgrid::ensure_fast_blas(argc, argv);
  lmgrid::cli::g_argc = argc;
  lmgrid::cli::g_argv = argv;
  torch::set_num_threads(lmgrid::default_threads());

  CLI::App app{"lmgrid: experiments on small language models with large memory", "lmgrid"};
  app.require_subcommand(1);
  app.set_version_flag("--version", "lmgrid 0.1.0");
  using namespace lmgrid::cli;
  add_run(app);
  add_worker(app);
  add_grid(app);
  add_plugins(app);
  add_runs(app);
  add_metrics(app);
  add_sql(app);
  add_sample(app);
  add_env(app);
  add_new_plugin(app);
  add_data(app);
  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForAllHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForVersion& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    app.exit(e);
    return 2;
  } catch (const Exit& e) {
    return e.code;
  } catch (const lmgrid::UserError& e) {
    std::fprintf(stderr, "lmgrid: error: %s\n", e.what());
    return 2;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "lmgrid: runtime error: %s\n", e.what());
    return 1;
  }
  return 0;
}
