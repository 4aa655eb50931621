// data/text: the train | val | test split sizes (nanoGPT's 90/10 and HF's 90/5/5 of tiny
// Shakespeare), evaluation windows that cover each split, and deterministic training batches.
#include <catch2/catch.hpp>

#include <lmgrid/base/params.hpp>
#include <lmgrid/plugin/registry.hpp>

#include "../support.hpp"

using namespace lmgrid;

namespace {

struct Made {
  std::shared_ptr<Tokenizer> tok;
  std::shared_ptr<Dataset> data;
};

Made make_text(std::map<std::string, Value> values) {
  const Registry& reg = test::built_plugins();
  const auto& tp = static_cast<const TokenizerPlugin&>(*reg.get(PluginKind::tokenizer, "char").plugin);
  const auto& dp = static_cast<const DataPlugin&>(*reg.get(PluginKind::data, "text").plugin);
  Made m;
  m.tok = tp.create(validate_params(tp.params(), {}, "[tokenizer]"));
  m.data = dp.create(validate_params(dp.params(), values, "[data]"), {m.tok, 1});
  return m;
}

}  // namespace

TEST_CASE("text: split sizes follow val_fraction and test_fraction", "[unit][text]") {
  // tiny Shakespeare has 1,115,394 characters, all ASCII: one token per character.
  auto nano = make_text({{"seq_len", int64_t{64}}});
  CHECK(nano.data->train_tokens() == 1003854);                             // int(0.9 n)
  CHECK(nano.data->eval_batch_count(Split::val, 1) == (111540 - 1) / 64);  // 1,742 windows
  CHECK(nano.data->eval_batch_count(Split::test, 1) == 0);

  auto hf = make_text({{"seq_len", int64_t{64}}, {"val_fraction", 0.05}, {"test_fraction", 0.05}});
  CHECK(hf.data->train_tokens() == 1003854);                             // HF train split
  CHECK(hf.data->eval_batch_count(Split::val, 1) == (55770 - 1) / 64);   // HF validation: 871
  CHECK(hf.data->eval_batch_count(Split::test, 1) == (55770 - 1) / 64);  // HF test
  CHECK(hf.data->eval_batch_count(Split::val, 12) == 72);

  // The first val window starts right after train: its first input is character 1,003,854.
  auto b_nano = nano.data->eval_batch(Split::val, 0, 1), b_hf = hf.data->eval_batch(Split::val, 0, 1);
  CHECK(torch::equal(b_nano.inputs, b_hf.inputs));
  // Targets are the inputs shifted by one.
  CHECK(torch::equal(b_hf.inputs.narrow(1, 1, 63), b_hf.targets.narrow(1, 0, 63)));
}

TEST_CASE("text: training batches are a function of (seed, index)", "[unit][text]") {
  for (std::string sampling : {"random", "epoch"}) {
    auto a = make_text({{"seq_len", int64_t{32}}, {"sampling", sampling}});
    auto b = make_text({{"seq_len", int64_t{32}}, {"sampling", sampling}});
    auto x1 = a.data->train_batch(7, 4), x2 = b.data->train_batch(7, 4), y = a.data->train_batch(8, 4);
    CHECK(torch::equal(x1.inputs, x2.inputs));
    CHECK_FALSE(torch::equal(x1.inputs, y.inputs));
  }
}
