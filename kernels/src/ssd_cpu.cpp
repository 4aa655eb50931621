// Fused CPU SSD scan (ssd.hpp: ssd_chunked_cpu): the chunked algorithm of ssd.cpp, computed per
// (batch, head) in one pass over the chunks with plain loops, and its hand-derived backward.
//
// Per chunk of n <= Q tokens, with a_i = dt_i A, S_i = a_0 + ... + a_i, ex(t) = exp(t) (0 below
// -60 in float, -600 in double, as in ssd.cpp), xdt_i = dt_i x_i, CB[l][s] = C_l . B_s, and the
// state kept transposed as hT (N, P):
//   Y_l  = sum_{s<=l} CB[l][s] ex(S_l - S_s) xdt_s  +  ex(S_l) sum_n C_l[n] hT[n]
//   hT'  = ex(S_{n-1}) hT + sum_s ex(S_{n-1} - S_s) B_s (x) xdt_s
// Every exponent is <= 0 (A < 0, dt > 0), so nothing overflows and no factorisation is needed.
// The backward pass walks the chunks in reverse with dL/dhT' and recomputes each chunk's decays
// from the saved inputs; the state at each chunk's start is saved by the forward pass (as the
// composite's autograd saves it). Gradients w.r.t. the decays reach S through
// dS_l += dLm[l][s] Lm[l][s], dS_s -= the same (s < l; the diagonal's exp(0) has none), and a
// through the reverse cumulative sum. B and C are shared by the heads of a group: each head
// writes its own gradient rows and they are summed per group at the end, so no two tasks write
// the same memory and the result does not depend on the thread count.
//
// Loops: every inner loop runs along a contiguous axis (P for x, y, the state; N for B and C);
// dot products keep 16 partial sums so they vectorise without reassociation flags.
#include "lmgrid/kernels/ssd.hpp"

#include "cpu_common.hpp"

#include <cmath>
#include <string>
#include <utility>
#include <vector>

namespace lmgrid::kernels {

namespace {

using torch::Tensor;

// Decays below exp(-kCut) are zero, as in ssd.cpp's exp_nonpos (subnormals in the products are
// ~100x slower, and such decays are below the dtype's resolution anyway).
template <class T>
constexpr T kCut = sizeof(T) == 8 ? T(600) : T(60);

template <class T>
LMGRID_INLINE T ex(T t) {
  return t < -kCut<T> ? T(0) : std::exp(t);
}

using cpu::axpy;
using cpu::dot;
using cpu::gemm_acc;
using cpu::Part;
using cpu::transpose;

struct Dims {
  int64_t B, L, H, P, G, N, Q, c, Hg;
  int64_t x_row(int64_t b, int64_t t, int64_t h) const { return ((b * L + t) * H + h) * P; }
  int64_t bc_row(int64_t b, int64_t t, int64_t g) const { return ((b * L + t) * G + g) * N; }
  int64_t dt_at(int64_t b, int64_t t, int64_t h) const { return (b * L + t) * H + h; }
  int64_t cb_at(int64_t b, int64_t g, int64_t k) const { return ((b * G + g) * c + k) * Q * Q; }
};

template <class T>
struct Tensors {
  // States are (B,H,N,P) here, the transpose of the API's (B,H,P,N): every product then runs
  // along P. h0 null: zeros.
  const T *x, *dt, *A, *Bm, *Cm, *h0;
  // CB (B,G,c,Q,Q), written by the forward pass and read by both; y (B,L,H,P); hin (B,H,c,N,P)
  // the state at each chunk's start; hfin (B,H,N,P).
  T *CB, *y, *hin, *hfin;
  // backward: dy and dfin (either may be null), and the gradients; dBh, dCh (B,L,G,N), summed
  // over the heads of a group by the one task that owns the group's rows;
  // dA (B,H); dh0 (B,H,N,P).
  const T *dy, *dfin;
  T *dx, *ddt, *dBh, *dCh, *dA, *dh0;
  bool has_h0;  // both passes: false when the initial state is zeros (no state to read or to differentiate)
};

// CB[b][g][k][l][s] = C_l . B_s for s <= l (the upper triangle is left unset).
template <class T>
LMGRID_INLINE void cb_chunk(const Dims& d, const Tensors<T>& a, int64_t task) {
  const int64_t k = task % d.c, bg = task / d.c, b = bg / d.G, g = bg % d.G;
  const int64_t t0 = k * d.Q, n = std::min(d.Q, d.L - t0);
  T* cb = a.CB + d.cb_at(b, g, k);
  for (int64_t l = 0; l < n; ++l) {
    const T* Cl = a.Cm + d.bc_row(b, t0 + l, g);
    for (int64_t s = 0; s <= l; ++s) cb[l * d.Q + s] = dot(d.N, Cl, a.Bm + d.bc_row(b, t0 + s, g));
  }
}

// Per-chunk quantities both passes recompute: S, xdt, the decays to the chunk's end w and ex(S).
template <class T>
struct ChunkScratch {
  cpu::Scratch<T> S, w, e, xdt;
  explicit ChunkScratch(const Dims& d) : S(d.Q), w(d.Q), e(d.Q), xdt(d.Q * d.P) {}
  // Fills S, e, w and xdt for chunk k of (b, h); returns n.
  int64_t load(const Dims& d, const Tensors<T>& a, int64_t b, int64_t h, int64_t k) {
    const int64_t t0 = k * d.Q, n = std::min(d.Q, d.L - t0);
    const T Ah = a.A[h];
    T acc = 0;
    for (int64_t i = 0; i < n; ++i) {
      const T dti = a.dt[d.dt_at(b, t0 + i, h)];
      acc += dti * Ah;
      S[i] = acc;
      const T* xi = a.x + d.x_row(b, t0 + i, h);
      T* xo = xdt.data() + i * d.P;
      for (int64_t p = 0; p < d.P; ++p) xo[p] = dti * xi[p];
    }
    for (int64_t i = 0; i < n; ++i) {
      e[i] = ex(S[i]);
      w[i] = ex(S[n - 1] - S[i]);
    }
    return n;
  }
};

// E (n x n, row stride Q) = ex(S_l - S_s) on and below the diagonal, zero above; Lm = CB E.
// exp_neg is branch-free, so the rows vectorise (n^2 exponentials per chunk and head: with
// std::exp they took as long as all the chunk's products).
template <class T>
LMGRID_INLINE void decayed_scores(const Dims& d, int64_t n, const T* cb, const T* S, T* E, T* Lm) {
  for (int64_t l = 0; l < n; ++l) {
    const T Sl = S[l];
    T* __restrict El = E + l * d.Q;
    T* __restrict Ll = Lm + l * d.Q;
    const T* __restrict cl = cb + l * d.Q;
    for (int64_t s = 0; s < n; ++s) {
      const T t = Sl - S[s];
      const T v = (s > l || t < -kCut<T>) ? T(0) : cpu::exp_neg(t);
      El[s] = v;
      Ll[s] = s > l ? T(0) : cl[s] * v;
    }
  }
}

template <class T>
LMGRID_INLINE void forward_head(const Dims& d, const Tensors<T>& a, int64_t bh) {
  const int64_t b = bh / d.H, h = bh % d.H, g = h / d.Hg, NP = d.N * d.P, ldx = d.H * d.P, ldbc = d.G * d.N;
  ChunkScratch<T> cs(d);
  cpu::Scratch<T> hT(NP), E(d.Q * d.Q), Lm(d.Q * d.Q), Ce(d.Q * d.N), Bw(d.Q * d.N);
  if (a.h0)
    std::copy(a.h0 + bh * NP, a.h0 + (bh + 1) * NP, hT.begin());
  else
    std::fill(hT.begin(), hT.end(), T(0));
  for (int64_t k = 0; k < d.c; ++k) {
    const int64_t t0 = k * d.Q, n = cs.load(d, a, b, h, k);
    if (a.hin) std::copy(hT.begin(), hT.end(), a.hin + (bh * d.c + k) * NP);
    const T *Bp = a.Bm + d.bc_row(b, t0, g), *Cp = a.Cm + d.bc_row(b, t0, g);
    T* Yp = a.y + d.x_row(b, t0, h);
    // Y = Lm xdt + (e C) hT (the second term is zero for the first chunk from a zero state)
    const bool state_read = k > 0 || a.has_h0;
    decayed_scores(d, n, a.CB + d.cb_at(b, g, k), cs.S.data(), E.data(), Lm.data());
    for (int64_t l = 0; l < n; ++l) {
      std::fill(Yp + l * ldx, Yp + l * ldx + d.P, T(0));
      if (state_read)
        for (int64_t nn = 0; nn < d.N; ++nn) Ce[l * d.N + nn] = cs.e[l] * Cp[l * ldbc + nn];
    }
    gemm_acc(n, d.P, n, Lm.data(), d.Q, 1, cs.xdt.data(), d.P, Yp, ldx, Part::a_lower);
    if (state_read) gemm_acc(n, d.P, d.N, Ce.data(), d.N, 1, hT.data(), d.P, Yp, ldx);
    // hT = eL hT + (w B)^T xdt
    const T eL = cs.e[n - 1];
    for (auto& v : hT) v *= eL;
    for (int64_t s = 0; s < n; ++s)
      for (int64_t nn = 0; nn < d.N; ++nn) Bw[s * d.N + nn] = cs.w[s] * Bp[s * ldbc + nn];
    gemm_acc(d.N, d.P, n, Bw.data(), 1, d.N, cs.xdt.data(), d.P, hT.data(), d.P);
  }
  std::copy(hT.begin(), hT.end(), a.hfin + bh * NP);
}

template <class T>
LMGRID_INLINE void backward_head(const Dims& d, const Tensors<T>& a, int64_t bh) {
  const int64_t b = bh / d.H, h = bh % d.H, g = h / d.Hg, NP = d.N * d.P, ldx = d.H * d.P, ldbc = d.G * d.N;
  const int64_t ldg = ldbc;  // rows of the gradients of B and C
  ChunkScratch<T> cs(d);
  cpu::Scratch<T> dh(NP, T(0)), dhin(NP), dxdt(d.Q * d.P), dS(d.Q);
  cpu::Scratch<T> Gm(d.Q * d.P), xw(d.Q * d.P), eY(d.Q * d.P), Re(d.Q * d.N), Ce(d.Q * d.N);
  cpu::Scratch<T> dhT(NP), hinT(NP), xdtT(d.P * d.Q), E(d.Q * d.Q), Lm(d.Q * d.Q), dCB(d.Q * d.Q);
  if (a.dfin) std::copy(a.dfin + bh * NP, a.dfin + (bh + 1) * NP, dh.begin());
  // Training differentiates y alone from a zero state: then the last chunk's dL/dstate is zero
  // (its part (1) is skipped) and the first chunk's state is never read (its part (2) is).
  bool dh_zero = !a.dfin;
  const T Ah = a.A[h];
  T dA = 0;
  for (int64_t k = d.c - 1; k >= 0; --k) {
    const int64_t t0 = k * d.Q, n = cs.load(d, a, b, h, k);
    const T* hin = a.hin ? a.hin + (bh * d.c + k) * NP : nullptr;  // null: the first chunk's zero state
    const T *Bp = a.Bm + d.bc_row(b, t0, g), *Cp = a.Cm + d.bc_row(b, t0, g);
    T *dBp = a.dBh + d.bc_row(b, t0, g), *dCp = a.dCh + d.bc_row(b, t0, g);
    std::fill(dS.begin(), dS.begin() + n, T(0));
    const T eL = cs.e[n - 1];
    // (1) hT' = eL hT + sum_s w_s B_s (x) xdt_s.
    if (dh_zero) {
      std::fill(dxdt.begin(), dxdt.begin() + n * d.P, T(0));
      std::fill(dhin.begin(), dhin.end(), T(0));
    } else {
      T deL = 0;
      for (int64_t i = 0; i < NP; ++i) dhin[i] = eL * dh[i];
      if (hin)
        for (int64_t nn = 0; nn < d.N; ++nn) deL += dot(d.P, dh.data() + nn * d.P, hin + nn * d.P);
      dS[n - 1] += deL * eL;
      std::fill(Gm.begin(), Gm.begin() + n * d.P, T(0));
      gemm_acc(n, d.P, d.N, Bp, ldbc, 1, dh.data(), d.P, Gm.data(), d.P);  // Gm = B dh
      for (int64_t s = 0; s < n; ++s) {
        const T* gs = Gm.data() + s * d.P;
        const T* xs = cs.xdt.data() + s * d.P;
        T* dxs = dxdt.data() + s * d.P;
        T* xws = xw.data() + s * d.P;
        for (int64_t p = 0; p < d.P; ++p) dxs[p] = cs.w[s] * gs[p], xws[p] = cs.w[s] * xs[p];
        if (s < n - 1) {
          const T m = dot(d.P, gs, xs) * cs.w[s];
          dS[n - 1] += m;
          dS[s] -= m;
        }
      }
      transpose(d.N, d.P, dh.data(), dhT.data(), d.N);
      gemm_acc(n, d.N, d.P, xw.data(), d.P, 1, dhT.data(), d.N, dBp, ldg);  // dB += (w xdt) dh^T
    }
    const bool state_read = k > 0 || a.has_h0;
    if (a.dy) {
      const T* dYp = a.dy + d.x_row(b, t0, h);
      // (2) Y += (e C) hT: Re = (e dY) hT^T, dC += Re, dS_l += C_l . Re_l, dhT += (e C)^T dY.
      if (state_read) {
        for (int64_t l = 0; l < n; ++l)
          for (int64_t p = 0; p < d.P; ++p) eY[l * d.P + p] = cs.e[l] * dYp[l * ldx + p];
        transpose(d.N, d.P, hin, hinT.data(), d.N);
        std::fill(Re.begin(), Re.begin() + n * d.N, T(0));
        gemm_acc(n, d.N, d.P, eY.data(), d.P, 1, hinT.data(), d.N, Re.data(), d.N);
        for (int64_t l = 0; l < n; ++l) {
          const T* Rl = Re.data() + l * d.N;
          dS[l] += dot(d.N, Cp + l * ldbc, Rl);
          axpy(d.N, T(1), Rl, dCp + l * ldg);
          for (int64_t nn = 0; nn < d.N; ++nn) Ce[l * d.N + nn] = cs.e[l] * Cp[l * ldbc + nn];
        }
        gemm_acc(d.N, d.P, n, Ce.data(), 1, d.N, dYp, ldx, dhin.data(), d.P);
        dh_zero = false;
      }
      // (3) Y += Lm xdt: dLm = dY xdt^T; dxdt += Lm^T dY; dCB = dLm E; dC += dCB B; dB += dCB^T C.
      decayed_scores(d, n, a.CB + d.cb_at(b, g, k), cs.S.data(), E.data(), Lm.data());
      transpose(n, d.P, cs.xdt.data(), xdtT.data(), d.Q);
      for (int64_t l = 0; l < n; ++l) std::fill(dCB.begin() + l * d.Q, dCB.begin() + l * d.Q + n, T(0));
      gemm_acc(n, n, d.P, dYp, ldx, 1, xdtT.data(), d.Q, dCB.data(), d.Q, Part::c_lower);  // dLm, then dCB in place
      for (int64_t l = 0; l < n; ++l) {
        T* __restrict v = dCB.data() + l * d.Q;
        const T* __restrict El = E.data() + l * d.Q;
        const T* __restrict Ll = Lm.data() + l * d.Q;
        // dS_l += sum_{s<l} dLm Lm, dS_s -= dLm Lm (the diagonal's exp(0) depends on no S)
        dS[l] += dot(l, v, Ll);
        T* __restrict dSv = dS.data();
        for (int64_t s = 0; s < l; ++s) dSv[s] -= v[s] * Ll[s];
        for (int64_t s = 0; s < n; ++s) v[s] *= El[s];  // dCB = dLm E (E is zero above the diagonal)
      }
      gemm_acc(n, d.P, n, Lm.data(), 1, d.Q, dYp, ldx, dxdt.data(), d.P, Part::a_upper);
      gemm_acc(n, d.N, n, dCB.data(), d.Q, 1, Bp, ldbc, dCp, ldg, Part::a_lower);
      gemm_acc(n, d.N, n, dCB.data(), 1, d.Q, Cp, ldbc, dBp, ldg, Part::a_upper);
    }
    // (4) S = cumsum(a), a = dt A, xdt = dt x.
    T da = 0;
    for (int64_t i = n - 1; i >= 0; --i) {
      da += dS[i];
      const int64_t at = d.dt_at(b, t0 + i, h);
      const T dti = a.dt[at];
      const T* gx = dxdt.data() + i * d.P;
      a.ddt[at] = da * Ah + dot(d.P, gx, a.x + d.x_row(b, t0 + i, h));
      dA += da * dti;
      T* dxi = a.dx + d.x_row(b, t0 + i, h);
      for (int64_t p = 0; p < d.P; ++p) dxi[p] = dti * gx[p];
    }
    dh.swap(dhin);
  }
  a.dA[bh] = dA;
  std::copy(dh.begin(), dh.end(), a.dh0 + bh * NP);
}

// One task per (batch, group): zeroes the group's rows of dB and dC, then runs its heads.
template <class T>
LMGRID_INLINE void backward_group(const Dims& d, const Tensors<T>& a, int64_t bg) {
  const int64_t b = bg / d.G, g = bg % d.G;
  for (int64_t t = 0; t < d.L; ++t) {
    std::fill(a.dBh + d.bc_row(b, t, g), a.dBh + d.bc_row(b, t, g) + d.N, T(0));
    std::fill(a.dCh + d.bc_row(b, t, g), a.dCh + d.bc_row(b, t, g) + d.N, T(0));
  }
  for (int64_t h = g * d.Hg; h < (g + 1) * d.Hg; ++h) backward_head(d, a, b * d.H + h);
}

#define LMGRID_SSD_KERNELS(T)                                                                                  \
  LMGRID_MULTIVERSION void ssd_cb_##T(const Dims& d, const Tensors<T>& a, int64_t t) { cb_chunk<T>(d, a, t); } \
  LMGRID_MULTIVERSION void ssd_forward_##T(const Dims& d, const Tensors<T>& a, int64_t t) {                    \
    forward_head<T>(d, a, t);                                                                                  \
  }                                                                                                            \
  LMGRID_MULTIVERSION void ssd_backward_##T(const Dims& d, const Tensors<T>& a, int64_t t) {                   \
    backward_group<T>(d, a, t);                                                                                \
  }
LMGRID_SSD_KERNELS(float)
LMGRID_SSD_KERNELS(double)
#undef LMGRID_SSD_KERNELS
void run_cb(const Dims& d, const Tensors<float>& a, int64_t t) { ssd_cb_float(d, a, t); }
void run_cb(const Dims& d, const Tensors<double>& a, int64_t t) { ssd_cb_double(d, a, t); }
void run_forward(const Dims& d, const Tensors<float>& a, int64_t t) { ssd_forward_float(d, a, t); }
void run_forward(const Dims& d, const Tensors<double>& a, int64_t t) { ssd_forward_double(d, a, t); }
void run_backward(const Dims& d, const Tensors<float>& a, int64_t t) { ssd_backward_float(d, a, t); }
void run_backward(const Dims& d, const Tensors<double>& a, int64_t t) { ssd_backward_double(d, a, t); }

Dims dims_of(const Tensor& x, const Tensor& Bm, int64_t chunk) {
  Dims d{};
  d.B = x.size(0), d.L = x.size(1), d.H = x.size(2), d.P = x.size(3), d.G = Bm.size(2), d.N = Bm.size(3);
  d.Q = std::min(chunk, d.L), d.c = (d.L + d.Q - 1) / d.Q, d.Hg = d.H / d.G;
  return d;
}

// Multiply-adds of one pass, for parallel_tasks' threshold.
double work_of(const Dims& d) { return static_cast<double>(d.B) * d.H * d.L * (d.Q * d.P + 2.0 * d.N * d.P); }

// Inputs contiguous; h0T the initial state transposed, (B,H,N,P), or an empty tensor for zeros.
// Returns y and the final state transposed, (B,H,N,P); ssd_chunked_cpu transposes both ways as
// views, so autograd carries the gradients through the transposes.
struct SsdCpuFunction : torch::autograd::Function<SsdCpuFunction> {
  static torch::autograd::variable_list forward(torch::autograd::AutogradContext* ctx, const Tensor& x,
                                                const Tensor& dt, const Tensor& A, const Tensor& Bm, const Tensor& Cm,
                                                const Tensor& h0T, int64_t chunk) {
    const Dims d = dims_of(x, Bm, chunk);
    const bool has_h0 = h0T.numel() > 0;
    auto y = torch::empty_like(x), hfin = torch::empty({d.B, d.H, d.N, d.P}, x.options());
    // The state at each chunk's start, for the backward pass; none when it is only the zero state
    // of a single chunk (training's usual case: one chunk of the window, no initial state).
    const bool keep_hin = d.c > 1 || has_h0;
    auto hin = keep_hin ? torch::empty({d.B, d.H, d.c, d.N, d.P}, x.options()) : torch::empty({0}, x.options());
    auto CB = torch::empty({d.B, d.G, d.c, d.Q, d.Q}, x.options());
    AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "ssd_chunked_cpu", [&] {
      Tensors<scalar_t> a{};
      a.x = x.data_ptr<scalar_t>(), a.dt = dt.data_ptr<scalar_t>(), a.A = A.data_ptr<scalar_t>();
      a.Bm = Bm.data_ptr<scalar_t>(), a.Cm = Cm.data_ptr<scalar_t>();
      a.h0 = has_h0 ? h0T.data_ptr<scalar_t>() : nullptr;
      a.has_h0 = has_h0;
      a.CB = CB.data_ptr<scalar_t>(), a.y = y.data_ptr<scalar_t>(),
      a.hin = keep_hin ? hin.data_ptr<scalar_t>() : nullptr;
      a.hfin = hfin.data_ptr<scalar_t>();
      const double work = work_of(d);
      cpu::parallel_tasks(d.B * d.G * d.c, work / 3, [&](int64_t t) { run_cb(d, a, t); });
      cpu::parallel_tasks(d.B * d.H, work, [&](int64_t t) { run_forward(d, a, t); });
    });
    ctx->save_for_backward({x, dt, A, Bm, Cm, hin, CB});
    // An unused output's gradient stays undefined (LibTorch would otherwise pass zeros): training
    // never reads the final state, and its undefined gradient lets the backward skip part (1).
    ctx->set_materialize_grads(false);
    ctx->saved_data["chunk"] = chunk;
    ctx->saved_data["has_h0"] = has_h0;
    return {y, hfin};
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    cpu::require_first_order("ssd_chunked_cpu");
    auto s = ctx->get_saved_variables();
    const Tensor &x = s[0], &dt = s[1], &A = s[2], &Bm = s[3], &Cm = s[4], &hin = s[5], &CB = s[6];
    const Dims d = dims_of(x, Bm, ctx->saved_data["chunk"].toInt());
    Tensor dy = grads[0].defined() ? grads[0].to(x.scalar_type()).contiguous() : Tensor();
    Tensor dfin = grads[1].defined() ? grads[1].to(x.scalar_type()).contiguous() : Tensor();
    auto dx = torch::empty_like(x), ddt = torch::empty_like(dt);
    auto dB = torch::empty({d.B, d.L, d.G, d.N}, x.options()), dC = torch::empty_like(dB);
    auto dAbh = torch::empty({d.B, d.H}, x.options()), dh0 = torch::empty({d.B, d.H, d.N, d.P}, x.options());
    AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "ssd_chunked_cpu_backward", [&] {
      Tensors<scalar_t> a{};
      a.x = x.data_ptr<scalar_t>(), a.dt = dt.data_ptr<scalar_t>(), a.A = A.data_ptr<scalar_t>();
      a.Bm = Bm.data_ptr<scalar_t>(), a.Cm = Cm.data_ptr<scalar_t>(), a.CB = CB.data_ptr<scalar_t>();
      a.hin = hin.numel() ? hin.data_ptr<scalar_t>() : nullptr;
      a.dy = dy.defined() ? dy.data_ptr<scalar_t>() : nullptr;
      a.dfin = dfin.defined() ? dfin.data_ptr<scalar_t>() : nullptr;
      a.has_h0 = ctx->saved_data["has_h0"].toBool();
      a.dx = dx.data_ptr<scalar_t>(), a.ddt = ddt.data_ptr<scalar_t>(), a.dBh = dB.data_ptr<scalar_t>();
      a.dCh = dC.data_ptr<scalar_t>(), a.dA = dAbh.data_ptr<scalar_t>(), a.dh0 = dh0.data_ptr<scalar_t>();
      cpu::parallel_tasks(d.B * d.G, 2 * work_of(d), [&](int64_t t) { run_backward(d, a, t); });
    });
    const bool has_h0 = ctx->saved_data["has_h0"].toBool();
    return {dx, ddt, dAbh.sum(0), dB, dC, has_h0 ? dh0 : Tensor(), Tensor()};
  }
};

}  // namespace

std::string ssd_chunked_cpu_unsupported(const Tensor& x, const Tensor& dt, const Tensor& A, const Tensor& Bm,
                                        const Tensor& Cm, const Tensor& initial_state) {
  for (const Tensor* t : {&x, &dt, &A, &Bm, &Cm})
    if (!t->device().is_cpu()) return "not CPU tensors";
  if (initial_state.defined() && !initial_state.device().is_cpu()) return "not CPU tensors";
  const auto st = x.scalar_type();
  if (st != torch::kFloat32 && st != torch::kFloat64) return "dtype is not float32 or float64";
  for (const Tensor* t : {&dt, &A, &Bm, &Cm})
    if (t->scalar_type() != st) return "inputs differ in dtype";
  if (initial_state.defined() && initial_state.scalar_type() != st) return "inputs differ in dtype";
  if (x.numel() == 0 || Bm.size(3) == 0) return "empty tensors";
  return "";
}

SsdResult ssd_chunked_cpu(const Tensor& x, const Tensor& dt, const Tensor& A, const Tensor& Bm, const Tensor& Cm,
                          int64_t chunk_size, const Tensor& initial_state) {
  TORCH_CHECK(chunk_size >= 1, "ssd_chunked_cpu: chunk_size must be >= 1, got ", chunk_size);
  const std::string why = ssd_chunked_cpu_unsupported(x, dt, A, Bm, Cm, initial_state);
  TORCH_CHECK(why.empty(), "ssd_chunked_cpu: ", why);
  auto h0T = initial_state.defined() ? initial_state.transpose(2, 3).contiguous() : torch::empty({0}, x.options());
  auto out = SsdCpuFunction::apply(x.contiguous(), dt.contiguous(), A.contiguous(), Bm.contiguous(), Cm.contiguous(),
                                   h0T, chunk_size);
  return {out[0], out[1].transpose(2, 3)};
}

}  // namespace lmgrid::kernels
