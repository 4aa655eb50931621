// Fused CPU loops of the optimizer step, one pass per parameter instead of LibTorch's eight to
// ten operations (and their temporaries) per parameter and step:
//   adamw_update_cpu: torch::optim::AdamW's update of one parameter, in place, in its order:
//     p *= 1 - lr wd;  m = b1 m + (1 - b1) g;  v = b2 v + (1 - b2) g^2;
//     p -= lr / (1 - b1^t) * m / (sqrt(v) / sqrt(1 - b2^t) + eps)
//   sum_squares_cpu: sum over tensors of sum(x^2), accumulated in float64 in a fixed order (the
//     gradient norm for clipping).
// For the gpt recipe's ~50 parameter tensors LibTorch's optimizer and clipping took 6% of the
// step's operator time, for TTT's ~100 tensors 11%. The LibTorch ops are the references
// (tests/kernels/test_optim.cpp). Float32 or float64 contiguous CPU tensors of one dtype.
#pragma once

#include <string>
#include <vector>

#include <torch/torch.h>

namespace lmgrid::kernels {

struct AdamWHyper {
  double lr, beta1, beta2, eps, weight_decay;
  int64_t step;  // after this update (1 for the first)
};

void adamw_update_cpu(torch::Tensor& p, const torch::Tensor& g, torch::Tensor& m, torch::Tensor& v,
                      const AdamWHyper& h);

// "" when adamw_update_cpu takes these tensors, else why not.
std::string adamw_update_cpu_unsupported(const torch::Tensor& p, const torch::Tensor& g, const torch::Tensor& m,
                                         const torch::Tensor& v);

// sum_t sum(t^2) in float64; every tensor a float32 or float64 contiguous CPU tensor (else throws).
double sum_squares_cpu(const std::vector<torch::Tensor>& ts);

// "" when sum_squares_cpu takes these tensors, else why not.
std::string sum_squares_cpu_unsupported(const std::vector<torch::Tensor>& ts);

}  // namespace lmgrid::kernels
