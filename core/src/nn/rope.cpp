// Rotary position embedding (see lmgrid/nn/rope.hpp). Letters: T positions, D rotated dim.
#include "lmgrid/nn/rope.hpp"

namespace lmgrid::nn {

torch::Tensor apply_rope(const torch::Tensor& x, const torch::Tensor& positions, double base) {
  const int64_t D = x.size(-1);
  TORCH_CHECK(D % 2 == 0, "apply_rope: the rotated dimension (", D, ") must be even");
  auto opts = torch::TensorOptions().dtype(torch::kFloat64).device(x.device());
  auto inv = torch::pow(base, -torch::arange(0, D, 2, opts) / static_cast<double>(D));  // (D/2)
  auto ang = torch::outer(positions.to(opts), inv);                                     // (T, D/2)
  auto cos = ang.cos().to(x.scalar_type()), sin = ang.sin().to(x.scalar_type());
  auto xr = x.unflatten(-1, {D / 2, 2});  // (..., T, D/2, 2)
  auto x0 = xr.select(-1, 0), x1 = xr.select(-1, 1);
  return torch::stack({x0 * cos - x1 * sin, x0 * sin + x1 * cos}, -1).flatten(-2);
}

torch::Tensor apply_rope(const torch::Tensor& x, int64_t offset, double base) {
  const int64_t T = x.size(-2);
  return apply_rope(
      x, torch::arange(offset, offset + T, torch::TensorOptions().dtype(torch::kFloat64).device(x.device())), base);
}

}  // namespace lmgrid::nn
