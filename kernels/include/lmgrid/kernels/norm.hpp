// Fused CPU RMSNorm, optionally gated (Mamba-2's norm_before_gate = false):
//   g = x (or x * silu(z)),  out = g / sqrt(mean_group(g^2) + eps) * weight,
// the mean taken over each of `groups` equal parts of the last dim. One pass per row forward,
// one backward (x, z, weight) from the saved per-group reciprocal RMS, instead of the composite's
// five to eight elementwise operations and their autograd nodes each way. The composites in
// lmgrid::nn (norm.cpp) are the reference (tests/kernels/test_norm.cpp).
#pragma once

#include <string>

#include <torch/torch.h>

namespace lmgrid::kernels {

// x (..., C) (any strides), z undefined or x's shape, weight (C), C a multiple of groups.
// Float32 or float64 CPU tensors of one dtype; first-order differentiable (no create_graph).
// Parallel over blocks of rows; the same bits on any thread count.
torch::Tensor rms_norm_cpu(const torch::Tensor& x, const torch::Tensor& z, const torch::Tensor& weight, int64_t groups,
                           double eps);

// "" when rms_norm_cpu takes these tensors, else why not.
std::string rms_norm_cpu_unsupported(const torch::Tensor& x, const torch::Tensor& z, const torch::Tensor& weight,
                                     int64_t groups);

}  // namespace lmgrid::kernels
