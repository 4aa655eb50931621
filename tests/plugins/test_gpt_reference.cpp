// arch/gpt against an independent eager PyTorch computation of the same weights (issue 18: the
// sweep only checks a plugin against itself). The fixture tests/fixtures/gpt_reference/fixture.json
// is written by make_fixture.py next to it (equations spelled out there; rerun it with Debian's
// /usr/bin/python3 after a deliberate change of the architecture). Two cases: bias = true (every
// parameter kind) and bias = false (the default). For each: the fixture's weights are copied into
// the plugin's named parameters (names, count and shapes must match exactly), and the float64
// logits of the full forward and of token-by-token decoding (KV cache) are compared with the
// reference's.
#include <catch2/catch.hpp>

#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>

#include <nlohmann/json.hpp>

#include <lmgrid/plugin/registry.hpp>

#include "../support.hpp"

using namespace lmgrid;
using nlohmann::json;

namespace {

// Tolerance: max |logit - reference| < 1e-10 in float64. Logits are O(1) (|max| ~5), so rounding
// differences between the two computations are ~1e-14; any change of formula (LayerNorm eps 1e-5
// vs 1e-6, tanh vs erf GELU, qkv or head layout, a missing bias, untied head) moves logits by
// 1e-6 or (much) more, and so does changing one weight by 1e-6 (checked when this test was written).
constexpr double kTol = 1e-10;

std::filesystem::path fixture_path() {
  return lmgrid::test::source_root() / "tests" / "fixtures" / "gpt_reference" / "fixture.json";
}

json load_fixture() {
  auto path = fixture_path();
  INFO("fixture " << path.string());
  std::ifstream in(path);
  REQUIRE(in.good());
  return json::parse(in);
}

std::vector<int64_t> shape_of(const json& j) { return j.get<std::vector<int64_t>>(); }

std::string join(const std::vector<std::string>& v) {
  std::ostringstream o;
  for (const auto& s : v) o << " " << s;
  return o.str();
}

}  // namespace

TEST_CASE("gpt plugin: forward equals an independent eager PyTorch reference (fixture)", "[unit][gpt_reference]") {
  const json fx = load_fixture();
  const double scale = fx.at("weight_scale").get<double>();  // a power of two: q / scale is exact
  REQUIRE(fx.at("cases").size() == 2);
  for (const auto& c : fx.at("cases")) {
    DYNAMIC_SECTION("case " << c.at("name").get<std::string>()) {
      const auto& cfg = c.at("config");
      const int64_t V = cfg.at("vocab_size"), T = cfg.at("block_size");
      auto params = test::arch_params("gpt", {{"n_layer", cfg.at("n_layer").get<int64_t>()},
                                              {"n_head", cfg.at("n_head").get<int64_t>()},
                                              {"d_model", cfg.at("d_model").get<int64_t>()},
                                              {"bias", cfg.at("bias").get<bool>()},
                                              {"block_size", T},
                                              {"dropout", 0.0}});
      torch::manual_seed(0);
      auto m = test::arch_plugin("gpt").create(params, {V, T});
      m->to(torch::kFloat64);
      m->eval();

      // Copy the weights: every fixture name must be a parameter of the plugin and vice versa.
      auto named = m->named_parameters(/*recurse=*/true);
      std::set<std::string> model_names;
      for (const auto& kv : named) model_names.insert(kv.key());
      std::vector<std::string> missing, bad_shape;
      std::set<std::string> fixture_names;
      {
        torch::NoGradGuard ng;
        for (const auto& p : c.at("params")) {
          const auto name = p.at("name").get<std::string>();
          const auto shape = shape_of(p.at("shape"));
          fixture_names.insert(name);
          auto* t = named.find(name);
          if (!t) {
            missing.push_back(name);
            continue;
          }
          if (t->sizes().vec() != shape) {
            bad_shape.push_back(name + " (plugin " + c10::str(t->sizes()) + ", fixture " +
                                c10::str(c10::IntArrayRef(shape)) + ")");
            continue;
          }
          auto q = p.at("q").get<std::vector<int64_t>>();
          REQUIRE(static_cast<int64_t>(q.size()) == t->numel());
          auto w = torch::tensor(q, torch::kLong).to(torch::kFloat64).div_(scale).view(shape);
          t->copy_(w);
        }
      }
      std::vector<std::string> extra;
      for (const auto& n : model_names)
        if (!fixture_names.count(n)) extra.push_back(n);
      INFO("fixture names the plugin lacks:" << join(missing));
      INFO("plugin parameters not in the fixture:" << join(extra));
      INFO("shape mismatches:" << join(bad_shape));
      REQUIRE(missing.empty());
      REQUIRE(extra.empty());
      REQUIRE(bad_shape.empty());
      CHECK(m->parameter_count() == c.at("n_params").get<int64_t>());

      std::vector<torch::Tensor> rows;
      for (const auto& r : c.at("tokens")) rows.push_back(torch::tensor(r.get<std::vector<int64_t>>(), torch::kLong));
      auto tokens = torch::stack(rows);  // (B, T)
      auto expected = torch::tensor(c.at("logits").get<std::vector<double>>(), torch::kFloat64)
                          .view(shape_of(c.at("logits_shape")));  // (B, T, V)
      REQUIRE(tokens.size(1) == T);

      torch::NoGradGuard ng;
      auto logits = m->forward(tokens, nullptr).logits;
      REQUIRE(logits.sizes() == expected.sizes());
      REQUIRE(logits.scalar_type() == torch::kFloat64);
      const double err = (logits - expected).abs().max().item<double>();
      INFO("full forward: max |logit - reference| = " << err << " (|reference| max "
                                                      << expected.abs().max().item<double>() << ")");
      CHECK(err < kTol);

      // The KV-cache path against the same reference: one token at a time.
      auto st = m->new_decode_state(tokens.size(0));
      REQUIRE(st);
      std::vector<torch::Tensor> steps;
      for (int64_t t = 0; t < T; ++t) steps.push_back(m->forward(tokens.narrow(1, t, 1), st.get()).logits);
      const double err_dec = (torch::cat(steps, 1) - expected).abs().max().item<double>();
      INFO("decoding: max |logit - reference| = " << err_dec);
      CHECK(err_dec < kTol);
    }
  }
}
