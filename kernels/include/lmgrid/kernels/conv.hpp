// Fused CPU causal depthwise convolution over time, with an optional SiLU after it (Mamba-2's
// conv + activation; TTT's q/k convolutions):
//   pre_t = sum_{j<k} w_j xp_{t+j} + b,   y_t = silu(pre_t) or pre_t,   per channel,
// where xp = [history, x] along time (history: the k-1 inputs before x, zeros when undefined).
// One pass over the input per batch row with every loop along the channels, and a hand-derived
// backward (x, weight, bias, history); the LibTorch composite it replaces (lmgrid::nn::
// causal_conv1d's shifted products, whose slices each allocate a full-size zero gradient in the
// backward pass) is the reference in tests/kernels/test_conv.cpp. The sum runs in the composite's
// order (w_0 first, the bias last), so the two agree to rounding.
//
// Letters: B batch, T new tokens, C channels, k kernel width.
#pragma once

#include <string>

#include <torch/torch.h>

namespace lmgrid::kernels {

// x (B,T,C) (any strides), weight (C,k), bias (C) or undefined, history (B,k-1,C) or undefined.
// Float32 or float64 CPU tensors of one dtype; first-order differentiable (no create_graph).
// Parallel over the batch on LibTorch's intra-op threads; the same bits on any thread count.
torch::Tensor causal_conv1d_cpu(const torch::Tensor& x, const torch::Tensor& weight, const torch::Tensor& bias,
                                const torch::Tensor& history, bool silu);

// "" when causal_conv1d_cpu takes these tensors, else why not.
std::string causal_conv1d_cpu_unsupported(const torch::Tensor& x, const torch::Tensor& weight,
                                          const torch::Tensor& bias, const torch::Tensor& history);

}  // namespace lmgrid::kernels
