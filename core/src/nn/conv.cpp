// Causal depthwise convolution (see lmgrid/nn/conv.hpp). Letters: B, T, C, k.
#include "lmgrid/nn/conv.hpp"

#include "lmgrid/kernels/conv.hpp"
#include "lmgrid/kernels/cpu_kernels.hpp"

namespace lmgrid::nn {

namespace {

// The fused CPU kernel (kernels/conv.hpp) where it applies and LMGRID_CPU_KERNELS allows;
// advances `history` with with_conv_history. Undefined when it does not apply.
torch::Tensor conv_kernel(const torch::Tensor& x, const torch::Tensor& weight, const torch::Tensor& bias,
                          torch::Tensor* history, bool silu) {
  const int64_t k = weight.size(1);
  torch::Tensor past = history && history->defined() ? *history : torch::Tensor();
  if (!x.device().is_cpu() || !kernels::cpu_kernels_enabled() ||
      !kernels::causal_conv1d_cpu_unsupported(x, weight, bias, past).empty())
    return {};
  auto y = kernels::causal_conv1d_cpu(x, weight, bias, past, silu);
  if (history) with_conv_history(x, k, history);  // the kernel has read the old one
  return y;
}

}  // namespace

torch::Tensor with_conv_history(const torch::Tensor& x, int64_t k, torch::Tensor* history) {
  auto past = history && history->defined() ? *history : torch::zeros({x.size(0), k - 1, x.size(2)}, x.options());
  auto xp = torch::cat({past, x}, 1);  // (B, k-1+T, C)
  if (history) *history = xp.narrow(1, xp.size(1) - (k - 1), k - 1).detach();
  return xp;
}

torch::Tensor causal_conv1d(const torch::Tensor& x, const torch::Tensor& weight, const torch::Tensor& bias,
                            torch::Tensor* history, bool silu) {
  if (auto y = conv_kernel(x, weight, bias, history, silu); y.defined()) return y;
  const int64_t T = x.size(1), k = weight.size(1);
  auto xp = with_conv_history(x, k, history);
  torch::Tensor y = xp.narrow(1, 0, T) * weight.select(1, 0);
  for (int64_t j = 1; j < k; ++j) y = y + xp.narrow(1, j, T) * weight.select(1, j);
  if (bias.defined()) y = y + bias;
  return silu ? torch::silu(y) : y;  // (B,T,C)
}

CausalConv1dImpl::CausalConv1dImpl(int64_t channels, int64_t kernel, bool bias) : k_(kernel) {
  conv = register_module(
      "conv", torch::nn::Conv1d(torch::nn::Conv1dOptions(channels, channels, kernel).groups(channels).bias(bias)));
}

torch::Tensor CausalConv1dImpl::forward(const torch::Tensor& x, torch::Tensor* history) {
  const auto& b = conv->options.bias() ? conv->bias : torch::Tensor();
  if (auto y = conv_kernel(x, conv->weight.view({conv->weight.size(0), k_}), b, history, false); y.defined()) return y;
  auto xp = with_conv_history(x, k_, history);
  return conv(xp.transpose(1, 2)).transpose(1, 2);
}

}  // namespace lmgrid::nn
