// lmgrid plugins [--kind K] | plugins show NAME: what is installed and what it accepts.
// lmgrid plugins check NAME [--set KEY=VALUE]...: the conformance check of an arch plugin
// (lmgrid/check/conformance.hpp), one row per check; exit 1 if any fails.
#include <cmath>

#include <fmt/format.h>

#include <lmgrid/base/errors.hpp>
#include <lmgrid/check/conformance.hpp>
#include <lmgrid/config/run_config.hpp>
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

static std::string fmt_error(double e) { return std::isnan(e) ? "-" : fmt::format("{:.3g}", e); }

// plugins check NAME: the plugin's tiny config, then the --set overrides, validated like a
// [model] table; every check's row; Exit{1} when one fails.
static void add_plugins_check(CLI::App& plugins) {
  struct Opt {
    std::string name, format = "table";
    std::vector<std::string> sets;
    ConformanceOptions conf;
  };
  auto opt = std::make_shared<Opt>();
  auto* check =
      plugins.add_subcommand("check", "Conformance check of an arch plugin (causal, decoding, checkpoints...)");
  check->add_option("name", opt->name, "arch plugin name")->required();
  check->add_option("--set", opt->sets, "KEY=VALUE over the plugin's tiny config (repeatable)");
  check->add_option("--seq-len", opt->conf.seq_len, "tokens per test sequence (default 16)");
  check->add_option("--vocab", opt->conf.vocab_size, "tokenizer vocabulary the models are built for (default 40)");
  check->add_option("--format", opt->format, "table, csv or json");
  check->callback([opt] {
    Format format = parse_format(opt->format);
    std::string name = opt->name.rfind("arch/", 0) == 0 ? opt->name.substr(5) : opt->name;
    const auto& lp = Registry::instance().get(PluginKind::arch, name);
    const auto& plugin = static_cast<const ArchPlugin&>(*lp.plugin);
    auto values = plugin.tiny_config();
    for (const auto& kv : opt->sets) {
      auto eq = kv.find('=');
      if (eq == std::string::npos || eq == 0) throw UserError("--set wants KEY=VALUE (got '" + kv + "')");
      std::string key = kv.substr(0, eq);
      if (key.rfind("model.", 0) == 0) key = key.substr(6);
      values[key] = parse_scalar(kv.substr(eq + 1));
    }
    if (opt->conf.seq_len < 2 || opt->conf.vocab_size < 2) throw UserError("--seq-len and --vocab must be >= 2");
    Params params = validate_params(plugin.params(), values, "plugins check " + name);
    plugin.check(params);
    auto results = check_arch(plugin, params, opt->conf);
    if (format == Format::table) std::printf("%s (%s)\n", lp.id().c_str(), lp.file.c_str());
    std::vector<std::vector<std::string>> rows;
    for (const auto& r : results)
      rows.push_back({r.name, check_status_name(r.status), fmt_error(r.error), fmt_error(r.tolerance), r.detail});
    std::fputs(render_rows({"check", "result", "error", "tolerance", "detail"}, rows, format).c_str(), stdout);
    if (!all_passed(results)) throw Exit{1};
  });
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
  add_plugins_check(*cmd);
  cmd->callback([opt, cmd] {
    if (cmd->got_subcommand("show") || cmd->got_subcommand("check")) return;
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
