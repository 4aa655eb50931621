// tokenizer/words: the split (lower-cased words, single punctuation marks, newlines), the
// vocabulary order (specials, then count descending, ties in byte order), max_vocab and
// min_count, <unk>, decode's spacing, save/load, bad input.
#include <catch2/catch.hpp>

#include <lmgrid/base/errors.hpp>
#include <lmgrid/base/params.hpp>
#include <lmgrid/plugin/registry.hpp>

#include "../support.hpp"

using namespace lmgrid;

namespace {

const TokenizerPlugin& words_plugin() {
  return static_cast<const TokenizerPlugin&>(*test::built_plugins().get(PluginKind::tokenizer, "words").plugin);
}
std::shared_ptr<Tokenizer> words(std::map<std::string, Value> v = {}) {
  Params p = validate_params(words_plugin().params(), v, "[tokenizer]");
  words_plugin().check(p);
  return words_plugin().create(p);
}
using Ids = std::vector<int64_t>;

}  // namespace

TEST_CASE("words: vocabulary by count, ties in byte order, specials first", "[unit][words]") {
  auto tok = words();
  tok->fit("Mary moved to the bathroom.\nWhere is Mary? bathroom");
  // mary 2, bathroom 2; then once each: "\n" . ? is moved the to where.
  CHECK(tok->vocab_size() == 13);
  CHECK(tok->decode({0, 1, 2}) == "<pad> <unk> <eos>");
  CHECK(tok->eos_id() == 2);
  CHECK(tok->bos_id() == -1);
  CHECK(tok->encode("bathroom mary") == Ids{3, 4});
  CHECK(tok->encode("\n.?") == Ids{5, 6, 7});
  CHECK(tok->encode("Where is Mary?") == Ids{12, 8, 4, 7});
  CHECK(tok->encode("WHERE  is\tmary ?") == Ids{12, 8, 4, 7});  // case and spacing do not matter
  CHECK(tok->encode("Where is John?") == Ids{12, 8, 1, 7});     // unseen word: <unk>
  CHECK(tok->encode("mary <eos>") == Ids{4, 2});                // a special written in the text
  CHECK(tok->decode(tok->encode("Where is Mary? bathroom")) == "where is mary? bathroom");
  CHECK(tok->decode({4, 5, 3, 6}) == "mary\nbathroom.");  // no space around a newline or before a mark
  CHECK_THROWS_AS(tok->decode({13}), std::out_of_range);
  CHECK_THROWS_AS(tok->decode({-1}), std::out_of_range);
}

TEST_CASE("words: bAbI answers and lines", "[unit][words]") {
  auto tok = words();
  std::string lines =
      "Mary moved to the bathroom. John went to the hallway. Where is Mary? bathroom\n"
      "What is Mary carrying? football,apple\nHow do you go from the kitchen to the garden? s,e\n";
  tok->fit(lines);
  CHECK(tok->encode("football,apple").size() == 3);  // list answers: word , word
  CHECK(tok->encode("s,e").size() == 3);             // directions
  CHECK(tok->decode(tok->encode("football,apple")) == "football, apple");
  std::string line = "mary moved to the bathroom. john went to the hallway. where is mary? bathroom";
  CHECK(tok->decode(tok->encode(line)) == line);
  // Apostrophes and hyphens inside a word keep it whole.
  tok->fit("don't well-known - 'quoted'");
  CHECK(tok->encode("don't").size() == 1);
  CHECK(tok->encode("well-known").size() == 1);
  CHECK(tok->encode("'quoted'").size() == 3);
}

TEST_CASE("words: max_vocab, min_count, lowercase", "[unit][words]") {
  const std::string text = "b b b a a c c d";
  auto capped = words({{"max_vocab", int64_t{5}}});
  capped->fit(text);
  CHECK(capped->vocab_size() == 5);
  CHECK(capped->encode("b a c d") == Ids{3, 4, 1, 1});
  auto min2 = words({{"min_count", int64_t{2}}});
  min2->fit(text);
  CHECK(min2->vocab_size() == 6);  // specials, b, a, c (d once)
  CHECK(min2->encode("c a b d") == Ids{5, 4, 3, 1});
  auto cased = words({{"lowercase", false}});
  cased->fit("Mary mary");
  CHECK(cased->vocab_size() == 5);
  CHECK(cased->decode(cased->encode("Mary mary")) == "Mary mary");
  CHECK_THROWS_AS(words({{"max_vocab", int64_t{3}}}), UserError);
}

TEST_CASE("words: save and load round-trip exactly", "[unit][words]") {
  auto tok = words();
  tok->fit("The kitchen is north of the office.\nWhere is the caf\xc3\xa9? kitchen\n");
  auto copy = words({{"max_vocab", int64_t{100}}});
  copy->load(tok->save());
  CHECK(copy->save() == tok->save());
  CHECK(copy->vocab_size() == tok->vocab_size());
  const std::string probe = "The office is north of the CAF\xc3\xa9 and the garden.\n";
  CHECK(copy->encode(probe) == tok->encode(probe));
  CHECK(copy->decode(copy->encode(probe)) == tok->decode(tok->encode(probe)));
  // A restored tokenizer keeps its fitted lowercase setting.
  auto cased = words({{"lowercase", false}});
  cased->fit("Mary");
  auto restored = words();
  restored->load(cased->save());
  CHECK(restored->encode("Mary") == Ids{3});
  CHECK(restored->encode("mary") == Ids{1});
  CHECK_THROWS_AS(copy->load("not json"), std::invalid_argument);
  CHECK_THROWS_AS(copy->load(R"({"format": "lmgrid-words-1", "lowercase": true, "vocab": ["a"]})"),
                  std::invalid_argument);
  CHECK_THROWS_AS(copy->load(R"({"format": "other", "lowercase": true, "vocab": ["<pad>", "<unk>", "<eos>"]})"),
                  std::invalid_argument);
  CHECK_THROWS_AS(tok->fit("bad \xff byte"), std::invalid_argument);  // names the byte offset
}
