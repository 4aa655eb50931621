// data/babi: the parser on the real task files (babi_en, and babi_en10k read from its .tar.xz),
// the BABILong composition, and the dataset's rows through the plugin with tokenizer/words:
// statements then question then answer and terminator, only the answer and terminator scored,
// the newest statements kept, filler placed around every fact in order at the target length,
// deterministic in the seed. Counts asserted here were measured on the files with grep/awk
// (grep -c TAB: questions; awk '$1==1': stories).
#include <catch2/catch.hpp>

#include <random>
#include <set>

#include <fmt/format.h>

#include <lmgrid/base/errors.hpp>
#include <lmgrid/base/params.hpp>
#include <lmgrid/base/util.hpp>
#include <lmgrid/data/data_source.hpp>
#include <lmgrid/plugin/registry.hpp>

#include "../support.hpp"
#include "babi_format.hpp"

using namespace lmgrid;
namespace bb = lmgrid::babi;

namespace {

bb::TaskFile parse(const std::string& source, int task, bool train) {
  auto texts = bb::read_source(source, {task});
  const auto& tt = texts.at(task);
  REQUIRE((train ? tt.has_train : tt.has_test));
  return bb::parse_task_file(train ? tt.train : tt.test, task, train ? tt.train_origin : tt.test_origin);
}

struct Made {
  std::shared_ptr<Tokenizer> tok;
  std::shared_ptr<Dataset> data;
};

Made make_babi(std::map<std::string, Value> values, uint64_t seed = 1, const std::string& tokenizer = "words") {
  const Registry& reg = test::built_plugins();
  const auto& tp = static_cast<const TokenizerPlugin&>(*reg.get(PluginKind::tokenizer, tokenizer).plugin);
  const auto& dp = static_cast<const DataPlugin&>(*reg.get(PluginKind::data, "babi").plugin);
  Params p = validate_params(dp.params(), values, "[data]");
  dp.check(p);
  Made m;
  m.tok = tp.create(validate_params(tp.params(), {}, "[tokenizer]"));
  m.data = dp.create(p, {m.tok, seed});
  return m;
}

void check_babi_params(std::map<std::string, Value> values) {
  const auto& dp = static_cast<const DataPlugin&>(*test::built_plugins().get(PluginKind::data, "babi").plugin);
  dp.check(validate_params(dp.params(), values, "[data]"));
}

std::vector<int64_t> row(const torch::Tensor& t, int64_t b) {
  auto r = t[b].contiguous();
  return {r.data_ptr<int64_t>(), r.data_ptr<int64_t>() + r.numel()};
}

// The scored targets of row b, and the index of the first one.
std::vector<int64_t> scored(const Batch& x, int64_t b, int64_t* first = nullptr) {
  std::vector<int64_t> out;
  auto tg = row(x.targets, b);
  auto m = x.loss_mask[b];
  for (int64_t t = 0; t < m.numel(); ++t)
    if (m[t].item<float>() > 0) {
      if (out.empty() && first) *first = t;
      out.push_back(tg[static_cast<size_t>(t)]);
    }
  return out;
}

// Where `needle` occurs as a contiguous run in hay at or after `from`, or -1.
int64_t find_run(const std::vector<int64_t>& hay, const std::vector<int64_t>& needle, int64_t from) {
  auto it = std::search(hay.begin() + from, hay.end(), needle.begin(), needle.end());
  return it == hay.end() ? -1 : static_cast<int64_t>(it - hay.begin());
}

}  // namespace

TEST_CASE("babi: the parser on en's task files", "[unit][babi]") {
  // qa1: 1,000 questions in 200 stories in each file (grep -c TAB; awk '$1==1').
  auto train = parse("babi_en", 1, true), test = parse("babi_en", 1, false);
  CHECK(train.examples.size() == 1000);
  CHECK(train.stories.size() == 200);
  CHECK(test.examples.size() == 1000);
  CHECK(test.stories.size() == 200);
  // The first story: 10 statements, 5 questions; the ID going back to 1 starts story 1.
  REQUIRE(train.stories[0].statements.size() == 10);
  CHECK(train.stories[0].statements[0] == "Mary moved to the bathroom.");
  CHECK(train.stories[0].statements[9] == "John moved to the bedroom.");
  const auto& q0 = train.examples[0];
  CHECK(q0.question == "Where is Mary?");
  CHECK(q0.answer == "bathroom");
  CHECK(q0.story == 0);
  CHECK(q0.statements == 2);  // statements only: "Mary moved ...", "John went ..."
  CHECK(q0.supporting == std::vector<size_t>{0});
  CHECK(train.examples[4].story == 0);
  CHECK(train.examples[4].statements == 10);
  CHECK(train.examples[4].supporting == std::vector<size_t>{5});  // line 8: lines 3 and 6 are questions
  CHECK(train.examples[5].story == 1);
  CHECK(train.examples[5].statements == 2);
  CHECK(train.stories[1].statements[0] == "Sandra travelled to the office.");

  // qa2: two supporting facts (lines 3 and 6 of the story = statements 2 and 5).
  auto qa2 = parse("babi_en", 2, true);
  const auto& e2 = qa2.examples[0];
  CHECK(e2.question == "Where is the football?");
  CHECK(e2.answer == "garden");
  REQUIRE(e2.supporting == std::vector<size_t>{2, 5});
  CHECK(qa2.stories[0].statements[2] == "Mary got the football there.");
  CHECK(qa2.stories[0].statements[5] == "Mary went back to the garden.");

  // qa8: a list answer (question 53 of the file, the first with a comma); qa19: directions.
  auto qa8 = parse("babi_en", 8, true);
  const auto& e8 = qa8.examples[52];
  CHECK(e8.question == "What is Mary carrying?");
  CHECK(e8.answer == "football,apple");
  CHECK(e8.answer_words() == std::vector<std::string>{"football", "apple"});
  CHECK(e8.supporting.size() == 2);
  auto qa19 = parse("babi_en", 19, true);
  const auto& e19 = qa19.examples[0];
  CHECK(e19.question == "How do you go from the kitchen to the garden?");
  CHECK(e19.answer_words() == std::vector<std::string>{"s", "e"});
  CHECK(e19.supporting == std::vector<size_t>{1, 3});
  CHECK(qa19.stories[0].statements[1] == "The kitchen is north of the office.");

  // Every task file of en parses, 1,000 questions each, every supporting fact before its question.
  for (int t = 1; t <= 20; ++t)
    for (bool tr : {true, false}) {
      auto f = parse("babi_en", t, tr);
      INFO("qa" << t << (tr ? " train" : " test"));
      CHECK(f.examples.size() == 1000);
      for (const auto& ex : f.examples)
        for (auto s : ex.supporting) REQUIRE(s < ex.statements);
    }
}

TEST_CASE("babi: malformed lines are bad input naming the line", "[unit][babi]") {
  CHECK_THROWS_AS(bb::parse_task_file("1 A.\n3 B.\n", 1, "x.txt"), UserError);  // ID skips
  CHECK_THROWS_AS(bb::parse_task_file("2 A.\n", 1, "x.txt"), UserError);        // no story start
  CHECK_THROWS_AS(bb::parse_task_file("1 A?\tb\t1\n", 1, "x.txt"), UserError);  // fact after the question
  CHECK_THROWS_AS(bb::parse_task_file("1 A.\n2 Q?\ta\t1\n3 R?\tb\t2\n", 1, "x.txt"), UserError);  // a question
  CHECK_THROWS_AS(bb::parse_task_file("A.\n", 1, "x.txt"), UserError);
  try {
    bb::parse_task_file("1 A.\n1 B.\n5 C.\n", 1, "x.txt");
    FAIL("no throw");
  } catch (const UserError& e) {
    CHECK_THAT(e.what(), Catch::Contains("x.txt:3"));
  }
  // A CRLF file parses as its LF twin.
  auto f = bb::parse_task_file("1 A b.\r\n2 Q?\tb\t1\r\n", 4, "x.txt");
  CHECK(f.stories[0].statements[0] == "A b.");
  CHECK(f.examples[0].answer == "b");
}

TEST_CASE("babi: en-10k read from its .tar.xz", "[unit][babi]") {
  auto l = bb::list_source("babi_en10k");
  CHECK_THAT(l.where, Catch::Contains("en-10k.tar.xz (tasks_1-20_v1-2/en-10k)"));
  int trains = 0, tests = 0;
  for (auto& [t, f] : l.files) trains += f.first, tests += f.second;
  CHECK(tests == 20);
  CHECK(trains == 19);  // the copy lacks qa3_three-supporting-facts_train.txt
  CHECK_FALSE(l.files.at(3).first);
  CHECK(l.names.at(3) == "qa3_three-supporting-facts");

  auto train = parse("babi_en10k", 1, true);
  CHECK(train.examples.size() == 10000);
  CHECK(train.stories.size() == 2000);
  // Its first story is the README's example, the same as en's first story.
  auto en = parse("babi_en", 1, true);
  CHECK(train.stories[0].statements == en.stories[0].statements);
  CHECK(train.stories[1].statements[0] == "Sandra travelled to the office.");
  CHECK(train.examples[3].question == "Where is Daniel?");
  CHECK(train.examples[3].answer == "office");
  CHECK(train.examples[3].supporting == std::vector<size_t>{7});  // line 11 = statement 7
  // The 10k test files are en's test files, byte for byte.
  auto t10k = bb::read_source("babi_en10k", {1, 19}), t1k = bb::read_source("babi_en", {1, 19});
  CHECK(t10k.at(1).test == t1k.at(1).test);
  CHECK(t10k.at(19).test == t1k.at(19).test);
  CHECK(t10k.at(19).train != t1k.at(19).train);

  // qa3 of babi_en10k is refused, saying which file is missing and what to do.
  try {
    check_babi_params({{"tasks", std::string("1-20")}});
    FAIL("no throw");
  } catch (const UserError& e) {
    CHECK_THAT(e.what(), Catch::Contains("qa3_three-supporting-facts_train.txt"));
    CHECK_THAT(e.what(), Catch::Contains("1-2,4-20"));
  }
  CHECK_NOTHROW(check_babi_params({{"tasks", std::string("1-2,4-20")}}));
}

TEST_CASE("babi: a folder or archive given as a path; '#' picks its folder", "[unit][babi]") {
  namespace fs = std::filesystem;
  fs::path folder = resolve_source("babi_en");
  auto l = bb::list_source(folder.string());
  CHECK(l.files.size() == 20);
  fs::path archive = resolve_source("babi_en10k");
  CHECK(bb::list_source(archive.string() + "#en-10k").files.size() == 20);
  CHECK_THROWS_AS(bb::list_source(archive.string() + "#hn"), UserError);
  CHECK_THROWS_AS(bb::list_source("/no/such/babi"), UserError);
}

TEST_CASE("babi: tasks and lengths", "[unit][babi]") {
  CHECK(bb::parse_tasks("1-20").size() == 20);
  CHECK(bb::parse_tasks("1,2,3") == std::set<int>{1, 2, 3});
  CHECK(bb::parse_tasks("1-2, 4-5") == std::set<int>{1, 2, 4, 5});
  CHECK(bb::parse_tasks("7") == std::set<int>{7});
  for (const char* bad : {"", "0", "21", "5-3", "1-", "a", "1,,2"}) CHECK_THROWS_AS(bb::parse_tasks(bad), UserError);
  CHECK(bb::parse_lengths("0,1024,2048") == std::vector<int64_t>{0, 1024, 2048});
  CHECK(bb::parse_lengths("[0, 512, 512]") == std::vector<int64_t>{0, 512});
  CHECK_THROWS_AS(bb::parse_lengths("-1"), UserError);
  CHECK_THROWS_AS(bb::parse_lengths("1k"), UserError);
  CHECK_THROWS_AS(bb::parse_lengths(""), UserError);
  CHECK_THROWS_AS(bb::parse_lengths("0,,8"), UserError);
}

TEST_CASE("babi: filler sentences", "[unit][babi]") {
  using V = std::vector<std::string>;
  CHECK(bb::split_sentences("It was  a truth.\nMr. Darcy\nsaid \"No!\" Then? yes") ==
        V{"It was a truth.", "Mr. Darcy said \"No!\"", "Then?", "yes"});
  CHECK(bb::split_sentences("  \n ").empty());
  CHECK(bb::split_sentences("e.g.x and 3.5 stay.") == V{"e.g.x and 3.5 stay."});
}

TEST_CASE("babi: BABILong composition keeps the facts in order at the target length", "[unit][babi]") {
  std::vector<int64_t> facts{6, 7, 5, 9};  // 27 tokens
  std::vector<int64_t> sent;
  for (int i = 0; i < 400; ++i) sent.push_back(5 + i % 17);
  bb::FillerLengths filler(sent);
  for (int64_t target : {int64_t{28}, int64_t{100}, int64_t{1000}, int64_t{4000}}) {
    for (uint64_t seed = 1; seed <= 20; ++seed) {
      std::mt19937_64 rng(seed), again(seed);
      auto pcs = bb::compose(facts, filler, target, rng);
      auto pcs2 = bb::compose(facts, filler, target, again);
      int64_t total = 0;
      std::vector<size_t> fact_order;
      std::vector<size_t> filler_order;
      for (size_t k = 0; k < pcs.size(); ++k) {
        total += pcs[k].tokens;
        (pcs[k].fact ? fact_order : filler_order).push_back(pcs[k].index);
        CHECK(pcs[k].index == pcs2[k].index);  // the same stream, the same context
        if (pcs[k].fact) CHECK(pcs[k].tokens == facts[pcs[k].index]);
      }
      CHECK(total == target);                                // exactly the target length
      CHECK(fact_order == std::vector<size_t>{0, 1, 2, 3});  // every fact, in order
      for (size_t k = 1; k < filler_order.size(); ++k) CHECK(filler_order[k] == filler_order[k - 1] + 1);
    }
  }
  // Different streams put the facts in different places.
  std::set<std::vector<size_t>> layouts;
  for (uint64_t seed = 1; seed <= 10; ++seed) {
    std::mt19937_64 rng(seed);
    std::vector<size_t> where;
    auto pcs = bb::compose(facts, filler, 1000, rng);
    for (size_t k = 0; k < pcs.size(); ++k)
      if (pcs[k].fact) where.push_back(k);
    layouts.insert(where);
  }
  CHECK(layouts.size() > 5);
  std::mt19937_64 rng(1);
  CHECK(bb::compose(facts, filler, 0, rng).size() == 4);   // no filler at length 0
  CHECK(bb::compose(facts, filler, 20, rng).size() == 4);  // the facts alone exceed the target
  CHECK_THROWS_AS(bb::compose(facts, filler, filler.total() + 100, rng), UserError);
}

TEST_CASE("babi: rows are statements, question, answer and EOS; only the answer is scored", "[unit][babi]") {
  auto m = make_babi({{"source", std::string("babi_en")}, {"tasks", std::string("1,8,19")}, {"seq_len", int64_t{96}}});
  // val = test: 3,000 questions, the tasks in turn: with 3 rows per batch, batch 0 holds the
  // first question of each task.
  REQUIRE(m.data->eval_batch_count(Split::val, 3) == 1000);
  CHECK(m.data->eval_batch_count(Split::test, 1) == 3000);
  Batch x = m.data->eval_batch(Split::val, 0, 3);
  REQUIRE(x.tags == std::vector<std::string>{"task=qa1", "task=qa8", "task=qa19"});
  REQUIRE(x.answer_ids.defined());
  auto in = row(x.inputs, 0);
  // qa1's first test question: "1 John travelled to the hallway. 2 Mary journeyed to the bathroom. 3 Where is John?"
  int64_t first = -1;
  auto ans = scored(x, 0, &first);
  std::vector<int64_t> prefix(in.begin(), in.begin() + first + 1);
  CHECK(m.tok->decode(prefix) == "john travelled to the hallway. mary journeyed to the bathroom. where is john?");
  CHECK(m.tok->decode(ans) == "hallway <eos>");
  CHECK(ans.back() == m.tok->eos_id());
  CHECK(x.loss_mask[0].sum().item<double>() == 2.0);
  // answer_ids: the row's id exactly where the loss mask is, -1 elsewhere.
  for (int64_t b = 0; b < 3; ++b) {
    CHECK(torch::equal(x.answer_ids[b].ge(0), x.loss_mask[b].gt(0)));
    CHECK(x.answer_ids[b].max().item<int64_t>() == b);
  }
  // qa19's "s,e" and qa8's lists: several answer tokens, then the EOS, all scored.
  CHECK(m.tok->decode(scored(x, 2)) == "s, s <eos>");  // qa19's first test question
  bool list_seen = false;
  for (int64_t i = 0; i < 200 && !list_seen; ++i) {
    Batch y = m.data->eval_batch(Split::val, i, 3);
    auto a = scored(y, 1);
    if (a.size() == 4) {  // "x , y <eos>"
      list_seen = true;
      CHECK(m.tok->decode(a).find(", ") != std::string::npos);
    }
  }
  CHECK(list_seen);
  // Padding after the EOS: targets 0 and unscored.
  auto tg = row(x.targets, 0);
  CHECK(tg[static_cast<size_t>(first) + 2] == 0);

  // Training batches: answer-only loss, a function of (seed, index).
  auto m2 = make_babi({{"source", std::string("babi_en")}, {"tasks", std::string("1,8,19")}, {"seq_len", int64_t{96}}});
  auto other =
      make_babi({{"source", std::string("babi_en")}, {"tasks", std::string("1,8,19")}, {"seq_len", int64_t{96}}}, 2);
  Batch t1 = m.data->train_batch(5, 8), t2 = m2.data->train_batch(5, 8);
  CHECK(torch::equal(t1.inputs, t2.inputs));
  CHECK(torch::equal(t1.loss_mask, t2.loss_mask));
  CHECK_FALSE(torch::equal(t1.inputs, other.data->train_batch(5, 8).inputs));
  CHECK_FALSE(torch::equal(t1.inputs, m.data->train_batch(6, 8).inputs));
  for (int64_t b = 0; b < 8; ++b) {
    auto a = scored(t1, b);
    REQUIRE(a.size() >= 2);
    CHECK(a.back() == m.tok->eos_id());
    CHECK(std::count(a.begin(), a.end(), m.tok->eos_id()) == 1);
  }
  CHECK(torch::equal(m.data->eval_batch(Split::val, 7, 3).inputs, other.data->eval_batch(Split::val, 7, 3).inputs));
}

TEST_CASE("babi: a long story keeps its newest statements", "[unit][babi]") {
  // seq_len 24: qa1's fifth test question (10 statements before it) keeps the newest that fit.
  auto m = make_babi({{"source", std::string("babi_en")}, {"tasks", std::string("1")}, {"seq_len", int64_t{24}}});
  Batch x = m.data->eval_batch(Split::val, 4, 1);  // batch 4 of 1,000 rows of 1 = question 4
  int64_t first = -1;
  auto ans = scored(x, 0, &first);
  auto in = row(x.inputs, 0);
  std::vector<int64_t> prefix(in.begin(), in.begin() + first + 1);
  auto test = parse("babi_en", 1, false);
  const auto& ex = test.examples[4];
  REQUIRE(ex.statements == 10);
  CHECK(m.tok->decode(ans) == "kitchen <eos>");
  // 25 tokens hold: the kept statements, the question (4), the answer (1) and the EOS.
  const int64_t budget = 25 - 6;
  int64_t used = 0;
  size_t k = ex.statements;
  while (k > 0) {
    auto n = static_cast<int64_t>(m.tok->encode(" " + test.stories[0].statements[k - 1]).size());
    if (used + n > budget) break;
    used += n, --k;
  }
  REQUIRE(k > 0);                  // something was dropped
  REQUIRE(k < ex.statements - 1);  // and at least two statements kept
  std::string want;
  for (size_t i = k; i < ex.statements; ++i) want += test.stories[0].statements[i] + " ";
  want += ex.question;
  std::string lower;
  for (char c : want) lower += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  CHECK(m.tok->decode(prefix) == lower);
  CHECK(static_cast<int64_t>(prefix.size()) == used + 4);
  // qa19's question, answer and EOS take more than seq_len + 1 = 9 tokens.
  CHECK_THROWS(make_babi({{"source", std::string("babi_en")}, {"tasks", std::string("19")}, {"seq_len", int64_t{8}}}));
}

TEST_CASE("babi: a tokenizer without EOS ends the answer with its newline", "[unit][babi]") {
  auto m = make_babi({{"source", std::string("babi_en")}, {"tasks", std::string("1")}, {"seq_len", int64_t{128}}}, 1,
                     "char");
  REQUIRE(m.tok->eos_id() < 0);
  Batch x = m.data->eval_batch(Split::val, 0, 1);
  CHECK(m.tok->decode(scored(x, 0)) == " hallway\n");  // the answer's leading space is its first token
}

TEST_CASE("babi: val = train holds out the last 10% of each task's stories", "[unit][babi]") {
  auto m =
      make_babi({{"source", std::string("babi_en")}, {"tasks", std::string("1,2")}, {"val", std::string("train")}});
  // qa1: 20 of 200 stories, 5 questions each; qa2: the last 20 stories (measured below).
  auto qa2 = parse("babi_en", 2, true);
  size_t qa2_val = 0;
  for (const auto& ex : qa2.examples) qa2_val += ex.story >= 180;
  CHECK(m.data->eval_batch_count(Split::val, 1) == static_cast<int64_t>(100 + qa2_val));
  CHECK(m.data->eval_batch_count(Split::test, 1) == 2000);
}

TEST_CASE("babi: BABILong mode puts every fact in order into filler of the target length", "[unit][babi]") {
  std::map<std::string, Value> v{{"source", std::string("babi_en")},
                                 {"tasks", std::string("1,2")},
                                 {"filler", std::string("austen")},
                                 {"lengths", std::string("0,256,512")},
                                 {"seq_len", int64_t{540}}};
  auto m = make_babi(v), m2 = make_babi(v, 7);
  // Every val question at each length: 2,000 x 3 rows. The tasks in turn (qa1's k-th question is
  // row 2k, qa2's row 2k + 1), each row at the 3 lengths in consecutive batches.
  REQUIRE(m.data->eval_batch_count(Split::val, 1) == 6000);
  REQUIRE(m.data->eval_batch_count(Split::val, 8) == 250 * 3);
  auto qa1 = parse("babi_en", 1, false), qa2 = parse("babi_en", 2, false);
  const std::vector<int64_t> lengths{0, 256, 512};
  for (size_t l = 0; l < 3; ++l)
    for (int64_t e : {int64_t{0}, int64_t{4}, int64_t{1500}, int64_t{1999}}) {  // e >= 1000: qa2's question e - 1000
      int64_t j = (e < 1000 ? 2 * e : 2 * (e - 1000) + 1) * 3 + static_cast<int64_t>(l);
      Batch x = m.data->eval_batch(Split::val, j, 1);
      const auto& tf = e < 1000 ? qa1 : qa2;
      const auto& ex = tf.examples[static_cast<size_t>(e % 1000)];
      INFO("length " << lengths[l] << ", question " << e);
      CHECK(x.tags[0] == fmt::format("task=qa{} length={}", e < 1000 ? 1 : 2, lengths[l]));
      int64_t first = -1;
      auto ans = scored(x, 0, &first);
      auto in = row(x.inputs, 0);
      auto q = m.tok->encode(" " + ex.question);
      int64_t context = first + 1 - static_cast<int64_t>(q.size());
      std::vector<int64_t> qs(in.begin() + context, in.begin() + first + 1);
      CHECK(qs == q);
      // Every statement, in order, as a whole run inside the context.
      int64_t at = 0, fact_tokens = 0;
      for (size_t k = 0; k < ex.statements; ++k) {
        auto f = m.tok->encode(" " + tf.stories[ex.story].statements[k]);
        fact_tokens += static_cast<int64_t>(f.size());
        int64_t pos = find_run(std::vector<int64_t>(in.begin(), in.begin() + context), f, at);
        REQUIRE(pos >= 0);
        at = pos + static_cast<int64_t>(f.size());
      }
      CHECK(context == std::max(lengths[l], fact_tokens));  // the target exactly (the facts alone if longer)
      CHECK(m.tok->decode(ans) == ex.answer + " <eos>");
      // Evaluation rows do not depend on the run's seed.
      CHECK(torch::equal(x.inputs, m2.data->eval_batch(Split::val, j, 1).inputs));
    }
  // Any prefix of the batches is balanced: in the first 6 batches of 8 (every length twice),
  // each (task, length) has 8 rows; batches 3k, 3k + 1, 3k + 2 ask the same questions, one length
  // each; a row is the same at batch size 8 as at batch size 1 (cut to its own width there).
  std::map<std::string, int> per_slice;
  for (int64_t i = 0; i < 6; ++i) {
    Batch x = m.data->eval_batch(Split::val, i, 8);
    for (int64_t b = 0; b < 8; ++b) {
      per_slice[x.tags[static_cast<size_t>(b)]]++;
      CHECK(x.tags[static_cast<size_t>(b)].find(fmt::format("length={}", lengths[static_cast<size_t>(i % 3)])) !=
            std::string::npos);
      Batch one = m.data->eval_batch(Split::val, (i / 3 * 8 + b) * 3 + i % 3, 1);
      auto w = one.inputs.size(1);
      CHECK(torch::equal(x.inputs[b].narrow(0, 0, w), one.inputs[0]));
      CHECK(torch::equal(x.loss_mask[b].narrow(0, 0, w), one.loss_mask[0]));
      if (i % 3 > 0) {  // the same question as at length 0: the same answer tokens and question
        Batch zero = m.data->eval_batch(Split::val, i / 3 * 3, 8);
        CHECK(scored(x, b) == scored(zero, b));
        const auto& t = x.tags[static_cast<size_t>(b)];
        const auto& t0 = zero.tags[static_cast<size_t>(b)];
        CHECK(t.substr(0, t.find(' ')) == t0.substr(0, t0.find(' ')));
      }
    }
  }
  REQUIRE(per_slice.size() == 6);
  for (const auto& [slice, n] : per_slice) {
    INFO(slice);
    CHECK(n == 8);
  }
  // val = test: the val rows are the test rows, filler and all.
  CHECK(torch::equal(m.data->eval_batch(Split::val, 4321, 1).inputs, m.data->eval_batch(Split::test, 4321, 1).inputs));
  // Training rows: the same seed and index give the same rows.
  Batch a = m.data->train_batch(3, 16), b = make_babi(v).data->train_batch(3, 16);
  CHECK(torch::equal(a.inputs, b.inputs));
  CHECK_FALSE(torch::equal(a.inputs, m2.data->train_batch(3, 16).inputs));
  // A length drawn per batch: in a batch of length 256 or 512 every row's answer comes after 256
  // tokens; at length 0 only a long qa2 story's can (drawn per row, 2/3 of the rows of each batch
  // would be long). Over 30 batches both kinds happen; a batch is cut to its longest row, rounded up
  // to 64.
  std::set<int64_t> widths;
  int64_t long_batches = 0, short_batches = 0;
  for (int64_t i = 0; i < 30; ++i) {
    Batch x = m.data->train_batch(i, 16);
    int64_t long_rows = 0, longest = 0;
    for (int64_t r = 0; r < 16; ++r) {
      auto scored_at = x.loss_mask[r].nonzero();
      long_rows += scored_at[0][0].item<int64_t>() >= 256;
      longest = std::max(longest, scored_at[-1][0].item<int64_t>() + 1);  // the terminator's target is the last
    }
    INFO("batch " << i);
    CHECK((long_rows == 16 || long_rows <= 2));
    long_batches += long_rows == 16;
    short_batches += long_rows <= 2;
    CHECK(x.inputs.size(1) == std::min<int64_t>(540, (longest + 63) / 64 * 64));
    CHECK(x.targets.sizes() == x.inputs.sizes());
    CHECK(x.loss_mask.sizes() == x.inputs.sizes());
    widths.insert(x.inputs.size(1));
  }
  CHECK(long_batches > 0);
  CHECK(short_batches > 0);
  CHECK(widths.size() >= 2);
  CHECK(*widths.begin() < 512);  // batches of lengths 0 and 256 are cut below seq_len
}

TEST_CASE("babi: inconsistent parameters are bad input saying which", "[unit][babi]") {
  auto message = [](std::map<std::string, Value> v) -> std::string {
    try {
      check_babi_params(v);
    } catch (const UserError& e) {
      return e.what();
    }
    return "";
  };
  std::string en = "babi_en";
  CHECK_THAT(message({{"source", en}, {"lengths", std::string("0,1024")}}), Catch::Contains("filler"));
  CHECK_THAT(message({{"source", en}, {"filler", std::string("austen")}}), Catch::Contains("lengths"));
  CHECK_THAT(message({{"source", en},
                      {"filler", std::string("austen")},
                      {"lengths", std::string("0,1024")},
                      {"seq_len", int64_t{1024}}}),
             Catch::Contains("seq_len must be at least 1024 + 8 = 1032"));
  CHECK_THAT(message({{"source", en}, {"tasks", std::string("0-3")}}), Catch::Contains("tasks"));
  CHECK_THAT(message({{"source", std::string("/no/such")}}), Catch::Contains("/no/such"));
  CHECK_THAT(message({{"source", en}, {"filler", std::string("no_such_filler")}, {"lengths", std::string("64")}}),
             Catch::Contains("no_such_filler"));
  CHECK(message({{"source", en}, {"filler", std::string("kjv")}, {"lengths", std::string("0,64")}}).empty());
}

// Not run by ctest: the figures in plugins/data/babi/README.md (question counts, longest rows
// in tokens of tokenizer/words per task, rows cut at seq_len 256 and 512).
// build/bin/lmgrid_tests "[.babi-stats]" -s
TEST_CASE("babi: measured figures", "[.babi-stats]") {
  const auto& tp =
      static_cast<const TokenizerPlugin&>(*test::built_plugins().get(PluginKind::tokenizer, "words").plugin);
  for (std::string source : {"babi_en", "babi_en10k"}) {
    auto all = bb::read_source(source, bb::parse_tasks("1-20"));
    std::string fit;
    std::map<int, std::pair<bb::TaskFile, bb::TaskFile>> files;
    for (auto& [t, tt] : all) {
      if (tt.has_train) files[t].first = bb::parse_task_file(tt.train, t, tt.train_origin);
      files[t].second = bb::parse_task_file(tt.test, t, tt.test_origin);
      fit += tt.train + tt.test;
    }
    auto tok = tp.create(validate_params(tp.params(), {}, "words"));
    tok->fit(fit);
    std::printf("%s (words vocabulary %lld over train+test)\n", source.c_str(),
                static_cast<long long>(tok->vocab_size()));
    std::printf("task  train_q  test_q  longest_row  longest_story  cut@256  cut@512 (train+test rows)\n");
    for (auto& [t, pr] : files) {
      int64_t longest_row = 0, longest_story = 0, cut256 = 0, cut512 = 0;
      for (const auto* f : {&pr.first, &pr.second}) {
        std::vector<std::vector<int64_t>> st_len(f->stories.size());
        for (size_t s = 0; s < f->stories.size(); ++s) {
          int64_t acc = 0;
          st_len[s].push_back(0);
          for (const auto& x : f->stories[s].statements)
            st_len[s].push_back(acc += static_cast<int64_t>(tok->encode(" " + x).size()));
          longest_story = std::max(longest_story, acc);
        }
        for (const auto& ex : f->examples) {
          int64_t n = st_len[ex.story][ex.statements] + static_cast<int64_t>(tok->encode(" " + ex.question).size()) +
                      static_cast<int64_t>(tok->encode(" " + ex.answer).size()) + 1;
          longest_row = std::max(longest_row, n);
          cut256 += n > 257, cut512 += n > 513;
        }
      }
      std::printf("qa%-3d %7zu %7zu %12lld %14lld %8lld %8lld\n", t, pr.first.examples.size(),
                  pr.second.examples.size(), static_cast<long long>(longest_row), static_cast<long long>(longest_story),
                  static_cast<long long>(cut256), static_cast<long long>(cut512));
    }
  }
}
