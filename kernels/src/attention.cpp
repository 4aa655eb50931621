// Tiled (flash) softmax attention on the CPU (lmgrid/kernels/attention.hpp).
//
// Per (batch, head) the forward pass walks blocks of kBQ queries; for each block it walks the
// visible keys in tiles of kBK: scores s = scale Q K^T into a kBQ x kBK buffer, then per row the
// online softmax (new max m', correction exp(m - m'), weights exp(s - m'), running sum l) and the
// weighted sum of values into an accumulator; at the end out = acc / l and lse = m + log l.
// The backward pass (per (batch, kv head), over the query heads that read it) recomputes each
// tile's weights p = exp(s - lse) and forms
//   dp = dO V^T,  ds = p (dp - rowsum(dO * out)),  dQ += scale ds K,  dK += scale ds^T Q,  dV += p^T dO.
// Inner loops run over a contiguous axis (keys for products with K^T / V^T, the head dim for
// products with K / V / Q / dO) so the compiler vectorises them without reassociating sums.
#include "lmgrid/kernels/attention.hpp"

#include "cpu_common.hpp"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <exception>
#include <limits>
#include <thread>
#include <vector>

namespace lmgrid::kernels {

namespace {

using cpu::exp_neg;
using cpu::parallel_tasks;
using torch::Tensor;

constexpr int64_t kBQ = 32;  // queries per block
constexpr int64_t kBK = 64;  // keys per tile (a multiple of kLanes)
constexpr int kLanes = 16;   // partial sums / maxima kept apart so reductions vectorise

// The keys query row i of a block may see: [0, limit(i)).
struct Visibility {
  bool causal;
  int64_t offset, S;  // offset = S - T
  int64_t limit(int64_t i) const { return causal ? std::min(S, offset + i + 1) : S; }
};

constexpr int64_t kRB = 4;      // rows of a register block (queries, or keys for dK / dV)
constexpr int64_t kMaxD = 256;  // head dims above this go to the library's attention
static_assert(kBQ % kRB == 0 && kBK % kRB == 0, "blocks hold whole register blocks");

// The micro-kernels take DC = the head dim when it is one of the common ones (compiled for it:
// fixed trip counts, accumulators in registers) and DC = 0 for any other D <= kMaxD.
template <int DC>
constexpr int64_t kDMax = DC > 0 ? DC : kMaxD;

// s[r][c] = sum_d qb[r][d] kt[d][c] for r < nq (rounded up to kRB; qb's extra rows are zeros) and
// all kBK columns (kt: the padded K^T or V^T from the tile's first key, row stride Sp).
template <class T, int DC>
LMGRID_INLINE void tile_scores(const T* qb, const T* kt, int64_t Sp, int64_t Drt, int64_t nq, T* s) {
  const int64_t D = DC > 0 ? DC : Drt;
  for (int64_t r = 0; r < nq; r += kRB) {
    T acc[kRB][kBK] = {};
    for (int64_t d = 0; d < D; ++d) {
      const T* __restrict k = kt + d * Sp;
      for (int64_t rr = 0; rr < kRB; ++rr) {
        const T qd = qb[(r + rr) * D + d];
        for (int64_t c = 0; c < kBK; ++c) acc[rr][c] += qd * k[c];
      }
    }
    for (int64_t rr = 0; rr < kRB; ++rr)
      for (int64_t c = 0; c < kBK; ++c) s[(r + rr) * kBK + c] = acc[rr][c];
  }
}

// acc[r][:] += sum_c w[r][c] rows[c][:] for r < nq (rounded up to kRB), c < nk (rows: S x D).
template <class T, int DC>
LMGRID_INLINE void tile_rows(const T* w, const T* rows, int64_t Drt, int64_t nq, int64_t nk, T* acc) {
  static_assert(kRB == 4, "written out for four rows");
  const int64_t D = DC > 0 ? DC : Drt;
  for (int64_t r = 0; r < nq; r += kRB) {
    T a0[kDMax<DC>], a1[kDMax<DC>], a2[kDMax<DC>], a3[kDMax<DC>];
    for (int64_t d = 0; d < D; ++d) {
      a0[d] = acc[r * D + d];
      a1[d] = acc[(r + 1) * D + d];
      a2[d] = acc[(r + 2) * D + d];
      a3[d] = acc[(r + 3) * D + d];
    }
    const T *w0 = w + r * kBK, *w1 = w0 + kBK, *w2 = w1 + kBK, *w3 = w2 + kBK;
    for (int64_t c = 0; c < nk; ++c) {
      const T* __restrict v = rows + c * D;
      const T x0 = w0[c], x1 = w1[c], x2 = w2[c], x3 = w3[c];
      for (int64_t d = 0; d < D; ++d) {
        const T vd = v[d];
        a0[d] += x0 * vd;
        a1[d] += x1 * vd;
        a2[d] += x2 * vd;
        a3[d] += x3 * vd;
      }
    }
    for (int64_t d = 0; d < D; ++d) {
      acc[r * D + d] = a0[d];
      acc[(r + 1) * D + d] = a1[d];
      acc[(r + 2) * D + d] = a2[d];
      acc[(r + 3) * D + d] = a3[d];
    }
  }
}

// gk[c][:] += sum_r ds[r][c] qs[r][:], gv[c][:] += sum_r p[r][c] ob[r][:] for c < nk, r < nq.
// Four keys at a time, written out so that the vector axis is d (with the keys as the vector axis
// GCC transposes 4 x 4 blocks in the inner loop, and the backward pass ran at a third the speed).
template <class T, int DC>
LMGRID_INLINE void tile_kv_grads(const T* ds, const T* p, const T* qs, const T* ob, int64_t Drt, int64_t nq, int64_t nk,
                                 T* gk, T* gv) {
  static_assert(kRB == 4, "written out for four keys");
  const int64_t D = DC > 0 ? DC : Drt;
  for (int64_t c = 0; c < nk; c += kRB) {
    T k0[kDMax<DC>] = {}, k1[kDMax<DC>] = {}, k2[kDMax<DC>] = {}, k3[kDMax<DC>] = {};
    T v0[kDMax<DC>] = {}, v1[kDMax<DC>] = {}, v2[kDMax<DC>] = {}, v3[kDMax<DC>] = {};
    for (int64_t r = 0; r < nq; ++r) {
      const T* __restrict q = qs + r * D, * __restrict o = ob + r * D;
      const T *g = ds + r * kBK + c, *w = p + r * kBK + c;
      const T g0 = g[0], g1 = g[1], g2 = g[2], g3 = g[3], w0 = w[0], w1 = w[1], w2 = w[2], w3 = w[3];
      for (int64_t d = 0; d < D; ++d) {
        const T qd = q[d], od = o[d];
        k0[d] += g0 * qd;
        k1[d] += g1 * qd;
        k2[d] += g2 * qd;
        k3[d] += g3 * qd;
        v0[d] += w0 * od;
        v1[d] += w1 * od;
        v2[d] += w2 * od;
        v3[d] += w3 * od;
      }
    }
    const T* ks[kRB] = {k0, k1, k2, k3};
    const T* vs[kRB] = {v0, v1, v2, v3};
    for (int64_t cc = 0; cc < std::min(kRB, nk - c); ++cc)
      for (int64_t d = 0; d < D; ++d) {
        gk[(c + cc) * D + d] += ks[cc][d];
        gv[(c + cc) * D + d] += vs[cc][d];
      }
  }
}

template <class T>
LMGRID_INLINE T row_max(const T* x, int64_t n) {
  T part[kLanes];
  for (int u = 0; u < kLanes; ++u) part[u] = -std::numeric_limits<T>::infinity();
  int64_t c = 0;
  for (; c + kLanes <= n; c += kLanes)
    for (int u = 0; u < kLanes; ++u) part[u] = x[c + u] > part[u] ? x[c + u] : part[u];
  T m = -std::numeric_limits<T>::infinity();
  for (; c < n; ++c) m = x[c] > m ? x[c] : m;
  for (int u = 0; u < kLanes; ++u) m = part[u] > m ? part[u] : m;
  return m;
}

template <class T>
LMGRID_INLINE T row_sum(const T* x, int64_t n) {
  T part[kLanes] = {};
  int64_t c = 0;
  for (; c + kLanes <= n; c += kLanes)
    for (int u = 0; u < kLanes; ++u) part[u] += x[c + u];
  T sum = 0;
  for (; c < n; ++c) sum += x[c];
  for (int u = 0; u < kLanes; ++u) sum += part[u];
  return sum;
}

// Rows [i0, i0 + nq) of X (row stride D) times `scale` into a kBQ x D block, zeros below.
template <class T>
LMGRID_INLINE void load_block(const T* X, int64_t nq, int64_t D, T scale, T* block) {
  for (int64_t r = 0; r < kBQ; ++r)
    for (int64_t d = 0; d < D; ++d) block[r * D + d] = r < nq ? X[r * D + d] * scale : T(0);
}

template <class T>
struct FwdArgs {
  const T *Q, *Kt, *V;  // Q: this block's nq x D rows; Kt: D x Sp (zero-padded K^T); V: S x D
  T* O;                 // nq x D
  T* lse;               // nq
  int64_t i0, nq, Sp, D;
  Visibility vis;
  T scale;
};

template <class T, int DC>
LMGRID_INLINE void forward_block(const FwdArgs<T>& a) {
  const int64_t D = DC > 0 ? DC : a.D, nq = a.nq;
  T qb[kBQ * kDMax<DC>], acc[kBQ * kDMax<DC>] = {}, s[kBQ * kBK], m[kBQ], l[kBQ];
  load_block(a.Q, nq, D, a.scale, qb);
  for (int64_t r = 0; r < kBQ; ++r) m[r] = -std::numeric_limits<T>::infinity(), l[r] = 0;
  const int64_t jend = a.vis.limit(a.i0 + nq - 1);
  for (int64_t j0 = 0; j0 < jend; j0 += kBK) {
    const int64_t nk = std::min(kBK, jend - j0);
    tile_scores<T, DC>(qb, a.Kt + j0, a.Sp, D, nq, s);
    for (int64_t r = 0; r < nq; ++r) {
      const int64_t vis = std::max<int64_t>(0, std::min(nk, a.vis.limit(a.i0 + r) - j0));
      T* __restrict srow = s + r * kBK;
      if (vis > 0) {
        const T m_new = std::max(m[r], row_max(srow, vis));
        const T corr = m[r] == -std::numeric_limits<T>::infinity() ? T(0) : exp_neg(m[r] - m_new);
        for (int64_t c = 0; c < vis; ++c) srow[c] = exp_neg(srow[c] - m_new);
        l[r] = l[r] * corr + row_sum(srow, vis);
        m[r] = m_new;
        if (corr != T(1))
          for (int64_t d = 0; d < D; ++d) acc[r * D + d] *= corr;
      }
      for (int64_t c = vis; c < kBK; ++c) srow[c] = 0;
    }
    for (int64_t r = nq; r < kBQ; ++r)
      for (int64_t c = 0; c < kBK; ++c) s[r * kBK + c] = 0;
    tile_rows<T, DC>(s, a.V + j0 * D, D, nq, nk, acc);
  }
  for (int64_t r = 0; r < nq; ++r) {
    const T inv = T(1) / l[r];
    for (int64_t d = 0; d < D; ++d) a.O[r * D + d] = acc[r * D + d] * inv;
    a.lse[r] = m[r] + std::log(l[r]);
  }
}

template <class T>
struct BwdArgs {
  // One query head's rows (T x D) and the kv head it reads (K, dK, dV: S x D; Kt, Vt: D x Sp).
  const T *Q, *O, *dO, *lse, *K, *Kt, *Vt;
  T *dQ, *dK, *dV;
  int64_t T_, Sp, D;
  Visibility vis;
  T scale;
};

// The gradients of one query head (all of dQ's rows; adds into dK and dV of its kv head):
// ds = p (dp - delta) unscaled, dQ = scale ds K, dK += ds^T (scale Q), dV += p^T dO.
template <class T, int DC>
LMGRID_INLINE void backward_head(const BwdArgs<T>& a) {
  const int64_t D = DC > 0 ? DC : a.D;
  T qs[kBQ * kDMax<DC>], ob[kBQ * kDMax<DC>], dq[kBQ * kDMax<DC>], p[kBQ * kBK], ds[kBQ * kBK], delta[kBQ];
  for (int64_t i0 = 0; i0 < a.T_; i0 += kBQ) {
    const int64_t nq = std::min(kBQ, a.T_ - i0);
    const T *O = a.O + i0 * D, *lse = a.lse + i0;
    load_block(a.Q + i0 * D, nq, D, a.scale, qs);
    load_block(a.dO + i0 * D, nq, D, T(1), ob);
    for (int64_t r = 0; r < kBQ; ++r) {
      T sum = 0;
      for (int64_t d = 0; d < D; ++d) sum += r < nq ? ob[r * D + d] * O[r * D + d] : T(0);
      delta[r] = sum;
    }
    for (int64_t x = 0; x < kBQ * D; ++x) dq[x] = 0;
    const int64_t jend = a.vis.limit(i0 + nq - 1);
    for (int64_t j0 = 0; j0 < jend; j0 += kBK) {
      const int64_t nk = std::min(kBK, jend - j0);
      tile_scores<T, DC>(qs, a.Kt + j0, a.Sp, D, nq, p);
      tile_scores<T, DC>(ob, a.Vt + j0, a.Sp, D, nq, ds);  // dp
      for (int64_t r = 0; r < kBQ; ++r) {
        const int64_t vis = r < nq ? std::max<int64_t>(0, std::min(nk, a.vis.limit(i0 + r) - j0)) : 0;
        T* __restrict pr = p + r * kBK;
        T* __restrict dr = ds + r * kBK;
        const T lr = r < nq ? lse[r] : T(0), dl = delta[r];
        for (int64_t c = 0; c < vis; ++c) {
          pr[c] = exp_neg(pr[c] - lr);
          dr[c] = pr[c] * (dr[c] - dl);
        }
        for (int64_t c = vis; c < kBK; ++c) pr[c] = dr[c] = 0;
      }
      tile_rows<T, DC>(ds, a.K + j0 * D, D, nq, nk, dq);
      tile_kv_grads<T, DC>(ds, p, qs, ob, D, nq, nk, a.dK + j0 * D, a.dV + j0 * D);
    }
    for (int64_t r = 0; r < nq; ++r)
      for (int64_t d = 0; d < D; ++d) a.dQ[(i0 + r) * D + d] = dq[r * D + d] * a.scale;
  }
}

// One clone set per dtype and head dim; run_forward / run_backward pick by D.
#define LMGRID_ATTENTION_KERNELS(T, DC)                                                         \
  LMGRID_MULTIVERSION void forward_##T##_##DC(const FwdArgs<T>& a) { forward_block<T, DC>(a); } \
  LMGRID_MULTIVERSION void backward_##T##_##DC(const BwdArgs<T>& a) { backward_head<T, DC>(a); }
#define LMGRID_ATTENTION_DIMS(T)  \
  LMGRID_ATTENTION_KERNELS(T, 0)  \
  LMGRID_ATTENTION_KERNELS(T, 8)  \
  LMGRID_ATTENTION_KERNELS(T, 16) \
  LMGRID_ATTENTION_KERNELS(T, 32) \
  LMGRID_ATTENTION_KERNELS(T, 64) \
  LMGRID_ATTENTION_KERNELS(T, 128)
LMGRID_ATTENTION_DIMS(float)
LMGRID_ATTENTION_DIMS(double)
#undef LMGRID_ATTENTION_DIMS
#undef LMGRID_ATTENTION_KERNELS

#define LMGRID_ATTENTION_SWITCH(T, what, a) \
  switch (a.D) {                            \
    case 8: return what##_##T##_8(a);       \
    case 16: return what##_##T##_16(a);     \
    case 32: return what##_##T##_32(a);     \
    case 64: return what##_##T##_64(a);     \
    case 128: return what##_##T##_128(a);   \
    default: return what##_##T##_0(a);      \
  }
void run_forward(const FwdArgs<float>& a) { LMGRID_ATTENTION_SWITCH(float, forward, a) }
void run_forward(const FwdArgs<double>& a) { LMGRID_ATTENTION_SWITCH(double, forward, a) }
void run_backward(const BwdArgs<float>& a) { LMGRID_ATTENTION_SWITCH(float, backward, a) }
void run_backward(const BwdArgs<double>& a) { LMGRID_ATTENTION_SWITCH(double, backward, a) }
#undef LMGRID_ATTENTION_SWITCH

struct Shape {
  int64_t B, H, Hkv, T, S, D;
};

Shape shape_of(const Tensor& q, const Tensor& k) {
  return {q.size(0), q.size(1), k.size(1), q.size(2), k.size(2), q.size(3)};
}

// x (B,Hkv,S,D) as (B,Hkv,D,Sp), Sp = S rounded up to kBK, zeros in the padding: every score
// tile then reads kBK whole columns.
int64_t padded_keys(int64_t S) { return (S + kBK - 1) / kBK * kBK; }
Tensor transposed_padded(const Tensor& x) {
  auto t = torch::zeros({x.size(0), x.size(1), x.size(3), padded_keys(x.size(2))}, x.options());
  t.narrow(3, 0, x.size(2)).copy_(x.transpose(2, 3));
  return t;
}

// q, k, v contiguous. Returns out (B,H,T,D) and lse (B,H,T).
std::pair<Tensor, Tensor> forward_impl(const Tensor& q, const Tensor& k, const Tensor& v, bool causal, double scale) {
  const Shape z = shape_of(q, k);
  auto out = torch::empty_like(q), lse = torch::empty({z.B, z.H, z.T}, q.options());
  auto kt = transposed_padded(k);
  const int64_t Sp = kt.size(3), blocks = (z.T + kBQ - 1) / kBQ, group = z.H / z.Hkv;
  const Visibility vis{causal, z.S - z.T, z.S};
  AT_DISPATCH_FLOATING_TYPES(q.scalar_type(), "tiled_attention_forward", [&] {
    const scalar_t *Q = q.data_ptr<scalar_t>(), *Kt = kt.data_ptr<scalar_t>(), *V = v.data_ptr<scalar_t>();
    scalar_t *O = out.data_ptr<scalar_t>(), *L = lse.data_ptr<scalar_t>();
    const double work = 2.0 * z.B * z.H * z.T * z.S * z.D;
    parallel_tasks(z.B * z.H * blocks, work, [&](int64_t t) {
      const int64_t bh = t / blocks, i0 = (t % blocks) * kBQ, b = bh / z.H, g = (bh % z.H) / group;
      const int64_t kv = (b * z.Hkv + g) * z.S * z.D;
      FwdArgs<scalar_t> a{Q + (bh * z.T + i0) * z.D,
                          Kt + (b * z.Hkv + g) * z.D * Sp,
                          V + kv,
                          O + (bh * z.T + i0) * z.D,
                          L + bh * z.T + i0,
                          i0,
                          std::min(kBQ, z.T - i0),
                          Sp,
                          z.D,
                          vis,
                          static_cast<scalar_t>(scale)};
      run_forward(a);
    });
  });
  return {out, lse};
}

struct TiledAttentionFunction : torch::autograd::Function<TiledAttentionFunction> {
  static Tensor forward(torch::autograd::AutogradContext* ctx, const Tensor& q, const Tensor& k, const Tensor& v,
                        bool causal, double scale) {
    auto [out, lse] = forward_impl(q, k, v, causal, scale);
    ctx->save_for_backward({q, k, v, out, lse});
    ctx->saved_data["causal"] = causal;
    ctx->saved_data["scale"] = scale;
    return out;
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    if (!grads[0].defined()) return {Tensor(), Tensor(), Tensor(), Tensor(), Tensor()};
    auto saved = ctx->get_saved_variables();
    const Tensor &q = saved[0], &k = saved[1], &v = saved[2], &out = saved[3], &lse = saved[4];
    const bool causal = ctx->saved_data["causal"].toBool();
    const double scale = ctx->saved_data["scale"].toDouble();
    const Shape z = shape_of(q, k);
    auto dout = grads[0].to(q.scalar_type()).contiguous();
    auto dq = torch::empty_like(q), dk = torch::zeros_like(k), dv = torch::zeros_like(v);
    auto kt = transposed_padded(k), vt = transposed_padded(v);
    const int64_t Sp = kt.size(3), group = z.H / z.Hkv;
    const Visibility vis{causal, z.S - z.T, z.S};
    AT_DISPATCH_FLOATING_TYPES(q.scalar_type(), "tiled_attention_backward", [&] {
      const scalar_t *Q = q.data_ptr<scalar_t>(), *O = out.data_ptr<scalar_t>(), *dO = dout.data_ptr<scalar_t>(),
                     *L = lse.data_ptr<scalar_t>(), *K = k.data_ptr<scalar_t>(), *Kt = kt.data_ptr<scalar_t>(),
                     *Vt = vt.data_ptr<scalar_t>();
      scalar_t *dQ = dq.data_ptr<scalar_t>(), *dK = dk.data_ptr<scalar_t>(), *dV = dv.data_ptr<scalar_t>();
      // One task per (batch, kv head): it alone writes that kv head's dK and dV.
      const double work = 5.0 * z.B * z.H * z.T * z.S * z.D;
      parallel_tasks(z.B * z.Hkv, work, [&](int64_t t) {
        const int64_t b = t / z.Hkv, kv = t * z.S * z.D, kvt = t * z.D * Sp;
        for (int64_t h = (t % z.Hkv) * group; h < (t % z.Hkv + 1) * group; ++h) {
          const int64_t bh = b * z.H + h, rows = bh * z.T * z.D;
          BwdArgs<scalar_t> a{Q + rows, O + rows, dO + rows, L + bh * z.T, K + kv,
                              Kt + kvt, Vt + kvt, dQ + rows, dK + kv,      dV + kv,
                              z.T,      Sp,       z.D,       vis,          static_cast<scalar_t>(scale)};
          run_backward(a);
        }
      });
    });
    return {dq, dk, dv, Tensor(), Tensor()};
  }
};

}  // namespace

std::string tiled_attention_unsupported(const Tensor& q, const Tensor& k, const Tensor& v) {
  if (!q.defined() || !k.defined() || !v.defined()) return "an undefined tensor";
  if (q.dim() != 4 || k.dim() != 4 || v.dim() != 4) return "q, k and v must be 4-d (B, heads, tokens, D)";
  if (!q.device().is_cpu() || !k.device().is_cpu() || !v.device().is_cpu()) return "not CPU tensors";
  const auto t = q.scalar_type();
  if (t != torch::kFloat32 && t != torch::kFloat64) return "dtype is not float32 or float64";
  if (k.scalar_type() != t || v.scalar_type() != t) return "q, k and v differ in dtype";
  if (!k.sizes().equals(v.sizes())) return "k and v differ in shape";
  if (k.size(0) != q.size(0) || k.size(3) != q.size(3)) return "q and k differ in batch or head dim";
  if (k.size(1) == 0 || q.size(1) % k.size(1) != 0) return "kv heads do not divide query heads";
  if (k.size(2) < q.size(2)) return "fewer keys than queries";
  if (q.numel() == 0 || k.numel() == 0) return "empty tensors";
  if (q.size(3) > kMaxD) return "head dim above " + std::to_string(kMaxD);
  return "";
}

Tensor tiled_attention(const Tensor& q, const Tensor& k, const Tensor& v, bool causal, double scale) {
  const std::string why = tiled_attention_unsupported(q, k, v);
  TORCH_CHECK(why.empty(), "tiled_attention: ", why);
  return TiledAttentionFunction::apply(q.contiguous(), k.contiguous(), v.contiguous(), causal, scale);
}

Tensor attention_composite(const Tensor& q, const Tensor& k, const Tensor& v, bool causal, double scale) {
  const int64_t H = q.size(1), Hkv = k.size(1), T = q.size(2), S = k.size(2);
  auto kr = Hkv == H ? k : k.repeat_interleave(H / Hkv, 1), vr = Hkv == H ? v : v.repeat_interleave(H / Hkv, 1);
  auto att = torch::matmul(q, kr.transpose(-2, -1)) * scale;  // (B,H,T,S)
  if (causal) {
    auto visible = torch::ones({T, S}, torch::TensorOptions().dtype(torch::kBool).device(q.device())).tril(S - T);
    att = att.masked_fill(visible.logical_not(), -std::numeric_limits<double>::infinity());
  }
  return torch::matmul(torch::softmax(att, -1), vr);
}

}  // namespace lmgrid::kernels
