// The fused CPU kernel of the TTT dual form (kernels/src/ttt_cpu.cpp) against the LibTorch
// composite (LMGRID_CPU_KERNELS=composite), TTT-Linear and TTT-MLP: outputs, the final inner
// weights and the gradients of every input (through the output and the final weights) in float64
// to 1e-10 relative, float32 against the float64 composite to 1e-4; mini-batches of 1, 5, 8 and
// 16 tokens, a sequence that ends in a partial mini-batch (the kernel takes the whole ones, the
// composite the rest), states continued across calls; initial weights and norm shared per head
// (G rows for N sequences); the same bits on 1 and 2 threads, and without grad mode (nothing kept
// for a backward); refusals.
#include <catch2/catch.hpp>

#include <ATen/Parallel.h>
#include <lmgrid/kernels/ttt.hpp>

#include "../support.hpp"
#include "ttt_inputs.hpp"

using namespace lmgrid;
namespace K = lmgrid::kernels;
using lmgrid::test::rel_err;
using lmgrid::test::ScopedEnv;

namespace {

using Leaves = test::TTTInputs;

// ttt_inner over the sequence in `pieces` (continuing the state), then a scalar loss that reads the
// outputs and the final weights; returns the outputs, the final W1 and the leaves' gradients.
struct Run {
  torch::Tensor out, W1;
  std::vector<torch::Tensor> grads;
};

Run run(const Leaves& in, int64_t chunk, const std::vector<int64_t>& pieces, const std::string& kernels) {
  ScopedEnv env("LMGRID_CPU_KERNELS", kernels);
  K::TTTNorm norm{in.nw, in.nb, 1e-6};
  auto lr = torch::sigmoid(in.lr_logit) * 0.5;
  auto st = in.state();
  std::vector<torch::Tensor> outs;
  int64_t t = 0;
  for (auto n : pieces)
    outs.push_back(K::ttt_inner(in.xq.narrow(1, t, n), in.xk.narrow(1, t, n), in.xv.narrow(1, t, n), lr.narrow(1, t, n),
                                in.tidx, norm, st, chunk)),
        t += n;
  auto out = torch::cat(outs, 1);
  torch::manual_seed(99);  // the same loss weights for every run
  auto w = torch::randn(out.sizes(), torch::kFloat64).to(out.scalar_type());
  auto loss = (out * w).sum() + 0.7 * (st.W1 * st.W1).sum() + 0.3 * st.b1.sum();
  if (st.W2.defined()) loss = loss + 0.5 * (st.W2 * st.W2).sum() - 0.2 * st.b2.sum();
  Run r{out.detach(), st.W1.detach(), torch::autograd::grad({loss}, in.all())};
  return r;
}

}  // namespace

TEST_CASE("ttt_dual_cpu: the fused kernel equals the composite (values, final weights, gradients)",
          "[unit][ttt][fused]") {
  struct Case {
    int64_t N, T, D, chunk;
    std::vector<int64_t> pieces;
  };
  const std::vector<Case> cases{{3, 32, 8, 8, {32}}, {2, 16, 6, 16, {16}},      {2, 37, 4, 5, {37}},
                                {2, 12, 4, 1, {12}}, {2, 40, 4, 8, {8, 3, 29}}, {4, 64, 32, 16, {64}}};
  for (bool mlp : {false, true}) {
    for (const auto& c : cases) {
      DYNAMIC_SECTION((mlp ? "mlp" : "linear") << " N " << c.N << " T " << c.T << " D " << c.D << " chunk " << c.chunk
                                               << " pieces " << c.pieces.size()) {
        auto in = test::make_ttt_inputs(c.N, c.T, c.D, c.chunk, mlp, 3 * c.T + c.chunk + mlp);
        auto ref = run(in, c.chunk, c.pieces, "composite");
        auto got = run(in, c.chunk, c.pieces, "auto");
        double e = rel_err(got.out, ref.out);
        INFO("output rel err " << e);
        CHECK(e < 1e-10);
        CHECK(rel_err(got.W1, ref.W1) < 1e-10);
        for (size_t i = 0; i < ref.grads.size(); ++i) {
          INFO("gradient of leaf " << i);
          REQUIRE(got.grads[i].defined());
          CHECK(rel_err(got.grads[i], ref.grads[i]) < 1e-10);
        }
        // float32 kernel against the float64 composite.
        auto got32 = run(in.to(torch::kFloat32), c.chunk, c.pieces, "auto");
        CHECK(rel_err(got32.out.to(torch::kFloat64), ref.out) < 1e-4);
        for (size_t i = 0; i < ref.grads.size(); ++i) {
          INFO("float32 gradient of leaf " << i);
          CHECK(rel_err(got32.grads[i].to(torch::kFloat64), ref.grads[i]) < 1e-4);
        }
      }
    }
  }
}

TEST_CASE("ttt_inner: initial weights and norm shared per head (G rows) equal their per-sequence copies",
          "[unit][ttt][fused]") {
  // N = 6 sequences read G = 3 rows (sequence s takes row s % 3, the plugin's b H + h order):
  // against the same rows copied per sequence by hand, for the kernel and the composite, whole
  // mini-batches and a sequence that ends in a partial one (the composite takes the rest).
  const int64_t N = 6, G = 3, D = 8, chunk = 8;
  for (bool mlp : {false, true}) {
    for (int64_t T : {int64_t{32}, int64_t{29}}) {
      for (const char* mode : {"auto", "composite"}) {
        DYNAMIC_SECTION((mlp ? "mlp" : "linear") << " T " << T << " " << mode) {
          ScopedEnv env("LMGRID_CPU_KERNELS", mode);
          auto in = test::make_ttt_inputs(G, T, D, chunk, mlp, 40 + T + mlp);  // G rows of weights and norm
          auto seq = test::make_ttt_inputs(N, T, D, chunk, mlp, 7 + T);        // N sequences of tokens
          auto lr = torch::sigmoid(seq.lr_logit);
          auto copies = [&](const torch::Tensor& t) {  // row s = t[s % G], differentiable
            auto sizes = t.sizes().vec();
            auto expanded = sizes;
            expanded.insert(expanded.begin(), N / G);
            sizes[0] = N;
            return t.unsqueeze(0).expand(expanded).reshape(sizes);
          };
          auto leaves = std::vector<torch::Tensor>{in.nw, in.nb, in.W1, in.b1};
          if (mlp) leaves.push_back(in.W2), leaves.push_back(in.b2);
          auto result = [&](bool shared) {
            K::TTTInnerState st;
            st.W1 = shared ? in.W1 : copies(in.W1), st.b1 = shared ? in.b1 : copies(in.b1);
            if (mlp) st.W2 = shared ? in.W2 : copies(in.W2), st.b2 = shared ? in.b2 : copies(in.b2);
            K::TTTNorm norm{shared ? in.nw : copies(in.nw), shared ? in.nb : copies(in.nb), 1e-6};
            auto out = K::ttt_inner(seq.xq, seq.xk, seq.xv, lr, seq.tidx, norm, st, chunk);
            REQUIRE(st.W1.size(0) == N);  // one row per sequence after the call
            auto loss = (out * out.detach().cos()).sum() + 0.7 * (st.W1 * st.W1).sum();
            auto g = torch::autograd::grad({loss}, leaves);
            g.insert(g.begin(), {out.detach(), st.W1.detach()});
            return g;
          };
          auto shared = result(true), per_seq = result(false);
          for (size_t i = 0; i < shared.size(); ++i) {
            INFO("result " << i << " (output, final W1, then the gradients of nw, nb, W1, b1, W2, b2)");
            CHECK(rel_err(shared[i], per_seq[i]) < 1e-12);
          }
        }
      }
    }
  }
  auto in = test::make_ttt_inputs(4, 16, 8, 16, true, 1);  // 4 sequences cannot share 3 rows
  auto three = test::make_ttt_inputs(3, 16, 8, 16, true, 2);
  K::TTTNorm norm{in.nw, in.nb, 1e-6};
  auto lr = torch::sigmoid(in.lr_logit);
  CHECK(K::ttt_dual_cpu_unsupported(in.xq, in.xk, in.xv, lr, in.tidx, norm, three.state(), 16) ==
        "W1, b1 are not (N, D, H), (N, 1, H) or G rows of them with G dividing N");
  K::TTTNorm norm3{three.nw, three.nb, 1e-6};
  CHECK(K::ttt_dual_cpu_unsupported(in.xq, in.xk, in.xv, lr, in.tidx, norm3, in.state(), 16) ==
        "the norm is not (N, 1, D) or (G, 1, D) with G dividing N");
  ScopedEnv composite("LMGRID_CPU_KERNELS", "composite");
  auto st = three.state();
  CHECK_THROWS_WITH(K::ttt_inner(in.xq, in.xk, in.xv, lr, in.tidx, norm, st, 16),
                    Catch::Contains("3 rows of weights or norm for 4 sequences"));
}

TEST_CASE("ttt_dual_cpu: taken where it applies, the same bits on 1 and 2 threads, refusals", "[unit][ttt][fused]") {
  auto in = test::make_ttt_inputs(6, 32, 8, 16, true, 5);
  K::TTTNorm norm{in.nw, in.nb, 1e-6};
  auto lr = torch::sigmoid(in.lr_logit);
  auto state = [&] { return in.state(); };
  {  // routed: ttt_inner's output comes from the kernel's autograd node
    ScopedEnv env("LMGRID_CPU_KERNELS", "auto");
    auto st = state();
    auto out = K::ttt_inner(in.xq, in.xk, in.xv, lr, in.tidx, norm, st, 16);
    REQUIRE(out.grad_fn());
    CHECK(out.grad_fn()->name().find("TttDualCpu") != std::string::npos);
    ScopedEnv off("LMGRID_CPU_KERNELS", "composite");
    auto st2 = state();
    auto ref = K::ttt_inner(in.xq, in.xk, in.xv, lr, in.tidx, norm, st2, 16);
    CHECK(ref.grad_fn()->name().find("TttDualCpu") == std::string::npos);
  }
  const int before = at::get_num_threads();
  std::vector<std::vector<torch::Tensor>> per_threads;
  for (int threads : {1, 2}) {
    at::set_num_threads(threads);
    auto in32 = in.to(torch::kFloat32);
    auto st = in32.state();
    K::TTTNorm n32{in32.nw, in32.nb, 1e-6};
    auto out = K::ttt_dual_cpu(in32.xq, in32.xk, in32.xv, torch::sigmoid(in32.lr_logit), in32.tidx, n32, st, 16);
    auto g = torch::autograd::grad({(out * out).sum()}, in32.all());
    g.insert(g.begin(), out.detach());
    per_threads.push_back(g);
  }
  at::set_num_threads(before);
  for (size_t i = 0; i < per_threads[0].size(); ++i) CHECK(torch::equal(per_threads[0][i], per_threads[1][i]));

  {  // Without grad mode (evaluation, decoding) the kernel keeps nothing for a backward: the same
     // outputs and final weights, bit for bit, and outputs that need no gradient.
    auto st_grad = state();
    auto with_grad = K::ttt_dual_cpu(in.xq, in.xk, in.xv, lr, in.tidx, norm, st_grad, 16);
    REQUIRE(with_grad.requires_grad());
    torch::NoGradGuard no_grad;
    auto st_eval = state();
    auto eval = K::ttt_dual_cpu(in.xq, in.xk, in.xv, lr, in.tidx, norm, st_eval, 16);
    CHECK_FALSE(eval.requires_grad());
    CHECK(torch::equal(eval, with_grad.detach()));
    CHECK(torch::equal(st_eval.W1, st_grad.W1.detach()));
    CHECK(torch::equal(st_eval.W2, st_grad.W2.detach()));
    CHECK(torch::equal(st_eval.b2, st_grad.b2.detach()));
  }
  auto st = state();
  CHECK(K::ttt_dual_cpu_unsupported(in.xq, in.xk, in.xv, lr, in.tidx, norm, st, 16).empty());
  CHECK(K::ttt_dual_cpu_unsupported(in.xq, in.xk, in.xv, lr, in.tidx, norm, st, 5) ==
        "the tokens are not whole mini-batches");
  CHECK(K::ttt_dual_cpu_unsupported(in.xq.to(torch::kFloat32), in.xk, in.xv, lr, in.tidx, norm, st, 16) ==
        "not CPU tensors of one dtype");
  CHECK(K::ttt_dual_cpu_unsupported(in.xq.to(torch::kBFloat16), in.xk, in.xv, lr, in.tidx, norm, st, 16) ==
        "dtype is not float32 or float64");
  auto busy = state();
  busy.p = 3;
  CHECK(K::ttt_dual_cpu_unsupported(in.xq, in.xk, in.xv, lr, in.tidx, norm, busy, 16) == "a mini-batch is under way");
  CHECK_THROWS_WITH(K::ttt_dual_cpu(in.xq, in.xk, in.xv, lr, in.tidx, norm, busy, 16),
                    Catch::Contains("ttt_dual_cpu: a mini-batch is under way"));
  // First order only: a second derivative is refused with the way out named.
  auto out = K::ttt_dual_cpu(in.xq, in.xk, in.xv, lr, in.tidx, norm, st, 16);
  CHECK_THROWS_WITH(torch::autograd::grad({out.pow(2).sum()}, {in.xq}, {}, true, true),
                    Catch::Contains("LMGRID_CPU_KERNELS=composite"));
}
