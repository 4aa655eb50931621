// Fused CPU optimizer loops: lmgrid/kernels/optim.hpp.
#include "lmgrid/kernels/optim.hpp"

#include "cpu_common.hpp"

#include <cmath>

namespace lmgrid::kernels {

namespace {

using torch::Tensor;

constexpr int64_t kChunk = 1 << 16;  // elements per task

// The update's scalars in the tensor's dtype, as LibTorch's ops round them.
template <class T>
struct AdamWScalars {
  T decay, b1, one_minus_b1, b2, one_minus_b2, sqrt_bc2, eps, neg_step;
  bool has_decay;
};

template <class T>
LMGRID_INLINE void adamw_chunk(int64_t n, T* __restrict p, const T* __restrict g, T* __restrict m, T* __restrict v,
                               const AdamWScalars<T>& s, int64_t c) {
  const int64_t i0 = c * kChunk, i1 = std::min(n, i0 + kChunk);
  for (int64_t i = i0; i < i1; ++i) {
    T pi = s.has_decay ? p[i] * s.decay : p[i];
    const T mi = m[i] * s.b1 + s.one_minus_b1 * g[i];
    const T vi = v[i] * s.b2 + s.one_minus_b2 * g[i] * g[i];
    const T denom = std::sqrt(vi) / s.sqrt_bc2 + s.eps;
    pi += s.neg_step * (mi / denom);
    p[i] = pi, m[i] = mi, v[i] = vi;
  }
}

template <class T>
LMGRID_INLINE double sumsq_chunk(int64_t n, const T* __restrict x, int64_t c) {
  const int64_t i0 = c * kChunk, i1 = std::min(n, i0 + kChunk);
  return static_cast<double>(cpu::dot(i1 - i0, x + i0, x + i0));
}

LMGRID_MULTIVERSION void adamw_float(int64_t n, float* p, const float* g, float* m, float* v,
                                     const AdamWScalars<float>& s, int64_t c) {
  adamw_chunk(n, p, g, m, v, s, c);
}
LMGRID_MULTIVERSION void adamw_double(int64_t n, double* p, const double* g, double* m, double* v,
                                      const AdamWScalars<double>& s, int64_t c) {
  adamw_chunk(n, p, g, m, v, s, c);
}
void run(int64_t n, float* p, const float* g, float* m, float* v, const AdamWScalars<float>& s, int64_t c) {
  adamw_float(n, p, g, m, v, s, c);
}
void run(int64_t n, double* p, const double* g, double* m, double* v, const AdamWScalars<double>& s, int64_t c) {
  adamw_double(n, p, g, m, v, s, c);
}
LMGRID_MULTIVERSION double sumsq_float(int64_t n, const float* x, int64_t c) { return sumsq_chunk(n, x, c); }
LMGRID_MULTIVERSION double sumsq_double(int64_t n, const double* x, int64_t c) { return sumsq_chunk(n, x, c); }
double sumsq(int64_t n, const float* x, int64_t c) { return sumsq_float(n, x, c); }
double sumsq(int64_t n, const double* x, int64_t c) { return sumsq_double(n, x, c); }

bool plain(const Tensor& t) {
  return t.defined() && t.device().is_cpu() && t.is_contiguous() && !t.is_sparse() &&
         (t.scalar_type() == torch::kFloat32 || t.scalar_type() == torch::kFloat64);
}

}  // namespace

std::string adamw_update_cpu_unsupported(const Tensor& p, const Tensor& g, const Tensor& m, const Tensor& v) {
  for (const Tensor* t : {&p, &g, &m, &v})
    if (!plain(*t)) return "not contiguous float32/float64 CPU tensors";
  for (const Tensor* t : {&g, &m, &v}) {
    if (t->scalar_type() != p.scalar_type()) return "tensors differ in dtype";
    if (!t->sizes().equals(p.sizes())) return "tensors differ in shape";
  }
  return "";
}

void adamw_update_cpu(Tensor& p, const Tensor& g, Tensor& m, Tensor& v, const AdamWHyper& h) {
  const std::string why = adamw_update_cpu_unsupported(p, g, m, v);
  TORCH_CHECK(why.empty(), "adamw_update_cpu: ", why);
  TORCH_CHECK(h.step >= 1, "adamw_update_cpu: step must be >= 1, got ", h.step);
  const int64_t n = p.numel();
  const double bc1 = 1.0 - std::pow(h.beta1, static_cast<double>(h.step));
  const double bc2 = 1.0 - std::pow(h.beta2, static_cast<double>(h.step));
  AT_DISPATCH_FLOATING_TYPES(p.scalar_type(), "adamw_update_cpu", [&] {
    using T = scalar_t;
    AdamWScalars<T> s{static_cast<T>(1.0 - h.lr * h.weight_decay),
                      static_cast<T>(h.beta1),
                      static_cast<T>(1.0 - h.beta1),
                      static_cast<T>(h.beta2),
                      static_cast<T>(1.0 - h.beta2),
                      static_cast<T>(std::sqrt(bc2)),
                      static_cast<T>(h.eps),
                      static_cast<T>(-h.lr / bc1),
                      h.weight_decay != 0.0};
    T *pp = p.data_ptr<T>(), *mp = m.data_ptr<T>(), *vp = v.data_ptr<T>();
    const T* gp = g.data_ptr<T>();
    cpu::parallel_tasks((n + kChunk - 1) / kChunk, 10.0 * static_cast<double>(n),
                        [&](int64_t c) { run(n, pp, gp, mp, vp, s, c); });
  });
}

std::string sum_squares_cpu_unsupported(const std::vector<Tensor>& ts) {
  for (const auto& t : ts)
    if (!plain(t)) return "not contiguous float32/float64 CPU tensors";
  return "";
}

double sum_squares_cpu(const std::vector<Tensor>& ts) {
  double total = 0.0;
  for (const auto& t : ts) {
    TORCH_CHECK(plain(t), "sum_squares_cpu: not a contiguous float32/float64 CPU tensor");
    const int64_t n = t.numel(), chunks = (n + kChunk - 1) / kChunk;
    std::vector<double> part(static_cast<size_t>(chunks), 0.0);
    AT_DISPATCH_FLOATING_TYPES(t.scalar_type(), "sum_squares_cpu", [&] {
      const scalar_t* x = t.data_ptr<scalar_t>();
      cpu::parallel_tasks(chunks, 2.0 * static_cast<double>(n),
                          [&](int64_t c) { part[static_cast<size_t>(c)] = sumsq(n, x, c); });
    });
    for (double s : part) total += s;  // chunk order: the same sum on any thread count
  }
  return total;
}

}  // namespace lmgrid::kernels
