// arch/mamba2 at the plugin level (float64): recurrent decoding (token by token, and prefill in
// chunks then steps) equals the full forward; config checks name their keys; the inits follow
// the reference; A_log, dt_bias and D get no weight decay.
#include <catch2/catch.hpp>

#include <cmath>

#include <lmgrid/base/errors.hpp>
#include <lmgrid/plugin/registry.hpp>
#include <lmgrid/train/trainer.hpp>

#include "../support.hpp"

using namespace lmgrid;

namespace {

const ArchPlugin& mamba2() { return test::arch_plugin("mamba2"); }
Params cfg(const std::map<std::string, Value>& v) { return test::arch_params("mamba2", v); }

}  // namespace

TEST_CASE("mamba2: decoding with the recurrent state equals the full forward", "[unit][mamba2]") {
  // chunk 4 with T = 23 (ragged last chunk), 2 groups, 3 layers.
  auto p = cfg({{"d_model", int64_t{16}},
                {"n_layer", int64_t{3}},
                {"d_state", int64_t{6}},
                {"headdim", int64_t{4}},
                {"ngroups", int64_t{2}},
                {"chunk_size", int64_t{4}}});
  mamba2().check(p);
  torch::manual_seed(0);
  const int64_t V = 13, T = 23, B = 2;
  auto model = mamba2().create(p, {V, T});
  model->to(torch::kFloat64);
  model->eval();
  torch::NoGradGuard ng;
  // Non-trivial dynamics: larger dt so the state decays noticeably within the sequence.
  for (auto& kv : model->named_parameters())
    if (kv.key().find("dt_bias") != std::string::npos) kv.value().fill_(0.5);
  auto idx = torch::randint(0, V, {B, T}, torch::kLong);
  auto full = model->forward(idx, nullptr).logits;
  REQUIRE(full.sizes() == torch::IntArrayRef({B, T, V}));

  auto st = model->new_decode_state(B);
  REQUIRE(st);
  std::vector<torch::Tensor> steps;
  for (int64_t t = 0; t < T; ++t) steps.push_back(model->forward(idx.narrow(1, t, 1), st.get()).logits);
  double e_step = (torch::cat(steps, 1) - full).abs().max().item<double>();

  auto st2 = model->new_decode_state(B);
  std::vector<torch::Tensor> parts{model->forward(idx.narrow(1, 0, 7), st2.get()).logits,   // prefill 7
                                   model->forward(idx.narrow(1, 7, 9), st2.get()).logits};  // prefill 9 more
  for (int64_t t = 16; t < T; ++t) parts.push_back(model->forward(idx.narrow(1, t, 1), st2.get()).logits);
  double e_prefill = (torch::cat(parts, 1) - full).abs().max().item<double>();
  WARN("mamba2 decode parity max |diff|: token-by-token " << e_step << ", prefill 7+9 then steps " << e_prefill
                                                          << " (logit scale " << full.abs().max().item<double>()
                                                          << ")");
  CHECK(e_step < 1e-10);
  CHECK(e_prefill < 1e-10);
  CHECK(model->state_size() == 3 * ((4 - 1) * (32 + 2 * 2 * 6) + 8 * 4 * 6));
}

TEST_CASE("mamba2: config errors name the keys", "[unit][mamba2]") {
  CHECK_THROWS_MATCHES(mamba2().check(cfg({{"d_model", int64_t{24}}, {"headdim", int64_t{10}}})), UserError,
                       Catch::Matchers::Predicate<UserError>([](const UserError& e) {
                         std::string m = e.what();
                         return m.find("headdim") != std::string::npos &&
                                m.find("expand * d_model") != std::string::npos;
                       }));
  CHECK_THROWS_AS(mamba2().check(cfg({{"d_model", int64_t{32}}, {"headdim", int64_t{16}}, {"ngroups", int64_t{3}}})),
                  UserError);
  CHECK_THROWS_AS(mamba2().check(cfg({{"dt_min", 0.5}, {"dt_max", 0.1}})), UserError);
  CHECK_THROWS_AS(cfg({{"d_state", int64_t{0}}}), UserError);  // range from the spec
  CHECK_NOTHROW(mamba2().check(cfg({})));
}

TEST_CASE("mamba2: inits and weight decay groups follow the reference", "[unit][mamba2]") {
  torch::manual_seed(1);
  auto model =
      mamba2().create(cfg({{"d_model", int64_t{64}}, {"n_layer", int64_t{2}}, {"headdim", int64_t{8}}}), {11, 32});
  auto params = model->named_parameters();
  auto dtb = params["layers.0.mixer.dt_bias"];
  auto dt = torch::nn::functional::softplus(dtb);  // 16 heads
  CHECK(dt.min().item<double>() >= 1e-3 - 1e-9);
  CHECK(dt.max().item<double>() <= 0.1 + 1e-9);
  auto A = params["layers.1.mixer.A_log"].exp();
  CHECK(A.min().item<double>() >= 1.0 - 1e-6);
  CHECK(A.max().item<double>() <= 16.0 + 1e-5);
  CHECK(torch::equal(params["layers.0.mixer.D"], torch::ones({16})));
  CHECK(params["embedding.weight"].std().item<double>() == Approx(0.02).epsilon(0.1));
  auto nd = model->no_weight_decay();
  CHECK(nd.size() == 6);
  for (const auto& np : named_parameters_for_optim(*model)) {
    bool special = np.name.find("A_log") != std::string::npos || np.name.find("dt_bias") != std::string::npos ||
                   np.name.find(".D") != std::string::npos;
    if (special) CHECK_FALSE(np.decay);
    if (np.name.find("in_proj.weight") != std::string::npos) CHECK(np.decay);
  }
  for (const auto& n : nd) CHECK(params.contains(n));
  CHECK(model->flops_per_token() > 6.0 * model->parameter_count());
}
