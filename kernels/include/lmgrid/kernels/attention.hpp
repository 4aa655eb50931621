// Softmax attention on the CPU in tiles: the FlashAttention algorithm (Dao et al. 2022,
// "FlashAttention: fast and memory-efficient exact attention with IO-awareness"), written for CPU
// cores. The scores of a tile of queries x keys live in a small buffer, each query row keeps a
// running maximum and sum (online softmax), so the T x S weight matrix never exists; the backward
// pass recomputes a tile's weights from the log-sum-exp saved per row. Memory is O((T + S) D) per
// head instead of O(T S), and the traffic far smaller: at T = 2K and D = 16 (BABILong at width 64)
// the composite spends its time writing and reading T x S tensors (scores, mask, softmax and their
// gradients), not multiplying.
//
// Letters: B batch, H query heads, Hkv key/value heads (Hkv divides H; query head h reads kv head
// g = h / (H / Hkv)), T queries, S >= T keys of which the last T are the queries' own positions
// (S - T cached ones come before them), D head dim.
//   out[b,h,i] = sum_j w_ij v[b,g,j],  w_ij = softmax over visible j of (scale q[b,h,i] . k[b,g,j])
// causal: query i sees keys j <= S - T + i; otherwise all S keys.
//
// Threads: the forward pass is parallel over (batch, head, block of 32 queries), the backward over
// (batch, kv head) (each owns its key and value gradients), on as many threads as LibTorch's
// intra-op count (LMGRID_THREADS). Inner loops are compiled for AVX-512, AVX2 and baseline x86-64
// and picked at load time (GCC's target_clones); float32 uses a polynomial exp (relative error
// below 2e-7), float64 std::exp.
#pragma once

#include <string>

#include <torch/torch.h>

namespace lmgrid::kernels {

// q (B,H,T,D), k, v (B,Hkv,S,D): float32 or float64 CPU tensors of one dtype, any strides (copied
// contiguous). Returns (B,H,T,D), contiguous. Differentiable (hand-written backward, first order
// only: its backward is not differentiable again). No dropout on the weights.
torch::Tensor tiled_attention(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v, bool causal,
                              double scale);

// The same function in plain LibTorch ops (scores, mask, softmax, product), differentiable by
// autograd to any order: the reference of the tests and the benchmark.
torch::Tensor attention_composite(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v, bool causal,
                                  double scale);

// Why tiled_attention does not take these tensors (device, dtype, shapes); empty when it does.
std::string tiled_attention_unsupported(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v);

}  // namespace lmgrid::kernels
