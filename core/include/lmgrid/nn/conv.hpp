// Causal depthwise convolution over time with a decoding state (Mamba, TTT's Mamba backbone):
//   y_t = sum_{j<k} w_j x_{t-k+1+j} + b,   per channel, x_{<0} = 0 at the start of a sequence.
// The state is the last k-1 inputs, so decoding one token at a time equals the full forward.
// Not here: dilation, strides, non-depthwise channel mixing.
//
// Letters: B batch, T new tokens, C channels, k kernel width.
#pragma once

#include <torch/torch.h>

namespace lmgrid::nn {

// [history, x] along time: x (B,T,C) -> (B,k-1+T,C). `history` (B,k-1,C) holds the last k-1
// inputs of the sequence so far; undefined or null means a fresh sequence (zeros). When
// `history` is given it is replaced by the last k-1 inputs of the result (detached).
torch::Tensor with_conv_history(const torch::Tensor& x, int64_t k, torch::Tensor* history);

// y (B,T,C) for weights held elsewhere: weight (C,k), bias (C) or undefined; silu: y = silu(conv).
// Evaluated as an explicit sum over the taps (w_0 first, the bias last), the order Mamba-2 here
// always used: on the CPU by the fused kernel (lmgrid/kernels/conv.hpp, float32 and float64,
// unless LMGRID_CPU_KERNELS=composite), elsewhere as LibTorch ops.
torch::Tensor causal_conv1d(const torch::Tensor& x, const torch::Tensor& weight, const torch::Tensor& bias,
                            torch::Tensor* history, bool silu = false);

// The same equation as a module: a depthwise torch::nn::Conv1d registered as "conv" (weight
// (C,1,k), bias (C); PyTorch's default init), evaluated by the fused CPU kernel where
// causal_conv1d would be, else by torch's conv1d. The forms agree to rounding (~1e-7 in float32),
// not bit for bit.
class CausalConv1dImpl : public torch::nn::Module {
 public:
  CausalConv1dImpl(int64_t channels, int64_t kernel, bool bias = true);
  // x (B,T,C) -> (B,T,C). history: see with_conv_history (nullptr: a fresh sequence).
  torch::Tensor forward(const torch::Tensor& x, torch::Tensor* history = nullptr);
  torch::nn::Conv1d conv{nullptr};

 private:
  int64_t k_;
};
TORCH_MODULE(CausalConv1d);

}  // namespace lmgrid::nn
