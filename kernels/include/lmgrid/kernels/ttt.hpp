// TTT (test-time training) memory layers: the mini-batch dual form used for training and
// prefill, the token-by-token form used for decoding, and naive reference loops for the tests.
//
// Two rules share this file:
//   * GEM memory (asbikov/GEM): inner model r = A V with fixed soft addresses A = softmax(x K0^T/sqrt d)
//     and trainable values V (M, d). Loss of token j: 1/2 |A_k[j] V - v[j]|^2. Mini-batch GD with a
//     fixed step eta over chunks of `chunk` tokens; every gradient of a chunk is taken at the V the
//     chunk started with and the gradients are SUMMED. Token t reads with V minus eta times the
//     gradients of the chunk's tokens j < t (j <= t with self_write).
//   * TTT layer (Sun et al. 2024, arXiv 2407.04620): inner model f(x) = x + LN(g(x; W)), g linear
//     (W1, b1) or a 2-layer GELU(tanh) MLP (W1, b1, W2, b2), per head; loss of token j:
//     1/2 |LN(g(xk_j)) - (xv_j - xk_j)|^2; token t of a mini-batch reads with
//     W_t = W_0 - sum_{j<=t} eta[t, j] grad_j(W_0), eta[t, j] = token_idx[t] * lr[j].
//
// Letters: N independent sequences (batch x heads), T tokens, M slots, D width, F inner hidden.
// Every function but ttt_dual_cpu (a fused CPU kernel, kernels/src/ttt_cpu.cpp) is plain LibTorch
// ops (autograd flows through all of them) in the input dtype.
// A partial chunk is allowed anywhere: the state records how many tokens of the current chunk
// were already seen, so training, prefill and one-token decoding share one definition.
#pragma once

#include <string>

#include <torch/torch.h>

namespace lmgrid::kernels {

// ---------------------------------------------------------------------------------------------
// GEM memory
// ---------------------------------------------------------------------------------------------
// Memory of N sequences. V: values at the start of the current chunk (N, M, D), undefined for a
// fresh sequence (then V0 is used). ak, d: addresses
// (N, p, M) and residuals A_k V - v (N, p, D) of the p < chunk tokens of the current chunk seen so
// far (undefined when p == 0).
struct GemMemoryState {
  torch::Tensor V, ak, d;
  int64_t pending() const { return ak.defined() ? ak.size(1) : 0; }
};

// Reads (N, T, D) for tokens with addresses aq, ak (N, T, M) and targets v (N, T, D), continuing
// `state` and advancing it (chunk writes V <- V - eta A_k^T D applied whenever a chunk completes).
// eta: scalar tensor (may require grad). V0: initial values (M, D) or (N, M, D), read while
// state.V is undefined. keep_state = false skips the write of a chunk that ends the input (the
// state is then not valid for continuing; training does not need it). Dual form: per chunk three
// batched matmuls.
torch::Tensor gem_memory(const torch::Tensor& aq, const torch::Tensor& ak, const torch::Tensor& v,
                         GemMemoryState& state, int64_t chunk, const torch::Tensor& eta, bool self_write,
                         const torch::Tensor& V0, bool keep_state = true);

// The same rule token by token from the initial values V0 (N, M, D) (a fresh sequence), with the
// gradient of each token's loss taken by autograd (create_graph, so outer gradients flow).
// For tests only (slow).
torch::Tensor gem_memory_naive(const torch::Tensor& aq, const torch::Tensor& ak, const torch::Tensor& v,
                               const torch::Tensor& V0, int64_t chunk, const torch::Tensor& eta, bool self_write);

// ---------------------------------------------------------------------------------------------
// TTT layer
// ---------------------------------------------------------------------------------------------
// Inner weights of N sequences at the start of the current mini-batch: linear uses W1 (N, D, D),
// b1 (N, 1, D); mlp uses W1 (N, D, F), b1 (N, 1, F), W2 (N, F, D), b2 (N, 1, D). gW*, gb*: the
// lr-weighted gradient sums sum_j lr_j grad_j of the p tokens of the current mini-batch seen so far
// (primal form; undefined when p == 0). p: tokens of the current mini-batch seen so far.
// A fresh state (p == 0) may instead hold G rows, N a multiple of G, sequence s taking row s % G:
// the per-head initial weights that a batch of N = B x G sequences shares (row order b G + g),
// with no copy per sequence; ttt_inner leaves N rows, one per sequence.
struct TTTInnerState {
  torch::Tensor W1, b1, W2, b2;
  torch::Tensor gW1, gb1, gW2, gb2;
  int64_t p = 0;
  bool mlp() const { return W2.defined(); }
};

// Per-head LayerNorm of the inner model: weight, bias (N, 1, D) or (G, 1, D) as the state's G
// rows (sequence s takes row s % G), eps (reference: 1e-6).
struct TTTNorm {
  torch::Tensor weight, bias;
  double eps = 1e-6;
};

// Outputs (N, T, D) = xq + LN(g(xq; W_t)) for queries xq, keys xk, values xv (N, T, D) and
// per-token learning rates lr (N, T) (= base_lr * sigmoid(theta x) / head_dim), with
// token_idx (chunk) the per-position scale (1/i + learnable offset, clamped >= 0). Continues and
// advances `state`. Mini-batches that start at a boundary go through the dual form (whole
// mini-batch at once, also when cut short by the end of the input); tokens continuing a
// mini-batch already under way use the primal form with the accumulated gradients (decoding).
torch::Tensor ttt_inner(const torch::Tensor& xq, const torch::Tensor& xk, const torch::Tensor& xv,
                        const torch::Tensor& lr, const torch::Tensor& token_idx, const TTTNorm& norm,
                        TTTInnerState& state, int64_t chunk);

// The dual form of whole mini-batches as one fused CPU kernel (kernels/src/ttt_cpu.cpp): the
// same values as ttt_inner's composite, forward and a hand-derived backward (first order only:
// create_graph is refused), parallel over the N sequences, the same bits on any thread count.
// Takes float32 or float64 CPU tensors of one dtype, T a multiple of chunk, st.p == 0; advances
// `st` to the weights after the last mini-batch (differentiable, as the composite's). ttt_inner
// routes there unless LMGRID_CPU_KERNELS=composite.
torch::Tensor ttt_dual_cpu(const torch::Tensor& xq, const torch::Tensor& xk, const torch::Tensor& xv,
                           const torch::Tensor& lr, const torch::Tensor& token_idx, const TTTNorm& norm,
                           TTTInnerState& state, int64_t chunk);

// "" when ttt_dual_cpu takes these arguments, else why not.
std::string ttt_dual_cpu_unsupported(const torch::Tensor& xq, const torch::Tensor& xk, const torch::Tensor& xv,
                                     const torch::Tensor& lr, const torch::Tensor& token_idx, const TTTNorm& norm,
                                     const TTTInnerState& state, int64_t chunk);

// The same rule token by token from the initial weights in `init` (a fresh sequence, p == 0):
// per-token inner gradients by autograd (create_graph) at the mini-batch's initial weights,
// W_t = W_0 - sum_{j<=t} eta[t, j] grad_j, and g's GELU derivative by autograd too. Tests only.
torch::Tensor ttt_inner_naive(const torch::Tensor& xq, const torch::Tensor& xk, const torch::Tensor& xv,
                              const torch::Tensor& lr, const torch::Tensor& token_idx, const TTTNorm& norm,
                              const TTTInnerState& init, int64_t chunk);

// d/dZ of 1/2 |LN(Z) - target|^2 (LayerNorm over the last dim with weight, bias): the TTT
// reference's fused LN + L2 backward, analytic. Z, target (N, K, D).
torch::Tensor ln_l2_grad(const torch::Tensor& Z, const torch::Tensor& target, const TTTNorm& norm);

// LayerNorm over the last dim with per-sequence weight and bias (N, 1, D).
torch::Tensor ln_apply(const torch::Tensor& Z, const TTTNorm& norm);

}  // namespace lmgrid::kernels
