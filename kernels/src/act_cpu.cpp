// Fused CPU activations: lmgrid/kernels/act.hpp.
#include "lmgrid/kernels/act.hpp"

#include "cpu_common.hpp"

#include <cmath>

namespace lmgrid::kernels {

namespace {

using torch::Tensor;

constexpr int64_t kChunk = 16384;  // elements per task

// The gate activations' value and derivative (silu: sigmoid s, a s and s (1 + a (1 - s));
// gelu_tanh: cpu::GeluTanh).
template <class T, GateAct A>
LMGRID_INLINE T act(T a) {
  if constexpr (A == GateAct::silu) {
    return a * cpu::sigmoid(a);
  } else {
    return cpu::GeluTanh<T>::f(a, cpu::GeluTanh<T>::th(a));
  }
}
template <class T, GateAct A>
LMGRID_INLINE void act_and_d(T a, T& f, T& d) {
  if constexpr (A == GateAct::silu) {
    const T s = cpu::sigmoid(a);
    f = a * s, d = s * (T(1) + a * (T(1) - s));
  } else {
    const T th = cpu::GeluTanh<T>::th(a);
    f = cpu::GeluTanh<T>::f(a, th), d = cpu::GeluTanh<T>::d1(a, th);
  }
}

template <class T>
struct ActArgs {
  int64_t n;
  const T *a, *b, *dout;
  T *out, *da, *db;
};

template <class T, GateAct A>
LMGRID_INLINE void mul_fwd(const ActArgs<T>& x, int64_t c) {
  const int64_t i0 = c * kChunk, i1 = std::min(x.n, i0 + kChunk);
  const T* __restrict a = x.a;
  const T* __restrict b = x.b;
  T* __restrict o = x.out;
  for (int64_t i = i0; i < i1; ++i) o[i] = act<T, A>(a[i]) * b[i];
}
template <class T, GateAct A>
LMGRID_INLINE void mul_bwd(const ActArgs<T>& x, int64_t c) {
  const int64_t i0 = c * kChunk, i1 = std::min(x.n, i0 + kChunk);
  const T* __restrict a = x.a;
  const T* __restrict b = x.b;
  const T* __restrict g = x.dout;
  T* __restrict da = x.da;
  T* __restrict db = x.db;
  for (int64_t i = i0; i < i1; ++i) {
    T f, d;
    act_and_d<T, A>(a[i], f, d);
    da[i] = g[i] * b[i] * d;
    db[i] = g[i] * f;
  }
}

#define LMGRID_ACT_KERNELS(T)                                                                                      \
  LMGRID_MULTIVERSION void silu_fwd_##T(const ActArgs<T>& x, int64_t c) { mul_fwd<T, GateAct::silu>(x, c); }       \
  LMGRID_MULTIVERSION void silu_bwd_##T(const ActArgs<T>& x, int64_t c) { mul_bwd<T, GateAct::silu>(x, c); }       \
  LMGRID_MULTIVERSION void gtanh_fwd_##T(const ActArgs<T>& x, int64_t c) { mul_fwd<T, GateAct::gelu_tanh>(x, c); } \
  LMGRID_MULTIVERSION void gtanh_bwd_##T(const ActArgs<T>& x, int64_t c) { mul_bwd<T, GateAct::gelu_tanh>(x, c); }
LMGRID_ACT_KERNELS(float)
LMGRID_ACT_KERNELS(double)
#undef LMGRID_ACT_KERNELS

// kind: 1 silu gate, 2 gelu_tanh gate.
template <class T>
void run(int kind, bool backward, const ActArgs<T>& x) {
  const int64_t chunks = (x.n + kChunk - 1) / kChunk;
  cpu::parallel_tasks(chunks, 30.0 * static_cast<double>(x.n), [&](int64_t c) {
    if constexpr (std::is_same_v<T, float>) {
      if (kind == 1) backward ? silu_bwd_float(x, c) : silu_fwd_float(x, c);
      if (kind == 2) backward ? gtanh_bwd_float(x, c) : gtanh_fwd_float(x, c);
    } else {
      if (kind == 1) backward ? silu_bwd_double(x, c) : silu_fwd_double(x, c);
      if (kind == 2) backward ? gtanh_bwd_double(x, c) : gtanh_fwd_double(x, c);
    }
  });
}

// Inputs contiguous.
struct ActCpuFunction : torch::autograd::Function<ActCpuFunction> {
  static Tensor forward(torch::autograd::AutogradContext* ctx, const Tensor& a, const Tensor& b, int64_t kind) {
    auto out = torch::empty_like(a);
    AT_DISPATCH_FLOATING_TYPES(a.scalar_type(), "act_cpu", [&] {
      ActArgs<scalar_t> x{a.numel(), a.data_ptr<scalar_t>(),   b.data_ptr<scalar_t>(),
                          nullptr,   out.data_ptr<scalar_t>(), nullptr,
                          nullptr};
      run(static_cast<int>(kind), false, x);
    });
    ctx->save_for_backward({a, b});
    ctx->saved_data["kind"] = kind;
    return out;
  }
  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    cpu::require_first_order("act_cpu");
    auto s = ctx->get_saved_variables();
    const Tensor &a = s[0], &b = s[1];
    const int64_t kind = ctx->saved_data["kind"].toInt();
    if (!grads[0].defined()) return {Tensor(), Tensor(), Tensor()};
    const Tensor g = grads[0].to(a.scalar_type()).contiguous();
    auto da = torch::empty_like(a);
    auto db = torch::empty_like(b);
    AT_DISPATCH_FLOATING_TYPES(a.scalar_type(), "act_cpu_backward", [&] {
      ActArgs<scalar_t> x{a.numel(), a.data_ptr<scalar_t>(),  b.data_ptr<scalar_t>(), g.data_ptr<scalar_t>(),
                          nullptr,   da.data_ptr<scalar_t>(), db.data_ptr<scalar_t>()};
      run(static_cast<int>(kind), true, x);
    });
    return {da, db, Tensor()};
  }
};

}  // namespace

std::string act_cpu_unsupported(const Tensor& a, const Tensor& b) {
  if (!a.defined()) return "an undefined tensor";
  const auto st = a.scalar_type();
  if (st != torch::kFloat32 && st != torch::kFloat64) return "dtype is not float32 or float64";
  if (!a.device().is_cpu()) return "not CPU tensors";
  if (!b.defined()) return "an undefined tensor";
  if (!b.device().is_cpu() || b.scalar_type() != st) return "not CPU tensors of one dtype";
  if (!b.sizes().equals(a.sizes())) return "a and b differ in shape";
  if (a.numel() == 0) return "empty tensors";
  return "";
}

Tensor act_mul_cpu(const Tensor& a, const Tensor& b, GateAct act) {
  TORCH_CHECK(b.defined(), "act_mul_cpu: b is undefined");
  const std::string why = act_cpu_unsupported(a, b);
  TORCH_CHECK(why.empty(), "act_mul_cpu: ", why);
  return ActCpuFunction::apply(a.contiguous(), b.contiguous(), act == GateAct::silu ? 1 : 2);
}

}  // namespace lmgrid::kernels
