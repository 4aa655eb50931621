// lmgrid data list | fetch NAME | tokenize SOURCE | inspect FILE...: named data sources, where
// they resolve, fetch to cache; llm.c token shards written from a source's documents and read
// back (lmgrid/data/shards.hpp has the format).
#include <unistd.h>

#include <cstdio>
#include <regex>
#include <set>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <lmgrid/base/env.hpp>
#include <lmgrid/base/errors.hpp>
#include <lmgrid/base/util.hpp>
#include <lmgrid/config/run_config.hpp>
#include <lmgrid/data/data_source.hpp>
#include <lmgrid/data/documents.hpp>
#include <lmgrid/data/shards.hpp>
#include <lmgrid/plugin/boundary.hpp>
#include <lmgrid/plugin/registry.hpp>
#include <lmgrid/report/table.hpp>
#include <lmgrid/train/tokenizer_cache.hpp>

#include "commands.hpp"
#include "tokenizer_args.hpp"

namespace lmgrid::cli {

namespace {

namespace fs = std::filesystem;

struct TokenizeShardsOptions {
  std::string source, tokenizer, out, format = "auto";
  std::vector<std::string> sets;
  int64_t shard_tokens = 100'000'000;  // llm.c's fineweb.py
  bool force = false;
};

// A TOML value as written in an experiment file.
std::string toml_value(const Value& v) {
  if (!std::holds_alternative<std::string>(v)) return to_string(v);
  std::string out = "\"";
  for (char c : std::get<std::string>(v)) {
    if (c == '"' || c == '\\') out += '\\';
    out += c;
  }
  return out + "\"";
}

nlohmann::json json_value(const Value& v) {
  if (const auto* b = std::get_if<bool>(&v)) return *b;
  if (const auto* i = std::get_if<int64_t>(&v)) return *i;
  if (const auto* d = std::get_if<double>(&v)) return *d;
  return std::get<std::string>(v);
}

// Progress on stderr: a line redrawn ten times a second on a terminal, else one every 10 s.
class Progress {
 public:
  explicit Progress(size_t documents)
      : documents_(documents), tty_(::isatty(2) == 1), start_(monotonic_seconds()), last_(start_) {}
  void update(size_t docs, int64_t tokens, uint64_t bytes, bool done = false) {
    double now = monotonic_seconds();
    if (!done && now - last_ < (tty_ ? 0.1 : 10.0)) return;
    last_ = now;
    double mbps = static_cast<double>(bytes) / 1e6 / std::max(1e-9, now - start_);
    std::fprintf(stderr, "%stokenize: %zu/%zu documents, %s tokens, %.1f MB/s%s", tty_ ? "\r" : "", docs, documents_,
                 human_count(tokens).c_str(), mbps, tty_ && !done ? "\x1b[K" : "\n");
    std::fflush(stderr);
  }

 private:
  size_t documents_;
  bool tty_;
  double start_, last_;
};

// <stem>_val_000000.bin, <stem>_train_000001.bin ... (llm.c's names).
std::string shard_name(const std::string& stem, int index) {
  return fmt::format("{}_{}_{:06d}.bin", stem, index == 0 ? "val" : "train", index);
}

std::string source_stem(const std::string& source) {
  std::string s = source;
  while (s.size() > 1 && s.back() == '/') s.pop_back();
  std::string stem = fs::path(s).stem().string();
  return stem.empty() ? "data" : stem;
}

void run_tokenize_shards(const TokenizeShardsOptions& o) {
  if (o.shard_tokens < 1) throw UserError("--shard-tokens must be at least 1");
  if (o.format != "auto" && o.format != "v1" && o.format != "v7")
    throw UserError("--format must be v1, v7 or auto (got '" + o.format + "')");
  const auto& lp = Registry::instance().get(PluginKind::tokenizer, o.tokenizer);
  const auto& plugin = static_cast<const TokenizerPlugin&>(*lp.plugin);
  Params params = validate_params(plugin.params(), parse_tokenizer_sets(o.sets, plugin.params()),
                                  "--set (tokenizer " + o.tokenizer + ")");
  call_plugin(lp.id(), [&] { plugin.check(params); });
  auto make = [&] {
    return call_plugin(lp.id(), [&] {
      return cached_tokenizer(keep_alive(plugin.create(params), lp.plugin), lp.id(), plugin.version(), params, false);
    });
  };

  // Nothing is read or written before the folder is known to hold no shard (or --force).
  fs::path dir = o.out;
  fs::create_directories(dir);
  std::vector<fs::path> existing;
  for (const auto& e : fs::directory_iterator(dir))
    if (e.path().extension() == ".bin") existing.push_back(e.path());
  std::sort(existing.begin(), existing.end());
  if (!existing.empty() && !o.force)
    throw UserError(existing.front().string() + " exists: give --force to overwrite the shards in " + dir.string());

  std::vector<Document> docs = load_documents(o.source);
  auto tok = make();
  // Documents the val shard (its first shard_tokens tokens) touches, with tokenizer t.
  auto val_documents = [&](const Tokenizer& t) {
    int64_t n = 0;
    for (size_t i = 0; i < docs.size(); ++i) {
      n += 1 + static_cast<int64_t>(guard_tokenizer_input(
                                        lp.id(), [&] { return t.encode(docs[i].text); }, docs[i].origin)
                                        .size());
      if (n >= o.shard_tokens) return i + 1;
    }
    return docs.size();
  };
  if (call_plugin(lp.id(), [&] { return tok->vocab_size(); }) == 0) {
    // A tokenizer that learns its vocabulary is fitted on the train documents only: fit on the
    // documents after the ones the val shard holds; a fit that moves the val/train boundary
    // later is redone without the newly covered documents (in practice the second fit holds).
    size_t skip = 0;
    for (int round = 0;; ++round) {
      if (skip >= docs.size())
        throw UserError(
            fmt::format("{}: every document goes to the val shard (--shard-tokens {}), none is left to "
                        "fit the tokenizer on or to train with; give a smaller --shard-tokens",
                        o.source, o.shard_tokens));
      std::string text;
      for (size_t i = skip; i < docs.size(); ++i) text += docs[i].text + "\n";
      tok = make();
      guard_tokenizer_input(
          lp.id(), [&] { tok->fit(text); }, o.source);
      size_t v = val_documents(*tok);
      if (v <= skip || round == 3) break;
      skip = v;
    }
  }
  const int64_t vocab = call_plugin(lp.id(), [&] { return tok->vocab_size(); });
  const int64_t bos = call_plugin(lp.id(), [&] { return tok->bos_id(); });
  if (bos < 0)
    throw UserError(lp.id() +
                    " has no document marker (bos_id() is -1): configure one, e.g. --set "
                    "specials=\"<|endoftext|>\" for bpe or byte (llm.c starts every document with it)");
  ShardFormat format = o.format == "v1"   ? ShardFormat::v1
                       : o.format == "v7" ? ShardFormat::v7
                                          : shard_format_for_vocab(vocab);
  if (format == ShardFormat::v1 && vocab > 65536)
    throw UserError(
        fmt::format("--format v1 stores ids below 65536, but {} has {} ids: use v7 or auto", lp.id(), vocab));

  const std::string stem = source_stem(o.source);
  struct Written {
    std::string file;
    int64_t ntok;
  };
  std::vector<Written> written;
  auto writer = std::make_unique<ShardWriter>(dir / shard_name(stem, 0), format);
  auto commit = [&] { written.push_back({shard_name(stem, static_cast<int>(written.size())), writer->commit().ntok}); };
  Progress progress(docs.size());
  int64_t tokens = 0;
  uint64_t bytes = 0;
  std::vector<int64_t> ids;
  for (size_t d = 0; d < docs.size(); ++d) {
    ids.assign(1, bos);
    auto body = guard_tokenizer_input(
        lp.id(), [&] { return tok->encode(docs[d].text); }, docs[d].origin);
    ids.insert(ids.end(), body.begin(), body.end());
    for (size_t at = 0; at < ids.size();) {
      auto n = std::min<size_t>(ids.size() - at, static_cast<size_t>(o.shard_tokens - writer->tokens()));
      writer->append(ids.data() + at, n);
      at += n;
      if (writer->tokens() == o.shard_tokens) {
        commit();
        writer = std::make_unique<ShardWriter>(dir / shard_name(stem, static_cast<int>(written.size())), format);
      }
    }
    tokens += static_cast<int64_t>(ids.size());
    bytes += docs[d].text.size();
    progress.update(d + 1, tokens, bytes);
  }
  if (writer->tokens() > 0) commit();
  writer.reset();  // an empty last writer leaves no file
  progress.update(docs.size(), tokens, bytes, true);
  if (written.size() < 2) {
    fs::remove(dir / written.front().file);
    throw UserError(
        fmt::format("{} has {} tokens, all of them in the val shard (--shard-tokens {}): no train shard; "
                    "give a smaller --shard-tokens",
                    o.source, tokens, o.shard_tokens));
  }
  // --force: shards of an earlier, longer tokenization of the same source would join the globs.
  std::set<std::string> mine;
  for (const auto& w : written) mine.insert(w.file);
  const std::regex ours(std::regex_replace(stem, std::regex(R"([.^$|()\[\]{}*+?\\])"), R"(\$&)") +
                        "_(val|train)_[0-9]{6}\\.bin");
  for (const auto& f : existing)
    if (std::regex_match(f.filename().string(), ours) && !mine.count(f.filename().string())) fs::remove(f);

  nlohmann::json j{{"format", "lmgrid-shards-tokenizer"},
                   {"version", 1},
                   {"plugin", plugin.name()},
                   {"plugin_version", plugin.version()},
                   {"vocab_size", vocab},
                   {"bos_id", bos},
                   {"source", o.source},
                   {"documents", docs.size()},
                   {"shard_tokens", o.shard_tokens},
                   {"shard_format", format == ShardFormat::v1 ? "v1" : "v7"}};
  for (const auto& [k, v] : params.values()) j["params"][k] = json_value(v);
  for (const auto& w : written) j["shards"].push_back({{"file", w.file}, {"ntok", w.ntok}});
  j["state"] = call_plugin(lp.id(), [&] { return tok->save(); });
  write_file_atomic(dir / "tokenizer.json", j.dump(1) + "\n");

  for (const auto& w : written)
    std::printf("%s\t%lld tokens\n", (dir / w.file).c_str(), static_cast<long long>(w.ntok));
  std::printf("%s\t%s, vocab_size %lld, bos_id %lld\n", (dir / "tokenizer.json").c_str(), lp.id().c_str(),
              static_cast<long long>(vocab), static_cast<long long>(bos));
  std::printf("\n# an experiment on these shards:\n[data]\nplugin = \"shards\"\ntrain = %s\nval = %s\n",
              toml_value(Value((dir / (stem + "_train_*.bin")).string())).c_str(),
              toml_value(Value((dir / (stem + "_val_*.bin")).string())).c_str());
  std::printf("[tokenizer]\nplugin = \"%s\"\n", plugin.name().c_str());
  for (const auto& spec : plugin.params()) {
    const Value& v = params.values().at(spec.name);
    if (to_string(v) != to_string(spec.default_value))
      std::printf("%s = %s\n", spec.name.c_str(), toml_value(v).c_str());
  }
}

struct InspectOptions {
  std::vector<std::string> files;
  bool dump = false;
  int64_t vocab = 0;
  std::string format = "table";
};

void run_inspect(const InspectOptions& o) {
  std::vector<std::vector<std::string>> rows;
  for (const auto& f : o.files) {
    MappedShard shard(f);
    if (o.vocab > 0) shard.check_vocab(o.vocab);
    if (o.dump) {
      std::string out = "[";
      out.reserve(static_cast<size_t>(shard.size()) * 6 + 3);
      for (int64_t i = 0; i < shard.size(); ++i) out += (i ? ", " : "") + std::to_string(shard.at(i));
      out += "]\n";
      std::fwrite(out.data(), 1, out.size(), stdout);
      continue;
    }
    const auto& h = shard.header();
    rows.push_back({f, std::to_string(h.magic), std::to_string(h.version), h.version == 1 ? "uint16" : "uint32",
                    std::to_string(h.ntok), std::to_string(fs::file_size(f)), std::to_string(shard.max_token())});
  }
  if (!o.dump)
    std::fputs(
        render_rows({"file", "magic", "version", "tokens_as", "ntok", "bytes", "max_id"}, rows, parse_format(o.format))
            .c_str(),
        stdout);
}

}  // namespace

void add_data(CLI::App& app) {
  struct Opt {
    std::string format = "table", name;
  };
  auto opt = std::make_shared<Opt>();
  auto* cmd = app.add_subcommand("data", "Named data sources (list, fetch); llm.c token shards (tokenize, inspect)");
  cmd->require_subcommand(1);
  auto* list = cmd->add_subcommand("list", "Known sources and where each resolves");
  list->add_option("--format", opt->format, "table, csv or json");
  list->callback([opt] {
    std::vector<std::vector<std::string>> rows;
    // Listing never downloads: LMGRID_OFFLINE=1 while resolving, the caller's value restored.
    std::string saved = env_or("LMGRID_OFFLINE", "");
    setenv("LMGRID_OFFLINE", "1", 1);
    for (const auto& s : known_sources()) {
      std::string where;
      try {
        auto files = resolve_source_files(s.name);
        where = s.members.empty() ? files[0].string()
                                  : fmt::format("{} files in {}", files.size(), files[0].parent_path().string());
      } catch (const UserError&) {
        where = "(missing)";
      }
      rows.push_back({s.name, std::to_string(s.size), s.doc, where});
    }
    if (saved.empty())
      unsetenv("LMGRID_OFFLINE");
    else
      setenv("LMGRID_OFFLINE", saved.c_str(), 1);
    std::fputs(render_rows({"name", "bytes", "what", "resolves_to"}, rows, parse_format(opt->format)).c_str(), stdout);
  });
  auto* fetch = cmd->add_subcommand("fetch", "Resolve a source, downloading it into the cache if needed");
  fetch->add_option("name", opt->name, "source name")->required();
  fetch->callback([opt] {
    // A group source (austen) fetches and verifies each of its members.
    auto src = find_source(opt->name);
    std::vector<std::string> names = src && !src->members.empty() ? src->members : std::vector{opt->name};
    for (const auto& name : names) {
      auto p = resolve_source(name);
      auto member = find_source(name);
      if (std::filesystem::is_directory(p)) {  // a folder source (babi_en): nothing to hash
        std::printf("%s\t(folder)\n", p.c_str());
        continue;
      }
      std::string sha = sha256_file(p);
      if (member && !member->sha256.empty() && sha != member->sha256)
        throw UserError(fmt::format("{} has sha256 {}, expected {}", p.string(), sha, member->sha256));
      std::printf("%s\t%s\n", p.c_str(), sha.c_str());
    }
  });

  auto t = std::make_shared<TokenizeShardsOptions>();
  auto* tokenize = cmd->add_subcommand(
      "tokenize",
      "Write a source's documents as llm.c token shards: every document starts with the tokenizer's BOS "
      "(bos_id), shard 0 is val, the rest train. A tokenizer that learns its vocabulary is fitted first, on the "
      "documents that go to the train shards. DIR/tokenizer.json keeps the tokenizer (name, params, state)");
  tokenize->add_option("source", t->source, "named source (see `lmgrid data list`), file or folder")->required();
  tokenize->add_option("--tokenizer", t->tokenizer, "tokenizer plugin (e.g. bpe, byte, sentencepiece)")->required();
  tokenize->add_option("--set", t->sets, "KEY=VALUE: a parameter of the tokenizer (repeatable)");
  tokenize->add_option("--out", t->out, "folder of the shards")->required();
  tokenize->add_option("--shard-tokens", t->shard_tokens, "tokens per shard (default 100000000; the last is shorter)");
  tokenize->add_option("--format", t->format, "v1 (uint16), v7 (uint32) or auto: v1 when the vocabulary fits 16 bits");
  tokenize->add_flag("--force", t->force, "overwrite the .bin files in the folder");
  tokenize->callback([t] { run_tokenize_shards(*t); });

  auto in = std::make_shared<InspectOptions>();
  auto* inspect = cmd->add_subcommand("inspect", "Header fields of llm.c token shards (validated), or their tokens");
  inspect->add_option("files", in->files, "shard files (.bin)")->required();
  inspect->add_flag("--dump", in->dump, "print each file's tokens as one JSON array per line instead");
  inspect->add_option("--vocab", in->vocab, "also check every id is below this vocabulary size");
  inspect->add_option("--format", in->format, "table, csv or json");
  inspect->callback([in] { run_inspect(*in); });
}

}  // namespace lmgrid::cli
