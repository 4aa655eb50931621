// Feed-forward blocks (see lmgrid/nn/mlp.hpp).
#include "lmgrid/nn/mlp.hpp"

namespace lmgrid::nn {

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
torch::Tensor SwiGLUImpl::forward(const torch::Tensor& x) { return w2(torch::silu(w1(x)) * w3(x)); }

int64_t swiglu_hidden(int64_t d_model, int64_t multiple) {
  return ((8 * d_model / 3 + multiple - 1) / multiple) * multiple;
}

}  // namespace lmgrid::nn
