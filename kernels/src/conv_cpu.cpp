// Fused CPU causal depthwise convolution (+ SiLU): lmgrid/kernels/conv.hpp.
//
// Forward, per batch row b and token t: acc = w_0 xp_t; acc += w_j xp_{t+j} (j = 1 .. k-1);
// acc += bias; y_t = silu(acc) (the pre-activation is kept for the backward pass) or acc. The
// weights are read transposed, (k, C), so every loop runs along the channels.
// Backward, with g_t = dy_t silu'(pre_t) (or dy_t):
//   dxp_u = sum_j w_j g_{u-j} (0 <= u-j < T)   -> dx (u >= k-1) and dhistory (u < k-1)
//   dw_j  = sum_{b,t} g_t xp_{t+j},  dbias = sum_{b,t} g_t   (per batch row, then summed)
#include "lmgrid/kernels/conv.hpp"

#include "cpu_common.hpp"

#include <cmath>
#include <vector>

namespace lmgrid::kernels {

namespace {

using torch::Tensor;

template <class T>
struct ConvArgs {
  int64_t B, T_, C, k;
  const T *x, *hist, *wT, *bias;  // x (B,T,C); hist (B,k-1,C) or null; wT (k,C); bias (C) or null
  T *y, *pre;                     // pre: (B,T,C) with silu, else null
  const T* dy;                    // backward
  T *dx, *dhist, *dwb, *dbb;      // dhist (B,k-1,C) or null; dwb (B,k,C), dbb (B,C) per row
  // Row u of xp = [history, x] for batch row b; null for a zero history row.
  const T* xp(int64_t b, int64_t u) const {
    if (u >= k - 1) return x + (b * T_ + u - (k - 1)) * C;
    return hist ? hist + (b * (k - 1) + u) * C : nullptr;
  }
};

template <class T>
LMGRID_INLINE void forward_row(const ConvArgs<T>& a, int64_t b) {
  const int64_t C = a.C;
  cpu::Scratch<T> acc(C);
  for (int64_t t = 0; t < a.T_; ++t) {
    std::fill(acc.begin(), acc.end(), T(0));
    for (int64_t j = 0; j < a.k; ++j) {
      const T* __restrict r = a.xp(b, t + j);
      if (!r) continue;
      const T* __restrict w = a.wT + j * C;
      T* __restrict s = acc.data();
      for (int64_t c = 0; c < C; ++c) s[c] += w[c] * r[c];
    }
    if (a.bias)
      for (int64_t c = 0; c < C; ++c) acc[c] += a.bias[c];
    T* __restrict y = a.y + (b * a.T_ + t) * C;
    if (a.pre) {
      T* __restrict p = a.pre + (b * a.T_ + t) * C;
      for (int64_t c = 0; c < C; ++c) {
        p[c] = acc[c];
        y[c] = acc[c] * cpu::sigmoid(acc[c]);
      }
    } else {
      std::copy(acc.begin(), acc.end(), y);
    }
  }
}

template <class T>
LMGRID_INLINE void backward_row(const ConvArgs<T>& a, int64_t b) {
  const int64_t C = a.C, Tn = a.T_, k = a.k;
  cpu::Scratch<T> g(Tn * C);  // dL/dpre for this row
  for (int64_t t = 0; t < Tn; ++t) {
    const T* __restrict dy = a.dy + (b * Tn + t) * C;
    T* __restrict gt = g.data() + t * C;
    if (a.pre) {
      const T* __restrict p = a.pre + (b * Tn + t) * C;
      for (int64_t c = 0; c < C; ++c) {
        const T s = cpu::sigmoid(p[c]);
        gt[c] = dy[c] * s * (T(1) + p[c] * (T(1) - s));
      }
    } else {
      std::copy(dy, dy + C, gt);
    }
  }
  T* __restrict dw = a.dwb + b * k * C;
  T* __restrict db = a.dbb + b * C;
  std::fill(dw, dw + k * C, T(0));
  std::fill(db, db + C, T(0));
  for (int64_t t = 0; t < Tn; ++t) {
    const T* __restrict gt = g.data() + t * C;
    for (int64_t c = 0; c < C; ++c) db[c] += gt[c];
    for (int64_t j = 0; j < k; ++j) {
      const T* __restrict r = a.xp(b, t + j);
      if (!r) continue;
      T* __restrict dwj = dw + j * C;
      for (int64_t c = 0; c < C; ++c) dwj[c] += gt[c] * r[c];
    }
  }
  // dxp_u for u in [0, k-1+T): x rows (u >= k-1) and history rows.
  cpu::Scratch<T> acc(C);
  for (int64_t u = 0; u < k - 1 + Tn; ++u) {
    T* out = u >= k - 1 ? a.dx + (b * Tn + u - (k - 1)) * C : a.dhist ? a.dhist + (b * (k - 1) + u) * C : nullptr;
    if (!out) continue;
    std::fill(acc.begin(), acc.end(), T(0));
    for (int64_t j = 0; j < k; ++j) {
      const int64_t t = u - j;
      if (t < 0 || t >= Tn) continue;
      const T* __restrict w = a.wT + j * C;
      const T* __restrict gt = g.data() + t * C;
      T* __restrict s = acc.data();
      for (int64_t c = 0; c < C; ++c) s[c] += w[c] * gt[c];
    }
    std::copy(acc.begin(), acc.end(), out);
  }
}

#define LMGRID_CONV_KERNELS(T)                                                                         \
  LMGRID_MULTIVERSION void conv_forward_##T(const ConvArgs<T>& a, int64_t b) { forward_row<T>(a, b); } \
  LMGRID_MULTIVERSION void conv_backward_##T(const ConvArgs<T>& a, int64_t b) { backward_row<T>(a, b); }
LMGRID_CONV_KERNELS(float)
LMGRID_CONV_KERNELS(double)
#undef LMGRID_CONV_KERNELS
void run_forward(const ConvArgs<float>& a, int64_t b) { conv_forward_float(a, b); }
void run_forward(const ConvArgs<double>& a, int64_t b) { conv_forward_double(a, b); }
void run_backward(const ConvArgs<float>& a, int64_t b) { conv_backward_float(a, b); }
void run_backward(const ConvArgs<double>& a, int64_t b) { conv_backward_double(a, b); }

// Inputs contiguous; hist and bias empty tensors when absent.
struct ConvCpuFunction : torch::autograd::Function<ConvCpuFunction> {
  static Tensor forward(torch::autograd::AutogradContext* ctx, const Tensor& x, const Tensor& weight,
                        const Tensor& bias, const Tensor& hist, bool silu) {
    const int64_t B = x.size(0), Tn = x.size(1), C = x.size(2), k = weight.size(1);
    auto wT = weight.t().contiguous();
    auto y = torch::empty_like(x);
    Tensor pre = silu ? torch::empty_like(x) : Tensor();
    AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "causal_conv1d_cpu", [&] {
      ConvArgs<scalar_t> a{};
      a.B = B, a.T_ = Tn, a.C = C, a.k = k;
      a.x = x.data_ptr<scalar_t>(), a.wT = wT.data_ptr<scalar_t>();
      a.hist = hist.numel() ? hist.data_ptr<scalar_t>() : nullptr;
      a.bias = bias.numel() ? bias.data_ptr<scalar_t>() : nullptr;
      a.y = y.data_ptr<scalar_t>(), a.pre = silu ? pre.data_ptr<scalar_t>() : nullptr;
      cpu::parallel_tasks(B, static_cast<double>(B) * Tn * C * k, [&](int64_t b) { run_forward(a, b); });
    });
    ctx->save_for_backward({x, wT, bias, hist, silu ? pre : Tensor()});
    ctx->saved_data["silu"] = silu;
    return y;
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    cpu::require_first_order("causal_conv1d_cpu");
    auto s = ctx->get_saved_variables();
    const Tensor &x = s[0], &wT = s[1], &bias = s[2], &hist = s[3], &pre = s[4];
    const bool silu = ctx->saved_data["silu"].toBool();
    if (!grads[0].defined()) return {Tensor(), Tensor(), Tensor(), Tensor(), Tensor()};
    auto dy = grads[0].to(x.scalar_type()).contiguous();
    const int64_t B = x.size(0), Tn = x.size(1), C = x.size(2), k = wT.size(0);
    auto dx = torch::empty_like(x);
    Tensor dhist = hist.numel() ? torch::empty_like(hist) : Tensor();
    auto dwb = torch::empty({B, k, C}, x.options()), dbb = torch::empty({B, C}, x.options());
    AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "causal_conv1d_cpu_backward", [&] {
      ConvArgs<scalar_t> a{};
      a.B = B, a.T_ = Tn, a.C = C, a.k = k;
      a.x = x.data_ptr<scalar_t>(), a.wT = wT.data_ptr<scalar_t>();
      a.hist = hist.numel() ? hist.data_ptr<scalar_t>() : nullptr;
      a.pre = silu ? const_cast<scalar_t*>(pre.data_ptr<scalar_t>()) : nullptr;
      a.dy = dy.data_ptr<scalar_t>(), a.dx = dx.data_ptr<scalar_t>();
      a.dhist = dhist.defined() ? dhist.data_ptr<scalar_t>() : nullptr;
      a.dwb = dwb.data_ptr<scalar_t>(), a.dbb = dbb.data_ptr<scalar_t>();
      cpu::parallel_tasks(B, 3.0 * B * Tn * C * k, [&](int64_t b) { run_backward(a, b); });
    });
    return {dx, dwb.sum(0).t(), bias.numel() ? dbb.sum(0) : Tensor(), dhist, Tensor()};
  }
};

}  // namespace

std::string causal_conv1d_cpu_unsupported(const Tensor& x, const Tensor& weight, const Tensor& bias,
                                          const Tensor& history) {
  if (!x.defined() || !weight.defined()) return "an undefined tensor";
  if (x.dim() != 3 || weight.dim() != 2) return "x must be (B,T,C) and weight (C,k)";
  if (weight.size(0) != x.size(2) || weight.size(1) < 1) return "weight is not (C,k) for x's channels";
  if (bias.defined() && (bias.dim() != 1 || bias.size(0) != x.size(2))) return "bias is not (C)";
  if (history.defined() && (history.dim() != 3 || history.size(0) != x.size(0) ||
                            history.size(1) != weight.size(1) - 1 || history.size(2) != x.size(2)))
    return "history is not (B,k-1,C)";
  const auto st = x.scalar_type();
  if (st != torch::kFloat32 && st != torch::kFloat64) return "dtype is not float32 or float64";
  for (const Tensor* t : {&x, &weight, &bias, &history})
    if (t->defined() && (!t->device().is_cpu() || t->scalar_type() != st)) return "not CPU tensors of one dtype";
  if (x.numel() == 0) return "empty tensors";
  return "";
}

Tensor causal_conv1d_cpu(const Tensor& x, const Tensor& weight, const Tensor& bias, const Tensor& history, bool silu) {
  const std::string why = causal_conv1d_cpu_unsupported(x, weight, bias, history);
  TORCH_CHECK(why.empty(), "causal_conv1d_cpu: ", why);
  auto none = torch::empty({0}, x.options());
  return ConvCpuFunction::apply(x.contiguous(), weight.contiguous(), bias.defined() ? bias.contiguous() : none,
                                history.defined() ? history.contiguous() : none, silu);
}

}  // namespace lmgrid::kernels
