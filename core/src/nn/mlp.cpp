// Feed-forward blocks (see lmgrid/nn/mlp.hpp).
#include "lmgrid/nn/mlp.hpp"

#include <lmgrid/kernels/act.hpp>
#include <lmgrid/kernels/cpu_kernels.hpp>

namespace lmgrid::nn {

torch::Tensor silu_mul(const torch::Tensor& a, const torch::Tensor& b) {
  if (kernels::cpu_kernels_enabled() && kernels::act_cpu_unsupported(a, b).empty())
    return kernels::act_mul_cpu(a, b, kernels::GateAct::silu);
  return torch::silu(a) * b;
}

torch::Tensor gelu_tanh_mul(const torch::Tensor& a, const torch::Tensor& b) {
  if (kernels::cpu_kernels_enabled() && kernels::act_cpu_unsupported(a, b).empty())
    return kernels::act_mul_cpu(a, b, kernels::GateAct::gelu_tanh);
  return torch::gelu(a, "tanh") * b;
}

MLPImpl::MLPImpl(int64_t d_model, int64_t hidden, bool bias, double dropout) {
  c_fc = register_module("c_fc", torch::nn::Linear(torch::nn::LinearOptions(d_model, hidden).bias(bias)));
  c_proj = register_module("c_proj", torch::nn::Linear(torch::nn::LinearOptions(hidden, d_model).bias(bias)));
  drop_ = register_module("drop", torch::nn::Dropout(dropout));
}
torch::Tensor MLPImpl::forward(const torch::Tensor& x) { return drop_(c_proj(torch::gelu(c_fc(x)))); }

SwiGLUImpl::SwiGLUImpl(int64_t d_model, int64_t hidden) {
  w1 = register_module("w1", torch::nn::Linear(torch::nn::LinearOptions(d_model, hidden).bias(false)));
  w2 = register_module("w2", torch::nn::Linear(torch::nn::LinearOptions(hidden, d_model).bias(false)));
  w3 = register_module("w3", torch::nn::Linear(torch::nn::LinearOptions(d_model, hidden).bias(false)));
}
torch::Tensor SwiGLUImpl::forward(const torch::Tensor& x) { return w2(silu_mul(w1(x), w3(x))); }

int64_t swiglu_hidden(int64_t d_model, int64_t multiple) {
  return ((8 * d_model / 3 + multiple - 1) / multiple) * multiple;
}

}  // namespace lmgrid::nn
