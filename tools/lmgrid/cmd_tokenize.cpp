// lmgrid tokenize --tokenizer NAME [--set KEY=VALUE]... [--fit SOURCE] [--decode] [--stats]:
// text on stdin -> the ids as one JSON array (with --decode: a JSON array -> the text). A
// tokenizer that learns its vocabulary is fitted on SOURCE (a named source or a file) through
// the tokenizer cache. Bad input (invalid UTF-8 where the tokenizer needs it, unknown ids, a
// malformed array) is exit 2 naming the byte offset, element or id.
#include <cstdio>
#include <iostream>
#include <iterator>
#include <stdexcept>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <lmgrid/base/errors.hpp>
#include <lmgrid/base/util.hpp>
#include <lmgrid/data/data_source.hpp>
#include <lmgrid/plugin/boundary.hpp>
#include <lmgrid/plugin/registry.hpp>
#include <lmgrid/train/tokenizer_cache.hpp>

#include "commands.hpp"

namespace lmgrid::cli {

namespace {

struct TokenizeOptions {
  std::string tokenizer, fit;
  std::vector<std::string> sets;
  bool decode = false, stats = false;
};

// "KEY=VALUE" -> a value of the type `specs` declare for KEY (unknown keys are left to
// validate_params, which suggests the nearest).
std::map<std::string, Value> parse_sets(const std::vector<std::string>& sets, const std::vector<ParamSpec>& specs) {
  std::map<std::string, Value> out;
  for (const auto& s : sets) {
    size_t eq = s.find('=');
    if (eq == std::string::npos || eq == 0) throw UserError("--set " + s + ": expected KEY=VALUE");
    std::string key = s.substr(0, eq), text = s.substr(eq + 1);
    if (key.rfind("tokenizer.", 0) == 0) key = key.substr(10);
    if (text.size() >= 2 && text.front() == '"' && text.back() == '"') text = text.substr(1, text.size() - 2);
    ParamType type = ParamType::string;
    for (const auto& spec : specs)
      if (spec.name == key) type = spec.type;
    try {
      size_t used = 0;
      switch (type) {
        case ParamType::integer: out[key] = static_cast<int64_t>(std::stoll(text, &used)); break;
        case ParamType::real: out[key] = std::stod(text, &used); break;
        case ParamType::boolean:
          if (text != "true" && text != "false") throw std::invalid_argument("bool");
          out[key] = text == "true", used = text.size();
          break;
        case ParamType::string: out[key] = text, used = text.size(); break;
      }
      if (used != text.size()) throw std::invalid_argument("trailing");
    } catch (const std::logic_error&) {
      throw UserError(fmt::format("--set {}: '{}' is not a {}", s, text, type_name(type)));
    }
  }
  return out;
}

// Runs a tokenizer call: the tokenizer's complaints about its input (std::invalid_argument,
// std::out_of_range: bad UTF-8, unknown ids) are bad input, anything else a plugin failure.
template <class F>
auto guarded(const std::string& id, F&& f) -> decltype(f()) {
  try {
    return f();
  } catch (const std::invalid_argument& e) {
    throw UserError(fmt::format("{}: {}", id, e.what()));
  } catch (const std::out_of_range& e) {
    throw UserError(fmt::format("{}: {}", id, e.what()));
  } catch (const UserError&) {
    throw;
  } catch (const std::exception& e) {
    throw PluginError(id, e.what());
  }
}

std::vector<int64_t> parse_ids(const std::string& text) {
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(text);
  } catch (const nlohmann::json::parse_error& e) {
    throw UserError(fmt::format("stdin is not a JSON array of token ids: {}", e.what()));
  }
  if (!j.is_array())
    throw UserError("stdin is not a JSON array of token ids (got a JSON " + std::string(j.type_name()) + ")");
  std::vector<int64_t> ids;
  for (size_t i = 0; i < j.size(); ++i) {
    if (!j[i].is_number_integer())
      throw UserError(fmt::format("element {} of the id array is {}, not an integer id", i, j[i].dump()));
    ids.push_back(j[i].get<int64_t>());
  }
  return ids;
}

void print_stats(size_t bytes, size_t tokens) {
  std::printf("bytes %zu\ntokens %zu\nbytes_per_token %.4f\n", bytes, tokens,
              tokens ? static_cast<double>(bytes) / static_cast<double>(tokens) : 0.0);
}

void run_tokenize(const TokenizeOptions& o) {
  const auto& lp = Registry::instance().get(PluginKind::tokenizer, o.tokenizer);
  const auto& plugin = static_cast<const TokenizerPlugin&>(*lp.plugin);
  Params params =
      validate_params(plugin.params(), parse_sets(o.sets, plugin.params()), "--set (tokenizer " + o.tokenizer + ")");
  call_plugin(lp.id(), [&] { plugin.check(params); });
  auto tok = call_plugin(lp.id(), [&] {
    return cached_tokenizer(keep_alive(plugin.create(params), lp.plugin), lp.id(), plugin.version(), params, false);
  });
  if (!o.fit.empty()) {
    std::string train = read_file(resolve_source(o.fit));
    call_plugin(lp.id(), [&] { tok->fit(train); });
  }
  if (call_plugin(lp.id(), [&] { return tok->vocab_size(); }) <= 0)
    throw UserError(lp.id() + " learns its vocabulary: give --fit SOURCE (a named source or a file) to fit it on");
  std::string input{std::istreambuf_iterator<char>(std::cin), std::istreambuf_iterator<char>()};
  if (o.decode) {
    auto ids = parse_ids(input);
    std::string text = guarded(lp.id(), [&] { return tok->decode(ids); });
    if (o.stats)
      print_stats(text.size(), ids.size());
    else
      std::fwrite(text.data(), 1, text.size(), stdout);
    return;
  }
  auto ids = guarded(lp.id(), [&] { return tok->encode(input); });
  if (o.stats) return print_stats(input.size(), ids.size());
  std::string out = "[";
  for (size_t i = 0; i < ids.size(); ++i) out += (i ? ", " : "") + std::to_string(ids[i]);
  out += "]\n";
  std::fputs(out.c_str(), stdout);
}

}  // namespace

void add_tokenize(CLI::App& app) {
  auto opt = std::make_shared<TokenizeOptions>();
  auto* cmd = app.add_subcommand("tokenize", "Encode stdin to a JSON array of token ids (or --decode one)");
  cmd->add_option("--tokenizer", opt->tokenizer, "tokenizer plugin (e.g. bpe, byte, char)")->required();
  cmd->add_option("--set", opt->sets, "KEY=VALUE: a parameter of the tokenizer (repeatable)");
  cmd->add_option("--fit", opt->fit, "named source or file to fit a learning tokenizer on (cached)");
  cmd->add_flag("--decode", opt->decode, "read a JSON array of ids, print the text");
  cmd->add_flag("--stats", opt->stats, "print bytes, tokens and bytes per token instead");
  cmd->callback([opt] { run_tokenize(*opt); });
}

}  // namespace lmgrid::cli
