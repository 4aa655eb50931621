// data/text: the train | val | test split sizes (nanoGPT's 90/10 and HF's 90/5/5 of tiny
// Shakespeare), evaluation windows that cover each split, deterministic training batches; the
// named sources as documents (lmgrid/data/documents.hpp), documents joined with EOS and windows
// that never cross a document boundary.
#include <catch2/catch.hpp>

#include <lmgrid/base/params.hpp>
#include <lmgrid/base/errors.hpp>
#include <lmgrid/data/data_source.hpp>
#include <lmgrid/data/documents.hpp>
#include <lmgrid/plugin/registry.hpp>

#include "../support.hpp"

using namespace lmgrid;

namespace {

struct Made {
  std::shared_ptr<Tokenizer> tok;
  std::shared_ptr<Dataset> data;
};

Made make_text(std::map<std::string, Value> values, const std::string& tokenizer = "char",
               std::map<std::string, Value> tok_values = {}) {
  const Registry& reg = test::built_plugins();
  const auto& tp = static_cast<const TokenizerPlugin&>(*reg.get(PluginKind::tokenizer, tokenizer).plugin);
  const auto& dp = static_cast<const DataPlugin&>(*reg.get(PluginKind::data, "text").plugin);
  dp.check(validate_params(dp.params(), values, "[data]"));
  Made m;
  m.tok = tp.create(validate_params(tp.params(), tok_values, "[tokenizer]"));
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

TEST_CASE("documents: each rule cuts where its documents end", "[unit][text]") {
  using V = std::vector<std::string>;
  CHECK(split_documents("  one\ntwo \n", "whole") == V{"one\ntwo"});
  CHECK(split_documents("a b\n<|endoftext|>\nc\n\n<|endoftext|>\n<|endoftext|>\nd", "endoftext") == V{"a b", "c", "d"});
  CHECK(split_documents("a\nb\n\nc\n \n\n\nd\n", "blank_lines") == V{"a\nb", "c", "d"});
  CHECK(split_documents(" \n = A = \n x\n = = S = = \n y\n = B = \n z\n", "wikitext") ==
        V{"= A = \n x\n = = S = = \n y", "= B = \n z"});
  CHECK(split_documents("\nGenesis 1\n\n  1 In\n  2 And\n\nGenesis 2\n\n  1 Thus\n", "kjv") ==
        V{"Genesis 1\n\n  1 In\n  2 And", "Genesis 2\n\n  1 Thus"});
  CHECK_THROWS(split_documents("x", "paragraphs"));
}

TEST_CASE("documents: the named sources in the data path", "[unit][text]") {
  // Counts from ../shared/data/README.md: 2,316 train stories, 4,300 validation stories (give or
  // take one: one story holds a blank line), 6 novels, 1,189 chapters.
  CHECK(load_documents("tinystories_train_sample").size() == 2316);
  auto val = load_documents("tinystories_val_sample").size();
  CHECK((val >= 4300 && val <= 4302));
  auto austen = load_documents("austen");
  REQUIRE(austen.size() == 6);
  CHECK(austen[0].text.rfind("SENSE AND SENSIBILITY", 0) == 0);
  CHECK(load_documents("kjv").size() == 1189);
  auto wiki = load_documents("wikitext2_valid");
  CHECK(wiki.size() > 50);
  for (const auto& d : wiki) CHECK(d.text.rfind("= ", 0) == 0);
  CHECK(load_text("austen").size() == 4025029);
  CHECK_THROWS_AS(resolve_source("austen"), UserError);  // a group is not one file
}

TEST_CASE("text: join = eos ends every document with the tokenizer's EOS", "[unit][text]") {
  // byte tokenizer: one id per byte, <|endoftext|> = 256 (its EOS and BOS).
  std::map<std::string, Value> tok{{"specials", std::string("<|endoftext|>")}};
  auto m = make_text({{"source", std::string("tinystories_train_sample")},
                      {"join", std::string("eos")},
                      {"val_fraction", 0.1},
                      {"seq_len", int64_t{64}}},
                     "byte", tok);
  CHECK(m.tok->eos_id() == 256);
  CHECK(m.tok->bos_id() == 256);
  auto docs = load_documents("tinystories_train_sample");
  // Train holds the first documents whole: their bytes plus one EOS each.
  int64_t tokens = 0;
  size_t n = 0;
  while (tokens < m.data->train_tokens()) tokens += static_cast<int64_t>(docs[n++].text.size()) + 1;
  CHECK(tokens == m.data->train_tokens());
  CHECK(n > 2000);
  CHECK(n < 2316);
  // Without an EOS in the tokenizer, join = eos is refused with the fix in the message.
  CHECK_THROWS_WITH(make_text({{"source", std::string("tinystories_train_sample")}, {"join", std::string("eos")}}),
                    Catch::Contains("specials"));
}

TEST_CASE("text: windows = document never cross a document boundary", "[unit][text]") {
  std::map<std::string, Value> tok{{"specials", std::string("<|endoftext|>")}};
  for (std::string sampling : {"random", "epoch"}) {
    auto make = [&] {
      return make_text({{"source", std::string("tinystories_train_sample")},
                        {"val_source", std::string("tinystories_val_sample")},
                        {"join", std::string("eos")},
                        {"windows", std::string("document")},
                        {"sampling", sampling},
                        {"seq_len", int64_t{256}}},
                       "byte", tok);
    };
    auto a = make(), b = make();
    int64_t padded = 0;
    for (int64_t i = 0; i < 20; ++i) {
      auto x = a.data->train_batch(i, 8);
      CHECK(torch::equal(x.inputs, b.data->train_batch(i, 8).inputs));
      auto mask = x.loss_mask.defined() ? x.loss_mask : torch::ones({8, 256});
      for (int64_t r = 0; r < 8; ++r) {
        int64_t scored = mask[r].sum().item<int64_t>();
        REQUIRE(scored >= 1);
        CHECK(mask[r].narrow(0, 0, scored).min().item<float>() == 1.0f);  // a prefix is scored
        // No scored input is an EOS: the window starts and stays inside one story.
        CHECK((x.inputs[r].narrow(0, 0, scored) == 256).sum().item<int64_t>() == 0);
        // An EOS target can only be the last scored one (the story's end).
        CHECK((x.targets[r].narrow(0, 0, scored - 1) == 256).sum().item<int64_t>() == 0);
        padded += scored < 256;
      }
    }
    // Epochs tile every story, so each story's tail is a shorter, padded window; random windows
    // are uniform over full windows (a story shorter than a window counts once).
    if (sampling == "epoch") CHECK(padded > 0);
    // The val split is the validation sample, tiled inside its stories.
    auto vdocs = load_documents("tinystories_val_sample");
    int64_t windows = 0;
    for (const auto& d : vdocs) windows += (static_cast<int64_t>(d.text.size()) + 1 - 1 + 255) / 256;
    CHECK(a.data->eval_batch_count(Split::val, 1) == windows);
    auto e = a.data->eval_batch(Split::val, 0, 1);
    CHECK(e.inputs[0][0].item<int64_t>() == static_cast<unsigned char>(vdocs[0].text[0]));
  }
  // windows = document needs documents.
  CHECK_THROWS_WITH(make_text({{"windows", std::string("document")}}), Catch::Contains("join"));
}
