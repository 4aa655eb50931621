// lmgrid data list | data fetch NAME: named data sources, where they resolve, fetch to cache.
#include <fmt/format.h>

#include <lmgrid/data/data_source.hpp>
#include <lmgrid/base/errors.hpp>
#include <lmgrid/base/util.hpp>
#include <lmgrid/report/table.hpp>
#include <lmgrid/base/env.hpp>

#include "commands.hpp"

namespace lmgrid::cli {

void add_data(CLI::App& app) {
  struct Opt {
    std::string format = "table", name;
  };
  auto opt = std::make_shared<Opt>();
  auto* cmd = app.add_subcommand("data", "Named data sources: list them or fetch one");
  cmd->require_subcommand(1);
  auto* list = cmd->add_subcommand("list", "Known sources and where each resolves");
  list->add_option("--format", opt->format, "table, csv or json");
  list->callback([opt] {
    std::vector<std::vector<std::string>> rows;
    for (const auto& s : known_sources()) {
      std::string where;
      try {
        std::string saved = env_or("LMGRID_OFFLINE", "");
        setenv("LMGRID_OFFLINE", "1", 1);
        where = resolve_source(s.name).string();
        if (saved.empty())
          unsetenv("LMGRID_OFFLINE");
        else
          setenv("LMGRID_OFFLINE", saved.c_str(), 1);
      } catch (const UserError&) {
        where = "(missing)";
      }
      rows.push_back({s.name, std::to_string(s.size), s.doc, where});
    }
    std::fputs(render_rows({"name", "bytes", "what", "resolves_to"}, rows, parse_format(opt->format)).c_str(), stdout);
  });
  auto* fetch = cmd->add_subcommand("fetch", "Resolve a source, downloading it into the cache if needed");
  fetch->add_option("name", opt->name, "source name")->required();
  fetch->callback([opt] {
    auto p = resolve_source(opt->name);
    auto src = find_source(opt->name);
    std::string sha = sha256_file(p);
    if (src && !src->sha256.empty() && sha != src->sha256)
      throw UserError(fmt::format("{} has sha256 {}, expected {}", p.string(), sha, src->sha256));
    std::printf("%s\t%s\n", p.c_str(), sha.c_str());
  });
}

}  // namespace lmgrid::cli
