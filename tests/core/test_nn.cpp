// Shared blocks against naive references (float64), schedule and loss.
#include <catch2/catch.hpp>

#include <cmath>

#include <lmgrid/nn.hpp>
#include <lmgrid/train/trainer.hpp>

#include "../support.hpp"

using namespace lmgrid;

TEST_CASE("causal attention equals a naive loop (float64, 1e-12)", "[unit]") {
  torch::manual_seed(0);
  auto opts = torch::kFloat64;
  int64_t B = 2, H = 3, T = 5, D = 4;
  auto q = torch::randn({B, H, T, D}, opts), k = torch::randn({B, H, T, D}, opts), v = torch::randn({B, H, T, D}, opts);
  auto y = nn::causal_attention(q, k, v, 0.0, false);
  auto ref = torch::zeros_like(y);
  for (int64_t b = 0; b < B; ++b)
    for (int64_t h = 0; h < H; ++h)
      for (int64_t i = 0; i < T; ++i) {
        std::vector<double> s(i + 1);
        double mx = -1e300, z = 0;
        for (int64_t j = 0; j <= i; ++j) {
          s[j] = (q[b][h][i] * k[b][h][j]).sum().item<double>() / std::sqrt(double(D));
          mx = std::max(mx, s[j]);
        }
        for (auto& x : s) z += (x = std::exp(x - mx));
        for (int64_t j = 0; j <= i; ++j) ref[b][h][i] += v[b][h][j] * (s[j] / z);
      }
  CHECK(torch::allclose(y, ref, 1e-12, 1e-12));
}

TEST_CASE("attention with a KV cache equals the full forward", "[unit]") {
  torch::manual_seed(1);
  nn::CausalSelfAttention attn(16, 4, true, 0.0);
  attn->to(torch::kFloat64);
  attn->eval();
  auto x = torch::randn({2, 7, 16}, torch::kFloat64);
  auto full = attn(x, nullptr);
  nn::KVCache cache;
  auto a = attn(x.narrow(1, 0, 3), &cache);
  std::vector<torch::Tensor> parts{a};
  for (int64_t t = 3; t < 7; ++t) parts.push_back(attn(x.narrow(1, t, 1), &cache));
  CHECK(cache.length() == 7);
  CHECK(torch::allclose(torch::cat(parts, 1), full, 1e-12, 1e-12));
}

TEST_CASE("rotary embedding matches its definition", "[unit]") {
  auto x = torch::randn({1, 1, 3, 4}, torch::kFloat64);
  auto y = nn::apply_rope(x, 2, 10000.0);
  for (int64_t t = 0; t < 3; ++t)
    for (int64_t i = 0; i < 2; ++i) {
      double ang = (t + 2) * std::pow(10000.0, -2.0 * i / 4.0);
      double x0 = x[0][0][t][2 * i].item<double>(), x1 = x[0][0][t][2 * i + 1].item<double>();
      CHECK(y[0][0][t][2 * i].item<double>() == Approx(x0 * std::cos(ang) - x1 * std::sin(ang)).epsilon(1e-12));
      CHECK(y[0][0][t][2 * i + 1].item<double>() == Approx(x0 * std::sin(ang) + x1 * std::cos(ang)).epsilon(1e-12));
    }
}

// rope_heads: the fused split-into-heads + rotation (kernels/src/rope_cpu.cpp) against the composite
// apply_rope on the transposed view: float64 equal to 1e-14 relative, float32 to 1e-6, the input's
// gradient too, for a strided input and positions that restart (as the TTT layer's).
TEST_CASE("rope_heads equals apply_rope on the heads, values and gradients", "[unit][fused]") {
  for (auto dtype : {torch::kFloat64, torch::kFloat32}) {
    torch::manual_seed(3);
    auto big = torch::randn({2, 9, 40}, torch::kFloat64);
    auto pos = torch::arange(5, 14, torch::kLong).remainder(4);
    auto x = big.narrow(2, 4, 24).to(dtype).detach().requires_grad_(true);  // (2, 9, 3 heads x 8), strided
    auto ref = nn::apply_rope(x.view({2, 9, 3, 8}).transpose(1, 2), pos, 500.0);
    torch::Tensor got;
    {
      test::ScopedEnv env("LMGRID_CPU_KERNELS", "auto");
      got = nn::rope_heads(x, 3, pos, 500.0);
    }
    REQUIRE(got.sizes() == ref.sizes());
    CHECK(got.is_contiguous());
    CHECK(got.grad_fn()->name().find("RopeCpu") != std::string::npos);
    const double tol = dtype == torch::kFloat64 ? 1e-14 : 1e-6;
    CHECK(test::rel_err(got, ref) < tol);
    auto w = torch::randn(ref.sizes(), torch::kFloat64).to(dtype);
    auto gr = torch::autograd::grad({(ref * w).sum()}, {x})[0];
    auto gg = torch::autograd::grad({(got * w).sum()}, {x})[0];
    CHECK(test::rel_err(gg, gr) < tol);
    test::ScopedEnv off("LMGRID_CPU_KERNELS", "composite");
    CHECK(test::rel_err(nn::rope_heads(x, 3, pos, 500.0), ref) == 0.0);
  }
  CHECK_THROWS_WITH(nn::rope_heads(torch::randn({2, 3, 10}), 2, torch::arange(3), 1e4),
                    Catch::Contains("head dim (5) must be even"));
}

TEST_CASE("cosine schedule follows nanoGPT's get_lr", "[unit]") {
  auto nano = [](int64_t it) {
    double lr = 1e-3, min_lr = 1e-4;
    int64_t warmup = 100, decay = 2000;
    if (it < warmup) return lr * (it + 1) / (warmup + 1);
    if (it > decay) return min_lr;
    double ratio = double(it - warmup) / double(decay - warmup);
    return min_lr + 0.5 * (1.0 + std::cos(M_PI * ratio)) * (lr - min_lr);
  };
  for (int64_t it : {0, 50, 99, 100, 101, 1000, 1999, 2000, 2500})
    CHECK(scheduled_lr("cosine", it, 1e-3, 1e-4, 100, 2000) == Approx(nano(it)).epsilon(1e-12));
  CHECK(scheduled_lr("constant", 500, 1e-3, 1e-4, 0, 2000) == 1e-3);
  CHECK(scheduled_lr("linear", 1000, 1e-3, 0.0, 0, 2000) == Approx(5e-4));
}

// Every schedule warms up by nanoGPT's convention, lr * (step + 1) / (warmup + 1), then follows
// its own shape; checked at the warm-up's first and last step, the decay's ends and one point
// inside, with warmup 10, decay_steps 110, lr 1e-3, lr_min 1e-4 (values worked out by hand).
TEST_CASE("every schedule: one warm-up convention, its ends and a point inside", "[unit]") {
  const double lr = 1e-3, lo = 1e-4;
  for (const char* s : {"constant", "cosine", "linear"}) {
    INFO(s);
    CHECK(scheduled_lr(s, 0, lr, lo, 10, 110) == Approx(lr * 1 / 11).epsilon(1e-12));
    CHECK(scheduled_lr(s, 9, lr, lo, 10, 110) == Approx(lr * 10 / 11).epsilon(1e-12));
  }
  // After warm-up: constant stays at lr for ever.
  CHECK(scheduled_lr("constant", 10, lr, lo, 10, 110) == lr);
  CHECK(scheduled_lr("constant", 60, lr, lo, 10, 110) == lr);
  CHECK(scheduled_lr("constant", 5000, lr, lo, 10, 110) == lr);
  // Cosine: lr at the decay's start, the midpoint at ratio 1/2, lr_min at decay_steps and after.
  CHECK(scheduled_lr("cosine", 10, lr, lo, 10, 110) == Approx(lr).epsilon(1e-12));
  CHECK(scheduled_lr("cosine", 60, lr, lo, 10, 110) == Approx(lo + 0.5 * (lr - lo)).epsilon(1e-12));
  CHECK(scheduled_lr("cosine", 35, lr, lo, 10, 110) ==
        Approx(lo + 0.5 * (1 + std::cos(M_PI * 0.25)) * (lr - lo)).epsilon(1e-12));
  CHECK(scheduled_lr("cosine", 110, lr, lo, 10, 110) == Approx(lo).epsilon(1e-12));
  CHECK(scheduled_lr("cosine", 111, lr, lo, 10, 110) == lo);
  // Linear: straight line from lr at the decay's start to lr_min at decay_steps.
  CHECK(scheduled_lr("linear", 10, lr, lo, 10, 110) == Approx(lr).epsilon(1e-12));
  CHECK(scheduled_lr("linear", 35, lr, lo, 10, 110) == Approx(lr - 0.25 * (lr - lo)).epsilon(1e-12));
  CHECK(scheduled_lr("linear", 110, lr, lo, 10, 110) == Approx(lo).epsilon(1e-12));
  CHECK(scheduled_lr("linear", 200, lr, lo, 10, 110) == lo);
  // No warm-up: the first step already has the full rate.
  CHECK(scheduled_lr("constant", 0, lr, lo, 0, 110) == lr);
  CHECK(scheduled_lr("cosine", 0, lr, lo, 0, 110) == Approx(lr).epsilon(1e-12));
}

TEST_CASE("masked loss scores only masked positions", "[unit]") {
  torch::manual_seed(3);
  auto logits = torch::randn({2, 3, 5}, torch::kFloat64);
  auto targets = torch::randint(0, 5, {2, 3}, torch::kLong);
  auto mask = torch::tensor({1.0, 0.0, 1.0, 0.0, 0.0, 1.0}, torch::kFloat64).view({2, 3});
  double ref = 0;
  for (int64_t b = 0; b < 2; ++b)
    for (int64_t t = 0; t < 3; ++t)
      if (mask[b][t].item<double>() > 0)
        ref -= torch::log_softmax(logits[b][t], 0)[targets[b][t].item<int64_t>()].item<double>();
  CHECK(lm_loss(logits, targets, mask).item<double>() == Approx(ref / 3).epsilon(1e-12));
  CHECK(lm_loss(logits, targets, {}).item<double>() ==
        Approx(torch::nn::functional::cross_entropy(logits.view({6, 5}), targets.view({6})).item<double>()));
}
