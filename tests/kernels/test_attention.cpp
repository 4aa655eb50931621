// Tiled CPU attention (lmgrid/kernels/attention.hpp) against the composite (scores, mask, softmax,
// product; autograd for the gradients): float64 to 1e-12 relative (max |a - b| / max |b|; measured
// ~2e-15), float32 against the float64 composite to 1e-5 (measured ~6e-7), forward and the
// gradients of q, k and v. Shapes cover the kernel's branches: causal and not, cached keys (S > T),
// one-token decoding, grouped kv heads, head dims with their own compiled version (8, 16, 64) and
// without (12), lengths off the 32-query blocks and 64-key tiles. The result does not depend on
// the thread count (bitwise), and nn::causal_attention equals the composite on either LibTorch.
#include <catch2/catch.hpp>

#include <cmath>

#include <lmgrid/kernels/attention.hpp>
#include <lmgrid/nn/attention.hpp>

#include "../support.hpp"

using namespace lmgrid::kernels;
using lmgrid::test::rel_err;

namespace {

struct Case {
  int64_t B, H, Hkv, T, S, D;
  bool causal;
};

struct Qkv {
  torch::Tensor q, k, v, w;  // w: the weights of the loss sum(out * w)
};

Qkv inputs(const Case& c, uint64_t seed) {
  torch::manual_seed(seed);
  const auto o = torch::TensorOptions().dtype(torch::kFloat64);
  return {torch::randn({c.B, c.H, c.T, c.D}, o), torch::randn({c.B, c.Hkv, c.S, c.D}, o),
          torch::randn({c.B, c.Hkv, c.S, c.D}, o), torch::randn({c.B, c.H, c.T, c.D}, o)};
}

// out and the gradients of sum(out * w) wrt q, k, v, computed in `dtype`.
std::vector<torch::Tensor> run(const Qkv& x, const Case& c, bool tiled, torch::ScalarType dtype) {
  auto q = x.q.to(dtype).requires_grad_(), k = x.k.to(dtype).requires_grad_(), v = x.v.to(dtype).requires_grad_();
  const double scale = 1.0 / std::sqrt(static_cast<double>(c.D));
  auto out = tiled ? tiled_attention(q, k, v, c.causal, scale) : attention_composite(q, k, v, c.causal, scale);
  auto g = torch::autograd::grad({(out * x.w.to(dtype)).sum()}, {q, k, v});
  return {out.detach().to(torch::kFloat64), g[0].to(torch::kFloat64), g[1].to(torch::kFloat64),
          g[2].to(torch::kFloat64)};
}

const std::vector<Case> kCases = {
    {2, 4, 4, 37, 37, 16, true},    // one block, a partial tile
    {2, 4, 2, 70, 70, 8, true},     // grouped kv heads, three blocks, two tiles
    {1, 6, 1, 33, 100, 12, true},   // multi-query, cached keys, a head dim without its own version
    {2, 2, 2, 65, 130, 16, false},  // not causal, S = 2 T
    {1, 2, 2, 1, 50, 16, true},     // one-token decoding
    {1, 1, 1, 200, 200, 64, true},  // Zoology's MQAR heads, a block boundary inside tiles
    {1, 2, 1, 129, 129, 32, true},  // one past two tiles
};

}  // namespace

TEST_CASE("tiled attention equals the composite, forward and gradients", "[unit][attention]") {
  for (size_t i = 0; i < kCases.size(); ++i) {
    const Case& c = kCases[i];
    CAPTURE(i, c.B, c.H, c.Hkv, c.T, c.S, c.D, c.causal);
    auto x = inputs(c, 100 + i);
    auto ref = run(x, c, false, torch::kFloat64);
    auto t64 = run(x, c, true, torch::kFloat64);
    auto t32 = run(x, c, true, torch::kFloat32);
    for (int j = 0; j < 4; ++j) {
      CAPTURE(j);  // 0 out, 1 dq, 2 dk, 3 dv
      CHECK(rel_err(t64[j], ref[j]) < 1e-12);
      CHECK(rel_err(t32[j], ref[j]) < 1e-5);
    }
  }
}

TEST_CASE("tiled attention: the same bits on one thread and on two", "[unit][attention]") {
  const Case c{4, 2, 2, 600, 600, 16, true};  // big enough for a second thread (work >= 5e7)
  auto x = inputs(c, 7);
  const int before = torch::get_num_threads();
  torch::set_num_threads(1);
  auto one = run(x, c, true, torch::kFloat32);
  torch::set_num_threads(2);
  auto two = run(x, c, true, torch::kFloat32);
  torch::set_num_threads(before);
  for (int j = 0; j < 4; ++j) CHECK(torch::equal(one[j], two[j]));
}

TEST_CASE("tiled attention: what it refuses, and why", "[unit][attention]") {
  auto f = torch::zeros({1, 2, 4, 8});
  CHECK(tiled_attention_unsupported(f, f, f).empty());
  CHECK(tiled_attention_unsupported(f.to(torch::kBFloat16), f, f) == "dtype is not float32 or float64");
  CHECK(tiled_attention_unsupported(f, f.to(torch::kFloat64), f) == "q, k and v differ in dtype");
  CHECK(tiled_attention_unsupported(f, torch::zeros({1, 3, 4, 8}), torch::zeros({1, 3, 4, 8})) ==
        "kv heads do not divide query heads");
  CHECK(tiled_attention_unsupported(f, torch::zeros({1, 2, 3, 8}), torch::zeros({1, 2, 3, 8})) ==
        "fewer keys than queries");
  CHECK(tiled_attention_unsupported(torch::zeros({1, 1, 2, 512}), torch::zeros({1, 1, 2, 512}),
                                    torch::zeros({1, 1, 2, 512})) == "head dim above 256");
  CHECK(tiled_attention_unsupported(f[0], f, f) == "q, k and v must be 4-d (B, heads, tokens, D)");
  CHECK_THROWS_WITH(tiled_attention(f, f.to(torch::kFloat64), f, true, 1.0),
                    Catch::Contains("tiled_attention: q, k and v differ in dtype"));
}

TEST_CASE("nn::causal_attention equals the composite with every LMGRID_CPU_ATTENTION", "[unit][attention]") {
  for (const char* choice : {"auto", "tiled", "library"}) {
    lmgrid::test::ScopedEnv env("LMGRID_CPU_ATTENTION", choice);
    for (const Case& c : {kCases[1], kCases[2], kCases[4]}) {
      CAPTURE(choice, c.T, c.S, c.Hkv);
      auto x = inputs(c, 11);
      auto q = x.q.to(torch::kFloat32), k = x.k.to(torch::kFloat32), v = x.v.to(torch::kFloat32);
      auto got = lmgrid::nn::causal_attention(q, k, v, 0.0, true, c.causal);
      auto ref = attention_composite(x.q, x.k, x.v, c.causal, 1.0 / std::sqrt(static_cast<double>(c.D)));
      CHECK(rel_err(got.to(torch::kFloat64), ref) < 1e-5);
    }
  }
  lmgrid::test::ScopedEnv bad("LMGRID_CPU_ATTENTION", "fast");
  auto f = torch::zeros({1, 1, 4, 8});
  CHECK_THROWS_WITH(lmgrid::nn::causal_attention(f, f, f, 0.0, true, true),
                    Catch::Contains("LMGRID_CPU_ATTENTION=fast: expected auto, tiled or library"));
}
