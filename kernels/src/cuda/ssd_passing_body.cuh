// SSD state passing between chunks, one thread's work: the body that the CUDA kernel runs per
// thread (ssd_passing.cu) and the CPU emulation loops over (fused.cpp, tests only).
//
// Letters: B batch, C chunks, H heads, E state elements per sequence in the composite's layout
// (G, N, Hg, P) (group, state dim, head in group, head dim); element e belongs to head
// (e / (N Hg P)) Hg + (e / P) % Hg. Every array is contiguous.
//   u (B, C, E)  chunk states: what chunk k adds to the state, decayed to the chunk's end
//   a (B, C, H)  chunk total log-decays (<= 0), D_k = exp(a_k) (0 below the cutoff, decay_of)
//   h0 (B, E)    state entering chunk 0, or null (zeros)
// Forward, per (b, e):  h_0 = h0,  h_{k+1} = D_k h_k + u_k;  writes h_in[k] = h_k, h_final = h_C.
//
// Backward (hand-derived). With L a function of (h_in, h_final), gh_in = dL/dh_in and
// gh_final = dL/dh_final, let lam_k = dL/dh_k through every path (h_k is h_in[k] and feeds
// h_{k+1}); then lam_C = gh_final and, for k = C-1 down to 0,
//   du_k  = lam_{k+1}                            (h_{k+1} = D_k h_k + u_k)
//   lam_k = gh_in[k] + D_k lam_{k+1}
//   da_k  = sum over the head's elements of lam_{k+1} D_k h_k = D_k sum du_k h_in[k]
// and dh0 = lam_0. The body computes du and dh0; da is the per-head reduction of du * h_in,
// done by the glue (a sum over N and P), times D_k (which is 0 where the cutoff applies, as the
// composite's gradient is).
#pragma once

#include "common.cuh"

namespace lmgrid::kernels::cuda_impl {

struct SsdPassingShape {
  int64_t B, C, G, N, Hg, P;
  LMGRID_HD int64_t E() const { return G * N * Hg * P; }
  LMGRID_HD int64_t H() const { return G * Hg; }
  LMGRID_HD int64_t head_of(int64_t e) const { return (e / (N * Hg * P)) * Hg + (e / P) % Hg; }
};

template <class T>
struct SsdPassingFwd {
  SsdPassingShape s;
  const T* u;
  const T* a;
  const T* h0;  // may be null
  T* h_in;
  T* h_final;
};

template <class T>
struct SsdPassingBwd {
  SsdPassingShape s;
  const T* a;
  const T* gh_in;     // (B, C, E), may be null (zeros)
  const T* gh_final;  // (B, E), may be null (zeros)
  T* gu;              // (B, C, E)
  T* gh0;             // (B, E)
};

// The typed view of type-erased arguments (launch.hpp).
template <class T>
inline SsdPassingFwd<T> retype(const SsdPassingFwd<void>& p) {
  return {p.s,
          static_cast<const T*>(p.u),
          static_cast<const T*>(p.a),
          static_cast<const T*>(p.h0),
          static_cast<T*>(p.h_in),
          static_cast<T*>(p.h_final)};
}
template <class T>
inline SsdPassingBwd<T> retype(const SsdPassingBwd<void>& p) {
  return {p.s,
          static_cast<const T*>(p.a),
          static_cast<const T*>(p.gh_in),
          static_cast<const T*>(p.gh_final),
          static_cast<T*>(p.gu),
          static_cast<T*>(p.gh0)};
}

// Thread `t` of B*E: sequence b = t / E, element e = t % E.
template <class T>
LMGRID_HD inline void ssd_passing_forward_thread(const SsdPassingFwd<T>& p, int64_t t) {
  using A = acc_t<T>;
  const int64_t E = p.s.E(), H = p.s.H(), C = p.s.C;
  const int64_t b = t / E, e = t % E, head = p.s.head_of(e);
  A h = p.h0 ? to_acc(p.h0[t]) : A(0);
  for (int64_t k = 0; k < C; ++k) {
    const int64_t i = (b * C + k) * E + e;
    p.h_in[i] = from_acc<T>(h);
    h = decay_of(to_acc(p.a[(b * C + k) * H + head])) * h + to_acc(p.u[i]);
  }
  p.h_final[t] = from_acc<T>(h);
}

template <class T>
LMGRID_HD inline void ssd_passing_backward_thread(const SsdPassingBwd<T>& p, int64_t t) {
  using A = acc_t<T>;
  const int64_t E = p.s.E(), H = p.s.H(), C = p.s.C;
  const int64_t b = t / E, e = t % E, head = p.s.head_of(e);
  A lam = p.gh_final ? to_acc(p.gh_final[t]) : A(0);
  for (int64_t k = C - 1; k >= 0; --k) {
    const int64_t i = (b * C + k) * E + e;
    p.gu[i] = from_acc<T>(lam);
    lam = (p.gh_in ? to_acc(p.gh_in[i]) : A(0)) + decay_of(to_acc(p.a[(b * C + k) * H + head])) * lam;
  }
  p.gh0[t] = from_acc<T>(lam);
}

}  // namespace lmgrid::kernels::cuda_impl
