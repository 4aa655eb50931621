// Position-wise feed-forward blocks: GELU MLP (GPT-2) and SwiGLU (Shazeer 2020, Llama).
//
// Letters: C model width, F hidden width.
#pragma once

#include <torch/torch.h>

namespace lmgrid::nn {

// The gated activations: on float32/float64 CPU tensors one fused pass each way
// (lmgrid/kernels/act.hpp) unless LMGRID_CPU_KERNELS=composite; else LibTorch's ops.
torch::Tensor gelu(const torch::Tensor& x);                                   // GELU (erf)
torch::Tensor silu_mul(const torch::Tensor& a, const torch::Tensor& b);       // silu(a) * b
torch::Tensor gelu_tanh_mul(const torch::Tensor& a, const torch::Tensor& b);  // gelu_tanh(a) * b

// c_fc (C -> F) -> GELU (erf) -> c_proj (F -> C) -> dropout. Checkpoint keys c_fc.*, c_proj.*.
class MLPImpl : public torch::nn::Module {
 public:
  MLPImpl(int64_t d_model, int64_t hidden, bool bias, double dropout);
  torch::Tensor forward(const torch::Tensor& x);
  torch::nn::Linear c_fc{nullptr}, c_proj{nullptr};

 private:
  torch::nn::Dropout drop_{nullptr};
};
TORCH_MODULE(MLP);

// w2(silu(w1 x) * w3 x), no biases (Llama). Checkpoint keys w1.weight, w2.weight, w3.weight.
class SwiGLUImpl : public torch::nn::Module {
 public:
  SwiGLUImpl(int64_t d_model, int64_t hidden);
  torch::Tensor forward(const torch::Tensor& x);
  torch::nn::Linear w1{nullptr}, w2{nullptr}, w3{nullptr};
};
TORCH_MODULE(SwiGLU);

// Llama's default SwiGLU width: 8/3 d_model rounded up to a multiple of `multiple`.
int64_t swiglu_hidden(int64_t d_model, int64_t multiple = 8);

}  // namespace lmgrid::nn
