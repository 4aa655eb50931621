// GEM memory, one full chunk of the dual form (ttt.hpp), per-element bodies: what one CUDA thread
// computes (gem_chunk.cu) and what the CPU emulation loops over (fused.cpp, tests only).
//
// Letters: S sequences (batch), n tokens of the chunk, M slots, D width. Arrays are contiguous:
// aq, ak (S, n, M), v (S, n, D), V (S, M, D) with batch stride Vb (M D, or 0 for one V shared by
// every sequence), eta one scalar. Forward:
//   d  = A_k V - v                          (S, n, D)  residuals (dLoss/d(A_k V))
//   Sc = mask(A_q A_k^T)                    (S, n, n)  mask: j <= i (self_write) or j < i
//   r  = A_q V - eta Sc d                   (S, n, D)  reads
//   V' = V - eta A_k^T d                    (S, M, D)  values after the chunk
// d and Sc are kept (accumulation type) for the backward.
//
// Backward (hand-derived; gr = dL/dr, gV' = dL/dV', either may be zero):
//   gd   = -eta (Sc^T gr + A_k gV')                    d enters r through Sc d and V' through A_k^T d
//   gSc  = -eta mask(gr d^T)                           masked entries are constants (0)
//   gA_q = gr V^T + gSc A_k
//   gA_k = gSc^T A_q + gd V^T - eta d gV'^T
//   gv   = -gd
//   gV   = gV' + A_q^T gr + A_k^T gd                   (summed over sequences by the glue when V is shared)
//   geta = -sum(gr * (Sc d)) - sum(gV' * (A_k^T d))    per-element terms here, summed by the glue
// Two passes each way: the second needs all of the first (d, Sc; gd, gSc) of its sequence.
#pragma once

#include "common.cuh"

namespace lmgrid::kernels::cuda_impl {

struct GemShape {
  int64_t S, n, M, D;
  int64_t Vb;  // batch stride of V: M*D, or 0 when shared
  bool self_write;
  LMGRID_HD bool visible(int64_t i, int64_t j) const { return self_write ? j <= i : j < i; }
};

template <class T>
struct GemFwd {
  GemShape s;
  const T *aq, *ak, *v, *V, *eta;
  acc_t<T>* d;   // (S, n, D) scratch, kept for the backward
  acc_t<T>* Sc;  // (S, n, n) scratch, kept for the backward
  T *r, *Vn;
};

template <class T>
struct GemBwd {
  GemShape s;
  const T *aq, *ak, *V, *eta;
  const acc_t<T>*d, *Sc;
  const T *gr, *gVn;  // (S, n, D), (S, M, D); may be null (zeros)
  acc_t<T>*gd, *gSc;  // scratch (S, n, D), (S, n, n)
  T *gaq, *gak, *gv, *gV;
  acc_t<T>* geta_terms;  // (S*n*D + S*M*D): summed by the glue
};

// The typed view of type-erased arguments (launch.hpp).
template <class T>
inline GemFwd<T> retype(const GemFwd<void>& p) {
  using A = acc_t<T>;
  return {p.s,
          static_cast<const T*>(p.aq),
          static_cast<const T*>(p.ak),
          static_cast<const T*>(p.v),
          static_cast<const T*>(p.V),
          static_cast<const T*>(p.eta),
          static_cast<A*>(p.d),
          static_cast<A*>(p.Sc),
          static_cast<T*>(p.r),
          static_cast<T*>(p.Vn)};
}
template <class T>
inline GemBwd<T> retype(const GemBwd<void>& p) {
  using A = acc_t<T>;
  return {p.s,
          static_cast<const T*>(p.aq),
          static_cast<const T*>(p.ak),
          static_cast<const T*>(p.V),
          static_cast<const T*>(p.eta),
          static_cast<const A*>(p.d),
          static_cast<const A*>(p.Sc),
          static_cast<const T*>(p.gr),
          static_cast<const T*>(p.gVn),
          static_cast<A*>(p.gd),
          static_cast<A*>(p.gSc),
          static_cast<T*>(p.gaq),
          static_cast<T*>(p.gak),
          static_cast<T*>(p.gv),
          static_cast<T*>(p.gV),
          static_cast<A*>(p.geta_terms)};
}

// Pass 1 forward, t in [0, S n D + S n n): d, then Sc.
template <class T>
LMGRID_HD inline void gem_fwd1(const GemFwd<T>& p, int64_t t) {
  using A = acc_t<T>;
  const GemShape& s = p.s;
  const int64_t nD = s.S * s.n * s.D;
  if (t < nD) {
    const int64_t b = t / (s.n * s.D), j = (t / s.D) % s.n, e = t % s.D;
    const T* ak = p.ak + (b * s.n + j) * s.M;
    const T* V = p.V + b * s.Vb + e;
    A acc = 0;
    for (int64_t m = 0; m < s.M; ++m) acc += to_acc(ak[m]) * to_acc(V[m * s.D]);
    p.d[t] = acc - to_acc(p.v[t]);
  } else {
    t -= nD;
    const int64_t b = t / (s.n * s.n), i = (t / s.n) % s.n, j = t % s.n;
    A acc = 0;
    if (s.visible(i, j)) {
      const T* aq = p.aq + (b * s.n + i) * s.M;
      const T* ak = p.ak + (b * s.n + j) * s.M;
      for (int64_t m = 0; m < s.M; ++m) acc += to_acc(aq[m]) * to_acc(ak[m]);
    }
    p.Sc[t] = acc;
  }
}

// Pass 2 forward, t in [0, S n D + S M D): r, then V'.
template <class T>
LMGRID_HD inline void gem_fwd2(const GemFwd<T>& p, int64_t t) {
  using A = acc_t<T>;
  const GemShape& s = p.s;
  const A eta = to_acc(*p.eta);
  const int64_t nD = s.S * s.n * s.D;
  if (t < nD) {
    const int64_t b = t / (s.n * s.D), i = (t / s.D) % s.n, e = t % s.D;
    const T* aq = p.aq + (b * s.n + i) * s.M;
    const T* V = p.V + b * s.Vb + e;
    A read = 0, corr = 0;
    for (int64_t m = 0; m < s.M; ++m) read += to_acc(aq[m]) * to_acc(V[m * s.D]);
    const A* Sc = p.Sc + (b * s.n + i) * s.n;
    const A* d = p.d + b * s.n * s.D + e;
    for (int64_t j = 0; j < s.n; ++j) corr += Sc[j] * d[j * s.D];
    p.r[t] = from_acc<T>(read - eta * corr);
  } else {
    t -= nD;
    const int64_t b = t / (s.M * s.D), m = (t / s.D) % s.M, e = t % s.D;
    const T* ak = p.ak + b * s.n * s.M + m;
    const A* d = p.d + b * s.n * s.D + e;
    A acc = 0;
    for (int64_t j = 0; j < s.n; ++j) acc += to_acc(ak[j * s.M]) * d[j * s.D];
    p.Vn[t] = from_acc<T>(to_acc(p.V[b * s.Vb + m * s.D + e]) - eta * acc);
  }
}

// Pass 1 backward, t in [0, S n D + S n n): gd, then gSc.
template <class T>
LMGRID_HD inline void gem_bwd1(const GemBwd<T>& p, int64_t t) {
  using A = acc_t<T>;
  const GemShape& s = p.s;
  const A eta = to_acc(*p.eta);
  const int64_t nD = s.S * s.n * s.D;
  if (t < nD) {
    const int64_t b = t / (s.n * s.D), j = (t / s.D) % s.n, e = t % s.D;
    A acc = 0;
    if (p.gr) {
      const A* Sc = p.Sc + b * s.n * s.n + j;  // column j
      const T* gr = p.gr + b * s.n * s.D + e;
      for (int64_t i = 0; i < s.n; ++i) acc += Sc[i * s.n] * to_acc(gr[i * s.D]);
    }
    if (p.gVn) {
      const T* ak = p.ak + (b * s.n + j) * s.M;
      const T* gVn = p.gVn + b * s.M * s.D + e;
      for (int64_t m = 0; m < s.M; ++m) acc += to_acc(ak[m]) * to_acc(gVn[m * s.D]);
    }
    p.gd[t] = -eta * acc;
  } else {
    t -= nD;
    const int64_t b = t / (s.n * s.n), i = (t / s.n) % s.n, j = t % s.n;
    A acc = 0;
    if (p.gr && s.visible(i, j)) {
      const T* gr = p.gr + (b * s.n + i) * s.D;
      const A* d = p.d + (b * s.n + j) * s.D;
      for (int64_t e = 0; e < s.D; ++e) acc += to_acc(gr[e]) * d[e];
    }
    p.gSc[t] = -eta * acc;
  }
}

// Pass 2 backward, t in [0, 2 S n M + S M D + S n D): gA_q, gA_k, then gV (with the V' part of
// geta), then gv (with the r part of geta).
template <class T>
LMGRID_HD inline void gem_bwd2(const GemBwd<T>& p, int64_t t) {
  using A = acc_t<T>;
  const GemShape& s = p.s;
  const A eta = to_acc(*p.eta);
  const int64_t nM = s.S * s.n * s.M, MD = s.S * s.M * s.D;
  if (t < nM) {  // gA_q[i, m] = sum_e gr[i, e] V[m, e] + sum_j gSc[i, j] A_k[j, m]
    const int64_t b = t / (s.n * s.M), i = (t / s.M) % s.n, m = t % s.M;
    A acc = 0;
    if (p.gr) {
      const T* gr = p.gr + (b * s.n + i) * s.D;
      const T* V = p.V + b * s.Vb + m * s.D;
      for (int64_t e = 0; e < s.D; ++e) acc += to_acc(gr[e]) * to_acc(V[e]);
    }
    const A* gSc = p.gSc + (b * s.n + i) * s.n;
    const T* ak = p.ak + b * s.n * s.M + m;
    for (int64_t j = 0; j < s.n; ++j) acc += gSc[j] * to_acc(ak[j * s.M]);
    p.gaq[t] = from_acc<T>(acc);
    return;
  }
  t -= nM;
  if (t < nM) {  // gA_k[j, m] = sum_i gSc[i, j] A_q[i, m] + sum_e (gd[j, e] V[m, e] - eta d[j, e] gV'[m, e])
    const int64_t b = t / (s.n * s.M), j = (t / s.M) % s.n, m = t % s.M;
    A acc = 0;
    const A* gSc = p.gSc + b * s.n * s.n + j;
    const T* aq = p.aq + b * s.n * s.M + m;
    for (int64_t i = 0; i < s.n; ++i) acc += gSc[i * s.n] * to_acc(aq[i * s.M]);
    const A* gd = p.gd + (b * s.n + j) * s.D;
    const A* d = p.d + (b * s.n + j) * s.D;
    const T* V = p.V + b * s.Vb + m * s.D;
    const T* gVn = p.gVn ? p.gVn + (b * s.M + m) * s.D : nullptr;
    for (int64_t e = 0; e < s.D; ++e) {
      acc += gd[e] * to_acc(V[e]);
      if (gVn) acc -= eta * d[e] * to_acc(gVn[e]);
    }
    p.gak[t] = from_acc<T>(acc);
    return;
  }
  t -= nM;
  if (t < MD) {  // gV[m, e] = gV'[m, e] + sum_i A_q[i, m] gr[i, e] + sum_j A_k[j, m] gd[j, e]
    const int64_t b = t / (s.M * s.D), m = (t / s.D) % s.M, e = t % s.D;
    const T* aq = p.aq + b * s.n * s.M + m;
    const T* ak = p.ak + b * s.n * s.M + m;
    const A* gd = p.gd + b * s.n * s.D + e;
    const A* d = p.d + b * s.n * s.D + e;
    A acc = p.gVn ? to_acc(p.gVn[t]) : A(0), akd = 0;
    for (int64_t j = 0; j < s.n; ++j) {
      const A a = to_acc(ak[j * s.M]);
      acc += a * gd[j * s.D];
      akd += a * d[j * s.D];
      if (p.gr) acc += to_acc(aq[j * s.M]) * to_acc(p.gr[(b * s.n + j) * s.D + e]);
    }
    p.gV[t] = from_acc<T>(acc);
    p.geta_terms[s.S * s.n * s.D + t] = p.gVn ? -to_acc(p.gVn[t]) * akd : A(0);
    return;
  }
  t -= MD;  // gv[j, e] = -gd[j, e]; the r part of geta: -gr[i, e] (Sc d)[i, e]
  {
    const int64_t b = t / (s.n * s.D), i = (t / s.D) % s.n, e = t % s.D;
    p.gv[t] = from_acc<T>(-p.gd[t]);
    A sd = 0;
    if (p.gr) {
      const A* Sc = p.Sc + (b * s.n + i) * s.n;
      const A* d = p.d + b * s.n * s.D + e;
      for (int64_t j = 0; j < s.n; ++j) sd += Sc[j] * d[j * s.D];
    }
    p.geta_terms[t] = p.gr ? -to_acc(p.gr[t]) * sd : A(0);
  }
}

// Sizes of the index spaces of the four passes.
inline int64_t gem_fwd1_size(const GemShape& s) { return s.S * s.n * (s.D + s.n); }
inline int64_t gem_fwd2_size(const GemShape& s) { return s.S * (s.n + s.M) * s.D; }
inline int64_t gem_bwd1_size(const GemShape& s) { return s.S * s.n * (s.D + s.n); }
inline int64_t gem_bwd2_size(const GemShape& s) { return s.S * (2 * s.n * s.M + s.M * s.D + s.n * s.D); }

}  // namespace lmgrid::kernels::cuda_impl
