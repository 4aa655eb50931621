// The fused CPU causal depthwise convolution (+ SiLU) against a written-out reference with
// autograd: outputs and the gradients of x, weight, bias and history, float64 to 1e-12 and
// float32 to 1e-5 relative (against float64), with and without SiLU, bias and history, kernel
// widths 1 to 5, decoding steps shorter than the history; the same bits on 1 and 2 threads;
// nn::causal_conv1d and nn::CausalConv1d routed to it (LMGRID_CPU_KERNELS=auto) equal their
// composites (=composite); the refusals.
#include <catch2/catch.hpp>

#include <ATen/Parallel.h>
#include <lmgrid/kernels/conv.hpp>
#include <lmgrid/nn/conv.hpp>

#include "../support.hpp"

using namespace lmgrid;
using lmgrid::test::rel_err;

namespace {

torch::Tensor reference(const torch::Tensor& x, const torch::Tensor& w, const torch::Tensor& b,
                        const torch::Tensor& hist, bool silu) {
  const int64_t T = x.size(1), k = w.size(1);
  auto past = hist.defined() ? hist : torch::zeros({x.size(0), k - 1, x.size(2)}, x.options());
  auto xp = torch::cat({past, x}, 1);
  std::vector<torch::Tensor> ys;
  for (int64_t t = 0; t < T; ++t) {
    auto acc = xp.select(1, t) * w.select(1, 0);
    for (int64_t j = 1; j < k; ++j) acc = acc + xp.select(1, t + j) * w.select(1, j);
    if (b.defined()) acc = acc + b;
    ys.push_back(silu ? acc * torch::sigmoid(acc) : acc);
  }
  return torch::stack(ys, 1);
}

struct ConvInputs {
  torch::Tensor x, w, b, hist;
  std::vector<torch::Tensor> leaves() const {
    std::vector<torch::Tensor> v{x, w};
    if (b.defined()) v.push_back(b);
    if (hist.defined()) v.push_back(hist);
    return v;
  }
};

ConvInputs make(int64_t B, int64_t T, int64_t C, int64_t k, bool bias, bool hist, torch::ScalarType dt, int seed) {
  torch::manual_seed(seed);
  auto o = torch::TensorOptions().dtype(torch::kFloat64);
  ConvInputs in;
  in.x = torch::randn({B, T, C}, o).to(dt).requires_grad_();
  in.w = torch::randn({C, k}, o).to(dt).requires_grad_();
  if (bias) in.b = torch::randn({C}, o).to(dt).requires_grad_();
  if (hist) in.hist = torch::randn({B, k - 1, C}, o).to(dt).requires_grad_();
  return in;
}

std::vector<torch::Tensor> grads_of(const torch::Tensor& y, const ConvInputs& in) {
  torch::manual_seed(5);
  auto proj = torch::randn(y.sizes(), torch::kFloat64).to(y.scalar_type());
  return torch::autograd::grad({(y * proj).sum()}, in.leaves());
}

}  // namespace

TEST_CASE("conv: the fused CPU causal convolution equals the reference (float64 1e-12, float32 1e-5)",
          "[unit][conv][fused]") {
  struct Case {
    int64_t B, T, C, k;
    bool bias, hist, silu;
  };
  const std::vector<Case> cases = {{2, 17, 24, 4, true, false, true},  {3, 9, 40, 4, true, true, true},
                                   {2, 2, 8, 4, false, true, false},   {1, 1, 16, 4, true, true, true},
                                   {2, 12, 33, 1, true, false, false}, {2, 6, 5, 5, false, false, true}};
  for (const auto& c : cases) {
    DYNAMIC_SECTION("B=" << c.B << " T=" << c.T << " C=" << c.C << " k=" << c.k << " bias " << c.bias << " history "
                         << c.hist << " silu " << c.silu) {
      auto in = make(c.B, c.T, c.C, c.k, c.bias, c.hist, torch::kFloat64, 10 + c.T);
      auto ref = reference(in.x, in.w, in.b, in.hist, c.silu);
      auto got = kernels::causal_conv1d_cpu(in.x, in.w, in.b, in.hist, c.silu);
      CHECK(rel_err(got, ref) < 1e-12);
      auto gr = grads_of(ref, in), gg = grads_of(got, in);
      for (size_t i = 0; i < gr.size(); ++i) {
        INFO("float64 gradient " << i);
        CHECK(rel_err(gg[i], gr[i]) < 1e-12);
      }
      auto f = make(c.B, c.T, c.C, c.k, c.bias, c.hist, torch::kFloat32, 10 + c.T);
      auto got32 = kernels::causal_conv1d_cpu(f.x, f.w, f.b, f.hist, c.silu);
      CHECK(rel_err(got32.to(torch::kFloat64), ref) < 1e-5);
      auto g32 = grads_of(got32, f);
      for (size_t i = 0; i < gr.size(); ++i) {
        INFO("float32 gradient " << i);
        CHECK(rel_err(g32[i].to(torch::kFloat64), gr[i]) < 1e-5);
      }
    }
  }
}

TEST_CASE("conv: the fused kernel gives the same bits on 1 and 2 threads; routing; refusals", "[unit][conv][fused]") {
  auto in = make(8, 64, 384, 4, true, true, torch::kFloat32, 3);
  const int before = at::get_num_threads();
  at::set_num_threads(1);
  auto y1 = kernels::causal_conv1d_cpu(in.x, in.w, in.b, in.hist, true);
  auto g1 = grads_of(y1, in);
  at::set_num_threads(2);
  auto y2 = kernels::causal_conv1d_cpu(in.x, in.w, in.b, in.hist, true);
  auto g2 = grads_of(y2, in);
  at::set_num_threads(before);
  CHECK(torch::equal(y1, y2));
  for (size_t i = 0; i < g1.size(); ++i) CHECK(torch::equal(g1[i], g2[i]));

  // nn::causal_conv1d and the module: kernel (auto) and composite agree, history advanced alike,
  // for a prefill and then single tokens (non-contiguous x: a slice of a wider tensor).
  auto wide = torch::randn({2, 7, 20}, torch::kFloat64);
  auto x = wide.narrow(2, 3, 12);
  auto w = torch::randn({12, 4}, torch::kFloat64), b = torch::randn({12}, torch::kFloat64);
  nn::CausalConv1d mod(12, 4);
  mod->to(torch::kFloat64);
  std::vector<torch::Tensor> outs[2], mouts[2];
  torch::Tensor hist[2], mhist[2];
  for (int mode = 0; mode < 2; ++mode) {
    setenv("LMGRID_CPU_KERNELS", mode == 0 ? "composite" : "auto", 1);
    outs[mode].push_back(nn::causal_conv1d(x.narrow(1, 0, 2), w, b, &hist[mode], true));
    mouts[mode].push_back(mod(x.narrow(1, 0, 2), &mhist[mode]));
    for (int64_t t = 2; t < 7; ++t) {
      outs[mode].push_back(nn::causal_conv1d(x.narrow(1, t, 1), w, b, &hist[mode], true));
      mouts[mode].push_back(mod(x.narrow(1, t, 1), &mhist[mode]));
    }
  }
  unsetenv("LMGRID_CPU_KERNELS");
  CHECK(rel_err(torch::cat(outs[1], 1), torch::cat(outs[0], 1)) < 1e-12);
  CHECK(rel_err(torch::cat(mouts[1], 1), torch::cat(mouts[0], 1)) < 1e-12);
  CHECK(rel_err(hist[1], hist[0]) == 0.0);
  CHECK(rel_err(mhist[1], mhist[0]) == 0.0);
  setenv("LMGRID_CPU_KERNELS", "fast", 1);
  CHECK_THROWS_WITH(nn::causal_conv1d(x, w, b, nullptr), Catch::Contains("LMGRID_CPU_KERNELS=fast"));
  unsetenv("LMGRID_CPU_KERNELS");

  CHECK(kernels::causal_conv1d_cpu_unsupported(x, w, b, {}).empty());
  CHECK(kernels::causal_conv1d_cpu_unsupported(x.to(torch::kBFloat16), w, b, {}) == "dtype is not float32 or float64");
  CHECK(kernels::causal_conv1d_cpu_unsupported(x, w.to(torch::kFloat32), b, {}) == "not CPU tensors of one dtype");
  CHECK(kernels::causal_conv1d_cpu_unsupported(x, w.narrow(0, 0, 5), b, {}) == "weight is not (C,k) for x's channels");
  CHECK(kernels::causal_conv1d_cpu_unsupported(x, w, b, torch::zeros({2, 2, 12}, torch::kFloat64)) ==
        "history is not (B,k-1,C)");
  CHECK_THROWS_WITH(kernels::causal_conv1d_cpu(x, w, b.narrow(0, 0, 3), {}, false), Catch::Contains("bias is not (C)"));
}
