// lmgrid: the front end. Query commands (runs, metrics, sql, compare, report, new-plugin, merge) run
// here without LibTorch; every other command comes from liblmgrid_cli (cli_entry.cpp), loaded
// on demand, so `lmgrid runs` starts in milliseconds instead of ~0.5 s.
// Exit status: 0 success, 2 bad input, 1 runtime failure.
#include <dlfcn.h>

#include <cstdio>
#include <filesystem>
#include <set>
#include <string>

#include <lmgrid/base/errors.hpp>
#include <lmgrid/base/util.hpp>

#include "commands.hpp"

namespace {

using RegisterFn = void (*)(CLI::App*, int, char**);

// The library beside the executable: build/bin -> build/lib, <prefix>/bin -> <prefix>/<libdir>.
// By absolute path, not through RUNPATH: under AddressSanitizer dlopen is intercepted and the
// RUNPATH searched would be the sanitizer runtime's. The bare name is the fallback.
std::string cli_library() {
  if (std::filesystem::path prefix = lmgrid::executable_prefix(); !prefix.empty())
    for (const char* libdir : {"lib", LMGRID_INSTALL_LIBDIR}) {
      auto file = prefix / libdir / "liblmgrid_cli.so";
      if (std::filesystem::exists(file)) return file.string();
    }
  return "liblmgrid_cli.so";
}

RegisterFn load_torch_commands() {
  void* lib = dlopen(cli_library().c_str(), RTLD_NOW | RTLD_LOCAL);
  if (!lib) {
    std::fprintf(stderr, "lmgrid: runtime error: cannot load the training commands (liblmgrid_cli.so): %s\n",
                 dlerror());
    std::exit(1);
  }
  auto fn = reinterpret_cast<RegisterFn>(dlsym(lib, "lmgrid_cli_register"));
  if (!fn) {
    std::fprintf(stderr, "lmgrid: runtime error: liblmgrid_cli.so has no lmgrid_cli_register: %s\n", dlerror());
    std::exit(1);
  }
  return fn;  // never unloaded
}

}  // namespace

int main(int argc, char** argv) {
  static const std::set<std::string> kLight{"runs", "metrics", "sql", "compare", "report", "new-plugin", "merge"};
  CLI::App app{"lmgrid: experiments on small language models with large memory", "lmgrid"};
  app.require_subcommand(1);
  app.set_version_flag("--version", "lmgrid 0.1.0");
  using namespace lmgrid::cli;
  // Anything else, --help included, needs the full command set.
  if (!(argc > 1 && kLight.count(argv[1]))) load_torch_commands()(&app, argc, argv);
  add_runs(app);
  add_metrics(app);
  add_sql(app);
  add_compare(app);
  add_report(app);
  add_new_plugin(app);
  add_merge(app);
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
