// Experiment TOML -> validated, canonical run configs (grammar in experiment.hpp).
#include "lmgrid/grid/experiment.hpp"

#include <algorithm>
#include <set>

#include <fmt/format.h>
#include <nlohmann/json.hpp>
#include <toml++/toml.h>

#include "lmgrid/base/errors.hpp"
#include "lmgrid/plugin/registry.hpp"
#include "lmgrid/config/train_settings.hpp"
#include "lmgrid/base/util.hpp"

namespace lmgrid {

using json = nlohmann::json;

PluginKind section_kind(const std::string& section) {
  if (section == "data") return PluginKind::data;
  if (section == "tokenizer") return PluginKind::tokenizer;
  if (section == "model") return PluginKind::arch;
  if (section == "optim") return PluginKind::optim;
  throw std::invalid_argument("not a plugin section: " + section);
}

namespace {

const std::set<std::string> kTopLevel{"experiment", "data", "tokenizer", "model",   "optim",
                                      "train",      "grid", "zip",       "variant", "report"};
constexpr double kMaxBatchTokens = 268435456.0;  // 2^28
const std::set<std::string> kSections{"data", "tokenizer", "model", "optim", "train"};

// The name becomes a folder (results/<name>/), a database key and a line of `grid --dump`'s
// comment: control characters (a carriage return, a tab) are refused. Found by
// tests/fuzz/fuzz_experiment: a name with "\r" made the dump's comment unparsable.
void check_experiment_name(const std::string& name, const std::string& where) {
  for (unsigned char c : name)
    if (c < 0x20 || c == 0x7F)
      throw UserError(fmt::format("{}: the experiment name must not hold control characters (found U+{:04X})", where,
                                  static_cast<unsigned>(c)));
}

std::string where_of(const std::string& file, const toml::node& n) {
  const auto& src = n.source();
  if (!src.begin) return file;
  return fmt::format("{}:{}:{}", file, src.begin.line, src.begin.column);
}

Value scalar_of(const toml::node& n, const std::string& file, const std::string& key) {
  if (auto x = n.value_exact<int64_t>()) return *x;
  if (auto x = n.value_exact<double>()) return *x;
  if (auto x = n.value_exact<bool>()) return *x;
  if (auto x = n.value_exact<std::string>()) return *x;
  throw UserError(
      fmt::format("{}: '{}' must be a number, boolean or string (lists belong in [grid])", where_of(file, n), key));
}

// A value as the user wrote it: strings in quotes ("two"), the rest as is.
std::string quoted(const Value& v) {
  return std::holds_alternative<std::string>(v) ? "\"" + std::get<std::string>(v) + "\"" : to_string(v);
}

using Assign = std::map<std::string, RawValue>;  // dotted key -> value

void check_dotted_key(const std::string& key, const std::string& where) {
  auto parts = split(key, '.');
  if (parts.size() < 2 || !kSections.count(parts[0])) {
    std::string hint = parts.empty() ? "" : nearest(parts[0], {kSections.begin(), kSections.end()});
    throw UserError(fmt::format(
        "{}: key '{}' must be <section>.<key> with section one of data, tokenizer, model, "
        "optim, train{}",
        where, key, hint.empty() ? "" : "; did you mean '" + hint + "." + (parts.size() > 1 ? parts[1] : "") + "'?"));
  }
  if (parts[0] == "train" && parts.size() != 2)
    throw UserError(fmt::format("{}: [train] has no sub-tables ('{}')", where, key));
  if (parts.size() > 3) throw UserError(fmt::format("{}: key '{}' is nested too deeply", where, key));
}

// Flattens a section table (or an inline table inside a variant) into dotted keys.
void flatten_section(const std::string& section, const toml::table& t, const std::string& file, Assign& out) {
  for (const auto& [k, node] : t) {
    std::string key = section + "." + std::string(k.str());
    if (const auto* sub = node.as_table()) {
      if (section == "train")
        throw UserError(fmt::format("{}: [train] has no sub-tables ('{}')", where_of(file, node), key));
      for (const auto& [k2, node2] : *sub) {
        std::string key2 = key + "." + std::string(k2.str());
        if (node2.is_table())
          throw UserError(fmt::format("{}: '{}' is nested too deeply", where_of(file, node2), key2));
        out[key2] = RawValue{scalar_of(node2, file, key2), where_of(file, node2)};
      }
    } else {
      out[key] = RawValue{scalar_of(node, file, key), where_of(file, node)};
    }
  }
}

// Flattens a [[variant]] entry: dotted keys as strings or nested tables.
void flatten_variant(const toml::table& t, const std::string& file, Assign& out, std::string& label) {
  for (const auto& [k, node] : t) {
    std::string key(k.str());
    if (key == "name") {
      if (!node.is_string()) throw UserError(where_of(file, node) + ": variant name must be a string");
      label = *node.value<std::string>();
      continue;
    }
    if (const auto* sub = node.as_table()) {
      if (!kSections.count(key))
        throw UserError(fmt::format("{}: unknown section '{}' in [[variant]]", where_of(file, node), key));
      flatten_section(key, *sub, file, out);
    } else {
      check_dotted_key(key, where_of(file, node));
      out[key] = RawValue{scalar_of(node, file, key), where_of(file, node)};
    }
  }
}

struct Axis {  // one group of alternatives; a run takes exactly one point from every axis
  std::vector<Assign> points;
  std::vector<std::string> labels;  // variant names (variants axis only)
};

std::vector<RawValue> list_values(const toml::node& node, const std::string& file, const std::string& key) {
  std::vector<RawValue> out;
  if (const auto* arr = node.as_array()) {
    if (arr->empty()) throw UserError(fmt::format("{}: '{}' has an empty list", where_of(file, node), key));
    for (const auto& el : *arr) out.push_back({scalar_of(el, file, key), where_of(file, el)});
  } else {
    out.push_back({scalar_of(node, file, key), where_of(file, node)});
  }
  return out;
}

// [report]: parsed here, its keys checked against the expanded runs once they exist.
ReportSpec parse_report(const toml::table& t, const std::string& file, std::map<std::string, std::string>& key_where) {
  ReportSpec spec;
  auto str = [&](const toml::node& n, const std::string& key) {
    if (!n.is_string()) throw UserError(fmt::format("{}: [report] {} must be a string", where_of(file, n), key));
    return *n.value<std::string>();
  };
  for (const auto& [k, node] : t) {
    std::string key(k.str());
    if (key == "group_by") {
      if (const auto* arr = node.as_array()) {
        for (const auto& el : *arr) {
          spec.group_by.push_back(str(el, key));
          key_where[spec.group_by.back()] = where_of(file, el);
        }
      } else {
        spec.group_by.push_back(str(node, key));
        key_where[spec.group_by.back()] = where_of(file, node);
      }
    } else if (key == "best_over") {
      spec.best_over = str(node, key);
      key_where[spec.best_over] = where_of(file, node);
    } else if (key == "x") {
      spec.x = str(node, key);
      if (spec.x != "step" && spec.x != "tokens" && spec.x != "time")
        throw UserError(fmt::format("{}: [report] x = \"{}\": expected \"step\", \"tokens\" or \"time\"",
                                    where_of(file, node), spec.x));
    } else if (key == "target_loss") {
      auto v = node.value<double>();  // integers convert too
      if (!v || !node.is_number() || !(*v > 0))
        throw UserError(fmt::format("{}: [report] target_loss must be a positive number", where_of(file, node)));
      spec.target_loss = *v;
    } else if (key == "out") {
      spec.out = str(node, key);
      if (spec.out.empty()) throw UserError(fmt::format("{}: [report] out must not be empty", where_of(file, node)));
    } else if (key == "metric") {
      spec.metric = str(node, key);
      if (spec.metric != "auto" && spec.metric != "loss" && spec.metric != "accuracy")
        throw UserError(fmt::format("{}: [report] metric = \"{}\": expected \"auto\", \"loss\" or \"accuracy\"",
                                    where_of(file, node), spec.metric));
    } else if (key == "accuracy_x") {
      spec.accuracy_x = str(node, key);
      key_where[spec.accuracy_x] = where_of(file, node);
    } else if (key == "accuracy_slice") {
      spec.accuracy_slice = str(node, key);  // a slice of the val answers: checked when the report is built
      if (spec.accuracy_slice.empty())
        throw UserError(fmt::format("{}: [report] accuracy_slice must not be empty", where_of(file, node)));
    } else {
      std::string hint =
          nearest(key, {"group_by", "best_over", "x", "target_loss", "out", "metric", "accuracy_x", "accuracy_slice"});
      throw UserError(fmt::format("{}: unknown key '{}' in [report]{}", where_of(file, node), key,
                                  hint.empty() ? "" : "; did you mean '" + hint + "'?"));
    }
  }
  if (!spec.accuracy_slice.empty() && spec.accuracy_x.empty())
    throw UserError(
        fmt::format("{}: [report] accuracy_slice needs accuracy_x (the config key on the x axis)", where_of(file, t)));
  return spec;
}

// ---------------------------------------------------------------- parse -> expand -> resolve

// The experiment file parsed, before expansion: what every run shares and what varies.
struct GridSpec {
  std::string file;
  toml::table root;
  Experiment exp;
  std::vector<int64_t> seeds{1};
  std::map<std::string, std::string> report_keys;  // key named in [report] -> where
  Assign base;                                     // the plugin and [train] tables
  std::vector<Axis> axes;                          // [[variant]], [grid] keys, [[zip]]s: one point of each per run
  Assign sets;                                     // --set overrides (highest precedence)
  // (plugin, validated params) already passed Plugin::check: runs that share a section are
  // checked once (a check may scan files: data/shards reads every token).
  std::set<std::pair<std::string, std::map<std::string, Value>>> checked;
};

void parse_toml(GridSpec& g, const std::string& text) {
  const std::string& file = g.file;
  toml::table& root = g.root;
  try {
    root = toml::parse(text, file);
  } catch (const toml::parse_error& e) {
    const auto& b = e.source().begin;
    throw UserError(fmt::format("{}:{}:{}: TOML syntax error: {}", file, b.line, b.column, e.description()));
  }

  g.exp.file = file;
  g.exp.source_text = text;
  for (const auto& [k, node] : root) {
    std::string key(k.str());
    if (!kTopLevel.count(key)) {
      std::string hint = nearest(key, {kTopLevel.begin(), kTopLevel.end()});
      throw UserError(fmt::format("{}: unknown table [{}]{}", where_of(file, node), key,
                                  hint.empty() ? "" : "; did you mean [" + hint + "]?"));
    }
  }
}

// [experiment]: name, description, seeds.
void parse_experiment_table(GridSpec& g) {
  const std::string& file = g.file;
  toml::table& root = g.root;
  Experiment& exp = g.exp;
  std::vector<int64_t>& seeds = g.seeds;
  const toml::table* et = root["experiment"].as_table();
  if (!et) throw UserError(file + ": missing [experiment] table with name = \"...\"");
  for (const auto& [k, node] : *et) {
    std::string key(k.str());
    if (key == "name") {
      if (!node.is_string()) throw UserError(where_of(file, node) + ": experiment name must be a string");
      exp.name = *node.value<std::string>();
      check_experiment_name(exp.name, where_of(file, node));
    } else if (key == "description") {
      exp.description = node.value_or<std::string>("");
    } else if (key == "seeds" || key == "seed") {
      seeds.clear();
      auto items = list_values(node, file, key);
      for (size_t i = 0; i < items.size(); ++i) {
        const auto& rv = items[i];
        if (!std::holds_alternative<int64_t>(rv.value))
          throw UserError(fmt::format("{}: seeds must be integers; item {} is {} {}", rv.where, i + 1,
                                      type_name(type_of(rv.value)), quoted(rv.value)));
        seeds.push_back(std::get<int64_t>(rv.value));
      }
    } else {
      std::string hint = nearest(key, {"name", "description", "seeds"});
      throw UserError(fmt::format("{}: unknown key '{}' in [experiment]{}", where_of(file, node), key,
                                  hint.empty() ? "" : "; did you mean '" + hint + "'?"));
    }
  }
  if (exp.name.empty()) throw UserError(where_of(file, *et) + ": [experiment] needs name = \"...\"");
}

// [report] and the base sections.
void parse_report_and_sections(GridSpec& g) {
  const std::string& file = g.file;
  toml::table& root = g.root;
  if (auto node = root["report"]) {
    const auto* t = node.as_table();
    if (!t) throw UserError(where_of(file, *node.node()) + ": [report] must be a table");
    g.exp.report = parse_report(*t, file, g.report_keys);
  }

  // Base sections.
  for (const auto& section : kSections) {
    if (auto node = root[section]) {
      const auto* t = node.as_table();
      if (!t) throw UserError(fmt::format("{}: '{}' must be a table", where_of(file, *node.node()), section));
      flatten_section(section, *t, file, g.base);
    }
  }
}

// [[variant]], [grid] and [[zip]]: the axes, in file order (their precedence levels).
void parse_axes(GridSpec& g) {
  const std::string& file = g.file;
  toml::table& root = g.root;
  std::vector<Axis>& axes = g.axes;
  // [[variant]]
  if (auto node = root["variant"]) {
    const auto* arr = node.as_array();
    if (!arr) throw UserError(where_of(file, *node.node()) + ": variants are written [[variant]]");
    Axis axis;
    for (const auto& el : *arr) {
      const auto* t = el.as_table();
      if (!t) throw UserError(where_of(file, el) + ": each [[variant]] must be a table");
      Assign a;
      std::string label;
      flatten_variant(*t, file, a, label);
      // No name: "variantN". An explicit name = "" keeps the runs unlabelled (as `grid --dump`
      // writes runs that had no variant).
      if (label.empty() && !t->contains("name")) label = fmt::format("variant{}", axis.points.size() + 1);
      axis.points.push_back(std::move(a));
      axis.labels.push_back(label);
    }
    axes.push_back(std::move(axis));
  }
  // [grid]: each key is its own axis.
  if (auto node = root["grid"]) {
    const auto* t = node.as_table();
    if (!t) throw UserError(where_of(file, *node.node()) + ": [grid] must be a table");
    for (const auto& [k, v] : *t) {
      std::string key(k.str());
      if (v.is_table())
        throw UserError(
            fmt::format("{}: grid keys are quoted dotted keys, e.g. \"optim.lr\" = [1e-3, 3e-4]", where_of(file, v)));
      check_dotted_key(key, where_of(file, v));
      Axis axis;
      for (auto& rv : list_values(v, file, key)) axis.points.push_back(Assign{{key, rv}});
      axes.push_back(std::move(axis));
    }
  }
  // [[zip]]: keys in one zip vary together.
  if (auto node = root["zip"]) {
    const auto* arr = node.as_array();
    if (!arr) throw UserError(where_of(file, *node.node()) + ": zips are written [[zip]]");
    for (const auto& el : *arr) {
      const auto* t = el.as_table();
      if (!t) throw UserError(where_of(file, el) + ": each [[zip]] must be a table");
      Axis axis;
      size_t n = 0;
      std::string first_key;
      for (const auto& [k, v] : *t) {
        std::string key(k.str());
        check_dotted_key(key, where_of(file, v));
        auto vals = list_values(v, file, key);
        if (first_key.empty()) {
          n = vals.size();
          first_key = key;
          axis.points.resize(n);
        } else if (vals.size() != n) {
          throw UserError(fmt::format("{}: [[zip]] lists must have equal lengths: '{}' has {}, '{}' has {}",
                                      where_of(file, v), key, vals.size(), first_key, n));
        }
        for (size_t i = 0; i < n; ++i) axis.points[i][key] = vals[i];
      }
      if (n) axes.push_back(std::move(axis));
    }
  }
}

// --set: [experiment] name/description/seeds, or section.key=value for every run.
void apply_overrides(GridSpec& g, const std::vector<std::string>& overrides) {
  Experiment& exp = g.exp;
  std::vector<int64_t>& seeds = g.seeds;
  Assign& sets = g.sets;
  for (const auto& o : overrides) {
    auto eq = o.find('=');
    if (eq == std::string::npos || eq == 0) throw UserError(fmt::format("--set '{}': expected section.key=value", o));
    std::string key = o.substr(0, eq);
    if (key == "experiment.seed" || key == "seed" || key == "experiment.seeds" || key == "seeds") {
      // One seed, or a list: "1,2,3" or "[1, 2, 3]".
      std::string list = o.substr(eq + 1);
      if (list.size() >= 2 && list.front() == '[' && list.back() == ']') list = list.substr(1, list.size() - 2);
      seeds.clear();
      for (std::string item : split(list, ',')) {
        item.erase(0, item.find_first_not_of(" \t"));
        item.erase(item.find_last_not_of(" \t") + 1);
        if (item.empty()) continue;
        Value v;
        try {
          v = parse_scalar(item);
        } catch (const UserError& e) {
          throw UserError(fmt::format("--set {}: {}", o, e.what()));
        }
        if (!std::holds_alternative<int64_t>(v))
          throw UserError(fmt::format("--set {}: seeds must be integers ('{}' is not)", o, item));
        seeds.push_back(std::get<int64_t>(v));
      }
      if (seeds.empty()) throw UserError(fmt::format("--set {}: no seed given", o));
      continue;
    }
    if (key == "experiment.name" || key == "experiment.description") {
      // Raw text: a name needs no TOML quoting on the command line ("--set experiment.name=lr-sweep").
      std::string text = o.substr(eq + 1);
      Value v = parse_scalar(text);
      if (auto* str = std::get_if<std::string>(&v)) text = *str;
      if (key == "experiment.name") {
        if (text.empty()) throw UserError(fmt::format("--set {}: the experiment name must not be empty", o));
        check_experiment_name(text, "--set " + o);
        exp.name = text;
      } else {
        exp.description = text;
      }
      continue;
    }
    if (key.rfind("experiment.", 0) == 0)
      throw UserError(
          fmt::format("--set {}: [experiment] keys that --set can change are name, description and seeds", o));
    check_dotted_key(key, "--set " + o);
    Value v;
    try {
      v = parse_scalar(o.substr(eq + 1));
    } catch (const UserError& e) {
      throw UserError(fmt::format("--set {}: {}", o, e.what()));
    }
    sets[key] = RawValue{v, "--set " + o, 1 << 20};
  }
}

// The Cartesian product over the axes, each with its variant label and the overrides applied.
std::vector<std::pair<Assign, std::string>> expand(const GridSpec& g) {
  const Assign& base = g.base;
  const std::vector<Axis>& axes = g.axes;
  std::vector<std::pair<Assign, std::string>> combos{{base, ""}};
  int level = 0;
  for (const auto& axis : axes) {
    ++level;
    std::vector<std::pair<Assign, std::string>> next;
    for (const auto& [c, label] : combos)
      for (size_t i = 0; i < axis.points.size(); ++i) {
        Assign merged = c;
        for (const auto& [k, v] : axis.points[i]) {
          merged[k] = v;
          merged[k].level = level;
        }
        next.emplace_back(std::move(merged), axis.labels.empty() ? label : axis.labels[i]);
      }
    combos = std::move(next);
  }

  for (auto& [assign, label] : combos)
    for (const auto& [k, v] : g.sets) assign[k] = v;
  return combos;
}

// One plugin section of one run: the plugin, its keys (generic and plugin-specific, by
// precedence), validated and checked by the plugin. Adds them to rc; returns the plugin.
const LoadedPlugin& resolve_section(const std::string& section, const Assign& assign, GridSpec& g,
                                    const Registry& registry, RunConfig& rc) {
  const std::string& file = g.file;
  auto pit = assign.find(section + ".plugin");
  if (pit == assign.end()) throw UserError(fmt::format("{}: [{}] needs plugin = \"...\"", file, section));
  if (!std::holds_alternative<std::string>(pit->second.value))
    throw UserError(pit->second.where + ": " + section + ".plugin must be a string");
  const std::string& pname = std::get<std::string>(pit->second.value);
  const LoadedPlugin* lp = nullptr;
  try {
    lp = &registry.get(section_kind(section), pname);
  } catch (const UserError& e) {
    throw UserError(pit->second.where + ": [" + section + "] " + e.what());
  }
  std::map<std::string, Value> given;
  std::map<std::string, std::string> locations;
  std::map<std::string, int> levels;
  std::string prefix = section + ".";
  for (const auto& [k, rv] : assign) {
    if (k.rfind(prefix, 0) != 0 || k == prefix + "plugin") continue;
    auto rest = k.substr(prefix.size());
    auto dot = rest.find('.');
    if (dot != std::string::npos) {
      std::string target = rest.substr(0, dot);
      if (!registry.find(section_kind(section), target))
        throw UserError(
            fmt::format("{}: '{}' names no {} plugin '{}' (sub-tables of [{}] hold one plugin's "
                        "parameters)",
                        rv.where, k, kind_name(section_kind(section)), target, section));
      continue;  // plugin-specific keys (this plugin's or another's) are merged below
    }
    given[rest] = rv.value;
    locations[rest] = rv.where;
    levels[rest] = rv.level;
  }
  // Plugin-specific keys (model.gpt.x) override generic ones (model.x) set at the same or
  // a lower precedence; a generic key from a later layer (e.g. --set) still wins.
  for (const auto& [k, rv] : assign) {
    if (k.rfind(prefix + pname + ".", 0) == 0) {
      auto rest = k.substr(prefix.size() + pname.size() + 1);
      if (levels.count(rest) && levels[rest] > rv.level) continue;
      given[rest] = rv.value;
      locations[rest] = rv.where;
    }
  }
  Params p = validate_params(lp->plugin->params(), given, fmt::format("[{}] (plugin {})", section, pname), &locations);
  try {
    if (g.checked.insert({lp->id(), p.values()}).second) lp->plugin->check(p);
  } catch (const std::exception& e) {
    // Point at the key the plugin's message names (its first word, by convention), else
    // at the plugin's table.
    std::string msg = e.what(), at = pit->second.where;
    for (const auto& [k, where] : locations)
      if (msg.rfind(k + " ", 0) == 0 || msg.rfind("'" + k + "'", 0) == 0) at = where;
    if (at == pit->second.where && section == "data" && locations.count("source")) at = locations["source"];
    throw UserError(fmt::format("{}: [{}] (plugin {}): {}", at, section, pname, e.what()));
  }
  rc.values[section + ".plugin"] = pname;
  for (const auto& [k, v] : p.values()) rc.values[section + "." + k] = v;
  return *lp;
}

// The [train] table of one run, validated, with the micro-batch size checked against the
// data's sequence length.
void resolve_train(const Assign& assign, int64_t seq_len, RunConfig& rc) {
  const auto& train_specs = trainer_params();
  std::map<std::string, Value> tgiven;
  std::map<std::string, std::string> tloc;
  for (const auto& [k, rv] : assign)
    if (k.rfind("train.", 0) == 0) tgiven[k.substr(6)] = rv.value, tloc[k.substr(6)] = rv.where;
  Params tp = validate_params(train_specs, tgiven, "[train]", &tloc);
  try {
    check_train_device(tp.s("device"));
  } catch (const UserError& e) {
    throw UserError(fmt::format("{}[train] {}", tloc.count("device") ? tloc["device"] + ": " : "", e.what()));
  }
  // A micro-batch beyond 2^28 tokens is a typo on any machine; caught here, before anything
  // is written, instead of as an allocation failure in the worker.
  if (seq_len > 0 && static_cast<double>(tp.i("batch_size")) * static_cast<double>(seq_len) > kMaxBatchTokens)
    throw UserError(fmt::format(
        "{}[train] batch_size {} x seq_len {} = {:.4g} tokens per micro-batch, more than "
        "the {} lmgrid allows",
        tloc.count("batch_size") ? tloc["batch_size"] + ": " : "", tp.i("batch_size"), seq_len,
        static_cast<double>(tp.i("batch_size")) * static_cast<double>(seq_len), static_cast<int64_t>(kMaxBatchTokens)));
  for (const auto& [k, v] : tp.values()) rc.values["train." + k] = v;
}

RunConfig resolve_run(const Assign& assign, const std::string& label, GridSpec& g, const Registry& registry) {
  RunConfig rc;
  rc.experiment = g.exp.name;
  rc.variant = label;
  int64_t seq_len = 0;
  for (const auto& section : plugin_sections()) {
    const LoadedPlugin& lp = resolve_section(section, assign, g, registry, rc);
    if (section == "data") seq_len = static_cast<const DataPlugin&>(*lp.plugin).seq_len(rc.section_params("data"));
  }
  resolve_train(assign, seq_len, rc);
  return rc;
}

// Keys that vary between runs, and [report]'s keys checked against them.
void finish(Experiment& exp, const std::map<std::string, std::string>& report_keys) {
  // Keys that vary between runs.
  if (!exp.runs.empty()) {
    std::set<std::string> keys;
    for (const auto& r : exp.runs)
      for (const auto& [k, v] : r.values) keys.insert(k);
    for (const auto& k : keys) {
      std::set<std::string> vals;
      for (const auto& r : exp.runs) vals.insert(r.values.count(k) ? to_string(r.values.at(k)) : "");
      if (vals.size() > 1) exp.varying_keys.push_back(k);
    }
    std::set<int64_t> sd;
    for (const auto& r : exp.runs) sd.insert(r.seed);
    if (sd.size() > 1) exp.varying_keys.push_back("seed");
  }
  // Keys named in [report] must exist in the runs.
  if (!report_keys.empty()) {
    std::set<std::string> all{"seed", "experiment", "variant"};  // as `lmgrid report -g` takes them
    for (const auto& r : exp.runs)
      for (const auto& [k, v] : r.values) all.insert(k);
    for (const auto& [k, where] : report_keys)
      if (!all.count(k)) {
        std::string hint = nearest(k, {all.begin(), all.end()});
        throw UserError(fmt::format("{}: [report] names unknown key '{}'{}", where, k,
                                    hint.empty() ? "" : "; did you mean '" + hint + "'?"));
      }
  }
}

}  // namespace

Experiment load_experiment_text(const std::string& text, const std::string& file,
                                const std::vector<std::string>& overrides, const Registry& registry) {
  GridSpec g;
  g.file = file;
  parse_toml(g, text);
  parse_experiment_table(g);
  parse_report_and_sections(g);
  parse_axes(g);
  apply_overrides(g, overrides);
  std::set<std::string> seen;
  for (const auto& [assign, label] : expand(g)) {
    RunConfig rc = resolve_run(assign, label, g, registry);
    for (int64_t seed : g.seeds) {
      RunConfig r = rc;
      r.seed = seed;
      if (seen.insert(r.hash()).second) g.exp.runs.push_back(std::move(r));
    }
  }
  finish(g.exp, g.report_keys);
  return std::move(g.exp);
}

Experiment load_experiment(const std::filesystem::path& file, const std::vector<std::string>& overrides,
                           const Registry& registry) {
  if (!std::filesystem::exists(file)) throw UserError("experiment file not found: " + file.string());
  return load_experiment_text(read_file(file), file.string(), overrides, registry);
}

// ---------------------------------------------------------------- dump

namespace {

// A TOML basic string: quotes, backslashes and control characters escaped.
std::string toml_string(const std::string& s) {
  std::string out = "\"";
  for (unsigned char c : s) {
    if (c == '"' || c == '\\')
      out += '\\', out += static_cast<char>(c);
    else if (c == '\n')
      out += "\\n";
    else if (c == '\t')
      out += "\\t";
    else if (c < 0x20 || c == 0x7f)
      out += fmt::format("\\u{:04X}", c);
    else
      out += static_cast<char>(c);
  }
  return out + "\"";
}

// A value in TOML syntax that parses back to the same Value (reals in shortest round-trip form,
// kept real: "1.0"; inf and nan are TOML too).
std::string toml_value(const Value& v) {
  if (std::holds_alternative<std::string>(v)) return toml_string(std::get<std::string>(v));
  return to_string(v);
}

void dump_report(std::string& out, const ReportSpec& r) {
  out += "\n[report]\n";
  if (!r.group_by.empty()) {
    out += "group_by = [";
    for (size_t i = 0; i < r.group_by.size(); ++i) out += (i ? ", " : "") + toml_string(r.group_by[i]);
    out += "]\n";
  }
  if (!r.best_over.empty()) out += "best_over = " + toml_string(r.best_over) + "\n";
  out += "x = " + toml_string(r.x) + "\n";
  if (r.target_loss) out += "target_loss = " + toml_value(Value(*r.target_loss)) + "\n";
  if (!r.out.empty()) out += "out = " + toml_string(r.out) + "\n";
  if (r.metric != "auto") out += "metric = " + toml_string(r.metric) + "\n";
  if (!r.accuracy_x.empty()) out += "accuracy_x = " + toml_string(r.accuracy_x) + "\n";
  if (!r.accuracy_slice.empty()) out += "accuracy_slice = " + toml_string(r.accuracy_slice) + "\n";
}

}  // namespace

std::string dump_experiment_toml(const Experiment& exp) {
  // Runs are (unique configs) x seeds: one [[variant]] per config, in grid order, with every
  // resolved key, and the seeds once.
  std::vector<const RunConfig*> configs;
  std::vector<int64_t> seeds;
  std::map<std::string, std::vector<int64_t>> seeds_of;  // config without seed -> its seeds
  for (const auto& r : exp.runs) {
    RunConfig key = r;
    key.seed = 0;
    auto& s = seeds_of[key.canonical_json()];
    if (s.empty()) configs.push_back(&r);
    s.push_back(r.seed);
  }
  if (!exp.runs.empty()) seeds = seeds_of.begin()->second;
  for (const auto& [k, s] : seeds_of)
    if (s != seeds) throw std::logic_error("grid --dump: configs with different seed lists");
  std::string out = fmt::format(
      "# Every resolved run of experiment {} ({} runs), written by `lmgrid grid --dump`.\n"
      "# `lmgrid run` of this file trains the same runs: the same config hashes.\n\n",
      toml_string(exp.name), exp.runs.size());
  out += "[experiment]\nname = " + toml_string(exp.name) + "\n";
  if (!exp.description.empty()) out += "description = " + toml_string(exp.description) + "\n";
  out += "seeds = [";
  for (size_t i = 0; i < seeds.size(); ++i) out += (i ? ", " : "") + std::to_string(seeds[i]);
  out += "]\n";
  dump_report(out, exp.report);
  for (const RunConfig* c : configs) {
    out += "\n[[variant]]\nname = " + toml_string(c->variant) + "\n";
    for (const auto& [k, v] : c->values) out += toml_string(k) + " = " + toml_value(v) + "\n";
  }
  return out;
}

}  // namespace lmgrid
