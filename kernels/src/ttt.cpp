// TTT memory kernels: GEM memory and the TTT layer's inner loop (dual, primal, naive).
// Equations in include/lmgrid/kernels/ttt.hpp and plugins/arch/{gem,ttt}/README.md.
#include "lmgrid/kernels/ttt.hpp"

#include "lmgrid/kernels/bmm.hpp"
#include "lmgrid/kernels/cpu_kernels.hpp"
#include "lmgrid/kernels/fused.hpp"

#include <algorithm>
#include <cmath>
#include <vector>

namespace lmgrid::kernels {

namespace {

using torch::Tensor;

Tensor cat_or(const Tensor& a, const Tensor& b) { return a.defined() ? torch::cat({a, b}, 1) : b; }

// gelu(x) with the tanh approximation and its derivative (TTT-MLP's inner nonlinearity).
Tensor gelu_tanh(const Tensor& x) { return torch::gelu(x, "tanh"); }
Tensor gelu_tanh_grad(const Tensor& x) {
  const double c = std::sqrt(2.0 / M_PI), a = 0.044715;
  auto th = torch::tanh(c * (x + a * x * x * x));
  return 0.5 * (1.0 + th) + 0.5 * x * (1.0 - th * th) * c * (1.0 + 3.0 * a * x * x);
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// GEM memory (its products stay LibTorch's: with kernels::bmm / baddbmm a quickstart GEM step
// measured 6.8-7.0 s per 100 steps against 6.2-6.5 s, interleaved runs on one machine)
// ---------------------------------------------------------------------------------------------
Tensor gem_memory(const Tensor& aq, const Tensor& ak, const Tensor& v, GemMemoryState& st, int64_t chunk,
                  const Tensor& eta, bool self_write, const Tensor& V0, bool keep_state) {
  const int64_t N = aq.size(0), T = aq.size(1), M = aq.size(2);
  const bool fresh = !st.V.defined();
  // Fast path (training): a fresh sequence whose chunks are all full. The in-chunk scores of every
  // chunk come from one batched matmul, and the first chunk reads the shared V0 with one plain mm.
  // Full chunks that start at a chunk boundary go through gem_chunk (fused.hpp) where its CUDA
  // kernel applies (routed on the whole input: dtype, device and shapes are the chunks' too).
  auto V_start = [&]() -> Tensor {
    return st.V.defined() ? st.V : V0.dim() == 2 ? V0.expand({N, M, V0.size(-1)}) : V0;
  };
  const bool fused = T >= chunk && gem_chunk_route(aq, ak, v, V_start(), eta).kernel;
  Tensor s_all;
  if (fresh && T % chunk == 0 && T > chunk && !fused) {
    auto q4 = aq.reshape({N * (T / chunk), chunk, M}), k4 = ak.reshape({N * (T / chunk), chunk, M});
    s_all = torch::bmm(q4, k4.transpose(1, 2)).tril(self_write ? 0 : -1).view({N, T / chunk, chunk, chunk});
  }
  // A fixed eta folds into baddbmm's alpha (fewer elementwise passes and autograd nodes); not on
  // the kernel path, where reading eta on the host would wait for the GPU.
  const bool eta_fixed = !eta.requires_grad() && !fused;
  const double eta_v = eta_fixed ? eta.item<double>() : 0.0;
  auto minus_eta_times = [&](const Tensor& base, const Tensor& a, const Tensor& b) {  // base - eta a b
    return eta_fixed ? torch::baddbmm(base, a, b, 1.0, -eta_v) : base - eta * torch::bmm(a, b);
  };
  std::vector<Tensor> outs;
  for (int64_t t0 = 0; t0 < T;) {
    const int64_t p = st.pending(), n = std::min(chunk - p, T - t0);
    auto aq_c = aq.narrow(1, t0, n), ak_c = ak.narrow(1, t0, n), v_c = v.narrow(1, t0, n);
    const bool last = t0 + n == T;
    if (fused && p == 0 && n == chunk) {
      auto g = gem_chunk(aq_c, ak_c, v_c, V_start(), eta, self_write);
      if (!last || keep_state) st.V = g.V;
      outs.push_back(g.r);
      t0 += n;
      continue;
    }
    Tensor av;
    if (!st.V.defined())
      av = torch::matmul(torch::cat({aq_c, ak_c}, 1), V0);  // (N, 2n, D), shared V0: one GEMM
    else
      av = torch::bmm(torch::cat({aq_c, ak_c}, 1), st.V);  // (N, 2n, D): A_q V and A_k V
    auto r = av.narrow(1, 0, n);
    auto d = av.narrow(1, n, n) - v_c;                      // (N, n, D) residuals = dLoss/d(A_k V)
    auto keys = cat_or(st.ak, ak_c), ds = cat_or(st.d, d);  // (N, p+n, M), (N, p+n, D)
    // New token i sits at chunk position p+i and sees the writes of positions j < p+i (<= with self_write).
    auto s = s_all.defined() ? s_all.select(1, t0 / chunk)
                             : torch::bmm(aq_c, keys.transpose(1, 2)).tril(self_write ? p : p - 1);  // (N, n, p+n)
    r = minus_eta_times(r, s, ds);
    if (p + n == chunk) {
      if (!last || keep_state) {  // V <- V - eta A_k^T D, summed over the chunk
        auto base = st.V.defined() ? st.V : V0.dim() == 2 ? V0.expand({N, M, V0.size(-1)}) : V0;
        st.V = minus_eta_times(base, keys.transpose(1, 2), ds);
      }
      st.ak = Tensor(), st.d = Tensor();
    } else {
      if (!st.V.defined()) st.V = V0.expand({N, M, V0.size(-1)});
      st.ak = keys, st.d = ds;
    }
    outs.push_back(r);
    t0 += n;
  }
  if (!st.V.defined() && keep_state) st.V = V0.expand({N, M, V0.size(-1)});
  return outs.size() == 1 ? outs[0] : torch::cat(outs, 1);
}

GemChunk gem_chunk_composite(const Tensor& aq, const Tensor& ak, const Tensor& v, const Tensor& V, const Tensor& eta,
                             bool self_write) {
  auto d = torch::bmm(ak, V) - v;                                          // (S, n, D)
  auto Sc = torch::bmm(aq, ak.transpose(1, 2)).tril(self_write ? 0 : -1);  // (S, n, n)
  auto e = eta.reshape({});
  return {torch::bmm(aq, V) - e * torch::bmm(Sc, d), V - e * torch::bmm(ak.transpose(1, 2), d)};
}

Tensor gem_memory_naive(const Tensor& aq, const Tensor& ak, const Tensor& v, const Tensor& V0, int64_t chunk,
                        const Tensor& eta, bool self_write) {
  torch::AutoGradMode enable(true);
  const int64_t T = aq.size(1);
  Tensor V = V0.requires_grad() ? V0 : V0.detach().requires_grad_(true);
  Tensor G = torch::zeros_like(V);  // sum of the chunk's gradients so far
  std::vector<Tensor> outs;
  for (int64_t t = 0; t < T; ++t) {
    auto a_k = ak.narrow(1, t, 1), a_q = aq.narrow(1, t, 1);
    auto loss = 0.5 * (torch::bmm(a_k, V) - v.narrow(1, t, 1)).pow(2).sum();
    auto g = torch::autograd::grad({loss}, {V}, {}, true, true)[0];  // dLoss_t/dV at the chunk's V
    if (self_write) G = G + g;
    outs.push_back(torch::bmm(a_q, V - eta * G));
    if (!self_write) G = G + g;
    if ((t + 1) % chunk == 0) {
      V = V - eta * G;
      G = torch::zeros_like(V);
    }
  }
  return torch::cat(outs, 1);
}

// ---------------------------------------------------------------------------------------------
// TTT layer
// ---------------------------------------------------------------------------------------------
Tensor ln_apply(const Tensor& Z, const TTTNorm& norm) {
  auto mu = Z.mean(-1, true);
  auto var = (Z - mu).pow(2).mean(-1, true);
  return (Z - mu) * torch::rsqrt(var + norm.eps) * norm.weight + norm.bias;
}

Tensor ln_l2_grad(const Tensor& Z, const Tensor& target, const TTTNorm& norm) {
  auto mu = Z.mean(-1, true);
  auto xc = Z - mu;
  auto rstd = torch::rsqrt(xc.pow(2).mean(-1, true) + norm.eps);
  auto xhat = xc * rstd;
  auto gxh = (norm.weight * xhat + norm.bias - target) * norm.weight;  // dLoss/dxhat
  return (gxh - gxh.mean(-1, true) - xhat * (gxh * xhat).mean(-1, true)) * rstd;
}

namespace {

// t's G rows as N rows, sequence s taking row s % G (the state's and norm's shared per-head
// form, ttt.hpp); t itself when it already has N rows, is a scalar (it broadcasts) or is undefined.
Tensor rows_for(const Tensor& t, int64_t N) {
  if (!t.defined() || t.dim() == 0 || t.size(0) == N) return t;
  const int64_t G = t.size(0);
  TORCH_CHECK(G > 0 && N % G == 0, "ttt_inner: ", G, " rows of weights or norm for ", N,
              " sequences (need N or a divisor of N)");
  auto expanded = t.sizes().vec(), flat = t.sizes().vec();
  expanded.insert(expanded.begin(), N / G);
  flat[0] = N;
  return t.unsqueeze(0).expand(expanded).reshape(flat);
}

void rows_for(TTTInnerState& st, int64_t N) {
  st.W1 = rows_for(st.W1, N), st.b1 = rows_for(st.b1, N), st.W2 = rows_for(st.W2, N), st.b2 = rows_for(st.b2, N);
}

// Inner gradients of a block of tokens at the state's initial weights: returns g1 (and g2, X2
// for mlp): dLoss/dZ1, dLoss/dZ2 and the hidden activations of the keys.
struct InnerGrads {
  Tensor g1, g2, x2;
};

InnerGrads inner_grads(const Tensor& xk, const Tensor& xv, const TTTNorm& norm, const TTTInnerState& st) {
  InnerGrads g;
  auto target = xv - xk;
  if (!st.mlp()) {
    g.g1 = ln_l2_grad(kernels::baddbmm(st.b1, xk, st.W1), target, norm);
  } else {
    auto z1 = kernels::baddbmm(st.b1, xk, st.W1);
    g.x2 = gelu_tanh(z1);
    g.g2 = ln_l2_grad(kernels::baddbmm(st.b2, g.x2, st.W2), target, norm);
    g.g1 = kernels::bmm(g.g2, st.W2.transpose(1, 2)) * gelu_tanh_grad(z1);
  }
  return g;
}

// Dual form over a block of n <= chunk tokens that starts a mini-batch (st.p == 0).
Tensor ttt_dual_block(const Tensor& xq, const Tensor& xk, const Tensor& xv, const Tensor& lr, const Tensor& tidx,
                      const TTTNorm& norm, TTTInnerState& st, int64_t chunk) {
  const int64_t N = xq.size(0), n = xq.size(1);
  auto ti = tidx.narrow(0, 0, n);
  auto eta = ti.view({1, n, 1}) * lr.view({N, 1, n});  // (N, n, n): eta[i, j] = token_idx[i] lr[j]
  auto te = eta.tril();
  auto g = inner_grads(xk, xv, norm, st);
  // Z1_bar = xq W1 + b1 - (tril(eta) * (xq xk^T + 1)) g1: the eta*Attn term and the b1_bar term in one matmul.
  auto z1 = kernels::baddbmm(st.b1, xq, st.W1) - kernels::bmm(te * (kernels::bmm(xq, xk.transpose(1, 2)) + 1.0), g.g1);
  Tensor z = z1;
  Tensor x2q;
  if (st.mlp()) {
    x2q = gelu_tanh(z1);
    z = kernels::baddbmm(st.b2, x2q, st.W2) - kernels::bmm(te * (kernels::bmm(x2q, g.x2.transpose(1, 2)) + 1.0), g.g2);
  }
  auto out = xq + ln_apply(z, norm);
  if (n == chunk) {                                 // mini-batch complete: W <- W - sum_j eta[last, j] grad_j
    auto last = eta.select(1, n - 1).unsqueeze(1);  // (N, 1, n)
    st.W1 = st.W1 - kernels::bmm(xk.transpose(1, 2) * last, g.g1);
    st.b1 = st.b1 - kernels::bmm(last, g.g1);
    if (st.mlp()) {
      st.W2 = st.W2 - kernels::bmm(g.x2.transpose(1, 2) * last, g.g2);
      st.b2 = st.b2 - kernels::bmm(last, g.g2);
    }
    st.p = 0;
  } else {                     // cut short: keep the lr-weighted gradient sums for the primal form
    auto l = lr.unsqueeze(1);  // (N, 1, n)
    st.gW1 = kernels::bmm(xk.transpose(1, 2) * l, g.g1);
    st.gb1 = kernels::bmm(l, g.g1);
    if (st.mlp()) {
      st.gW2 = kernels::bmm(g.x2.transpose(1, 2) * l, g.g2);
      st.gb2 = kernels::bmm(l, g.g2);
    }
    st.p = n;
  }
  return out;
}

// Primal form for one token continuing a mini-batch under way (st.p > 0).
Tensor ttt_primal_token(const Tensor& xq, const Tensor& xk, const Tensor& xv, const Tensor& lr, const Tensor& tidx,
                        const TTTNorm& norm, TTTInnerState& st, int64_t chunk) {
  auto g = inner_grads(xk, xv, norm, st);
  auto l = lr.unsqueeze(1);  // (N, 1, 1)
  st.gW1 = st.gW1 + kernels::bmm(xk.transpose(1, 2) * l, g.g1);
  st.gb1 = st.gb1 + l * g.g1;
  if (st.mlp()) {
    st.gW2 = st.gW2 + kernels::bmm(g.x2.transpose(1, 2) * l, g.g2);
    st.gb2 = st.gb2 + l * g.g2;
  }
  auto ti = tidx.narrow(0, st.p, 1);
  auto W1 = st.W1 - ti * st.gW1, b1 = st.b1 - ti * st.gb1;
  auto z = kernels::baddbmm(b1, xq, W1);
  Tensor W2, b2;
  if (st.mlp()) {
    W2 = st.W2 - ti * st.gW2, b2 = st.b2 - ti * st.gb2;
    z = kernels::baddbmm(b2, gelu_tanh(z), W2);
  }
  auto out = xq + ln_apply(z, norm);
  if (++st.p == chunk) {
    st.W1 = W1, st.b1 = b1, st.W2 = W2, st.b2 = b2;
    st.gW1 = st.gb1 = st.gW2 = st.gb2 = Tensor();
    st.p = 0;
  }
  return out;
}

}  // namespace

Tensor ttt_inner(const Tensor& xq, const Tensor& xk, const Tensor& xv, const Tensor& lr, const Tensor& token_idx,
                 const TTTNorm& norm, TTTInnerState& st, int64_t chunk) {
  const int64_t N = xq.size(0), T = xq.size(1);
  // The composite takes one row per sequence; the fused kernel reads shared rows as they are.
  TTTNorm per_seq{Tensor(), Tensor(), norm.eps};
  auto composite_norm = [&]() -> const TTTNorm& {
    if (!per_seq.weight.defined()) per_seq.weight = rows_for(norm.weight, N), per_seq.bias = rows_for(norm.bias, N);
    return per_seq;
  };
  std::vector<Tensor> outs;
  for (int64_t t0 = 0; t0 < T;) {
    if (st.p > 0) {
      outs.push_back(ttt_primal_token(xq.narrow(1, t0, 1), xk.narrow(1, t0, 1), xv.narrow(1, t0, 1),
                                      lr.narrow(1, t0, 1), token_idx, composite_norm(), st, chunk));
      t0 += 1;
    } else if (const int64_t whole = (T - t0) / chunk * chunk;
               whole > 0 && cpu_kernels_enabled() &&
               ttt_dual_cpu_unsupported(xq.narrow(1, t0, whole), xk.narrow(1, t0, whole), xv.narrow(1, t0, whole),
                                        lr.narrow(1, t0, whole), token_idx, norm, st, chunk)
                   .empty()) {  // the whole mini-batches at once through the fused CPU kernel
      outs.push_back(ttt_dual_cpu(xq.narrow(1, t0, whole), xk.narrow(1, t0, whole), xv.narrow(1, t0, whole),
                                  lr.narrow(1, t0, whole), token_idx, norm, st, chunk));
      t0 += whole;
    } else {
      const int64_t n = std::min(chunk, T - t0);
      rows_for(st, N);
      outs.push_back(ttt_dual_block(xq.narrow(1, t0, n), xk.narrow(1, t0, n), xv.narrow(1, t0, n), lr.narrow(1, t0, n),
                                    token_idx, composite_norm(), st, chunk));
      t0 += n;
    }
  }
  return outs.size() == 1 ? outs[0] : torch::cat(outs, 1);
}

Tensor ttt_inner_naive(const Tensor& xq, const Tensor& xk, const Tensor& xv, const Tensor& lr, const Tensor& token_idx,
                       const TTTNorm& norm_in, const TTTInnerState& init, int64_t chunk) {
  torch::AutoGradMode enable(true);
  const int64_t N = xq.size(0), T = xq.size(1);
  const bool mlp = init.mlp();
  TTTInnerState first = init;
  rows_for(first, N);
  const TTTNorm norm{rows_for(norm_in.weight, N), rows_for(norm_in.bias, N), norm_in.eps};
  std::vector<Tensor> W =
      mlp ? std::vector<Tensor>{first.W1, first.b1, first.W2, first.b2} : std::vector<Tensor>{first.W1, first.b1};
  for (auto& w : W)
    if (!w.requires_grad()) w = w.detach().requires_grad_(true);
  auto g_of = [&](const Tensor& x, const std::vector<Tensor>& w) {  // inner model g(x; w), x (N, 1, D)
    auto z = torch::matmul(x, w[0]) + w[1];
    return mlp ? torch::matmul(torch::gelu(z, "tanh"), w[2]) + w[3] : z;
  };
  std::vector<Tensor> outs;
  for (int64_t s = 0; s < T; s += chunk) {
    const int64_t n = std::min(chunk, T - s);
    std::vector<std::vector<Tensor>> grads;  // grads[j][i]: dLoss_j/dW[i] at the mini-batch's W
    for (int64_t j = 0; j < n; ++j) {
      auto x = xk.narrow(1, s + j, 1);
      auto loss = 0.5 * (ln_apply(g_of(x, W), norm) - (xv.narrow(1, s + j, 1) - x)).pow(2).sum();
      grads.push_back(torch::autograd::grad({loss}, W, {}, true, true));
    }
    std::vector<Tensor> Wt;
    for (int64_t t = 0; t < n; ++t) {
      Wt = W;
      for (int64_t j = 0; j <= t; ++j) {
        auto e = (token_idx.narrow(0, t, 1) * lr.narrow(1, s + j, 1)).view({N, 1, 1});  // eta[t, j]
        for (size_t i = 0; i < W.size(); ++i) Wt[i] = Wt[i] - e * grads[j][i];
      }
      auto x = xq.narrow(1, s + t, 1);
      outs.push_back(x + ln_apply(g_of(x, Wt), norm));
    }
    W = Wt;  // the last token's weights start the next mini-batch
  }
  return torch::cat(outs, 1);
}

}  // namespace lmgrid::kernels
