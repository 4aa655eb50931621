// arch/llama: BLM-medium's published parameter count, the forward against a naive float64
// reference (tests/plugins/llama_reference.hpp), the shared-norm quirk and vocabulary padding.
#include <catch2/catch.hpp>

#include <lmgrid/base/errors.hpp>

#include "../support.hpp"
#include "llama_reference.hpp"

using namespace lmgrid;

TEST_CASE("llama: BLM-medium has 43,214,592 parameters, 18,638,592 of them non-embedding", "[unit][llama]") {
  // BLM's conf/config.yaml: d 768, 4 layers, 12 heads (MHA), MLP 998, one norm per block, tied,
  // Llama-2's 32,000-token vocabulary (here padded from a 65-character tokenizer).
  auto p = test::arch_params("llama", {{"d_model", int64_t{768}},
                                       {"n_layer", int64_t{4}},
                                       {"n_head", int64_t{12}},
                                       {"mlp_hidden", int64_t{998}},
                                       {"shared_norm", true},
                                       {"tied_head", true},
                                       {"vocab_size", int64_t{32000}}});
  auto m = test::arch_plugin("llama").create(p, {65, 64});
  CHECK(m->parameter_count() == 43214592);
  CHECK(m->parameter_count() - m->embedding_parameter_count() == 18638592);
  CHECK(m->declared_parameter_count() == m->parameter_count());
  torch::NoGradGuard ng;
  CHECK(m->forward(torch::zeros({1, 3}, torch::kLong), nullptr).logits.size(-1) == 65);  // cut to the tokenizer's
}

TEST_CASE("llama: forward equals a naive float64 reference (GQA, untied, both norm layouts)", "[unit][llama]") {
  for (bool shared : {false, true}) {
    DYNAMIC_SECTION("shared_norm " << shared) {
      const int64_t V = 13, T = 9;
      auto p = test::arch_params("llama", {{"d_model", int64_t{16}},
                                           {"n_layer", int64_t{2}},
                                           {"n_head", int64_t{4}},
                                           {"n_kv_head", int64_t{2}},
                                           {"mlp_hidden", int64_t{24}},
                                           {"rope_base", 500.0},
                                           {"tied_head", shared},
                                           {"shared_norm", shared}});
      torch::manual_seed(3);
      auto m = test::arch_plugin("llama").create(p, {V, T});
      m->to(torch::kFloat64);
      m->eval();
      {  // random norm gains, so that a swapped or shared norm cannot pass by accident
        torch::NoGradGuard ng;
        for (auto& kv : m->named_parameters())
          if (kv.key().find("norm") != std::string::npos) kv.value().uniform_(0.5, 1.5);
      }
      auto idx = torch::randint(0, V, {2, T}, torch::kLong);
      torch::NoGradGuard ng;
      auto got = m->forward(idx, nullptr).logits;
      test::LlamaRef r{2, 4, 2, 1e-5, 500.0, shared, shared};
      auto want = test::ref_llama(idx, test::weights_of(*m), r);
      CHECK(test::rel_err(got, want) < 1e-12);
    }
  }
}

TEST_CASE("llama: shared_norm registers one norm per block; vocab_size pads, smaller is a UserError", "[unit][llama]") {
  auto names = [](const Model& m) {
    std::set<std::string> s;
    for (const auto& kv : m.named_parameters()) s.insert(kv.key());
    return s;
  };
  auto shared = test::arch_plugin("llama").create(test::arch_params("llama", {{"shared_norm", true}}), {20, 8});
  auto plain = test::arch_plugin("llama").create(test::arch_params("llama", {}), {20, 8});
  CHECK(names(*shared).count("h.0.norm.weight") == 1);
  CHECK(names(*shared).count("h.0.attn_norm.weight") == 0);
  CHECK(names(*plain).count("h.0.attn_norm.weight") == 1);
  CHECK(plain->parameter_count() - shared->parameter_count() == 4 * 128);
  auto padded = test::arch_plugin("llama").create(test::arch_params("llama", {{"vocab_size", int64_t{64}}}), {20, 8});
  CHECK(padded->parameter_count() - plain->parameter_count() == 44 * 128);
  CHECK_THROWS_AS(test::arch_plugin("llama").create(test::arch_params("llama", {{"vocab_size", int64_t{10}}}), {20, 8}),
                  UserError);
}
