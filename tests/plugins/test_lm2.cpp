// arch/lm2: paper mode against a naive float64 reference (llama_reference.hpp), its decoding
// against the full forward (1e-5 in float32, 1e-10 in float64), the code mode's memory size
// 8 M^2 + 13 M + 2 and its failed causality check, memory_layers and memory_carry.
#include <catch2/catch.hpp>

#include <lmgrid/base/errors.hpp>
#include <lmgrid/check/conformance.hpp>

#include "../support.hpp"
#include "llama_reference.hpp"

using namespace lmgrid;

namespace {

std::shared_ptr<Model> lm2(const std::map<std::string, Value>& v, int64_t V, int64_t T, uint64_t seed = 1) {
  torch::manual_seed(seed);
  return test::arch_plugin("lm2").create(test::arch_params("lm2", v), {V, T});
}

int64_t count_under(const Model& m, const std::string& prefix) {
  int64_t n = 0;
  for (const auto& kv : m.named_parameters())
    if (kv.key().rfind(prefix, 0) == 0) n += kv.value().numel();
  return n;
}

const std::map<std::string, Value> kPaper{{"d_model", int64_t{16}},    {"n_layer", int64_t{3}},
                                          {"n_head", int64_t{4}},      {"n_kv_head", int64_t{2}},
                                          {"mlp_hidden", int64_t{20}}, {"memory_slots", int64_t{6}},
                                          {"segment_len", int64_t{4}}, {"memory_layers", std::string("0,2")},
                                          {"tied_head", false}};

}  // namespace

TEST_CASE("lm2 paper: forward equals a naive float64 reference of the equations", "[unit][lm2]") {
  const int64_t V = 12, T = 11;  // segments of 4: two written, one partial
  auto m = lm2(kPaper, V, T);
  m->to(torch::kFloat64);
  m->eval();
  auto idx = torch::randint(0, V, {2, T}, torch::kLong);
  torch::NoGradGuard ng;
  auto got = m->forward(idx, nullptr).logits;
  test::LlamaRef r{3, 4, 2, 1e-5, 1e4, false, false, {true, false, true}, 6, 4};
  auto want = test::ref_llama(idx, test::weights_of(*m), r);
  CHECK(test::rel_err(got, want) < 1e-12);
  // The memory matters: zeroing its value projection changes the logits.
  for (auto& kv : m->named_parameters())
    if (kv.key().find("memory.v_proj") != std::string::npos) kv.value().zero_();
  CHECK(test::rel_err(m->forward(idx, nullptr).logits, got) > 1e-3);
}

TEST_CASE("lm2 paper: decoding equals the full forward (1e-5 float32, 1e-10 float64)", "[unit][lm2]") {
  const int64_t V = 12, T = 23;
  for (auto [dtype, tol] : {std::pair{torch::kFloat32, 1e-5}, std::pair{torch::kFloat64, 1e-10}}) {
    DYNAMIC_SECTION("dtype " << c10::toString(dtype)) {
      auto m = lm2(kPaper, V, T);
      m->to(dtype);
      m->eval();
      auto idx = torch::randint(0, V, {3, T}, torch::kLong);
      torch::NoGradGuard ng;
      auto full = m->forward(idx, nullptr).logits;
      for (int64_t prefill : {0, 1, 6, 8}) {  // inside a segment, at a boundary
        auto st = m->new_decode_state(3);
        REQUIRE(st);
        std::vector<torch::Tensor> parts;
        if (prefill) parts.push_back(m->forward(idx.narrow(1, 0, prefill), st.get()).logits);
        for (int64_t t = prefill; t < T; ++t) parts.push_back(m->forward(idx.narrow(1, t, 1), st.get()).logits);
        double err = (torch::cat(parts, 1) - full).abs().max().item<double>();
        INFO("prefill " << prefill << " max |decode - full| = " << err);
        CHECK(err < tol);
      }
    }
  }
}

TEST_CASE("lm2 code: memory parameters per layer are 8 M^2 + 13 M + 2 (M = 64 and the released 2048)", "[unit][lm2]") {
  for (int64_t M : {64, 2048}) {
    DYNAMIC_SECTION("M = " << M) {
      auto m = lm2({{"mode", std::string("code")},
                    {"d_model", M},
                    {"n_layer", int64_t{1}},
                    {"n_head", int64_t{8}},
                    {"mlp_hidden", int64_t{8}}},
                   5, M);
      CHECK(count_under(*m, "h.0.memory.") == 8 * M * M + 13 * M + 2);
      if (M == 2048) CHECK(count_under(*m, "h.0.memory.") == 33581058);
      CHECK(m->declared_parameter_count() == m->parameter_count());
    }
  }
}

TEST_CASE("lm2 code: the conformance check reports its causality leak; paper mode passes", "[unit][lm2]") {
  const auto& plugin = test::arch_plugin("lm2");
  auto with = [&](const std::string& mode) {
    auto v = plugin.tiny_config();
    v["mode"] = mode;
    return check_arch(plugin, validate_params(plugin.params(), v, "lm2"));
  };
  auto code = with("code");
  bool leaked = false;
  for (const auto& r : code)
    if (r.name.rfind("causal", 0) == 0) {
      INFO(r.name << ": " << r.detail);
      CHECK(r.status == CheckStatus::fail);
      CHECK(r.error > 1e-6);  // a leak of the size of the logits' own variation, not rounding
      leaked = true;
    }
  CHECK(leaked);
  for (const auto& r : with("paper")) {
    INFO(r.name << ": " << check_status_name(r.status) << " " << r.error << " " << r.detail);
    CHECK(r.status != CheckStatus::fail);
  }
}

TEST_CASE("lm2: memory_layers selects the layers; bad specs are UserErrors", "[unit][lm2]") {
  auto first = lm2({{"memory_layers", std::string("first:2")}}, 10, 8);
  CHECK(count_under(*first, "h.1.memory.") > 0);
  CHECK(count_under(*first, "h.2.memory.") == 0);
  auto listed = lm2({{"memory_layers", std::string("3")}}, 10, 8);
  CHECK(count_under(*listed, "h.0.memory.") == 0);
  CHECK(count_under(*listed, "h.3.memory.") == 6 * 128 * 128);
  for (std::string bad : {"first:0", "first:9", "4", "0,x", "some"})
    CHECK_THROWS_AS(lm2({{"memory_layers", bad}}, 10, 8), UserError);
  CHECK_THROWS_AS(lm2({{"mode", std::string("code")}, {"d_model", int64_t{16}}, {"n_head", int64_t{2}}}, 10, 8),
                  UserError);  // code mode needs seq_len = d_model
}

TEST_CASE("lm2: memory_carry carries the bank across training steps; the default resets it", "[unit][lm2]") {
  for (bool carry : {false, true}) {
    auto v = kPaper;
    v["memory_carry"] = carry;
    auto m = lm2(v, 12, 8);
    m->train();
    auto idx = torch::randint(0, 12, {2, 8}, torch::kLong);
    torch::NoGradGuard ng;
    auto a = m->forward(idx, nullptr).logits, b = m->forward(idx, nullptr).logits;
    CHECK(torch::equal(a, b) == !carry);
    m->eval();  // evaluation always starts from the identity bank
    CHECK(torch::equal(m->forward(idx, nullptr).logits, m->forward(idx, nullptr).logits));
  }
}
