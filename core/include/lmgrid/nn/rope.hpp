// Rotary position embedding (RoFormer, Su et al. 2021) on adjacent pairs of the last dimension:
// for pair i of x at position p, with angle a = p * base^(-2i/D),
//   (x_{2i}, x_{2i+1}) -> (x_{2i} cos a - x_{2i+1} sin a, x_{2i} sin a + x_{2i+1} cos a).
// Angles are computed in float64 and rounded once to x's dtype. Not here: the half-split
// (GPT-NeoX / HF Llama) pairing, which is this one after a fixed permutation of the channels.
//
// Letters: T positions, D the rotated dimension (even).
#pragma once

#include <torch/torch.h>

namespace lmgrid::nn {

// x (..., T, D) at positions offset, offset+1, ..., offset+T-1.
torch::Tensor apply_rope(const torch::Tensor& x, int64_t offset, double base = 10000.0);

// x (..., T, D) at the given positions (T), integer or floating (e.g. positions that restart
// every mini-batch).
torch::Tensor apply_rope(const torch::Tensor& x, const torch::Tensor& positions, double base = 10000.0);

// x (B, T, heads * D) split into heads and rotated: (B, heads, T, D), contiguous; the same values as
// apply_rope(x.view(B, T, heads, D).transpose(1, 2), positions, base). On float32/float64 CPU
// tensors one fused pass each way (lmgrid/kernels/rope.hpp) unless LMGRID_CPU_KERNELS=composite.
torch::Tensor rope_heads(const torch::Tensor& x, int64_t heads, const torch::Tensor& positions, double base = 10000.0);

}  // namespace lmgrid::nn
