// The TTT layer's dual form over whole mini-batches as one CPU kernel: lmgrid/kernels/ttt.hpp
// (ttt_dual_cpu). The composite (ttt.cpp, ttt_dual_block) is the reference.
//
// Per sequence, mini-batch of n tokens, weights W1 (F x H), b1, [W2 (H x F), b2] at its start,
// eta[i][j] = ti[i] lr[j] for j <= i (te, lower-triangular), e[j] = ti[n-1] lr[j]:
//   keys     Z1k = Xk W1 + b1,  [A1k = gelu(Z1k),  Z2k = A1k W2 + b2],  ZLk = the last of them
//            GL = dLoss/dZL = lnl2(ZLk, Xv - Xk),  [G1 = (GL W2^T) o gelu'(Z1k)] (G1 = GL if linear)
//   queries  Z1q = Xq W1 + b1 - (te o (Xq Xk^T + 1)) G1,  [A1q = gelu(Z1q),
//            Z2q = A1q W2 + b2 - (te o (A1q A1k^T + 1)) GL]
//   output   out = Xq + LN(ZLq)
//   update   W1 -= Xk^T (e o G1),  b1 -= e^T G1,  [W2 -= A1k^T (e o GL),  b2 -= e^T GL]
// with lnl2(Z, t), row by row (LN weight w, bias beta, r = 1 / sqrt(var(Z) + eps), xh = (Z - mean) r):
//   y = w xh + beta - t,  gxh = y w,  a = mean(gxh),  c = mean(gxh xh),  G = r (gxh - a - xh c).
// Its backward, for dG with u = r dG:
//   dgxh = u - mean(u) - xh mean(u xh),  dxh = -c u - mean(u xh) gxh,  dr = sum(dG (gxh - a - xh c)),
//   dy = dgxh w,  dw += dgxh y + dy xh,  dbeta += dy,  dt = -dy,  dxh += dy w,
//   dZ = r (dxh - mean(dxh) - xh mean(dxh xh)) - dr r^2 xh / F.
// The backward walks the mini-batches last to first from the weights saved at each one's start,
// recomputing the mini-batch's forward; the gradient of the weights at a mini-batch's end (from
// the mini-batches after it, or from the final state) is first pushed through the update, then
// the direct uses are added, which leaves the gradient at its start.
// One task per sequence (batch x head); the only cross-sequence sum (token_idx's gradient) is
// made afterwards in sequence order, so the result is the same on any thread count.
#include "lmgrid/kernels/ttt.hpp"

#include "cpu_common.hpp"
#include "lmgrid/kernels/cpu_kernels.hpp"

#include <torch/csrc/autograd/functions/utils.h>  // compute_requires_grad

#include <cmath>

namespace lmgrid::kernels {

namespace {

using cpu::Part;
using torch::Tensor;

template <class T>
struct Args {
  int64_t N, L, F, H, n, nb;  // sequences, tokens, width, inner hidden, mini-batch, mini-batches
  int64_t Gt, Gn;             // rows of theta0 and of lnw, lnb: sequence s reads row s % G
  bool mlp;
  T eps;
  int64_t oW1, ob1, oW2, ob2, P;                         // offsets of the packed weights of one sequence, their count
  const T *xq, *xk, *xv, *lr, *ti, *lnw, *lnb, *theta0;  // lnw, lnb (Gn, F), theta0 (Gt, P)
  T *out, *thetas, *theta_fin;  // thetas (N, nb, P): the weights at each mini-batch's start (null:
                                // no backward will run, nothing is kept)
  // backward
  const T *dout, *dfin;                                    // dfin (N, P) or null
  T *dxq, *dxk, *dxv, *dlr, *dti, *dlnw, *dlnb, *dtheta0;  // dti (N, n), dlnw/dlnb (N, F)
};

template <class T>
using Gelu = cpu::GeluTanh<T>;  // TTT-MLP's inner nonlinearity

// The intermediates of one mini-batch (a block), carved out of one scratch array.
template <class T>
struct Block {
  cpu::Scratch<T> mem;
  // keys
  T *Z1k, *thk, *A1k, *Z2k, *Hk, *G1, *G2, *xhk, *gxh, *rk, *ak, *ck;
  // queries
  T *te, *S1, *P1, *Z1q, *thq, *A1q, *S2, *P2, *Z2q, *xhq, *rq;
  // transposes and the update's scaled gradients
  T *W1t, *W2t, *D;
  // backward
  T *dG1, *dG2, *dZ1k, *dZ2k, *dA1k, *dZ2q, *dZ1q, *dA1q, *dte, *dP, *de, *dD, *dWt;

  Block(int64_t n, int64_t F, int64_t H, bool backward) : mem(size(n, F, H, backward)) {
    T* p = mem.data();
    auto take = [&](int64_t k) {
      T* q = p;
      p += k;
      return q;
    };
    const int64_t nH = n * H, nF = n * F, nn = n * n;
    Z1k = take(nH), thk = take(nH), A1k = take(nH), Z2k = take(nF), Hk = take(nH), G1 = take(nH), G2 = take(nF);
    xhk = take(nF), gxh = take(nF), rk = take(n), ak = take(n), ck = take(n);
    te = take(nn), S1 = take(nn), P1 = take(nn), Z1q = take(nH), thq = take(nH), A1q = take(nH), S2 = take(nn),
    P2 = take(nn);
    Z2q = take(nF), xhq = take(nF), rq = take(n);
    W1t = take(F * H), W2t = take(F * H), D = take(nH);
    if (!backward) return;
    dG1 = take(nH), dG2 = take(nF), dZ1k = take(nH), dZ2k = take(nF), dA1k = take(nH), dZ2q = take(nF);
    dZ1q = take(nH), dA1q = take(nH), dte = take(nn), dP = take(nn), de = take(n), dD = take(nH);
    dWt = take(F * H);
  }
  static int64_t size(int64_t n, int64_t F, int64_t H, bool backward) {
    const int64_t nH = n * H, nF = n * F, nn = n * n;
    const int64_t fwd = 8 * nH + 6 * nF + 4 * n + 5 * nn + 2 * F * H + nH;
    return fwd + (backward ? 6 * nH + 3 * nF + 2 * nn + n + F * H : 0);
  }
};

// rows (m x c) of C = the row vector b.
template <class T>
LMGRID_INLINE void fill_rows(int64_t m, int64_t c, const T* b, T* C) {
  for (int64_t i = 0; i < m; ++i) std::copy(b, b + c, C + i * c);
}

// v (c) += the column sums of X (m x c).
template <class T>
LMGRID_INLINE void add_colsum(int64_t m, int64_t c, const T* X, T* v, T alpha = T(1)) {
  for (int64_t i = 0; i < m; ++i) cpu::axpy(c, alpha, X + i * c, v);
}

// S[i][j] = x_i . y_j for j <= i (0 above), rows of length k.
template <class T>
LMGRID_INLINE void lower_dots(int64_t n, int64_t k, const T* x, const T* y, T* S, T alpha = T(1)) {
  for (int64_t i = 0; i < n; ++i)
    for (int64_t j = 0; j < n; ++j) S[i * n + j] = j <= i ? alpha * cpu::dot(k, x + i * k, y + j * k) : T(0);
}

// xc = z - mean(z); returns 1 / sqrt(mean(xc^2) + eps) (sums with partial sums: a serial sum
// over a row of 32 waited on its adder's latency at every element).
template <class T>
LMGRID_INLINE T center_rstd(int64_t F, const T* __restrict z, T* __restrict xc, T eps) {
  const T mu = cpu::sum(F, z) / T(F);
  for (int64_t f = 0; f < F; ++f) xc[f] = z[f] - mu;
  return T(1) / std::sqrt(cpu::dot(F, xc, xc) / T(F) + eps);
}

// The keys' and queries' part of a block's forward (everything but the weight update), from the
// weights th and the block's rows; writes out when `out` is given.
template <class T>
LMGRID_INLINE void block_forward(const Args<T>& a, Block<T>& b, const T* th, const T* xq, const T* xk, const T* xv,
                                 const T* lr, const T* lnw, const T* lnb, T* out) {
  const int64_t n = a.n, F = a.F, H = a.H;
  const T *W1 = th + a.oW1, *b1 = th + a.ob1, *W2 = th + a.oW2, *b2 = th + a.ob2;
  // keys
  fill_rows(n, H, b1, b.Z1k);
  cpu::gemm_acc(n, H, F, xk, F, 1, W1, H, b.Z1k, H);
  T* ZLk = b.Z1k;
  if (a.mlp) {
    for (int64_t i = 0; i < n * H; ++i) {
      b.thk[i] = Gelu<T>::th(b.Z1k[i]);
      b.A1k[i] = Gelu<T>::f(b.Z1k[i], b.thk[i]);
    }
    fill_rows(n, F, b2, b.Z2k);
    cpu::gemm_acc(n, F, H, b.A1k, H, 1, W2, F, b.Z2k, F);
    ZLk = b.Z2k;
  }
  T* GL = a.mlp ? b.G2 : b.G1;
  const T invF = T(1) / T(F);
  for (int64_t i = 0; i < n; ++i) {
    const T* __restrict z = ZLk + i * F;
    T* __restrict xh = b.xhk + i * F;
    T* __restrict g = b.gxh + i * F;
    T* __restrict G = GL + i * F;
    const T r = center_rstd(F, z, xh, a.eps);
    for (int64_t f = 0; f < F; ++f) {
      xh[f] *= r;
      g[f] = (lnw[f] * xh[f] + lnb[f] - (xv[i * F + f] - xk[i * F + f])) * lnw[f];
    }
    const T sa = cpu::sum(F, g) * invF, sc = cpu::dot(F, g, xh) * invF;
    for (int64_t f = 0; f < F; ++f) G[f] = r * (g[f] - sa - xh[f] * sc);
    b.rk[i] = r, b.ak[i] = sa, b.ck[i] = sc;
  }
  if (a.mlp) {  // G1 = (G2 W2^T) o gelu'(Z1k)
    cpu::transpose(H, F, W2, b.W2t, H);
    std::fill(b.Hk, b.Hk + n * H, T(0));
    cpu::gemm_acc(n, H, F, b.G2, F, 1, b.W2t, H, b.Hk, H);
    for (int64_t i = 0; i < n * H; ++i) b.G1[i] = b.Hk[i] * Gelu<T>::d1(b.Z1k[i], b.thk[i]);
  }
  // queries
  for (int64_t i = 0; i < n; ++i)
    for (int64_t j = 0; j < n; ++j) b.te[i * n + j] = j <= i ? a.ti[i] * lr[j] : T(0);
  lower_dots(n, F, xq, xk, b.S1);
  for (int64_t i = 0; i < n * n; ++i) b.P1[i] = b.te[i] * (b.S1[i] + T(1));
  fill_rows(n, H, b1, b.Z1q);
  cpu::gemm_acc(n, H, F, xq, F, 1, W1, H, b.Z1q, H);
  cpu::gemm_acc(n, H, n, b.P1, n, 1, b.G1, H, b.Z1q, H, Part::a_lower, T(-1));
  T* ZLq = b.Z1q;
  if (a.mlp) {
    for (int64_t i = 0; i < n * H; ++i) {
      b.thq[i] = Gelu<T>::th(b.Z1q[i]);
      b.A1q[i] = Gelu<T>::f(b.Z1q[i], b.thq[i]);
    }
    lower_dots(n, H, b.A1q, b.A1k, b.S2);
    for (int64_t i = 0; i < n * n; ++i) b.P2[i] = b.te[i] * (b.S2[i] + T(1));
    fill_rows(n, F, b2, b.Z2q);
    cpu::gemm_acc(n, F, H, b.A1q, H, 1, W2, F, b.Z2q, F);
    cpu::gemm_acc(n, F, n, b.P2, n, 1, b.G2, F, b.Z2q, F, Part::a_lower, T(-1));
    ZLq = b.Z2q;
  }
  for (int64_t i = 0; i < n; ++i) {
    const T* __restrict z = ZLq + i * F;
    T* __restrict xh = b.xhq + i * F;
    const T r = center_rstd(F, z, xh, a.eps);
    b.rq[i] = r;
    for (int64_t f = 0; f < F; ++f) xh[f] *= r;
    if (out)
      for (int64_t f = 0; f < F; ++f) out[i * F + f] = xq[i * F + f] + lnw[f] * xh[f] + lnb[f];
  }
}

// One layer's update at a block's end, in place: W -= Xin^T (e o G), bias -= e^T G, e[j] = tl lr[j].
template <class T>
LMGRID_INLINE void layer_update(int64_t n, T tl, const T* lr, const T* Xin, int64_t din, int64_t dout, const T* G, T* D,
                                T* W, T* bias) {
  for (int64_t j = 0; j < n; ++j)
    for (int64_t c = 0; c < dout; ++c) D[j * dout + c] = tl * lr[j] * G[j * dout + c];
  cpu::gemm_acc(din, dout, n, Xin, 1, din, D, dout, W, dout, Part::full, T(-1));
  add_colsum(n, dout, D, bias, T(-1));
}

// The weight update at a block's end: layer 1 from the keys, layer 2 from their activations.
template <class T>
LMGRID_INLINE void block_update(const Args<T>& a, Block<T>& b, T* th, const T* xk, const T* lr) {
  const T tl = a.ti[a.n - 1];
  layer_update(a.n, tl, lr, xk, a.F, a.H, b.G1, b.D, th + a.oW1, th + a.ob1);
  if (a.mlp) layer_update(a.n, tl, lr, b.A1k, a.H, a.F, b.G2, b.D, th + a.oW2, th + a.ob2);
}

template <class T>
LMGRID_INLINE void forward_seq(const Args<T>& a, int64_t s) {
  Block<T> b(a.n, a.F, a.H, false);
  cpu::Scratch<T> th(a.P);
  const T* theta0 = a.theta0 + (s % a.Gt) * a.P;
  std::copy(theta0, theta0 + a.P, th.data());
  const T *lnw = a.lnw + (s % a.Gn) * a.F, *lnb = a.lnb + (s % a.Gn) * a.F;
  for (int64_t k = 0; k < a.nb; ++k) {
    if (a.thetas) cpu::stream_copy(a.P, th.data(), a.thetas + (s * a.nb + k) * a.P);
    const int64_t row = s * a.L + k * a.n;
    block_forward(a, b, th.data(), a.xq + row * a.F, a.xk + row * a.F, a.xv + row * a.F, a.lr + row, lnw, lnb,
                  a.out + row * a.F);
    block_update(a, b, th.data(), a.xk + row * a.F, a.lr + row);
  }
  std::copy(th.begin(), th.end(), a.theta_fin + s * a.P);
  cpu::stream_fence();
}

// The backward of one layer's update W' = W - Xin^T D, bias' = bias - 1^T D, D = e o G, for the
// gradients dW', dbias' at the block's end:
//   dD = -(Xin dW' + 1 dbias'^T),  dXin -= D dW'^T,  dG += e o dD,  de_j += G_j . dD_j.
template <class T>
LMGRID_INLINE void update_back(Block<T>& b, int64_t n, T tl, const T* lr, const T* Xin, T* dXin, int64_t din,
                               int64_t dout, const T* G, T* dG, const T* dW, const T* db) {
  for (int64_t j = 0; j < n; ++j)
    for (int64_t c = 0; c < dout; ++c) b.dD[j * dout + c] = -db[c];
  cpu::gemm_acc(n, dout, din, Xin, din, 1, dW, dout, b.dD, dout, Part::full, T(-1));
  for (int64_t j = 0; j < n; ++j)
    for (int64_t c = 0; c < dout; ++c) b.D[j * dout + c] = tl * lr[j] * G[j * dout + c];
  cpu::transpose(din, dout, dW, b.dWt, din);  // (dout x din)
  cpu::gemm_acc(n, din, dout, b.D, dout, 1, b.dWt, din, dXin, din, Part::full, T(-1));
  for (int64_t j = 0; j < n; ++j) {
    b.de[j] += cpu::dot(dout, G + j * dout, b.dD + j * dout);
    cpu::axpy(dout, tl * lr[j], b.dD + j * dout, dG + j * dout);
  }
}

// The backward of one layer of the dual form's read, Z = Ain W + bias - P G with
// P = te o (S + 1), S = Ain Ak^T:
//   dAin += dZ W^T + dS Ak,  dAk += dS^T Ain,  dW += Ain^T dZ,  dbias += colsum dZ,
//   dP = -dZ G^T,  dG -= P^T dZ,  dS = dP o te,  dte += dP o (S + 1).
// Wt: W^T when have_wt, else room for it, left holding it.
template <class T>
LMGRID_INLINE void read_back(Block<T>& b, int64_t n, const T* Ain, T* dAin, const T* Ak, T* dAk, int64_t din,
                             int64_t dout, const T* W, T* Wt, bool have_wt, const T* G, T* dG, const T* S, const T* P,
                             const T* dZ, T* dW, T* db) {
  if (!have_wt) cpu::transpose(din, dout, W, Wt, din);
  cpu::gemm_acc(n, din, dout, dZ, dout, 1, Wt, din, dAin, din);
  cpu::gemm_acc(din, dout, n, Ain, 1, din, dZ, dout, dW, dout);
  add_colsum(n, dout, dZ, db);
  lower_dots(n, dout, dZ, G, b.dP, T(-1));
  cpu::gemm_acc(n, dout, n, P, 1, n, dZ, dout, dG, dout, Part::a_upper, T(-1));
  for (int64_t i = 0; i < n * n; ++i) {
    b.dte[i] += b.dP[i] * (S[i] + T(1));
    b.dP[i] *= b.te[i];  // now dS
  }
  cpu::gemm_acc(n, din, n, b.dP, n, 1, Ak, din, dAin, din, Part::a_lower);
  cpu::gemm_acc(n, din, n, b.dP, 1, n, Ain, din, dAk, din, Part::a_upper);
}

template <class T>
LMGRID_INLINE void backward_block(const Args<T>& a, Block<T>& b, int64_t s, int64_t k, T* dth, bool end_unused) {
  const int64_t n = a.n, F = a.F, H = a.H, nn = n * n, row = s * a.L + k * n;
  const T* th = a.thetas + (s * a.nb + k) * a.P;
  const T *xq = a.xq + row * F, *xk = a.xk + row * F, *xv = a.xv + row * F, *lr = a.lr + row;
  const T *lnw = a.lnw + (s % a.Gn) * F, *lnb = a.lnb + (s % a.Gn) * F;
  const T* dout = a.dout + row * F;
  T *dxq = a.dxq + row * F, *dxk = a.dxk + row * F, *dxv = a.dxv + row * F, *dlr = a.dlr + row;
  T *dlnw = a.dlnw + s * F, *dlnb = a.dlnb + s * F, *dti = a.dti + s * n;
  block_forward(a, b, th, xq, xk, xv, lr, lnw, lnb, static_cast<T*>(nullptr));
  const T *W1 = th + a.oW1, *W2 = th + a.oW2;
  T *dW1 = dth + a.oW1, *db1 = dth + a.ob1, *dW2 = dth + a.oW2, *db2 = dth + a.ob2;
  const bool mlp = a.mlp;
  T* dGL = mlp ? b.dG2 : b.dG1;
  T* dZLk = mlp ? b.dZ2k : b.dZ1k;
  T* dZLq = mlp ? b.dZ2q : b.dZ1q;
  T* xhk = b.xhk;
  std::fill(b.dG1, b.dG1 + n * H, T(0));
  std::fill(b.dG2, b.dG2 + n * F, T(0));
  std::fill(b.dZ1k, b.dZ1k + n * H, T(0));
  std::fill(b.dA1k, b.dA1k + n * H, T(0));
  std::fill(b.dte, b.dte + nn, T(0));
  std::fill(b.de, b.de + n, T(0));
  std::fill(dxq, dxq + n * F, T(0));
  std::fill(dxk, dxk + n * F, T(0));

  // (U) the update, with dW' = dth as it stands (the gradient at the block's end).
  const T tl = a.ti[n - 1];
  if (!end_unused) {  // else dW' is zero: the last block, whose final weights nothing read
    update_back(b, n, tl, lr, xk, dxk, F, H, b.G1, b.dG1, dW1, db1);
    if (mlp) update_back(b, n, tl, lr, b.A1k, b.dA1k, H, F, b.G2, b.dG2, dW2, db2);
  }

  // (Q) queries: the output's LN, then layer 2 and layer 1 of the dual form.
  const T invF = T(1) / T(F);
  for (int64_t i = 0; i < n; ++i) {
    const T* __restrict go = dout + i * F;
    const T* __restrict xh = b.xhq + i * F;
    T* __restrict dz = dZLq + i * F;
    for (int64_t f = 0; f < F; ++f) {
      dz[f] = go[f] * lnw[f];  // dxh, for now
      dlnw[f] += go[f] * xh[f];
      dlnb[f] += go[f];
      dxq[i * F + f] += go[f];
    }
    const T m1 = cpu::sum(F, dz) * invF, m2 = cpu::dot(F, dz, xh) * invF;
    for (int64_t f = 0; f < F; ++f) dz[f] = b.rq[i] * (dz[f] - m1 - xh[f] * m2);
  }
  if (mlp) {
    std::fill(b.dA1q, b.dA1q + n * H, T(0));
    read_back(b, n, b.A1q, b.dA1q, b.A1k, b.dA1k, H, F, W2, b.W2t, true, b.G2, b.dG2, b.S2, b.P2, b.dZ2q, dW2, db2);
    for (int64_t i = 0; i < n * H; ++i) b.dZ1q[i] = b.dA1q[i] * Gelu<T>::d1(b.Z1q[i], b.thq[i]);
  }
  read_back(b, n, xq, dxq, xk, dxk, F, H, W1, b.W1t, false, b.G1, b.dG1, b.S1, b.P1, b.dZ1q, dW1, db1);

  // (G) G1 = Hk o gelu'(Z1k), Hk = G2 W2^T: dHk = dG1 o gelu'(Z1k) (kept in dG1),
  // dZ1k += dG1 o Hk o gelu''(Z1k),  dG2 += dHk W2,  dW2 += dHk^T G2.
  if (mlp) {
    for (int64_t i = 0; i < n * H; ++i) {
      const T z = b.Z1k[i];
      b.dZ1k[i] += b.dG1[i] * b.Hk[i] * Gelu<T>::d2(z, b.thk[i]);
      b.dG1[i] *= Gelu<T>::d1(z, b.thk[i]);
    }
    cpu::gemm_acc(n, F, H, b.dG1, H, 1, W2, F, b.dG2, F);
    cpu::gemm_acc(H, F, n, b.dG1, 1, H, b.G2, F, dW2, F);
  }

  // (L) GL = lnl2(ZLk, Xv - Xk), row by row (equations at the top).
  for (int64_t i = 0; i < n; ++i) {
    const T* __restrict dG = dGL + i * F;
    const T* __restrict xh = xhk + i * F;
    const T* __restrict g = b.gxh + i * F;
    const T r = b.rk[i], ca = b.ak[i], cc = b.ck[i];
    T* __restrict dz = dZLk + i * F;
    const T sdG = cpu::sum(F, dG), sdGx = cpu::dot(F, dG, xh);
    const T mu = r * sdG * invF, mux = r * sdGx * invF;
    const T dr = cpu::dot(F, dG, g) - ca * sdG - cc * sdGx;
    for (int64_t f = 0; f < F; ++f) {
      const T u = r * dG[f];
      const T dg = u - mu - xh[f] * mux;
      const T y = lnw[f] * xh[f] + lnb[f] - (xv[i * F + f] - xk[i * F + f]);
      const T dy = dg * lnw[f];
      const T dxh = -cc * u - mux * g[f] + dy * lnw[f];
      dlnw[f] += dg * y + dy * xh[f];
      dlnb[f] += dy;
      dxv[i * F + f] = -dy;
      dxk[i * F + f] += dy;
      dz[f] = dxh;  // for now
    }
    const T m1 = cpu::sum(F, dz) * invF, m2 = cpu::dot(F, dz, xh) * invF;
    for (int64_t f = 0; f < F; ++f) dz[f] = r * (dz[f] - m1 - xh[f] * m2) - dr * r * r * xh[f] * invF;
  }

  // (K) the keys' forward: [dA1k += dZ2k W2^T, dW2 += A1k^T dZ2k, db2 += colsum, dZ1k += dA1k o gelu'],
  // dXk += dZ1k W1^T, dW1 += Xk^T dZ1k, db1 += colsum dZ1k.
  if (mlp) {
    cpu::gemm_acc(n, H, F, b.dZ2k, F, 1, b.W2t, H, b.dA1k, H);  // W2t still holds W2^T (F x H)
    cpu::gemm_acc(H, F, n, b.A1k, 1, H, b.dZ2k, F, dW2, F);
    add_colsum(n, F, b.dZ2k, db2);
    for (int64_t i = 0; i < n * H; ++i) b.dZ1k[i] += b.dA1k[i] * Gelu<T>::d1(b.Z1k[i], b.thk[i]);
  }
  cpu::gemm_acc(n, F, H, b.dZ1k, H, 1, b.W1t, F, dxk, F);  // W1t holds W1^T (H x F)
  cpu::gemm_acc(F, H, n, xk, 1, F, b.dZ1k, H, dW1, H);
  add_colsum(n, H, b.dZ1k, db1);

  // (E) eta[i][j] = ti[i] lr[j] (j <= i), e[j] = ti[n-1] lr[j].
  T de_sum = 0;
  for (int64_t j = 0; j < n; ++j) {
    T g = b.de[j] * tl;
    for (int64_t i = j; i < n; ++i) g += b.dte[i * n + j] * a.ti[i];
    dlr[j] = g;
    de_sum += b.de[j] * lr[j];
  }
  for (int64_t i = 0; i < n; ++i) {
    T g = 0;
    for (int64_t j = 0; j <= i; ++j) g += b.dte[i * n + j] * lr[j];
    dti[i] += g;
  }
  dti[n - 1] += de_sum;
}

template <class T>
LMGRID_INLINE void backward_seq(const Args<T>& a, int64_t s) {
  Block<T> b(a.n, a.F, a.H, true);
  T* dth = a.dtheta0 + s * a.P;
  if (a.dfin)
    std::copy(a.dfin + s * a.P, a.dfin + (s + 1) * a.P, dth);
  else
    std::fill(dth, dth + a.P, T(0));
  std::fill(a.dlnw + s * a.F, a.dlnw + (s + 1) * a.F, T(0));
  std::fill(a.dlnb + s * a.F, a.dlnb + (s + 1) * a.F, T(0));
  std::fill(a.dti + s * a.n, a.dti + (s + 1) * a.n, T(0));
  for (int64_t k = a.nb - 1; k >= 0; --k) backward_block(a, b, s, k, dth, k == a.nb - 1 && !a.dfin);
}

#define LMGRID_TTT_KERNELS(T)                                                                     \
  LMGRID_MULTIVERSION void ttt_forward_##T(const Args<T>& a, int64_t s) { forward_seq<T>(a, s); } \
  LMGRID_MULTIVERSION void ttt_backward_##T(const Args<T>& a, int64_t s) { backward_seq<T>(a, s); }
LMGRID_TTT_KERNELS(float)
LMGRID_TTT_KERNELS(double)
#undef LMGRID_TTT_KERNELS
void run_forward(const Args<float>& a, int64_t s) { ttt_forward_float(a, s); }
void run_forward(const Args<double>& a, int64_t s) { ttt_forward_double(a, s); }
void run_backward(const Args<float>& a, int64_t s) { ttt_backward_float(a, s); }
void run_backward(const Args<double>& a, int64_t s) { ttt_backward_double(a, s); }

struct Shape {
  int64_t N, L, F, H, n;
  bool mlp;
  int64_t Gt, Gn;  // rows of the initial weights and of the norm (N, or a divisor of N)
  int64_t oW1() const { return 0; }
  int64_t ob1() const { return F * H; }
  int64_t oW2() const { return F * H + H; }
  int64_t ob2() const { return mlp ? 2 * F * H + H : F * H + H; }
  int64_t P() const { return mlp ? 2 * F * H + H + F : F * H + H; }
  // Multiply-adds of one forward pass, for parallel_tasks' threshold.
  double work() const { return double(N) * L * ((mlp ? 6.0 : 3.0) * F * H + 2.0 * n * (F + (mlp ? H : 0))); }
};

template <class T>
Args<T> args_of(const Shape& d, double eps) {
  Args<T> a{};
  a.N = d.N, a.L = d.L, a.F = d.F, a.H = d.H, a.n = d.n, a.nb = d.L / d.n, a.mlp = d.mlp, a.Gt = d.Gt, a.Gn = d.Gn;
  a.eps = static_cast<T>(eps);
  a.oW1 = d.oW1(), a.ob1 = d.ob1(), a.oW2 = d.oW2(), a.ob2 = d.ob2(), a.P = d.P();
  return a;
}

// Inputs contiguous: xq, xk, xv (N, L, F), lr (N, L), ti (n), lnw, lnb (Gn, F), theta0 (Gt, P) the
// packed weights [W1 | b1 | W2 | b2], Gn and Gt N or divisors of N (sequence s reads row s % G: a
// head's weights shared by the batch). Returns out (N, L, F) and the final packed weights (N, P).
// The backward sums the per-sequence gradients of shared rows in sequence order (fixed, so the
// bits do not depend on the thread count).
// keep: a backward may follow (grad mode on and an input that requires grad), so the weights at
// each mini-batch's start are kept for it; evaluation and decoding skip that copy.
struct TttDualCpuFunction : torch::autograd::Function<TttDualCpuFunction> {
  static torch::autograd::variable_list forward(torch::autograd::AutogradContext* ctx, const Tensor& xq,
                                                const Tensor& xk, const Tensor& xv, const Tensor& lr, const Tensor& ti,
                                                const Tensor& lnw, const Tensor& lnb, const Tensor& theta0, int64_t H,
                                                bool mlp, double eps, bool keep) {
    const Shape d{xq.size(0), xq.size(1), xq.size(2), H, ti.size(0), mlp, theta0.size(0), lnw.size(0)};
    auto out = torch::empty_like(xq), fin = torch::empty({d.N, d.P()}, theta0.options());
    auto thetas = keep ? torch::empty({d.N, d.L / d.n, d.P()}, xq.options()) : torch::empty({0}, xq.options());
    AT_DISPATCH_FLOATING_TYPES(xq.scalar_type(), "ttt_dual_cpu", [&] {
      auto a = args_of<scalar_t>(d, eps);
      a.xq = xq.data_ptr<scalar_t>(), a.xk = xk.data_ptr<scalar_t>(), a.xv = xv.data_ptr<scalar_t>();
      a.lr = lr.data_ptr<scalar_t>(), a.ti = ti.data_ptr<scalar_t>(), a.lnw = lnw.data_ptr<scalar_t>();
      a.lnb = lnb.data_ptr<scalar_t>(), a.theta0 = theta0.data_ptr<scalar_t>();
      a.out = out.data_ptr<scalar_t>(), a.thetas = keep ? thetas.data_ptr<scalar_t>() : nullptr,
      a.theta_fin = fin.data_ptr<scalar_t>();
      cpu::parallel_tasks(d.N, d.work(), [&](int64_t s) { run_forward(a, s); });
    });
    ctx->save_for_backward({xq, xk, xv, lr, ti, lnw, lnb, thetas});
    ctx->set_materialize_grads(false);  // training never reads the final weights
    ctx->saved_data["H"] = H;
    ctx->saved_data["mlp"] = mlp;
    ctx->saved_data["eps"] = eps;
    ctx->saved_data["Gt"] = d.Gt;
    return {out, fin};
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    cpu::require_first_order("ttt_dual_cpu");
    auto s = ctx->get_saved_variables();
    const Tensor &xq = s[0], &xk = s[1], &xv = s[2], &lr = s[3], &ti = s[4], &lnw = s[5], &lnb = s[6], &thetas = s[7];
    TORCH_CHECK(thetas.numel() > 0, "ttt_dual_cpu: a backward of a forward that kept nothing for it");
    const Shape d{xq.size(0),
                  xq.size(1),
                  xq.size(2),
                  ctx->saved_data["H"].toInt(),
                  ti.size(0),
                  ctx->saved_data["mlp"].toBool(),
                  ctx->saved_data["Gt"].toInt(),
                  lnw.size(0)};
    Tensor dout = grads[0].defined() ? grads[0].to(xq.scalar_type()).contiguous() : torch::zeros_like(xq);
    Tensor dfin = grads[1].defined() ? grads[1].to(xq.scalar_type()).contiguous() : Tensor();
    auto dxq = torch::empty_like(xq), dxk = torch::empty_like(xq), dxv = torch::empty_like(xq);
    auto dlr = torch::empty_like(lr), dti = torch::empty({d.N, d.n}, xq.options());
    auto dlnw = torch::empty({d.N, d.F}, xq.options()), dlnb = torch::empty({d.N, d.F}, xq.options());
    auto dtheta = torch::empty({d.N, d.P()}, xq.options());
    AT_DISPATCH_FLOATING_TYPES(xq.scalar_type(), "ttt_dual_cpu_backward", [&] {
      auto a = args_of<scalar_t>(d, ctx->saved_data["eps"].toDouble());
      a.xq = xq.data_ptr<scalar_t>(), a.xk = xk.data_ptr<scalar_t>(), a.xv = xv.data_ptr<scalar_t>();
      a.lr = lr.data_ptr<scalar_t>(), a.ti = ti.data_ptr<scalar_t>(), a.lnw = lnw.data_ptr<scalar_t>();
      a.lnb = lnb.data_ptr<scalar_t>(), a.thetas = thetas.data_ptr<scalar_t>();
      a.dout = dout.data_ptr<scalar_t>(), a.dfin = dfin.defined() ? dfin.data_ptr<scalar_t>() : nullptr;
      a.dxq = dxq.data_ptr<scalar_t>(), a.dxk = dxk.data_ptr<scalar_t>(), a.dxv = dxv.data_ptr<scalar_t>();
      a.dlr = dlr.data_ptr<scalar_t>(), a.dti = dti.data_ptr<scalar_t>(), a.dlnw = dlnw.data_ptr<scalar_t>();
      a.dlnb = dlnb.data_ptr<scalar_t>(), a.dtheta0 = dtheta.data_ptr<scalar_t>();
      cpu::parallel_tasks(d.N, 3 * d.work(), [&](int64_t i) { run_backward(a, i); });
    });
    // Shared rows: sequence s = b G + g added into row g, over b in order.
    auto shared = [&](const Tensor& t, int64_t G) { return G == d.N ? t : t.view({d.N / G, G, t.size(1)}).sum(0); };
    return {
        dxq,      dxk,      dxv,      dlr,     dti.sum(0), shared(dlnw, d.Gn), shared(dlnb, d.Gn), shared(dtheta, d.Gt),
        Tensor(), Tensor(), Tensor(), Tensor()};
  }
};

}  // namespace

std::string ttt_dual_cpu_unsupported(const Tensor& xq, const Tensor& xk, const Tensor& xv, const Tensor& lr,
                                     const Tensor& token_idx, const TTTNorm& norm, const TTTInnerState& st,
                                     int64_t chunk) {
  std::vector<const Tensor*> ts{&xq, &xk, &xv, &lr, &token_idx, &norm.weight, &norm.bias, &st.W1, &st.b1};
  if (st.mlp()) ts.push_back(&st.W2), ts.push_back(&st.b2);
  for (const Tensor* t : ts)
    if (!t->defined()) return "an undefined tensor";
  const auto type = xq.scalar_type();
  if (type != torch::kFloat32 && type != torch::kFloat64) return "dtype is not float32 or float64";
  for (const Tensor* t : ts)
    if (!t->device().is_cpu() || t->scalar_type() != type) return "not CPU tensors of one dtype";
  if (xq.dim() != 3 || !xk.sizes().equals(xq.sizes()) || !xv.sizes().equals(xq.sizes())) return "xq, xk, xv shapes";
  const int64_t N = xq.size(0), L = xq.size(1), F = xq.size(2);
  if (chunk < 1 || L == 0 || L % chunk != 0) return "the tokens are not whole mini-batches";
  if (N == 0 || F == 0) return "empty tensors";
  if (token_idx.dim() != 1 || token_idx.size(0) < chunk) return "token_idx has fewer than chunk entries";
  if (!lr.sizes().equals({N, L})) return "lr is not (N, T)";
  auto divides = [&](int64_t G) { return G > 0 && N % G == 0; };
  if (norm.weight.dim() == 0) return "the norm is not (N, 1, D) or (G, 1, D) with G dividing N";
  const int64_t Gn = norm.weight.size(0);
  if (!divides(Gn) || norm.weight.numel() != Gn * F || norm.bias.numel() != Gn * F)
    return "the norm is not (N, 1, D) or (G, 1, D) with G dividing N";
  if (st.W1.dim() != 3) return "W1 is not (N, D, H) or (G, D, H)";
  const int64_t Gt = st.W1.size(0), H = st.W1.size(-1);
  if (!divides(Gt) || !st.W1.sizes().equals({Gt, F, H}) || st.b1.numel() != Gt * H)
    return "W1, b1 are not (N, D, H), (N, 1, H) or G rows of them with G dividing N";
  if (st.mlp() && (!st.W2.sizes().equals({Gt, H, F}) || st.b2.numel() != Gt * F)) return "W2, b2 shapes";
  if (st.p != 0) return "a mini-batch is under way";
  return "";
}

Tensor ttt_dual_cpu(const Tensor& xq, const Tensor& xk, const Tensor& xv, const Tensor& lr, const Tensor& token_idx,
                    const TTTNorm& norm, TTTInnerState& st, int64_t chunk) {
  const std::string why = ttt_dual_cpu_unsupported(xq, xk, xv, lr, token_idx, norm, st, chunk);
  TORCH_CHECK(why.empty(), "ttt_dual_cpu: ", why);
  const int64_t N = xq.size(0), F = xq.size(2), Gt = st.W1.size(0), Gn = norm.weight.size(0), H = st.W1.size(-1);
  const bool mlp = st.mlp();
  std::vector<Tensor> parts{st.W1.reshape({Gt, F * H}), st.b1.reshape({Gt, H})};
  if (mlp) parts.push_back(st.W2.reshape({Gt, H * F})), parts.push_back(st.b2.reshape({Gt, F}));
  // Autograd's own rule for whether a graph is built: grad mode on and an input that requires grad.
  const bool keep = torch::autograd::compute_requires_grad(xq, xk, xv, lr, token_idx, norm.weight, norm.bias, parts);
  auto r =
      TttDualCpuFunction::apply(xq.contiguous(), xk.contiguous(), xv.contiguous(), lr.contiguous(),
                                token_idx.narrow(0, 0, chunk).contiguous(), norm.weight.reshape({Gn, F}).contiguous(),
                                norm.bias.reshape({Gn, F}).contiguous(), torch::cat(parts, 1), H, mlp, norm.eps, keep);
  const Tensor& fin = r[1];
  st.W1 = fin.narrow(1, 0, F * H).view({N, F, H});
  st.b1 = fin.narrow(1, F * H, H).view({N, 1, H});
  if (mlp) {
    st.W2 = fin.narrow(1, F * H + H, H * F).view({N, H, F});
    st.b2 = fin.narrow(1, 2 * F * H + H, F).view({N, 1, F});
  }
  st.gW1 = st.gb1 = st.gW2 = st.gb2 = Tensor();
  st.p = 0;
  return r[0];
}

}  // namespace lmgrid::kernels
