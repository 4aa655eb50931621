// Tokenizer plugins against references: bpe with GPT-2's published vocabulary against tiktoken's
// `gpt2` encoding (fixture tests/fixtures/gpt2_bpe/fixture.json, written by make_fixture.py: 41
// strings, the <|endoftext|> special and whole data files); bpe training against a naive
// trainer written here (std::regex pre-tokenizer for ASCII, all pair counts recomputed per
// merge); byte; decode(encode(x)) == x on every text of the data folder; bad input named by
// offset or id; the tokenizer cache (a second fit with the same key loads, never fits).
#include <catch2/catch.hpp>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <map>
#include <regex>

#include <nlohmann/json.hpp>

#include <lmgrid/base/params.hpp>
#include <lmgrid/base/util.hpp>
#include <lmgrid/data/data_source.hpp>
#include <lmgrid/plugin/registry.hpp>
#include <lmgrid/train/tokenizer_cache.hpp>

#include "../support.hpp"

using namespace lmgrid;
using json = nlohmann::json;
namespace fs = std::filesystem;

namespace {

std::shared_ptr<Tokenizer> make_tokenizer(const std::string& name, const std::map<std::string, Value>& values = {}) {
  const auto& tp = static_cast<const TokenizerPlugin&>(*test::built_plugins().get(PluginKind::tokenizer, name).plugin);
  return tp.create(validate_params(tp.params(), values, "[tokenizer]"));
}

std::shared_ptr<Tokenizer> gpt2(const std::string& specials = "") {
  return make_tokenizer("bpe", {{"pretrained", std::string("gpt2")}, {"specials", specials}});
}

json fixture() {
  auto path = lmgrid::test::source_root() / "tests" / "fixtures" / "gpt2_bpe" / "fixture.json";
  return json::parse(read_file(path));
}

// The data folder: the one that holds GPT-2's files (LMGRID_DATA_PATH, ../shared/data).
fs::path data_root() { return resolve_source("gpt2_encoder").parent_path().parent_path(); }

std::string ids_sha(const std::vector<int64_t>& ids) {
  std::string s;
  for (size_t i = 0; i < ids.size(); ++i) s += (i ? "," : "") + std::to_string(ids[i]);
  return sha256_hex(s);
}

bool valid_utf8(const std::string& s) {
  for (size_t i = 0; i < s.size();) {
    unsigned char c = static_cast<unsigned char>(s[i]);
    size_t n = c < 0x80 ? 1 : c >= 0xC2 && c <= 0xDF ? 2 : c >= 0xE0 && c <= 0xEF ? 3 : c >= 0xF0 && c <= 0xF4 ? 4 : 0;
    if (n == 0 || i + n > s.size()) return false;
    for (size_t k = 1; k < n; ++k)
      if ((static_cast<unsigned char>(s[i + k]) & 0xC0) != 0x80) return false;
    i += n;
  }
  return true;
}

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const std::exception& e) {
    return e.what();
  }
  return "(no error)";
}

}  // namespace

TEST_CASE("bpe gpt2: the issue's two strings", "[unit][tokenizer]") {
  auto t = gpt2();
  CHECK(t->vocab_size() == 50257);
  CHECK(t->encode("Hello world") == std::vector<int64_t>{15496, 995});
  CHECK(t->encode("First Citizen:\nBefore we proceed any further, hear me speak.") ==
        std::vector<int64_t>{5962, 22307, 25, 198, 8421, 356, 5120, 597, 2252, 11, 3285, 502, 2740, 13});
}

TEST_CASE("bpe gpt2: every fixture string equals tiktoken's gpt2 ids", "[unit][tokenizer]") {
  auto fx = fixture();
  auto plain = gpt2(), special = gpt2("<|endoftext|>");
  REQUIRE(fx["strings"].size() >= 32);
  for (const auto& c : fx["strings"]) {
    const std::string text = c["text"];
    INFO("text: " << text);
    CHECK(plain->encode(text) == c["ids"].get<std::vector<int64_t>>());
    CHECK(plain->decode(plain->encode(text)) == text);
  }
  for (const auto& c : fx["special"]) {
    const std::string text = c["text"];
    INFO("text with <|endoftext|> special: " << text);
    CHECK(special->encode(text) == c["ids"].get<std::vector<int64_t>>());
    CHECK(special->decode(special->encode(text)) == text);
  }
  CHECK(special->encode("<|endoftext|>") == std::vector<int64_t>{50256});
  CHECK(plain->encode("<|endoftext|>").size() > 1);  // not named special: ordinary text
}

TEST_CASE("bpe gpt2: whole data files equal tiktoken's ids", "[unit][tokenizer]") {
  auto t = gpt2();
  // The fixture is kept in a variable: iterating over fixture()["files"] would walk a subobject
  // of a temporary destroyed before the loop body (AddressSanitizer's heap-use-after-free).
  const json fx = fixture();
  for (const auto& f : fx["files"]) {
    INFO("file " << f["path"].get<std::string>());
    std::string text = read_file(data_root() / f["path"].get<std::string>());
    REQUIRE(text.size() == f["bytes"].get<size_t>());
    auto ids = t->encode(text);
    CHECK(ids.size() == f["tokens"].get<size_t>());
    CHECK(ids_sha(ids) == f["sha256"].get<std::string>());
  }
}

TEST_CASE("byte and bpe: decode(encode(x)) == x on every text of the data folder", "[unit][tokenizer]") {
  auto byte = make_tokenizer("byte"), bpe = gpt2();
  int texts = 0;
  for (const auto& e : fs::recursive_directory_iterator(data_root())) {
    if (!e.is_regular_file()) continue;
    std::string data = read_file(e.path());
    INFO("file " << e.path().string());
    CHECK(byte->decode(byte->encode(data)) == data);  // any bytes
    if (!valid_utf8(data)) continue;                  // the .tar.xz archive: not text
    CHECK(bpe->decode(bpe->encode(data)) == data);
    ++texts;
  }
  CHECK(texts >= 20);
}

TEST_CASE("bpe: invalid UTF-8 names its byte offset; unknown ids are named", "[unit][tokenizer]") {
  auto t = gpt2();
  CHECK(error_of([&] {
          t->encode(
              "ab\xff"
              "cd");
        }) == "invalid UTF-8 at byte offset 2");
  CHECK(error_of([&] { t->encode("caf\xc3"); }) == "invalid UTF-8 at byte offset 3");       // truncated
  CHECK(error_of([&] { t->encode("x \xc0\x80"); }) == "invalid UTF-8 at byte offset 2");    // overlong
  CHECK(error_of([&] { t->encode("\xed\xa0\x80"); }) == "invalid UTF-8 at byte offset 0");  // surrogate
  CHECK_THROWS_AS(t->encode("a\xff"), std::invalid_argument);
  CHECK(error_of([&] { t->decode({15496, 50257}); }) == "token id 50257 is outside the vocabulary (0..50256)");
  CHECK_THROWS_AS(t->decode({-1}), std::out_of_range);
  auto s = gpt2("<|endoftext|>");
  CHECK(error_of([&] { s->encode("ok<|endoftext|>\x80"); }) == "invalid UTF-8 at byte offset 15");
}

TEST_CASE("byte: 256 ids, specials after them, any bytes", "[unit][tokenizer]") {
  auto t = make_tokenizer("byte");
  CHECK(t->vocab_size() == 256);
  CHECK(t->encode("A\xff\n") == std::vector<int64_t>{65, 255, 10});
  auto s = make_tokenizer("byte", {{"specials", std::string("<bos>,<eos>")}});
  CHECK(s->vocab_size() == 258);
  CHECK(s->encode("<bos>hi<eos>") == std::vector<int64_t>{256, 104, 105, 257});
  CHECK(s->decode({256, 104, 257}) == "<bos>h<eos>");
  CHECK(error_of([&] { s->decode({258}); }) == "token id 258 is outside the vocabulary (0..257)");
  auto r = make_tokenizer("byte");
  r->load(s->save());
  CHECK(r->vocab_size() == 258);
}

namespace {

// An independent byte-level BPE trainer: pieces by GPT-2's pattern for ASCII text (std::regex,
// ECMAScript lookahead), every pair count recomputed from scratch before each merge, the most
// frequent pair merged (ties: the smaller (a, b)), stopping when no pair occurs twice.
std::vector<std::string> ascii_pieces(const std::string& text) {
  static const std::regex re(R"('s|'t|'re|'ve|'m|'ll|'d| ?[A-Za-z]+| ?[0-9]+| ?[^\sA-Za-z0-9]+|\s+(?!\S)|\s+)");
  std::vector<std::string> out;
  for (auto it = std::sregex_iterator(text.begin(), text.end(), re); it != std::sregex_iterator(); ++it)
    out.push_back(it->str());
  return out;
}

std::vector<std::pair<int32_t, int32_t>> naive_train(const std::string& text, int64_t vocab_size) {
  std::map<std::string, int64_t> freq;
  for (const auto& p : ascii_pieces(text)) ++freq[p];
  std::vector<std::pair<std::vector<int32_t>, int64_t>> words;
  for (const auto& [w, n] : freq) words.push_back({std::vector<int32_t>(w.begin(), w.end()), n});
  std::vector<std::pair<int32_t, int32_t>> merges;
  for (int32_t id = 256; id < vocab_size; ++id) {
    std::map<std::pair<int32_t, int32_t>, int64_t> counts;
    for (const auto& [syms, n] : words)
      for (size_t i = 0; i + 1 < syms.size(); ++i) counts[{syms[i], syms[i + 1]}] += n;
    std::pair<int32_t, int32_t> best{-1, -1};
    int64_t best_n = 1;
    for (const auto& [pair, n] : counts)
      if (n > best_n) best = pair, best_n = n;  // map order: the first of equal counts is the smaller pair
    if (best.first < 0) break;
    merges.push_back(best);
    for (auto& [syms, n] : words) {
      std::vector<int32_t> out;
      for (size_t i = 0; i < syms.size(); ++i)
        if (i + 1 < syms.size() && syms[i] == best.first && syms[i + 1] == best.second)
          out.push_back(id), ++i;
        else
          out.push_back(syms[i]);
      syms = out;
    }
  }
  return merges;
}

// Encodes with merges applied in rank order to each piece (OpenAI's bpe(): lowest rank first).
std::vector<int64_t> naive_encode(const std::string& text, const std::vector<std::pair<int32_t, int32_t>>& merges) {
  std::map<std::pair<int32_t, int32_t>, int32_t> rank;
  for (size_t r = 0; r < merges.size(); ++r) rank[merges[r]] = static_cast<int32_t>(256 + r);
  std::vector<int64_t> out;
  for (const auto& p : ascii_pieces(text)) {
    std::vector<int32_t> syms(p.begin(), p.end());
    for (;;) {
      size_t at = syms.size();
      for (size_t i = 0; i + 1 < syms.size(); ++i) {
        auto it = rank.find({syms[i], syms[i + 1]});
        if (it != rank.end() && (at == syms.size() || it->second < rank.at({syms[at], syms[at + 1]}))) at = i;
      }
      if (at == syms.size()) break;
      syms[at] = rank.at({syms[at], syms[at + 1]});
      syms.erase(syms.begin() + static_cast<std::ptrdiff_t>(at) + 1);
    }
    out.insert(out.end(), syms.begin(), syms.end());
  }
  return out;
}

}  // namespace

TEST_CASE("bpe trained: merges and ids equal a naive trainer's", "[unit][tokenizer]") {
  std::string all = read_file(resolve_source("tiny_shakespeare"));
  std::string train = all.substr(0, 60000), held_out = all.substr(500000, 20000);
  auto t = make_tokenizer("bpe", {{"vocab_size", int64_t{400}}});
  CHECK(t->vocab_size() == 0);  // nothing learned yet
  t->fit(train);
  CHECK(t->vocab_size() == 400);
  auto merges = naive_train(train, 400);
  REQUIRE(merges.size() == 144);
  auto saved = json::parse(t->save());
  CHECK(saved["merges"].get<std::vector<std::pair<int32_t, int32_t>>>() == merges);
  CHECK(t->encode(held_out) == naive_encode(held_out, merges));
  CHECK(t->decode(t->encode(held_out)) == held_out);
  CHECK(t->encode(held_out).size() < held_out.size() * 6 / 10);  // it compresses

  auto r = make_tokenizer("bpe", {{"vocab_size", int64_t{400}}});
  r->load(t->save());
  CHECK(r->encode(held_out) == t->encode(held_out));
  auto sp = make_tokenizer("bpe", {{"vocab_size", int64_t{402}}, {"specials", std::string("<s>,</s>")}});
  sp->fit(train);
  CHECK(sp->vocab_size() == 402);
  CHECK(sp->encode("<s>To be</s>").front() == 400);
  CHECK(sp->encode("<s>To be</s>").back() == 401);
}

TEST_CASE("bpe: a saved state with merges that are not pairs of token ids is refused", "[unit][tokenizer]") {
  // Found by tests/fuzz/fuzz_tokenizer_state: json's get<int32_t>() of 5e25 is undefined
  // behaviour (UBSan: "outside the range of representable values of type 'int'").
  auto t = make_tokenizer("bpe", {{"vocab_size", int64_t{300}}});
  auto state = [](const std::string& merges) {
    return R"({"format":"lmgrid-bpe","version":1,"pretrained":"","specials":[],"merges":)" + merges + "}";
  };
  t->load(state("[[104,101],[256,32]]"));
  CHECK(t->vocab_size() == 258);
  for (const char* bad : {"[[104,101],[55555555555555555555555557]]", "[[104,1e30]]", "[[104,101.5]]", "[[-1,3]]",
                          "[[1,2,3]]", "[7]", "{\"a\":1}", "[[104,4294967296]]"}) {
    INFO(bad);
    CHECK_THROWS_WITH(t->load(state(bad)),
                      Catch::Contains("lmgrid-bpe state: merge") || Catch::Contains("merges is not"));
  }
  CHECK_THROWS_WITH(t->load(state("[[104,300]]")), Catch::Contains("names an unknown token"));
  CHECK_THROWS_WITH(t->load(R"({"format":"lmgrid-bpe","version":1e300,"pretrained":"","specials":[],"merges":[]})"),
                    Catch::Contains("format/version"));
}

TEST_CASE("byte and bpe: a saved state with an empty special token is refused", "[unit][tokenizer]") {
  // Found by tests/fuzz/fuzz_tokenizer_state (input kept in tests/fuzz/regressions/tokenizer_state/):
  // an empty special matched at every offset and encode() never advanced.
  auto bpe = make_tokenizer("bpe", {{"vocab_size", int64_t{300}}});
  const std::string bpe_state = R"({"format":"lmgrid-bpe","version":1,"pretrained":"","merges":[],"specials":)";
  bpe->load(bpe_state + R"(["<|endoftext|>"]})");
  CHECK(bpe->encode("a<|endoftext|>") == std::vector<int64_t>{97, 256});
  CHECK_THROWS_WITH(bpe->load(bpe_state + R"(["<|endoftext|>",""]})"),
                    Catch::Contains("lmgrid-bpe") && Catch::Contains("special token 1 is empty"));
  auto byte = make_tokenizer("byte");
  byte->load(R"({"format":"lmgrid-byte","version":1,"specials":["<s>"]})");
  CHECK(byte->encode("a<s>") == std::vector<int64_t>{97, 256});
  CHECK_THROWS_WITH(byte->load(R"({"format":"lmgrid-byte","version":1,"specials":[""]})"),
                    Catch::Contains("lmgrid-byte") && Catch::Contains("special token 0 is empty"));
  CHECK(byte->encode("a<s>") == std::vector<int64_t>{97, 256});  // a refused load leaves the state as it was
}

namespace {

struct CountingTokenizer : Tokenizer {
  int fits = 0;
  std::string state;
  void fit(const std::string& text) override { ++fits, state = std::to_string(text.size()); }
  std::vector<int64_t> encode(const std::string&) const override { return {}; }
  std::string decode(const std::vector<int64_t>&) const override { return ""; }
  int64_t vocab_size() const override { return state.empty() ? 0 : 1; }
  std::string save() const override { return state; }
  void load(const std::string& s) override { state = s; }
};

}  // namespace

TEST_CASE("tokenizer cache: the same plugin, params and text fit once", "[unit][tokenizer]") {
  auto dir = fs::temp_directory_path() / ("lmgrid-tokcache-" + std::to_string(::getpid()));
  fs::remove_all(dir);
  test::ScopedEnv env("LMGRID_CACHE", dir.string());
  Params p({{"vocab_size", Value(int64_t{7})}});
  auto a = std::make_shared<CountingTokenizer>();
  cached_tokenizer(a, "tokenizer/fake", "1.0", p, false)->fit("hello");
  CHECK(a->fits == 1);
  CHECK(fs::exists(tokenizer_cache_file("tokenizer/fake", "1.0", p, sha256_hex("hello"))));
  auto b = std::make_shared<CountingTokenizer>();  // another run: loads the cached state
  cached_tokenizer(b, "tokenizer/fake", "1.0", p, false)->fit("hello");
  CHECK(b->fits == 0);
  CHECK(b->state == "5");
  auto c = std::make_shared<CountingTokenizer>();  // other text, params or version: fits
  cached_tokenizer(c, "tokenizer/fake", "1.0", p, false)->fit("hello!");
  cached_tokenizer(c, "tokenizer/fake", "1.0", Params({{"vocab_size", Value(int64_t{8})}}), false)->fit("hello");
  cached_tokenizer(c, "tokenizer/fake", "1.1", p, false)->fit("hello");
  CHECK(c->fits == 3);
  auto d = std::make_shared<CountingTokenizer>();  // restored from a run's state: never fits
  cached_tokenizer(d, "tokenizer/fake", "1.0", p, true)->fit("other text");
  CHECK(d->fits == 0);
  fs::remove_all(dir);
}

TEST_CASE("ys_words: YS-71M's vocabulary order, markers and the <shout> fix", "[unit][tokenizer]") {
  auto t = make_tokenizer("ys_words");
  t->fit("Hello world, THIS is new.\n\n  the  end 42");
  // specials 0-5, "_" 6, printable ASCII 32-126 but "_" (94 pieces), à..ÿ but ÷ (31) with upper forms (30),
  // ¿ ¡ € £ (4): 166 fixed pieces, then the words first seen: hello world this is new the end 42
  const int64_t base = 6 + 1 + 94 + 31 + 30 + 4;
  CHECK(t->vocab_size() == base + 8);
  CHECK(t->decode({6}) == "_");
  CHECK(t->decode({7}) == " ");
  CHECK(t->decode({base}) == "hello");
  CHECK(t->decode({base + 7}) == "42");
  const int64_t upper = 0, shout = 1, space = 4, newline = 5;
  CHECK(t->encode("Hello") == std::vector<int64_t>{upper, base});
  CHECK(t->encode("THIS is") == std::vector<int64_t>{shout, base + 2, space, base + 3});
  CHECK(t->encode("new \n\n \tend") == std::vector<int64_t>{base + 4, newline, base + 6});
  CHECK(t->decode(t->encode("Hello world, THIS is new.")) == "Hello world, THIS is new.");
  auto zed = t->encode("zed");  // unknown word: its characters
  CHECK(t->decode(zed) == "zed");
  CHECK(zed.size() == 3);
  CHECK(t->encode("a\u4e2db") == t->encode("ab"));  // a character outside the vocabulary is dropped

  auto upstream = make_tokenizer("ys_words", {{"shout", false}});  // upstream's quirk: <upper> per letter
  upstream->fit("Hello world, THIS is new.");
  auto quirk = upstream->encode("THIS");
  REQUIRE(quirk.size() == 8);
  CHECK(quirk[0] == upper);
  CHECK(upstream->decode({quirk[1]}) == "t");
  CHECK(upstream->decode(quirk) == "THIS");
  CHECK(std::count(quirk.begin(), quirk.end(), shout) == 0);
  CHECK(error_of([&] { t->encode("ok\xc3"); }) == "invalid UTF-8 at byte offset 2");
}

TEST_CASE("tokenizers: document markers (bos_id, eos_id)", "[unit][tokenizer]") {
  // GPT-2: <|endoftext|> (50256) ends and starts documents; without the special there is none.
  auto g = gpt2("<|endoftext|>");
  CHECK(g->eos_id() == 50256);
  CHECK(g->bos_id() == 50256);
  CHECK(gpt2()->eos_id() == -1);
  // byte: Llama-2 style markers among the specials; a BOS of its own wins over the EOS.
  auto b = make_tokenizer("byte", {{"specials", std::string("<pad>,<s>,</s>")}});
  CHECK(b->bos_id() == 257);
  CHECK(b->eos_id() == 258);
  CHECK(b->decode({b->bos_id(), 'a', b->eos_id()}) == "<s>a</s>");
  CHECK(make_tokenizer("byte")->eos_id() == -1);
  CHECK(make_tokenizer("char")->bos_id() == -1);
  // The trainer's caching wrapper passes them through.
  auto cached = cached_tokenizer(b, "tokenizer/byte", "1.0", Params(std::map<std::string, Value>{}), true);
  CHECK(cached->bos_id() == 257);
  CHECK(cached->eos_id() == 258);
  // ys_words: its fixed <start> and <end> pieces.
  auto ys = make_tokenizer("ys_words");
  ys->fit("Hello there.");
  CHECK(ys->encode("<start>") == std::vector<int64_t>{ys->bos_id()});
  CHECK(ys->encode("<end>") == std::vector<int64_t>{ys->eos_id()});
}
