// Multi-head self-attention: one block with options, covering nanoGPT (fused qkv, learned
// positions elsewhere), Llama (separate q/k/v, RoPE, grouped KV heads) and everything between.
//   q = x Wq, k = x Wk, v = x Wv        (H query heads, Hkv key/value heads, Hkv divides H)
//   q, k <- RoPE(q, k) at their positions (optional)
//   y_h = softmax(q_h k_g^T / sqrt(D) + causal mask) v_g,  g = h / (H / Hkv)
//   out = dropout(concat_h(y_h) Wo)
// With a KVCache the new tokens attend to the cached ones too and the cache grows; the cache
// holds Hkv heads (what makes grouped-query attention cheap to decode).
// Not here: sliding windows, attention sinks, ALiBi, cache eviction.
//
// Letters: B batch, T new tokens, P cached tokens, S = P + T keys, C model width,
// H query heads, Hkv key/value heads, D head dim = C / H.
#pragma once

#include <torch/torch.h>

#include "lmgrid/nn/block.hpp"

namespace lmgrid::nn {

// Keys and values of earlier tokens, (B, Hkv, P, D) each, after RoPE; empty before the first
// token. A LayerState, so an attention block can use it as its whole decoding state.
struct KVCache : LayerState {
  torch::Tensor k, v;
  int64_t length() const { return k.defined() ? k.size(2) : 0; }
};

// softmax(q k^T / sqrt(D)) v of q (B,H,T,D) over k, v (B,Hkv,S,D), Hkv dividing H (query head h
// reads KV head h / (H / Hkv)). Causal: new token i (of T) sees keys 0..P+i, P = S - T. Dropout
// on the attention weights when training. CPU tensors without dropout go to lmgrid's tiled kernel
// (lmgrid/kernels/attention.hpp) unless LMGRID_CPU_ATTENTION=library; the rest to scaled_dot_product_attention where
// the LibTorch version has it (2.0 and later; grouped heads without copies from 2.5), else the plain math. All compute
// the same function.
torch::Tensor causal_attention(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v, double dropout,
                               bool training, bool causal = true);

struct AttentionOptions {
  AttentionOptions(int64_t d_model, int64_t n_head) : d_model_(d_model), n_head_(n_head) {}
  TORCH_ARG(int64_t, d_model);
  TORCH_ARG(int64_t, n_head);
  TORCH_ARG(int64_t, n_kv_head) = 0;  // key/value heads; 0 = n_head (MHA), 1 = MQA, else GQA
  TORCH_ARG(bool, bias) = false;      // biases in the projections
  TORCH_ARG(bool, fused_qkv) = true;  // one c_attn projection, or q_proj/k_proj/v_proj
  TORCH_ARG(bool, rope) = false;      // rotary embedding on q and k
  TORCH_ARG(double, rope_base) = 10000.0;
  TORCH_ARG(bool, causal) = true;    // false: every token sees every token of the call
  TORCH_ARG(double, dropout) = 0.0;  // on attention weights and on the output
};

// Checkpoint keys: fused_qkv -> c_attn (C -> (H + 2 Hkv) D, rows q|k|v), c_proj (C -> C)
// (nanoGPT); separate -> q_proj (C -> H D), k_proj, v_proj (C -> Hkv D), o_proj (C -> C) (Llama).
class CausalSelfAttentionImpl : public torch::nn::Module {
 public:
  explicit CausalSelfAttentionImpl(const AttentionOptions& options);
  // nanoGPT's block: fused qkv, every head its own KV head, no RoPE.
  CausalSelfAttentionImpl(int64_t d_model, int64_t n_head, bool bias, double dropout);
  // x (B,T,C) -> (B,T,C). RoPE positions start at the cache's length.
  torch::Tensor forward(const torch::Tensor& x, KVCache* cache = nullptr);
  // The output projection: c_proj (fused) or o_proj (separate).
  torch::nn::Linear& out_proj() { return options_.fused_qkv() ? c_proj : o_proj; }

  torch::nn::Linear c_attn{nullptr}, c_proj{nullptr};                                    // fused_qkv
  torch::nn::Linear q_proj{nullptr}, k_proj{nullptr}, v_proj{nullptr}, o_proj{nullptr};  // separate
  const AttentionOptions& options() const { return options_; }

 private:
  AttentionOptions options_;
  int64_t head_dim_, n_kv_head_;
  torch::nn::Dropout resid_drop_{nullptr};
};
TORCH_MODULE(CausalSelfAttention);

}  // namespace lmgrid::nn
