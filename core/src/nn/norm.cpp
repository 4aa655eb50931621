// Norms (see lmgrid/nn/norm.hpp).
#include "lmgrid/nn/norm.hpp"

#include "lmgrid/kernels/cpu_kernels.hpp"
#include "lmgrid/kernels/norm.hpp"

namespace lmgrid::nn {

namespace {

// The fused CPU kernel (kernels/norm.hpp) where it applies and LMGRID_CPU_KERNELS allows.
bool norm_kernel(const torch::Tensor& x, const torch::Tensor& z, const torch::Tensor& weight, int64_t groups) {
  return x.device().is_cpu() && kernels::cpu_kernels_enabled() &&
         kernels::rms_norm_cpu_unsupported(x, z, weight, groups).empty();
}

}  // namespace

LayerNormImpl::LayerNormImpl(int64_t dim, bool bias, double eps) : dim_(dim), eps_(eps) {
  weight = register_parameter("weight", torch::ones({dim}));
  if (bias) this->bias = register_parameter("bias", torch::zeros({dim}));
}
torch::Tensor LayerNormImpl::forward(const torch::Tensor& x) {
  return torch::layer_norm(x, {dim_}, weight, bias.defined() ? bias : torch::Tensor(), eps_);
}

RMSNormImpl::RMSNormImpl(int64_t dim, double eps) : eps_(eps) {
  weight = register_parameter("weight", torch::ones({dim}));
}
torch::Tensor RMSNormImpl::forward(const torch::Tensor& x) {
  if (norm_kernel(x, {}, weight, 1)) return kernels::rms_norm_cpu(x, {}, weight, 1, eps_);
  return x * torch::rsqrt(x.pow(2).mean(-1, true) + eps_) * weight;
}

torch::Tensor gated_rms_norm(const torch::Tensor& x, const torch::Tensor& z, const torch::Tensor& weight,
                             int64_t groups, double eps) {
  if (norm_kernel(x, z, weight, groups)) return kernels::rms_norm_cpu(x, z, weight, groups, eps);
  const int64_t C = x.size(-1);
  TORCH_CHECK(C % groups == 0, "gated_rms_norm: groups (", groups, ") must divide the width (", C, ")");
  auto shape = x.sizes().vec();
  auto grouped = shape;
  grouped.back() = groups;
  grouped.push_back(C / groups);
  auto g = (x * torch::silu(z)).view(grouped);  // (..., G, C/G)
  g = g * torch::rsqrt(g.pow(2).mean(-1, true) + eps);
  return g.view(shape) * weight;
}

GatedRMSNormImpl::GatedRMSNormImpl(int64_t dim, int64_t groups, double eps) : groups_(groups), eps_(eps) {
  TORCH_CHECK(groups > 0 && dim % groups == 0, "GatedRMSNorm: groups (", groups, ") must divide dim (", dim, ")");
  weight = register_parameter("weight", torch::ones({dim}));
}
torch::Tensor GatedRMSNormImpl::forward(const torch::Tensor& x, const torch::Tensor& z) {
  return gated_rms_norm(x, z, weight, groups_, eps_);
}

}  // namespace lmgrid::nn
