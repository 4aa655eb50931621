// RoPE fused with the split into heads, on the CPU: lmgrid/kernels/rope.hpp.
// One task per (batch row, token): reads its H*D inputs once and writes H rows of D.
#include "lmgrid/kernels/rope.hpp"

#include "cpu_common.hpp"

namespace lmgrid::kernels {

namespace {

using torch::Tensor;

template <class T>
struct RopeArgs {
  int64_t B, T_, H, D;
  int64_t sxb, sxt;  // x's batch and token strides (channels contiguous)
  const T *x, *cos, *sin;
  T* out;  // (B, H, T, D)
  const T* dout;
  T* dx;  // (B, T, H*D) contiguous
};

template <class T>
LMGRID_INLINE void forward_row(const RopeArgs<T>& a, int64_t bt) {
  const int64_t b = bt / a.T_, t = bt % a.T_, half = a.D / 2;
  const T* __restrict c = a.cos + t * half;
  const T* __restrict s = a.sin + t * half;
  for (int64_t h = 0; h < a.H; ++h) {
    const T* __restrict x = a.x + b * a.sxb + t * a.sxt + h * a.D;
    T* __restrict o = a.out + ((b * a.H + h) * a.T_ + t) * a.D;
    for (int64_t i = 0; i < half; ++i) {
      const T x0 = x[2 * i], x1 = x[2 * i + 1];
      o[2 * i] = x0 * c[i] - x1 * s[i];
      o[2 * i + 1] = x0 * s[i] + x1 * c[i];
    }
  }
}

template <class T>
LMGRID_INLINE void backward_row(const RopeArgs<T>& a, int64_t bt) {
  const int64_t b = bt / a.T_, t = bt % a.T_, half = a.D / 2;
  const T* __restrict c = a.cos + t * half;
  const T* __restrict s = a.sin + t * half;
  for (int64_t h = 0; h < a.H; ++h) {
    const T* __restrict g = a.dout + ((b * a.H + h) * a.T_ + t) * a.D;
    T* __restrict dx = a.dx + (b * a.T_ + t) * a.H * a.D + h * a.D;
    for (int64_t i = 0; i < half; ++i) {
      const T g0 = g[2 * i], g1 = g[2 * i + 1];
      dx[2 * i] = g0 * c[i] + g1 * s[i];
      dx[2 * i + 1] = g1 * c[i] - g0 * s[i];
    }
  }
}

#define LMGRID_ROPE_KERNELS(T)                                                                         \
  LMGRID_MULTIVERSION void rope_forward_##T(const RopeArgs<T>& a, int64_t r) { forward_row<T>(a, r); } \
  LMGRID_MULTIVERSION void rope_backward_##T(const RopeArgs<T>& a, int64_t r) { backward_row<T>(a, r); }
LMGRID_ROPE_KERNELS(float)
LMGRID_ROPE_KERNELS(double)
#undef LMGRID_ROPE_KERNELS
void run_forward(const RopeArgs<float>& a, int64_t r) { rope_forward_float(a, r); }
void run_forward(const RopeArgs<double>& a, int64_t r) { rope_forward_double(a, r); }
void run_backward(const RopeArgs<float>& a, int64_t r) { rope_backward_float(a, r); }
void run_backward(const RopeArgs<double>& a, int64_t r) { rope_backward_double(a, r); }

struct RopeCpuFunction : torch::autograd::Function<RopeCpuFunction> {
  static Tensor forward(torch::autograd::AutogradContext* ctx, const Tensor& x, int64_t H, const Tensor& cos,
                        const Tensor& sin) {
    const int64_t B = x.size(0), T_ = x.size(1), D = x.size(2) / H;
    auto out = torch::empty({B, H, T_, D}, x.options());
    AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "rope_heads_cpu", [&] {
      RopeArgs<scalar_t> a{B,
                           T_,
                           H,
                           D,
                           x.stride(0),
                           x.stride(1),
                           x.data_ptr<scalar_t>(),
                           cos.data_ptr<scalar_t>(),
                           sin.data_ptr<scalar_t>(),
                           out.data_ptr<scalar_t>(),
                           nullptr,
                           nullptr};
      cpu::parallel_tasks(B * T_, 2.0 * x.numel(), [&](int64_t r) { run_forward(a, r); });
    });
    ctx->save_for_backward({cos, sin});
    ctx->saved_data["H"] = H;
    ctx->saved_data["B"] = B;
    return out;
  }
  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    cpu::require_first_order("rope_heads_cpu");
    auto s = ctx->get_saved_variables();
    const Tensor &cos = s[0], &sin = s[1];
    const int64_t H = ctx->saved_data["H"].toInt(), B = ctx->saved_data["B"].toInt();
    if (!grads[0].defined()) return {Tensor(), Tensor(), Tensor(), Tensor()};
    const Tensor g = grads[0].to(cos.scalar_type()).contiguous();
    const int64_t T_ = g.size(2), D = g.size(3);
    auto dx = torch::empty({B, T_, H * D}, g.options());
    AT_DISPATCH_FLOATING_TYPES(g.scalar_type(), "rope_heads_cpu_backward", [&] {
      RopeArgs<scalar_t> a{B,
                           T_,
                           H,
                           D,
                           0,
                           0,
                           nullptr,
                           cos.data_ptr<scalar_t>(),
                           sin.data_ptr<scalar_t>(),
                           nullptr,
                           g.data_ptr<scalar_t>(),
                           dx.data_ptr<scalar_t>()};
      cpu::parallel_tasks(B * T_, 2.0 * g.numel(), [&](int64_t r) { run_backward(a, r); });
    });
    return {dx, Tensor(), Tensor(), Tensor()};
  }
};

}  // namespace

std::string rope_heads_cpu_unsupported(const Tensor& x, int64_t heads, const Tensor& cos, const Tensor& sin) {
  if (!x.defined() || !cos.defined() || !sin.defined()) return "an undefined tensor";
  if (x.dim() != 3 || heads < 1 || x.size(2) % heads != 0) return "x is not (B, T, heads * D)";
  const int64_t D = x.size(2) / heads;
  if (D % 2 != 0) return "the head dim is odd";
  if (!cos.sizes().equals({x.size(1), D / 2}) || !sin.sizes().equals(cos.sizes())) return "cos, sin are not (T, D/2)";
  const auto st = x.scalar_type();
  if (st != torch::kFloat32 && st != torch::kFloat64) return "dtype is not float32 or float64";
  for (const Tensor* t : {&x, &cos, &sin})
    if (!t->device().is_cpu() || t->scalar_type() != st) return "not CPU tensors of one dtype";
  if (x.numel() == 0) return "empty tensors";
  return "";
}

Tensor rope_heads_cpu(const Tensor& x, int64_t heads, const Tensor& cos, const Tensor& sin) {
  const std::string why = rope_heads_cpu_unsupported(x, heads, cos, sin);
  TORCH_CHECK(why.empty(), "rope_heads_cpu: ", why);
  const Tensor xc = x.stride(2) == 1 ? x : x.contiguous();
  return RopeCpuFunction::apply(xc, heads, cos.contiguous(), sin.contiguous());
}

}  // namespace lmgrid::kernels
