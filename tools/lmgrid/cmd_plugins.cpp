// lmgrid plugins [--kind K] | plugins show NAME: what is installed and what it accepts.
#include <fmt/format.h>

#include <lmgrid/base/errors.hpp>
#include <lmgrid/plugin/registry.hpp>
#include <lmgrid/base/util.hpp>
#include <lmgrid/report/table.hpp>

#include "commands.hpp"

namespace lmgrid::cli {

static std::optional<PluginKind> parse_kind(const std::string& k) {
  if (k.empty()) return std::nullopt;
  for (PluginKind pk : {PluginKind::arch, PluginKind::data, PluginKind::tokenizer, PluginKind::optim})
    if (k == kind_name(pk)) return pk;
  throw UserError("--kind must be arch, data, tokenizer or optim (got '" + k + "')");
}

void add_plugins(CLI::App& app) {
  struct Opt {
    std::string kind, format = "table", name;
  };
  auto opt = std::make_shared<Opt>();
  auto* cmd = app.add_subcommand("plugins", "List plugins, or show one plugin's parameters");
  cmd->add_option("--kind", opt->kind, "arch, data, tokenizer or optim");
  cmd->add_option("--format", opt->format, "table, csv or json");
  auto* show = cmd->add_subcommand("show", "Parameters of one plugin (types, defaults, ranges, docs)");
  show->add_option("name", opt->name, "plugin name (or kind/name)")->required();
  show->add_option("--format", opt->format, "table, csv or json");
  show->callback([opt] {
    const auto& lp = Registry::instance().get_any(opt->name);
    Format format = parse_format(opt->format);
    if (format == Format::table)
      std::printf("%s %s (%s)\n  %s\n  file: %s\n\n", lp.id().c_str(), lp.plugin->version().c_str(),
                  kind_name(lp.plugin->kind()), lp.plugin->summary().c_str(), lp.file.c_str());
    std::vector<std::vector<std::string>> rows;
    for (const auto& p : lp.plugin->params()) {
      std::string range;
      if (p.min || p.max)
        range = fmt::format("[{}, {}]", p.min ? to_string(Value(*p.min)) : "-inf",
                            p.max ? to_string(Value(*p.max)) : "inf");
      for (const auto& c : p.choices) range += (range.empty() ? "" : "|") + c;
      rows.push_back({p.name, type_name(p.type), to_string(p.default_value), range, p.doc});
    }
    std::fputs(render_rows({"name", "type", "default", "range", "doc"}, rows, format).c_str(), stdout);
  });
  cmd->callback([opt, cmd] {
    if (cmd->got_subcommand("show")) return;
    const Registry& reg = Registry::instance();
    Format format = parse_format(opt->format);
    std::vector<std::vector<std::string>> rows;
    for (const auto* lp : reg.list(parse_kind(opt->kind)))
      rows.push_back({kind_name(lp->plugin->kind()), lp->plugin->name(), lp->plugin->version(), lp->plugin->summary(),
                      lp->file.parent_path().string()});
    std::fputs(render_rows({"kind", "name", "version", "summary", "folder"}, rows, format).c_str(), stdout);
    for (const auto& e : reg.load_errors()) std::fprintf(stderr, "lmgrid: warning: %s\n", e.c_str());
  });
}

}  // namespace lmgrid::cli
