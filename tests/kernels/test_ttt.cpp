// TTT layer: the dual form (training, prefill) and the primal form (decoding) against a naive
// token-by-token loop with autograd inner gradients, for TTT-Linear and TTT-MLP: outputs and
// outer gradients in float64 to 1e-8 relative, mini-batch sizes that do not divide the sequence,
// states continued across calls; and the arch/ttt plugin's incremental decoding.
#include <catch2/catch.hpp>

#include <lmgrid/kernels/ttt.hpp>
#include <lmgrid/plugin/registry.hpp>

#include "../support.hpp"
#include "ttt_inputs.hpp"

using namespace lmgrid;
namespace K = lmgrid::kernels;

namespace {

using lmgrid::test::rel_err;

using Inputs = test::TTTInputs;
Inputs make_inputs(int64_t N, int64_t T, int64_t D, int64_t chunk, bool mlp, uint64_t seed) {
  return test::make_ttt_inputs(N, T, D, chunk, mlp, seed);
}
K::TTTInnerState init_state(const Inputs& in) { return in.state(); }

}  // namespace

TEST_CASE("ttt: the fused LN + L2 gradient equals autograd's", "[unit][ttt]") {
  auto o = torch::TensorOptions().dtype(torch::kFloat64);
  torch::manual_seed(1);
  auto Z = torch::randn({3, 5, 7}, o).requires_grad_(true), tgt = torch::randn({3, 5, 7}, o);
  K::TTTNorm norm{torch::randn({3, 1, 7}, o), torch::randn({3, 1, 7}, o), 1e-6};
  auto loss = 0.5 * (K::ln_apply(Z, norm) - tgt).pow(2).sum();
  auto g = torch::autograd::grad({loss}, {Z})[0];
  CHECK(rel_err(K::ln_l2_grad(Z, tgt, norm), g) < 1e-12);
}

TEST_CASE("ttt: dual form equals the naive token loop, outputs and gradients (linear, mlp)", "[unit][ttt]") {
  const int64_t N = 3, D = 4;
  for (bool mlp : {false, true}) {
    for (int64_t T : {16, 37}) {
      for (int64_t chunk : {1, 5, 16}) {
        DYNAMIC_SECTION((mlp ? "mlp" : "linear") << " T " << T << " chunk " << chunk) {
          auto in = make_inputs(N, T, D, chunk, mlp, 10 * T + chunk + mlp);
          K::TTTNorm norm{in.nw, in.nb, 1e-6};
          auto lr = torch::sigmoid(in.lr_logit) * 0.5;
          auto st = init_state(in);
          auto dual = K::ttt_inner(in.xq, in.xk, in.xv, lr, in.tidx, norm, st, chunk);
          auto naive = K::ttt_inner_naive(in.xq, in.xk, in.xv, lr, in.tidx, norm, init_state(in), chunk);
          double e = rel_err(dual, naive);
          INFO("forward rel err " << e);
          CHECK(e < 1e-8);
          auto w = torch::randn_like(dual);
          auto x = in.all();
          auto gd = torch::autograd::grad({(dual * w).sum()}, x, {}, true);
          auto gn = torch::autograd::grad({(naive * w).sum()}, x);
          for (size_t i = 0; i < x.size(); ++i) {
            double eg = rel_err(gd[i], gn[i]);
            INFO("grad " << i << " rel err " << eg);
            CHECK(eg < 1e-8);
          }
          // Not vacuous: the inner update changes the output.
          K::TTTInnerState frozen = init_state(in);
          auto no_lr = K::ttt_inner(in.xq, in.xk, in.xv, lr * 0.0, in.tidx, norm, frozen, chunk);
          CHECK(rel_err(no_lr, dual) > 1e-3);
        }
      }
    }
  }
}

TEST_CASE("ttt: primal decoding and split prefill equal one dual-form call", "[unit][ttt]") {
  torch::NoGradGuard ng;
  const int64_t N = 2, D = 4, T = 29, chunk = 8;
  for (bool mlp : {false, true}) {
    auto in = make_inputs(N, T, D, chunk, mlp, 7 + mlp);
    K::TTTNorm norm{in.nw, in.nb, 1e-6};
    auto lr = torch::sigmoid(in.lr_logit);
    auto full_st = init_state(in);
    auto full = K::ttt_inner(in.xq, in.xk, in.xv, lr, in.tidx, norm, full_st, chunk);
    for (std::vector<int64_t> pieces : {std::vector<int64_t>(T, 1), std::vector<int64_t>{5, 1, 1, 1, 13, 8},
                                        std::vector<int64_t>{8, 16, 5}, std::vector<int64_t>{3, 26}}) {
      auto st = init_state(in);
      std::vector<torch::Tensor> outs;
      int64_t t = 0;
      for (auto n : pieces)
        outs.push_back(K::ttt_inner(in.xq.narrow(1, t, n), in.xk.narrow(1, t, n), in.xv.narrow(1, t, n),
                                    lr.narrow(1, t, n), in.tidx, norm, st, chunk)),
            t += n;
      REQUIRE(t == T);
      CHECK(rel_err(torch::cat(outs, 1), full) < 1e-10);
      CHECK(st.p == full_st.p);
    }
  }
}

TEST_CASE("ttt plugin: incremental decoding equals the full forward", "[unit][ttt]") {
  const auto& p = test::arch_plugin("ttt");
  for (std::string inner : {"linear", "mlp"}) {
    for (bool mamba : {false, true}) {
      DYNAMIC_SECTION(inner << (mamba ? " mamba" : " transformer")) {
        torch::manual_seed(2);
        auto m = p.create(validate_params(p.params(),
                                          {{"inner", inner},
                                           {"d_model", int64_t{32}},
                                           {"n_head", int64_t{4}},
                                           {"n_layer", int64_t{2}},
                                           {"pre_conv", mamba},
                                           {"share_qk", mamba},
                                           {"use_gate", mamba}},
                                          "ttt"),
                          {50, 64});
        m->to(torch::kFloat64);
        m->eval();
        torch::NoGradGuard ng;
        auto idx = torch::randint(0, 50, {2, 45}, torch::kLong);
        auto full = m->forward(idx, nullptr).logits;
        auto s1 = m->new_decode_state(2);
        std::vector<torch::Tensor> steps;
        for (int64_t t = 0; t < 45; ++t) steps.push_back(m->forward(idx.narrow(1, t, 1), s1.get()).logits);
        CHECK(rel_err(torch::cat(steps, 1), full) < 1e-10);
        for (int64_t pre : {int64_t{16}, int64_t{21}}) {
          auto s2 = m->new_decode_state(2);
          std::vector<torch::Tensor> out{m->forward(idx.narrow(1, 0, pre), s2.get()).logits};
          for (int64_t t = pre; t < 45; ++t) out.push_back(m->forward(idx.narrow(1, t, 1), s2.get()).logits);
          CHECK(rel_err(torch::cat(out, 1), full) < 1e-10);
        }
      }
    }
  }
}

// The TTT layer norm against LibTorch's own (issue 18: ttt_inner_naive uses ln_apply too, so the
// parity tests above cannot see a wrong norm). Per-head weight and bias (N, 1, D) are applied head
// by head with torch::layer_norm over the last dim, same eps. Rows of Z have scales from ~0.01 to
// ~50 and non-zero means, so eps matters for the small ones; eps 1e-6 (the reference's) and 0.3.
// Tolerances, float64: ln_apply max abs err < 1e-12 (outputs are O(1)); ln_l2_grad against autograd
// of 1/2 |torch::layer_norm(Z) - target|^2, per row max abs err / row's max |grad| < 1e-10 (the
// gradient scales as 1/std of the row, so one scale per row).
TEST_CASE("ttt layer norm: ln_apply and ln_l2_grad equal torch::layer_norm and its autograd", "[unit][ttt]") {
  auto f64 = torch::TensorOptions().dtype(torch::kFloat64);
  const int64_t N = 3, R = 9, D = 16;
  for (double eps : {1e-6, 0.3}) {
    DYNAMIC_SECTION("eps " << eps) {
      torch::manual_seed(181);
      auto row_scale = torch::exp(1.3 * torch::randn({N, R, 1}, f64)).clamp(0.01, 50.0);
      auto Z = (torch::randn({N, R, D}, f64) * row_scale + 2.0 * torch::randn({N, R, 1}, f64)).requires_grad_(true);
      auto target = torch::randn({N, R, D}, f64);
      K::TTTNorm norm{1.0 + 0.3 * torch::randn({N, 1, D}, f64), 0.3 * torch::randn({N, 1, D}, f64), eps};

      std::vector<torch::Tensor> ref_rows;
      for (int64_t n = 0; n < N; ++n)
        ref_rows.push_back(torch::layer_norm(Z[n], {D}, norm.weight[n].view({D}), norm.bias[n].view({D}), eps));
      auto ref = torch::stack(ref_rows);  // (N, R, D)

      const double e_apply = (K::ln_apply(Z, norm) - ref).abs().max().item<double>();
      INFO("ln_apply max abs err " << e_apply);
      CHECK(e_apply < 1e-12);

      auto g_ref = torch::autograd::grad({0.5 * (ref - target).pow(2).sum()}, {Z})[0];
      auto g = K::ln_l2_grad(Z.detach(), target, norm);
      const double e_grad = ((g - g_ref).abs().amax(-1) / g_ref.abs().amax(-1)).max().item<double>();
      INFO("ln_l2_grad max per-row rel err " << e_grad);
      CHECK(e_grad < 1e-10);
    }
  }
}
