// Normalisations over the last dimension: LayerNorm (bias optional), RMSNorm, gated RMSNorm.
// Not here: batch or group norms over other dimensions.
//
// Letters: C channels (the normalised last dimension), G groups.
#pragma once

#include <torch/torch.h>

namespace lmgrid::nn {

// y = (x - mean) / sqrt(var + eps) * weight (+ bias). torch::nn::LayerNorm has no bias=False.
// Parameters: weight (C) ones, bias (C) zeros when bias = true.
class LayerNormImpl : public torch::nn::Module {
 public:
  LayerNormImpl(int64_t dim, bool bias, double eps = 1e-5);
  torch::Tensor forward(const torch::Tensor& x);
  torch::Tensor weight, bias;  // bias undefined when bias = false

 private:
  int64_t dim_;
  double eps_;
};
TORCH_MODULE(LayerNorm);

// y = x * rsqrt(mean(x^2) + eps) * weight. Parameter: weight (C) ones. Float32 and float64 CPU
// tensors take the fused kernel (lmgrid/kernels/norm.hpp) unless LMGRID_CPU_KERNELS=composite;
// the composite (LibTorch ops) elsewhere. The two agree to rounding. So does gated_rms_norm.
class RMSNormImpl : public torch::nn::Module {
 public:
  explicit RMSNormImpl(int64_t dim, double eps = 1e-5);
  torch::Tensor forward(const torch::Tensor& x);
  torch::Tensor weight;

 private:
  double eps_;
};
TORCH_MODULE(RMSNorm);

// Gated RMSNorm (Mamba-2's RMSNormGated with norm_before_gate = false):
//   g = x * silu(z), split into `groups` groups of C/G channels,
//   y = g * rsqrt(mean_group(g^2) + eps) * weight.
// x, z (..., C); weight (C). The function is for models that keep the weight elsewhere.
torch::Tensor gated_rms_norm(const torch::Tensor& x, const torch::Tensor& z, const torch::Tensor& weight,
                             int64_t groups, double eps);

// The same as a module with parameter weight (C) ones. `groups` must divide C.
class GatedRMSNormImpl : public torch::nn::Module {
 public:
  GatedRMSNormImpl(int64_t dim, int64_t groups = 1, double eps = 1e-5);
  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& z);
  torch::Tensor weight;

 private:
  int64_t groups_;
  double eps_;
};
TORCH_MODULE(GatedRMSNorm);

}  // namespace lmgrid::nn
