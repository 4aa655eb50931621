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
#include "tokenizer_args.hpp"

namespace lmgrid::cli {

namespace {

struct TokenizeOptions {
  std::string tokenizer, fit;
  std::vector<std::string> sets;
  bool decode = false, stats = false;
};

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
  Params params = validate_params(plugin.params(), parse_tokenizer_sets(o.sets, plugin.params()),
                                  "--set (tokenizer " + o.tokenizer + ")");
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
    std::string text = guard_tokenizer_input(lp.id(), [&] { return tok->decode(ids); });
    if (o.stats)
      print_stats(text.size(), ids.size());
    else
      std::fwrite(text.data(), 1, text.size(), stdout);
    return;
  }
  auto ids = guard_tokenizer_input(lp.id(), [&] { return tok->encode(input); });
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
