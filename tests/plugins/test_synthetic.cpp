// The synthetic memory tasks (data/mqar, data/selective_copy, data/noisy_recall) and the ids
// tokenizer: what each example must hold (disjoint keys and values, every key asked once, only
// the answers scored), MQAR's power-law query placement against its formula, determinism in
// (seed, index), slice tags, and the errors for impossible settings.
#include <catch2/catch.hpp>

#include <cmath>
#include <map>
#include <set>

#include <lmgrid/base/errors.hpp>
#include <lmgrid/base/params.hpp>
#include <lmgrid/plugin/registry.hpp>

#include "../support.hpp"

using namespace lmgrid;

namespace {

struct Made {
  std::shared_ptr<Tokenizer> tok;
  std::shared_ptr<Dataset> data;
};

const DataPlugin& data_plugin(const std::string& name) {
  return static_cast<const DataPlugin&>(*test::built_plugins().get(PluginKind::data, name).plugin);
}

Made make(const std::string& name, std::map<std::string, Value> values, uint64_t seed = 1,
          const std::string& tokenizer = "ids") {
  const auto& tp =
      static_cast<const TokenizerPlugin&>(*test::built_plugins().get(PluginKind::tokenizer, tokenizer).plugin);
  const auto& dp = data_plugin(name);
  Made m;
  m.tok = tp.create(validate_params(tp.params(), {}, "[tokenizer]"));
  m.data = dp.create(validate_params(dp.params(), values, "[data]"), {m.tok, seed});
  return m;
}

std::vector<int64_t> row(const torch::Tensor& t, int64_t r) {
  auto c = t[r].to(torch::kLong).contiguous();
  return {c.data_ptr<int64_t>(), c.data_ptr<int64_t>() + c.numel()};
}

}  // namespace

TEST_CASE("mqar: keys and values disjoint, every key asked once, only the answers scored", "[unit][synthetic]") {
  const int64_t V = 512;
  for (bool random_fill : {false, true}) {
    auto m = make("mqar", {{"settings", std::string("64:4,256:16")},
                           {"vocab_size", V},
                           {"random_non_queries", random_fill},
                           {"test_examples", int64_t{64}}});
    CHECK(m.tok->vocab_size() == V);
    REQUIRE(m.data->eval_batch_count(Split::val, 16) == 8);  // 64 / 16 batches x 2 settings
    int checked = 0;
    for (int64_t i = 0; i < 8; ++i) {
      Batch b = m.data->eval_batch(Split::val, i, 16);
      const int64_t L = i % 2 == 0 ? 64 : 256, D = i % 2 == 0 ? 4 : 16;  // settings alternate
      REQUIRE(b.inputs.size(1) == L);
      REQUIRE(b.tags.size() == 16);
      CHECK(b.tags[0] == "seq_len=" + std::to_string(L) + " num_kv_pairs=" + std::to_string(D));
      for (int64_t r = 0; r < 16; ++r) {
        auto in = row(b.inputs, r), tg = row(b.targets, r), ids = row(b.answer_ids, r);
        auto mask = row(b.loss_mask, r);
        std::map<int64_t, int64_t> kv;  // context key -> value
        for (int64_t k = 0; k < D; ++k) {
          int64_t key = in[static_cast<size_t>(2 * k)], value = in[static_cast<size_t>(2 * k + 1)];
          CHECK(key >= 1);
          CHECK(key < V / 2);
          CHECK(value >= V / 2);
          CHECK(value < V);
          kv[key] = value;
        }
        CHECK(static_cast<int64_t>(kv.size()) == D);  // keys distinct
        std::set<int64_t> values;
        for (auto& [k, v] : kv) values.insert(v);
        CHECK(static_cast<int64_t>(values.size()) == D);  // values distinct
        std::map<int64_t, int> asked;
        std::set<int64_t> answer_ids;
        for (int64_t t = 0; t < L; ++t) {
          bool scored = mask[static_cast<size_t>(t)] != 0;
          if (!scored) {
            CHECK(ids[static_cast<size_t>(t)] == -1);
            if (!random_fill && t >= 2 * D) CHECK(in[static_cast<size_t>(t)] == 0);  // filler
            continue;
          }
          CHECK(t >= 2 * D);            // in the query region
          CHECK((t - 2 * D) % 2 == 0);  // at an even offset
          int64_t key = in[static_cast<size_t>(t)];
          REQUIRE(kv.count(key));
          CHECK(tg[static_cast<size_t>(t)] == kv[key]);  // the target is its value
          ++asked[key];
          answer_ids.insert(ids[static_cast<size_t>(t)]);
        }
        CHECK(static_cast<int64_t>(asked.size()) == D);       // every key asked ...
        for (auto& [k, n] : asked) CHECK(n == 1);             // ... exactly once
        CHECK(static_cast<int64_t>(answer_ids.size()) == D);  // each answer its own id
        ++checked;
      }
    }
    CHECK(checked == 128);
    // Training batches carry the same structure (mask on D positions per row).
    Batch t = m.data->train_batch(1, 8);
    CHECK(t.inputs.size(1) == 256);
    CHECK(t.loss_mask.sum().item<double>() == 8 * 16);
  }
}

TEST_CASE("mqar: query slots follow the power law P(j) ~ a (j+1)^(a-1)", "[unit][synthetic]") {
  // One key per example: its slot is a single draw, so the sample mean of the slot must match the
  // distribution's mean; a = 0.3 makes the law far from uniform and from "always slot 0".
  const int64_t L = 128, space = (L - 2) / 2;
  const double a = 0.3;
  double z = 0, mean = 0, second = 0;
  for (int64_t j = 0; j < space; ++j) z += a * std::pow(j + 1.0, a - 1.0);
  for (int64_t j = 0; j < space; ++j) {
    double p = a * std::pow(j + 1.0, a - 1.0) / z;
    mean += p * j, second += p * j * j;
  }
  const double sd = std::sqrt(second - mean * mean);
  const int64_t n = 4000;
  auto m = make("mqar", {{"settings", std::string("128:1")},
                         {"vocab_size", int64_t{256}},
                         {"power_a", a},
                         {"random_non_queries", false},
                         {"test_examples", n}});
  double sum = 0;
  int64_t seen = 0, slot0 = 0;
  for (int64_t i = 0; i < n / 100; ++i) {
    Batch b = m.data->eval_batch(Split::val, i, 100);
    auto where = b.loss_mask.nonzero();  // (row, position)
    REQUIRE(where.size(0) == 100);
    for (int64_t k = 0; k < 100; ++k) {
      int64_t slot = (where[k][1].item<int64_t>() - 2) / 2;
      sum += slot, ++seen, slot0 += slot == 0;
    }
  }
  const double sample = sum / seen;
  INFO("sample mean " << sample << ", formula " << mean << ", sd " << sd);
  CHECK(std::abs(sample - mean) < 4 * sd / std::sqrt(static_cast<double>(seen)));
  // P(slot 0) = a / z: about 0.16 here.
  const double p0 = a / z;
  CHECK(std::abs(static_cast<double>(slot0) / seen - p0) < 4 * std::sqrt(p0 * (1 - p0) / seen));
}

TEST_CASE("synthetic tasks: batches are a function of (seed, index); evaluation ignores the seed",
          "[unit][synthetic]") {
  for (std::string name : {"mqar", "selective_copy", "noisy_recall"}) {
    INFO(name);
    auto tiny = data_plugin(name).tiny_config();
    auto a = make(name, tiny, 7), b = make(name, tiny, 7), c = make(name, tiny, 8);
    for (int64_t i : {0, 1, 5}) {
      CHECK(torch::equal(a.data->train_batch(i, 4).inputs, b.data->train_batch(i, 4).inputs));
      CHECK(torch::equal(a.data->train_batch(i, 4).targets, b.data->train_batch(i, 4).targets));
    }
    CHECK_FALSE(torch::equal(a.data->train_batch(2, 4).inputs, c.data->train_batch(2, 4).inputs));
    CHECK(torch::equal(a.data->eval_batch(Split::val, 1, 4).inputs, c.data->eval_batch(Split::val, 1, 4).inputs));
    // val and test are different examples.
    CHECK_FALSE(
        torch::equal(a.data->eval_batch(Split::val, 0, 4).inputs, a.data->eval_batch(Split::test, 0, 4).inputs));
    // Epochs: past the end of the training set the examples repeat in a new order.
    CHECK(a.data->train_tokens() > 0);
  }
}

TEST_CASE("selective_copy: the scored markers reproduce the data tokens in order", "[unit][synthetic]") {
  auto m = make("selective_copy", {{"settings", std::string("48:8")}, {"vocab_size", int64_t{10}}});
  Batch b = m.data->eval_batch(Split::val, 0, 32);
  CHECK(b.tags[0] == "seq_len=48 num_tokens=8");
  for (int64_t r = 0; r < 32; ++r) {
    auto in = row(b.inputs, r), tg = row(b.targets, r), mask = row(b.loss_mask, r);
    std::vector<int64_t> data, answers;
    for (int64_t t = 0; t < 40; ++t) {
      CHECK(mask[static_cast<size_t>(t)] == 0);
      CHECK(in[static_cast<size_t>(t)] != 1);  // no marker in the context
      if (in[static_cast<size_t>(t)] >= 2) data.push_back(in[static_cast<size_t>(t)]);
    }
    for (int64_t t = 40; t < 48; ++t) {
      CHECK(in[static_cast<size_t>(t)] == 1);
      CHECK(mask[static_cast<size_t>(t)] == 1);
      answers.push_back(tg[static_cast<size_t>(t)]);
    }
    CHECK(data == answers);
  }
}

TEST_CASE("noisy_recall: pairs among noise, every key asked once", "[unit][synthetic]") {
  const int64_t V = 300;  // keys 1..99, values 100..199, noise 200..299
  auto m = make("noisy_recall", {{"settings", std::string("128:8")}, {"vocab_size", V}});
  Batch b = m.data->eval_batch(Split::val, 0, 16);
  for (int64_t r = 0; r < 16; ++r) {
    auto in = row(b.inputs, r), tg = row(b.targets, r), mask = row(b.loss_mask, r);
    std::map<int64_t, int64_t> kv;
    int noise = 0;
    for (int64_t t = 0; t < 64; ++t) {  // context_fraction 0.5
      int64_t x = in[static_cast<size_t>(t)];
      if (x >= 200) {
        ++noise;
      } else {
        REQUIRE(x >= 1);
        REQUIRE(x < 100);
        REQUIRE(t % 2 == 0);
        int64_t v = in[static_cast<size_t>(t + 1)];
        CHECK(v >= 100);
        CHECK(v < 200);
        kv[x] = v;
        ++t;
      }
    }
    CHECK(kv.size() == 8);
    CHECK(noise == 64 - 16);
    int asked = 0;
    for (int64_t t = 64; t < 128; ++t) {
      if (!mask[static_cast<size_t>(t)]) continue;
      REQUIRE(kv.count(in[static_cast<size_t>(t)]));
      CHECK(tg[static_cast<size_t>(t)] == kv[in[static_cast<size_t>(t)]]);
      ++asked;
    }
    CHECK(asked == 8);
  }
}

TEST_CASE("synthetic tasks: impossible settings and tokenizers are refused, saying which", "[unit][synthetic]") {
  auto refuse = [](const std::string& name, std::map<std::string, Value> v, const std::string& says) {
    const auto& dp = data_plugin(name);
    INFO(name << ": expecting '" << says << "'");
    CHECK_THROWS_WITH(dp.check(validate_params(dp.params(), v, "[data]")), Catch::Contains(says));
  };
  refuse("mqar", {{"settings", std::string("64:4,64x8")}}, "'64x8' is not seq_len:size");
  refuse("mqar", {{"settings", std::string("64:20")}}, "4 x num_kv_pairs <= seq_len");
  refuse("mqar", {{"settings", std::string("63:4")}}, "must be even");
  refuse("mqar", {{"settings", std::string("64:4")}, {"vocab_size", int64_t{32}}}, "vocab_size");
  refuse("selective_copy", {{"settings", std::string("16:8")}}, "seq_len > 2 x num_tokens");
  refuse("noisy_recall", {{"settings", std::string("64:20")}}, "cannot hold 20 pairs");
  CHECK(data_plugin("mqar").seq_len(validate_params(data_plugin("mqar").params(), {}, "[data]")) == 256);
  // A tokenizer with too few tokens for the ids the task generates (byte: 256 + specials).
  CHECK_THROWS_WITH(make("mqar", {{"settings", std::string("64:4")}, {"vocab_size", int64_t{1024}}}, 1, "byte"),
                    Catch::Contains("[tokenizer] plugin = \"ids\""));
}

TEST_CASE("ids tokenizer: ids as text, round trip, clear errors", "[unit][synthetic]") {
  const auto& tp = static_cast<const TokenizerPlugin&>(*test::built_plugins().get(PluginKind::tokenizer, "ids").plugin);
  auto tok = tp.create(validate_params(tp.params(), {}, "[tokenizer]"));
  tok->fit("3 17\n2");
  CHECK(tok->vocab_size() == 18);
  CHECK(tok->encode(" 4  0 17\n") == std::vector<int64_t>{4, 0, 17});
  CHECK(tok->decode({4, 0, 17}) == "4 0 17");
  CHECK_THROWS_WITH(tok->encode("4 x"), Catch::Contains("'x' is not a token id"));
  CHECK_THROWS(tok->encode("18"));
  auto other = tp.create(validate_params(tp.params(), {}, "[tokenizer]"));
  other->load(tok->save());
  CHECK(other->vocab_size() == 18);
}
