// Rotary position embedding (see lmgrid/nn/rope.hpp). Letters: T positions, D rotated dim.
#include "lmgrid/nn/rope.hpp"

#include <utility>

#include <lmgrid/kernels/cpu_kernels.hpp>
#include <lmgrid/kernels/rope.hpp>

namespace lmgrid::nn {

namespace {

// cos and sin (T, D/2) of the angles p * base^(-2i/D), computed in float64, rounded to `dtype`.
std::pair<torch::Tensor, torch::Tensor> rope_tables(const torch::Tensor& positions, int64_t D, double base,
                                                    torch::ScalarType dtype, torch::Device device) {
  auto opts = torch::TensorOptions().dtype(torch::kFloat64).device(device);
  auto inv = torch::pow(base, -torch::arange(0, D, 2, opts) / static_cast<double>(D));  // (D/2)
  auto ang = torch::outer(positions.to(opts), inv);                                     // (T, D/2)
  return {ang.cos().to(dtype), ang.sin().to(dtype)};
}

}  // namespace

torch::Tensor apply_rope(const torch::Tensor& x, const torch::Tensor& positions, double base) {
  const int64_t D = x.size(-1);
  TORCH_CHECK(D % 2 == 0, "apply_rope: the rotated dimension (", D, ") must be even");
  auto [cos, sin] = rope_tables(positions, D, base, x.scalar_type(), x.device());
  auto xr = x.unflatten(-1, {D / 2, 2});  // (..., T, D/2, 2)
  auto x0 = xr.select(-1, 0), x1 = xr.select(-1, 1);
  return torch::stack({x0 * cos - x1 * sin, x0 * sin + x1 * cos}, -1).flatten(-2);
}

torch::Tensor rope_heads(const torch::Tensor& x, int64_t heads, const torch::Tensor& positions, double base) {
  TORCH_CHECK(x.dim() == 3 && heads >= 1 && x.size(2) % heads == 0, "rope_heads: x ", x.sizes(),
              " is not (B, T, heads * D) for ", heads, " heads");
  const int64_t B = x.size(0), T = x.size(1), D = x.size(2) / heads;
  TORCH_CHECK(D % 2 == 0, "rope_heads: the head dim (", D, ") must be even");
  if (kernels::cpu_kernels_enabled()) {
    auto [cos, sin] = rope_tables(positions, D, base, x.scalar_type(), x.device());
    if (kernels::rope_heads_cpu_unsupported(x, heads, cos, sin).empty())
      return kernels::rope_heads_cpu(x, heads, cos, sin);
  }
  return apply_rope(x.view({B, T, heads, D}).transpose(1, 2), positions, base).contiguous();
}

torch::Tensor apply_rope(const torch::Tensor& x, int64_t offset, double base) {
  const int64_t T = x.size(-2);
  return apply_rope(
      x, torch::arange(offset, offset + T, torch::TensorOptions().dtype(torch::kFloat64).device(x.device())), base);
}

}  // namespace lmgrid::nn
