// Fused CPU gated activations of the feed-forward blocks, one pass each way:
//   act_mul_cpu(a, b, silu)      = silu(a) b = a sigmoid(a) b     (SwiGLU)
//   act_mul_cpu(a, b, gelu_tanh) = gelu_tanh(a) b                 (TTT's output gate)
// Backward: da = dout b act'(a), db = dout act(a). LibTorch's composites are the references
// (tests/kernels/test_act.cpp): torch::silu(a) * b and torch::gelu(a, "tanh") * b, three to five
// passes and autograd nodes each way. float32 takes tanh and sigmoid from a polynomial exp, so
// the loops vectorise; float64 calls std::exp. Inputs of any layout (made contiguous), float32 or
// float64 CPU tensors of one shape; first-order differentiable (no create_graph).
// Not here: plain GELU (erf). A kernel of ours (Abramowitz & Stegun's erf) measured 0.24 ms a
// call against LibTorch's 0.20 ms at the nanoGPT recipe's MLP (bench_cpu_kernels), so gpt keeps
// torch::gelu.
#pragma once

#include <string>

#include <torch/torch.h>

namespace lmgrid::kernels {

enum class GateAct { silu, gelu_tanh };

torch::Tensor act_mul_cpu(const torch::Tensor& a, const torch::Tensor& b, GateAct act);

// "" when act_mul_cpu takes these tensors, else why not.
std::string act_cpu_unsupported(const torch::Tensor& a, const torch::Tensor& b);

}  // namespace lmgrid::kernels
