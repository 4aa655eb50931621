// Batched matrix product on the CPU: lmgrid/kernels/bmm.hpp.
#include "lmgrid/kernels/bmm.hpp"

#include <ATen/ExpandUtils.h>  // at::sum_to

#include "cpu_common.hpp"
#include "lmgrid/kernels/cpu_kernels.hpp"

namespace lmgrid::kernels {

namespace {

using torch::Tensor;

template <class T>
struct BmmArgs {
  int64_t M, N, K;
  const T* a;
  int64_t sa0, sa1, sa2;  // a's strides: batch, row, column
  const T* b;
  int64_t sb0, sb1;  // b's batch and row strides (columns contiguous)
  T* c;              // (B, M, N) contiguous, holding what the product is added to
  T alpha;
};

template <class T>
LMGRID_INLINE void bmm_entry(const BmmArgs<T>& x, int64_t i) {
  cpu::gemm_acc(x.M, x.N, x.K, x.a + i * x.sa0, x.sa1, x.sa2, x.b + i * x.sb0, x.sb1, x.c + i * x.M * x.N, x.N,
                cpu::Part::full, x.alpha);
}

LMGRID_MULTIVERSION void bmm_float(const BmmArgs<float>& x, int64_t i) { bmm_entry<float>(x, i); }
LMGRID_MULTIVERSION void bmm_double(const BmmArgs<double>& x, int64_t i) { bmm_entry<double>(x, i); }
void run(const BmmArgs<float>& x, int64_t i) { bmm_float(x, i); }
void run(const BmmArgs<double>& x, int64_t i) { bmm_double(x, i); }

// c + alpha a b with no autograd, c (B,M,N) contiguous and written in place: a any strides, b
// with columns contiguous (else copied).
void bmm_into(Tensor& c, const Tensor& a, const Tensor& b_in, double alpha) {
  const Tensor b = b_in.stride(2) == 1 ? b_in : b_in.contiguous();
  const int64_t B = a.size(0), M = a.size(1), K = a.size(2), N = b.size(2);
  if (c.numel() == 0 || K == 0) return;
  AT_DISPATCH_FLOATING_TYPES(a.scalar_type(), "bmm_cpu", [&] {
    BmmArgs<scalar_t> x{M,
                        N,
                        K,
                        a.data_ptr<scalar_t>(),
                        a.stride(0),
                        a.stride(1),
                        a.stride(2),
                        b.data_ptr<scalar_t>(),
                        b.stride(0),
                        b.stride(1),
                        c.data_ptr<scalar_t>(),
                        static_cast<scalar_t>(alpha)};
    cpu::parallel_tasks(B, static_cast<double>(B) * M * N * K, [&](int64_t i) { run(x, i); });
  });
}

Tensor bmm_raw(const Tensor& a, const Tensor& b, double alpha = 1.0) {
  auto c = torch::zeros({a.size(0), a.size(1), b.size(2)}, a.options());
  bmm_into(c, a, b, alpha);
  return c;
}

struct BmmFunction : torch::autograd::Function<BmmFunction> {
  static Tensor forward(torch::autograd::AutogradContext* ctx, const Tensor& a, const Tensor& b) {
    ctx->save_for_backward({a, b});
    return bmm_raw(a, b);
  }
  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    auto s = ctx->get_saved_variables();
    const Tensor &a = s[0], &b = s[1];
    const Tensor& g = grads[0];
    if (!g.defined()) return {Tensor(), Tensor()};
    // Differentiated again (create_graph): LibTorch's own, differentiable products.
    const bool differentiable = torch::GradMode::is_enabled();
    auto prod = [&](const Tensor& x, const Tensor& y) { return differentiable ? torch::bmm(x, y) : bmm_raw(x, y); };
    Tensor da, db;
    if (ctx->needs_input_grad(0)) da = prod(g, b.transpose(1, 2));
    if (ctx->needs_input_grad(1)) db = prod(a.transpose(1, 2), g);
    return {da, db};
  }
};

// beta base + alpha a b in one pass: the output starts as beta base (broadcast) and the product
// is accumulated into it with alpha folded into the broadcast factor of a.
struct BaddbmmFunction : torch::autograd::Function<BaddbmmFunction> {
  static Tensor forward(torch::autograd::AutogradContext* ctx, const Tensor& base, const Tensor& a, const Tensor& b,
                        double beta, double alpha) {
    const std::vector<int64_t> shape{a.size(0), a.size(1), b.size(2)};
    Tensor c = beta == 0.0 ? torch::zeros(shape, a.options())
                           : (beta == 1.0 ? base.expand(shape) : base.expand(shape) * beta).contiguous();
    if (beta == 1.0 && c.data_ptr() == base.data_ptr()) c = c.clone();  // never write into the input
    bmm_into(c, a, b, alpha);
    ctx->save_for_backward({a, b});
    ctx->saved_data["beta"] = beta;
    ctx->saved_data["alpha"] = alpha;
    ctx->saved_data["base_shape"] = base.sizes().vec();
    return c;
  }
  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    auto s = ctx->get_saved_variables();
    const Tensor &a = s[0], &b = s[1];
    const Tensor& g = grads[0];
    if (!g.defined()) return {Tensor(), Tensor(), Tensor(), Tensor(), Tensor()};
    const double beta = ctx->saved_data["beta"].toDouble(), alpha = ctx->saved_data["alpha"].toDouble();
    const bool differentiable = torch::GradMode::is_enabled();
    auto prod = [&](const Tensor& x, const Tensor& y) {
      return differentiable ? torch::bmm(x, y) * alpha : bmm_raw(x, y, alpha);
    };
    Tensor dbase, da, db;
    if (ctx->needs_input_grad(0))
      dbase = at::sum_to(beta == 1.0 ? g : g * beta, ctx->saved_data["base_shape"].toIntVector());
    if (ctx->needs_input_grad(1)) da = prod(g, b.transpose(1, 2));
    if (ctx->needs_input_grad(2)) db = prod(a.transpose(1, 2), g);
    return {dbase, da, db, Tensor(), Tensor()};
  }
};

}  // namespace

std::string bmm_cpu_unsupported(const Tensor& a, const Tensor& b) {
  if (!a.defined() || !b.defined()) return "an undefined tensor";
  if (a.dim() != 3 || b.dim() != 3) return "a and b must be 3-d";
  if (a.size(0) != b.size(0) || a.size(2) != b.size(1)) return "shapes do not multiply";
  const auto st = a.scalar_type();
  if (st != torch::kFloat32 && st != torch::kFloat64) return "dtype is not float32 or float64";
  if (b.scalar_type() != st || !a.device().is_cpu() || !b.device().is_cpu()) return "not CPU tensors of one dtype";
  return "";
}

Tensor bmm_cpu(const Tensor& a, const Tensor& b) {
  const std::string why = bmm_cpu_unsupported(a, b);
  TORCH_CHECK(why.empty(), "bmm_cpu: ", why);
  return BmmFunction::apply(a, b);
}

Tensor bmm(const Tensor& a, const Tensor& b) {
  if (a.device().is_cpu() && cpu_kernels_enabled() && bmm_cpu_unsupported(a, b).empty()) return bmm_cpu(a, b);
  return torch::bmm(a, b);
}

Tensor baddbmm(const Tensor& base, const Tensor& a, const Tensor& b, double beta, double alpha) {
  if (a.device().is_cpu() && cpu_kernels_enabled() && bmm_cpu_unsupported(a, b).empty() &&
      base.scalar_type() == a.scalar_type() && base.device().is_cpu() && base.dim() <= 3)
    return BaddbmmFunction::apply(base, a, b, beta, alpha);
  return torch::baddbmm(base, a, b, beta, alpha);
}

}  // namespace lmgrid::kernels
