// Random leaves of the TTT layer's inner loop for the kernel tests (test_ttt.cpp,
// test_ttt_cpu.cpp): queries, keys, values, learning-rate logits, the token scale, the inner
// LayerNorm and the initial inner weights of N sequences, float64, all requiring grad.
#pragma once

#include <vector>

#include <lmgrid/kernels/ttt.hpp>
#include <torch/torch.h>

namespace lmgrid::test {

struct TTTInputs {
  torch::Tensor xq, xk, xv, lr_logit, tidx, nw, nb, W1, b1, W2, b2;
  std::vector<torch::Tensor> all() const {
    std::vector<torch::Tensor> v{xq, xk, xv, lr_logit, tidx, nw, nb, W1, b1};
    if (W2.defined()) v.push_back(W2), v.push_back(b2);
    return v;
  }
  // The same values in `dtype`, as new leaves.
  TTTInputs to(torch::ScalarType dtype) const {
    TTTInputs o;
    auto c = [&](const torch::Tensor& x) {
      return x.defined() ? x.detach().to(dtype).requires_grad_(true) : torch::Tensor();
    };
    o.xq = c(xq), o.xk = c(xk), o.xv = c(xv), o.lr_logit = c(lr_logit), o.tidx = c(tidx), o.nw = c(nw), o.nb = c(nb);
    o.W1 = c(W1), o.b1 = c(b1), o.W2 = c(W2), o.b2 = c(b2);
    return o;
  }
  // The inner weights as a fresh state (no mini-batch under way).
  kernels::TTTInnerState state() const {
    kernels::TTTInnerState s;
    s.W1 = W1, s.b1 = b1, s.W2 = W2, s.b2 = b2;
    return s;
  }
};

// D wide, inner hidden 4 D for mlp (else D); token scale 1/i plus a little noise.
inline TTTInputs make_ttt_inputs(int64_t N, int64_t T, int64_t D, int64_t chunk, bool mlp, uint64_t seed) {
  torch::manual_seed(seed);
  auto o = torch::TensorOptions().dtype(torch::kFloat64);
  const int64_t hid = mlp ? 4 * D : D;
  TTTInputs in;
  in.xq = torch::randn({N, T, D}, o), in.xk = torch::randn({N, T, D}, o), in.xv = torch::randn({N, T, D}, o);
  in.lr_logit = torch::randn({N, T}, o);
  in.tidx = 1.0 / torch::arange(1, chunk + 1, o) + 0.05 * torch::rand({chunk}, o);
  in.nw = 1.0 + 0.3 * torch::randn({N, 1, D}, o), in.nb = 0.3 * torch::randn({N, 1, D}, o);
  in.W1 = 0.3 * torch::randn({N, D, hid}, o), in.b1 = 0.1 * torch::randn({N, 1, hid}, o);
  if (mlp) in.W2 = 0.3 * torch::randn({N, hid, D}, o), in.b2 = 0.1 * torch::randn({N, 1, D}, o);
  for (auto t : in.all()) t.requires_grad_(true);
  return in;
}

}  // namespace lmgrid::test
