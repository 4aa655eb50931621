// Reference (pure LibTorch) implementation of the SSD scan; see ssd.hpp for the contract.
//
// Chunked algorithm (Mamba-2 paper, "SSD minimal"): with a_t = dt_t A (log-decay, <= 0) and
// xdt_t = dt_t x_t, split the sequence into chunks of Q tokens and let S_l = sum_{k<=l} a_k be
// the cumulative log-decay inside a chunk. Then
//   intra-chunk:   Y_diag[l] = sum_{s<=l} (C_l · B_s) exp(S_l - S_s) xdt_s
//   chunk states:  st_c      = sum_s exp(S_{Q-1} - S_s) xdt_s ⊗ B_s
//   passing:       h_c       = exp(S^c_{Q-1}) h_{c-1} + st_{c-1}      (h_0 = initial state)
//   state->out:    Y_off[l]  = exp(S_l) C_l · h_c
// Stability: the intra-chunk decays exp(S_l - S_s) are computed either factorised around the
// chunk's mid log-decay m, exp(S_l - m) exp(m - S_s), when every factor is within e^±lim (fast
// path: one shared (Q,Q) product per group), or as the masked segment sum (entries with s > l set
// to -inf BEFORE exp, every exponent <= 0), which is safe for any decay (fallback path). Nothing
// overflows; masked entries have zero gradient; decays below e^-60 (fp32) are zeroed rather than
// left subnormal.
//
// Layouts are chosen so that every product is a batched matmul over contiguous blocks: heads of
// one group are stacked along the matmul's N dimension where B or C is shared (intra-chunk on the
// fast path, chunk states, state->output), which turns H/G small products into one larger one.
#include "lmgrid/kernels/ssd.hpp"

#include "lmgrid/kernels/fused.hpp"

#include <cmath>
#include <limits>
#include <stdexcept>
#include <string>

namespace lmgrid::kernels {

namespace {

void check_shapes(const torch::Tensor& x, const torch::Tensor& dt, const torch::Tensor& A, const torch::Tensor& Bm,
                  const torch::Tensor& Cm, const torch::Tensor& init) {
  TORCH_CHECK(x.dim() == 4, "ssd: x must be (B,L,H,P), got ", x.sizes());
  const int64_t b = x.size(0), L = x.size(1), H = x.size(2), P = x.size(3);
  TORCH_CHECK(dt.dim() == 3 && dt.size(0) == b && dt.size(1) == L && dt.size(2) == H, "ssd: dt must be (B,L,H)=(", b,
              ",", L, ",", H, "), got ", dt.sizes());
  TORCH_CHECK(A.dim() == 1 && A.size(0) == H, "ssd: A must be (H)=(", H, "), got ", A.sizes());
  TORCH_CHECK(Bm.dim() == 4 && Bm.size(0) == b && Bm.size(1) == L, "ssd: B must be (B,L,G,N), got ", Bm.sizes());
  TORCH_CHECK(Cm.sizes() == Bm.sizes(), "ssd: C must have B's shape ", Bm.sizes(), ", got ", Cm.sizes());
  TORCH_CHECK(Bm.size(2) >= 1 && H % Bm.size(2) == 0, "ssd: heads (", H, ") must be a multiple of groups (", Bm.size(2),
              ")");
  if (init.defined())
    TORCH_CHECK(
        init.dim() == 4 && init.size(0) == b && init.size(1) == H && init.size(2) == P && init.size(3) == Bm.size(3),
        "ssd: initial_state must be (B,H,P,N)=(", b, ",", H, ",", P, ",", Bm.size(3), "), got ", init.sizes());
}

// exp(t) for t <= 0, with exp(t) := 0 exactly where t < -cutoff: e^-60 (fp32) or e^-600 (fp64)
// is far below the dtype's resolution relative to the O(1) diagonal terms, but values that small
// become subnormal inside the matmuls and make the CPU's multiply-adds ~100x slower (measured:
// the whole scan went from 2 ms to 300 ms at T 1024 with strong decays). Entries cut this way get
// a zero gradient; their true gradient is below the same cutoff.
torch::Tensor exp_nonpos(const torch::Tensor& t) {
  const double cutoff = t.scalar_type() == torch::kFloat64 ? 600.0 : 60.0;
  return t.masked_fill(t < -cutoff, -std::numeric_limits<double>::infinity()).exp();
}

// exp(segsum) for the last dim of cs (..., T) holding cumulative sums: out[..., i, j] =
// exp(cs_i - cs_j) for j <= i, 0 above the diagonal (masked to -inf before exp). The diagonal is
// the constant exp(0) = 1: computed as cs_i - cs_i its O(1) gradient would flow into cs twice with
// opposite signs and leave rounding noise of O(eps), which swamps the true gradient w.r.t. A when
// the decays are strong (measured: 4e-5 relative error in dL/dA at per-step log-decays ~ -300).
torch::Tensor exp_segsum(const torch::Tensor& cs) {
  const int64_t T = cs.size(-1);
  auto seg = cs.unsqueeze(-1) - cs.unsqueeze(-2);
  auto bopt = torch::TensorOptions().dtype(torch::kBool).device(cs.device());
  auto upper = torch::ones({T, T}, bopt).triu(1);
  auto diag = torch::eye(T, bopt);
  return exp_nonpos(seg.masked_fill(upper, -std::numeric_limits<double>::infinity()).masked_fill(diag, 0.0));
}

}  // namespace

SsdResult ssd_step(const torch::Tensor& x, const torch::Tensor& dt, const torch::Tensor& A, const torch::Tensor& Bm,
                   const torch::Tensor& Cm, const torch::Tensor& state) {
  TORCH_CHECK(x.dim() == 3 && dt.dim() == 2 && Bm.dim() == 3 && Cm.dim() == 3,
              "ssd_step: expects x (B,H,P), dt (B,H), B and C (B,G,N)");
  const int64_t b = x.size(0), H = x.size(1), G = Bm.size(1), N = Bm.size(2);
  TORCH_CHECK(H % G == 0, "ssd_step: heads (", H, ") must be a multiple of groups (", G, ")");
  auto Bh = Bm.unsqueeze(2).expand({b, G, H / G, N}).reshape({b, H, 1, N});
  auto Ch = Cm.unsqueeze(2).expand({b, G, H / G, N}).reshape({b, H, N, 1});
  auto dA = (dt * A).exp().view({b, H, 1, 1});
  auto inject = (x * dt.unsqueeze(-1)).unsqueeze(-1) * Bh;  // (B,H,P,N)
  auto h = state.defined() ? dA * state + inject : inject;
  auto y = torch::matmul(h, Ch).squeeze(-1);  // (B,H,P)
  return {y, h};
}

SsdResult ssd_naive(const torch::Tensor& x, const torch::Tensor& dt, const torch::Tensor& A, const torch::Tensor& Bm,
                    const torch::Tensor& Cm, const torch::Tensor& initial_state) {
  check_shapes(x, dt, A, Bm, Cm, initial_state);
  const int64_t b = x.size(0), L = x.size(1), H = x.size(2), P = x.size(3), N = Bm.size(3);
  torch::Tensor h = initial_state.defined() ? initial_state : torch::zeros({b, H, P, N}, x.options());
  std::vector<torch::Tensor> ys;
  ys.reserve(L);
  for (int64_t t = 0; t < L; ++t) {
    auto r = ssd_step(x.select(1, t), dt.select(1, t), A, Bm.select(1, t), Cm.select(1, t), h);
    ys.push_back(r.y);
    h = r.final_state;
  }
  auto y = L > 0 ? torch::stack(ys, 1) : torch::zeros({b, 0, H, P}, x.options());
  return {y, h};
}

SsdResult ssd_chunked(const torch::Tensor& x, const torch::Tensor& dt, const torch::Tensor& A, const torch::Tensor& Bm,
                      const torch::Tensor& Cm, int64_t chunk_size, const torch::Tensor& initial_state) {
  check_shapes(x, dt, A, Bm, Cm, initial_state);
  TORCH_CHECK(chunk_size >= 1, "ssd_chunked: chunk_size must be >= 1, got ", chunk_size);
  // CPU tensors go to the fused kernel (ssd_cpu.cpp) unless LMGRID_CPU_KERNELS=composite, or a
  // test emulates the CUDA kernels (whose path is the composite's, with the state passing fused).
  if (x.device().is_cpu() && !fused_emulation_active() && cpu_kernels_enabled() && x.size(1) > 0 &&
      ssd_chunked_cpu_unsupported(x, dt, A, Bm, Cm, initial_state).empty())
    return ssd_chunked_cpu(x, dt, A, Bm, Cm, chunk_size, initial_state);
  return ssd_chunked_composite(x, dt, A, Bm, Cm, chunk_size, initial_state);
}

SsdResult ssd_chunked_composite(const torch::Tensor& x_in, const torch::Tensor& dt_in, const torch::Tensor& A,
                                const torch::Tensor& B_in, const torch::Tensor& C_in, int64_t chunk_size,
                                const torch::Tensor& initial_state) {
  check_shapes(x_in, dt_in, A, B_in, C_in, initial_state);
  TORCH_CHECK(chunk_size >= 1, "ssd_chunked: chunk_size must be >= 1, got ", chunk_size);
  const int64_t b = x_in.size(0), L = x_in.size(1), H = x_in.size(2), P = x_in.size(3);
  const int64_t G = B_in.size(2), N = B_in.size(3), Hg = H / G;
  if (L == 0) {
    auto h = initial_state.defined() ? initial_state : torch::zeros({b, H, P, N}, x_in.options());
    return {torch::zeros({b, 0, H, P}, x_in.options()), h};
  }
  // A chunk longer than the sequence would only multiply zeros: shrink it.
  const int64_t Q = std::min(chunk_size, L);
  const int64_t c = (L + Q - 1) / Q, Lp = c * Q, pad = Lp - L;

  // Zero padding of the tail: dt = 0 there, so the padded steps neither decay nor add to the state.
  auto x = pad ? at::constant_pad_nd(x_in, {0, 0, 0, 0, 0, pad}) : x_in;
  auto dt = pad ? at::constant_pad_nd(dt_in, {0, 0, 0, pad}) : dt_in;
  auto Bm = pad ? at::constant_pad_nd(B_in, {0, 0, 0, 0, 0, pad}) : B_in;
  auto Cm = pad ? at::constant_pad_nd(C_in, {0, 0, 0, 0, 0, pad}) : C_in;

  // Cumulative log-decay inside each chunk, (B,c,H,Q).
  auto acum = (dt * A).view({b, c, Q, H}).permute({0, 1, 3, 2}).cumsum(-1);
  auto Bc = Bm.view({b, c, Q, G, N}).permute({0, 1, 3, 2, 4}).contiguous();  // (B,c,G,Q,N)
  auto Cc = Cm.view({b, c, Q, G, N}).permute({0, 1, 3, 2, 4}).contiguous();  // (B,c,G,Q,N)
  auto upper = torch::ones({Q, Q}, torch::TensorOptions().dtype(torch::kBool).device(x.device())).triu(1);

  // 1. Intra-chunk (diagonal blocks): Y_diag[l] = sum_{s<=l} (C_l·B_s) exp(S_l - S_s) xdt_s.
  auto CB = torch::matmul(Cc, Bc.transpose(-1, -2));  // (B,c,G,Q,Q)
  // Factorised form: with m = (S_0 + S_last)/2 per chunk and head, exp(S_l - S_s) =
  // exp(S_l - m) exp(m - S_s), so Y_diag = exp(S - m) ∘ [ mask(C Bᵀ) · (exp(m - S) ∘ xdt) ] and the
  // heads of a group share one (Q,Q)·(Q, Hg·P) product: no per-head Q×Q decay matrix, 2Q exps per
  // chunk and head instead of Q². Rounding is the same as the direct form (each row is scaled
  // uniformly). Safe while both factors stay within e^±lim, i.e. every chunk's total log-decay is
  // >= -2·lim (lim 60 in fp32, 300 in fp64: e^60·|x|·|C·B|·Q stays far below fp32's max as long
  // as |x|·|C·B|·Q < 1e12); otherwise the masked-segsum form, safe for any decay. Mamba-2's init
  // (dt <= 0.1, A >= -16) at chunk 64 stays on the fast path.
  const bool f64 = x.scalar_type() == torch::kFloat64;
  const double lim = f64 ? 300.0 : 60.0;
  auto S_first = acum.narrow(-1, 0, 1), S_last = acum.narrow(-1, Q - 1, 1);
  const bool factorised = (S_first - S_last).max().item<double>() <= 2.0 * lim;
  torch::Tensor y_diag;  // (B,c,G,Q,Hg,P)
  torch::Tensor states;  // (B,c,G,N,Hg*P), see 2.
  if (factorised) {
    auto m = 0.5 * (S_first + S_last);  // (B,c,H,1)
    // dt and exp(m - S) are per (token, head): combine them before touching the (.., P) tensor.
    auto w_in = dt.view({b, c, Q, H}) * (m - acum).exp().permute({0, 1, 3, 2});                   // (B,c,Q,H)
    auto e_out = (acum - m).exp().view({b, c, G, Hg, Q}).permute({0, 1, 2, 4, 3}).unsqueeze(-1);  // (B,c,G,Q,Hg,1)
    auto xs = (x.view({b, c, Q, H, P}) * w_in.unsqueeze(-1))
                  .view({b, c, Q, G, Hg * P})
                  .permute({0, 1, 3, 2, 4});  // (B,c,G,Q,Hg*P)
    y_diag = torch::matmul(CB.masked_fill(upper, 0.0), xs).view({b, c, G, Q, Hg, P}) * e_out;
    // 2. (factorised) chunk states from the same scaled xs: exp(S_last - S_s) = exp(S_last - m) exp(m - S_s).
    auto e_last = (S_last - m).exp().view({b, c, G, 1, Hg, 1});
    states = (torch::matmul(Bc.transpose(-1, -2), xs).view({b, c, G, N, Hg, P}) * e_last).view({b, c, G, N, Hg * P});
  }
  torch::Tensor xdt_o;  // fallback only: xdt in the input's own layout (B,c,Q,H,P)
  if (!factorised) {
    xdt_o = (x * dt.unsqueeze(-1)).view({b, c, Q, H, P});
    auto xdt = xdt_o.permute({0, 1, 3, 2, 4}).contiguous();  // (B,c,H,Q,P)
    auto decay = exp_segsum(acum);                           // (B,c,H,Q,Q)
    auto scores = (decay.view({b, c, G, Hg, Q, Q}) * CB.unsqueeze(3)).view({b, c, H, Q, Q});
    y_diag = torch::matmul(scores, xdt).view({b, c, G, Hg, Q, P}).permute({0, 1, 2, 4, 3, 5});
  }

  // States are kept transposed and group-stacked, (.., G, N, Hg*P): then the chunk states and the
  // state->output products are single matmuls per group that read x and write y in the caller's
  // (B,L,H,P) layout without copies (for G = 1), and the chunk loop is elementwise.
  // 2. Chunk states: stᵀ[n, (h,p)] = sum_s B_s[n] exp(S_last - S_s) xdt_s[h,p].
  if (!factorised) {
    auto decay_states = exp_nonpos(S_last - acum);                       // (B,c,H,Q)
    auto xd = xdt_o * decay_states.permute({0, 1, 3, 2}).unsqueeze(-1);  // (B,c,Q,H,P)
    auto xd_g = xd.view({b, c, Q, G, Hg * P}).permute({0, 1, 3, 2, 4});  // (B,c,G,Q,Hg*P), a view for G = 1
    states = torch::matmul(Bc.transpose(-1, -2), xd_g);
  }

  // 3. State passing between chunks: h_in[0] = initial state, h_in[k+1] = exp(S^k_last) h_in[k] + st_k;
  //    the state after the last chunk is the final state (fused.hpp: the CUDA kernel on a GPU).
  auto h0 = initial_state.defined() ? initial_state.view({b, G, Hg, P, N}).permute({0, 1, 4, 2, 3}) : torch::Tensor();
  auto passed = ssd_state_passing(states.view({b, c, G, N, Hg, P}), acum.select(-1, Q - 1), h0);
  auto final_state = passed.final_state.permute({0, 1, 3, 4, 2}).reshape({b, H, P, N});
  auto h_in = passed.h_in.view({b, c, G, N, Hg * P});

  // 4. State to output: Y_off[l] = exp(S_l) C_l · h_in, as (B,c,G,Q,Hg,P).
  auto y_off = torch::matmul(Cc, h_in).view({b, c, G, Q, Hg, P});
  auto out_decay = exp_nonpos(acum).view({b, c, G, Hg, Q}).permute({0, 1, 2, 4, 3}).unsqueeze(-1);  // (B,c,G,Q,Hg,1)
  auto y = y_off * out_decay;
  y.add_(y_diag);  // y is not saved by autograd, so adding in place is safe
  // (B,c,G,Q,Hg,P) -> (B,c,Q,G,Hg,P) == (B,Lp,H,P): a view when G = 1.
  y = y.permute({0, 1, 3, 2, 4, 5}).reshape({b, Lp, H, P});
  if (pad) y = y.narrow(1, 0, L);
  return {y, final_state};
}

// The recurrence over chunks as elementwise LibTorch ops, O(c) steps (unbind, not select, so the
// backward does not build a full-size zero gradient per chunk). Shapes in fused.hpp.
SsdPassing ssd_state_passing_composite(const torch::Tensor& u, const torch::Tensor& a, const torch::Tensor& h0) {
  const int64_t b = u.size(0), c = u.size(1), G = u.size(2), N = u.size(3), Hg = u.size(4), P = u.size(5);
  auto chunk_decay = exp_nonpos(a).view({b, c, G, 1, Hg, 1});
  torch::Tensor h = h0.defined() ? h0 : torch::zeros({b, G, N, Hg, P}, u.options());
  auto st_list = u.unbind(1);
  auto dec_list = chunk_decay.unbind(1);
  std::vector<torch::Tensor> hs;
  hs.reserve(c);
  for (int64_t k = 0; k < c; ++k) {
    hs.push_back(h);
    h = dec_list[k] * h + st_list[k];
  }
  return {torch::stack(hs, 1), h};
}

double ssd_chunked_matmul_flops(int64_t L, int64_t H, int64_t P, int64_t G, int64_t N, int64_t chunk_size) {
  const double Q = static_cast<double>(std::min(chunk_size, L));
  const double c = std::ceil(static_cast<double>(L) / Q), Lp = c * Q;
  double f = 0;
  f += 2.0 * c * G * Q * Q * N;  // C Bᵀ
  f += 2.0 * c * H * Q * Q * P;  // scores · xdt
  f += 2.0 * Lp * H * P * N;     // chunk states (the state passing is elementwise)
  f += 2.0 * Lp * H * P * N;     // state to output
  return f;
}

}  // namespace lmgrid::kernels
