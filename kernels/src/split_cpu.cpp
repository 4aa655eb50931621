// split_last: lmgrid/kernels/split.hpp.
#include "lmgrid/kernels/split.hpp"

#include <cstring>
#include <numeric>

#include "lmgrid/kernels/cpu_kernels.hpp"

namespace lmgrid::kernels {

namespace {

using torch::Tensor;
using torch::autograd::variable_list;

bool fast(const Tensor& x) {
  return x.device().is_cpu() && (x.scalar_type() == torch::kFloat32 || x.scalar_type() == torch::kFloat64) &&
         cpu_kernels_enabled();
}

// Copies column blocks between a (rows, W) tensor and its pieces (rows, w_i), both contiguous.
void copy_rows(const Tensor& whole, const std::vector<Tensor>& pieces, bool to_pieces) {
  const int64_t W = whole.size(-1), rows = W ? whole.numel() / W : 0, es = whole.element_size();
  auto* base = static_cast<char*>(whole.data_ptr());
  int64_t off = 0;
  for (const auto& p : pieces) {
    const int64_t w = p.size(-1);
    if (w == 0 || rows == 0) continue;  // an empty piece may have no storage (memcpy takes no null)
    auto* pb = static_cast<char*>(p.data_ptr());
    for (int64_t r = 0; r < rows; ++r) {
      char* a = base + (r * W + off) * es;
      char* b = pb + r * w * es;
      if (to_pieces)
        std::memcpy(b, a, w * es);
      else
        std::memcpy(a, b, w * es);
    }
    off += w;
  }
}

struct SplitLastFunction : torch::autograd::Function<SplitLastFunction> {
  static variable_list forward(torch::autograd::AutogradContext* ctx, const Tensor& x, std::vector<int64_t> sizes) {
    auto xc = x.contiguous();
    std::vector<Tensor> out;
    auto shape = x.sizes().vec();
    for (int64_t w : sizes) {
      shape.back() = w;
      out.push_back(torch::empty(shape, x.options()));
    }
    copy_rows(xc, out, true);
    ctx->saved_data["shape"] = x.sizes().vec();
    return out;
  }
  static variable_list backward(torch::autograd::AutogradContext* ctx, variable_list grads) {
    const auto shape = ctx->saved_data["shape"].toIntVector();
    if (torch::GradMode::is_enabled()) return {torch::cat(grads, -1), Tensor()};  // differentiated again
    auto g = torch::empty(shape, grads[0].options());
    std::vector<Tensor> parts;
    for (const auto& gi : grads) parts.push_back(gi.to(g.scalar_type()).contiguous());
    copy_rows(g, parts, false);
    return {g, Tensor()};
  }
};

}  // namespace

std::vector<Tensor> split_last(const Tensor& x, const std::vector<int64_t>& sizes) {
  TORCH_CHECK(x.dim() >= 1 && std::accumulate(sizes.begin(), sizes.end(), int64_t{0}) == x.size(-1),
              "split_last: sizes must add up to the last dim (", x.size(-1), ")");
  if (!fast(x)) {
    std::vector<Tensor> out;
    for (auto& p : x.split_with_sizes(sizes, -1)) out.push_back(p.contiguous());
    return out;
  }
  return SplitLastFunction::apply(x, sizes);
}

}  // namespace lmgrid::kernels
