// Fused CPU RMSNorm (+ SiLU gate): lmgrid/kernels/norm.hpp.
//
// Per row and group of W channels, with s(z) = z sigmoid(z) and g = x s(z) (or x):
//   r = 1 / sqrt(mean(g^2) + eps),  n = g r,  out = n w
// Backward, with dn = dout w:
//   dw += dout n (summed over rows),  dg = r (dn - n mean(dn n)),
//   dx = dg s(z),  dz = dg x s'(z),  s'(z) = sigmoid(z) (1 + z (1 - sigmoid(z))).
// Rows are handed out in fixed blocks of kRows; each block writes its own partial dw, summed in
// block order, so the result does not depend on the thread count.
#include "lmgrid/kernels/norm.hpp"

#include "cpu_common.hpp"

#include <cmath>
#include <vector>

namespace lmgrid::kernels {

namespace {

using torch::Tensor;

constexpr int64_t kRows = 64;

template <class T>
struct NormArgs {
  int64_t R, C, W;  // rows, channels, channels per group
  T eps;
  const T *x, *z, *w;
  T *out, *rstd;     // rstd (R, C / W)
  const T* dout;     // backward
  T *dx, *dz, *dwb;  // dwb (blocks, C)
};

template <class T>
LMGRID_INLINE void forward_block(const NormArgs<T>& a, int64_t blk) {
  cpu::Scratch<T> g(a.C);
  const int64_t G = a.C / a.W;
  for (int64_t r = blk * kRows; r < std::min(a.R, (blk + 1) * kRows); ++r) {
    const T* __restrict x = a.x + r * a.C;
    T* __restrict gr = g.data();
    if (a.z) {
      const T* __restrict z = a.z + r * a.C;
      for (int64_t c = 0; c < a.C; ++c) gr[c] = x[c] * z[c] * cpu::sigmoid(z[c]);
    } else {
      for (int64_t c = 0; c < a.C; ++c) gr[c] = x[c];
    }
    T* __restrict out = a.out + r * a.C;
    for (int64_t q = 0; q < G; ++q) {
      const T* __restrict gq = gr + q * a.W;
      const T ss = cpu::dot(a.W, gq, gq);
      const T rs = T(1) / std::sqrt(ss / T(a.W) + a.eps);
      a.rstd[r * G + q] = rs;
      const T* __restrict w = a.w + q * a.W;
      T* __restrict o = out + q * a.W;
      for (int64_t c = 0; c < a.W; ++c) o[c] = gq[c] * rs * w[c];
    }
  }
}

template <class T>
LMGRID_INLINE void backward_block(const NormArgs<T>& a, int64_t blk) {
  const int64_t G = a.C / a.W;
  cpu::Scratch<T> g(a.C), sz(a.C), dn(a.C);
  T* __restrict dw = a.dwb + blk * a.C;
  std::fill(dw, dw + a.C, T(0));
  for (int64_t r = blk * kRows; r < std::min(a.R, (blk + 1) * kRows); ++r) {
    const T* __restrict x = a.x + r * a.C;
    const T* __restrict dout = a.dout + r * a.C;
    T* __restrict gr = g.data();
    T* __restrict s = sz.data();
    if (a.z) {
      const T* __restrict z = a.z + r * a.C;
      for (int64_t c = 0; c < a.C; ++c) {
        s[c] = z[c] * cpu::sigmoid(z[c]);
        gr[c] = x[c] * s[c];
      }
    } else {
      for (int64_t c = 0; c < a.C; ++c) gr[c] = x[c];
    }
    T* __restrict d = dn.data();
    for (int64_t q = 0; q < G; ++q) {
      const T rs = a.rstd[r * G + q];
      const T* __restrict w = a.w + q * a.W;
      const T* __restrict gq = gr + q * a.W;
      const T* __restrict dq = dout + q * a.W;
      T* __restrict dwq = dw + q * a.W;
      T* __restrict dnq = d + q * a.W;
      for (int64_t c = 0; c < a.W; ++c) {
        dwq[c] += dq[c] * gq[c] * rs;
        dnq[c] = dq[c] * w[c];
      }
      const T m = cpu::dot(a.W, dnq, gq) * rs / T(a.W);                           // mean(dn n)
      for (int64_t c = 0; c < a.W; ++c) dnq[c] = rs * (dnq[c] - gq[c] * rs * m);  // dg
    }
    T* __restrict dx = a.dx + r * a.C;
    if (a.z) {
      const T* __restrict z = a.z + r * a.C;
      T* __restrict dz = a.dz + r * a.C;
      for (int64_t c = 0; c < a.C; ++c) {
        const T sg = cpu::sigmoid(z[c]);
        dx[c] = d[c] * s[c];
        dz[c] = d[c] * x[c] * sg * (T(1) + z[c] * (T(1) - sg));
      }
    } else {
      for (int64_t c = 0; c < a.C; ++c) dx[c] = d[c];
    }
  }
}

#define LMGRID_NORM_KERNELS(T)                                                                           \
  LMGRID_MULTIVERSION void norm_forward_##T(const NormArgs<T>& a, int64_t b) { forward_block<T>(a, b); } \
  LMGRID_MULTIVERSION void norm_backward_##T(const NormArgs<T>& a, int64_t b) { backward_block<T>(a, b); }
LMGRID_NORM_KERNELS(float)
LMGRID_NORM_KERNELS(double)
#undef LMGRID_NORM_KERNELS
void run_forward(const NormArgs<float>& a, int64_t b) { norm_forward_float(a, b); }
void run_forward(const NormArgs<double>& a, int64_t b) { norm_forward_double(a, b); }
void run_backward(const NormArgs<float>& a, int64_t b) { norm_backward_float(a, b); }
void run_backward(const NormArgs<double>& a, int64_t b) { norm_backward_double(a, b); }

// x, z (or an empty tensor), weight contiguous, x and z as (R, C).
struct NormCpuFunction : torch::autograd::Function<NormCpuFunction> {
  static Tensor forward(torch::autograd::AutogradContext* ctx, const Tensor& x, const Tensor& z, const Tensor& weight,
                        int64_t groups, double eps) {
    const int64_t R = x.size(0), C = x.size(1), blocks = (R + kRows - 1) / kRows;
    auto out = torch::empty_like(x), rstd = torch::empty({R, groups}, x.options());
    AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "rms_norm_cpu", [&] {
      NormArgs<scalar_t> a{};
      a.R = R, a.C = C, a.W = C / groups, a.eps = static_cast<scalar_t>(eps);
      a.x = x.data_ptr<scalar_t>(), a.z = z.numel() ? z.data_ptr<scalar_t>() : nullptr;
      a.w = weight.data_ptr<scalar_t>(), a.out = out.data_ptr<scalar_t>(), a.rstd = rstd.data_ptr<scalar_t>();
      cpu::parallel_tasks(blocks, 4.0 * R * C, [&](int64_t b) { run_forward(a, b); });
    });
    ctx->save_for_backward({x, z, weight, rstd});
    return out;
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    cpu::require_first_order("rms_norm_cpu");
    auto s = ctx->get_saved_variables();
    const Tensor &x = s[0], &z = s[1], &weight = s[2], &rstd = s[3];
    if (!grads[0].defined()) return {Tensor(), Tensor(), Tensor(), Tensor(), Tensor()};
    auto dout = grads[0].to(x.scalar_type()).contiguous();
    const int64_t R = x.size(0), C = x.size(1), G = rstd.size(1), blocks = (R + kRows - 1) / kRows;
    auto dx = torch::empty_like(x);
    Tensor dz = z.numel() ? torch::empty_like(z) : Tensor();
    auto dwb = torch::empty({blocks, C}, x.options());
    AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "rms_norm_cpu_backward", [&] {
      NormArgs<scalar_t> a{};
      a.R = R, a.C = C, a.W = C / G;
      a.x = x.data_ptr<scalar_t>(), a.z = z.numel() ? z.data_ptr<scalar_t>() : nullptr;
      a.w = weight.data_ptr<scalar_t>(), a.rstd = const_cast<scalar_t*>(rstd.data_ptr<scalar_t>());
      a.dout = dout.data_ptr<scalar_t>(), a.dx = dx.data_ptr<scalar_t>();
      a.dz = dz.defined() ? dz.data_ptr<scalar_t>() : nullptr, a.dwb = dwb.data_ptr<scalar_t>();
      cpu::parallel_tasks(blocks, 8.0 * R * C, [&](int64_t b) { run_backward(a, b); });
    });
    return {dx, dz, dwb.sum(0), Tensor(), Tensor()};
  }
};

}  // namespace

std::string rms_norm_cpu_unsupported(const Tensor& x, const Tensor& z, const Tensor& weight, int64_t groups) {
  if (!x.defined() || !weight.defined()) return "an undefined tensor";
  if (x.dim() < 1 || weight.dim() != 1 || weight.size(0) != x.size(-1)) return "weight is not (C) for x's last dim";
  if (groups < 1 || x.size(-1) % groups != 0) return "groups do not divide the channels";
  if (z.defined() && !z.sizes().equals(x.sizes())) return "z and x differ in shape";
  const auto st = x.scalar_type();
  if (st != torch::kFloat32 && st != torch::kFloat64) return "dtype is not float32 or float64";
  for (const Tensor* t : {&x, &z, &weight})
    if (t->defined() && (!t->device().is_cpu() || t->scalar_type() != st)) return "not CPU tensors of one dtype";
  if (x.numel() == 0) return "empty tensors";
  return "";
}

Tensor rms_norm_cpu(const Tensor& x, const Tensor& z, const Tensor& weight, int64_t groups, double eps) {
  const std::string why = rms_norm_cpu_unsupported(x, z, weight, groups);
  TORCH_CHECK(why.empty(), "rms_norm_cpu: ", why);
  const int64_t C = x.size(-1);
  auto x2 = x.reshape({-1, C}).contiguous();
  auto z2 = z.defined() ? z.reshape({-1, C}).contiguous() : torch::empty({0}, x.options());
  return NormCpuFunction::apply(x2, z2, weight.contiguous(), groups, eps).view(x.sizes());
}

}  // namespace lmgrid::kernels
