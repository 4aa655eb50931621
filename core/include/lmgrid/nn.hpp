// Shared neural-network blocks, so architectures read as recipes:
// LayerNorm (bias optional), RMSNorm, causal self-attention with a KV cache, GELU MLP,
// SwiGLU MLP, rotary embeddings, GPT-2 style initialisation.
//
// Letters: B batch, T new tokens, P cached tokens, C channels, H heads, D head dim.
#pragma once

#include <torch/torch.h>

namespace lmgrid::nn {

// y = (x - mean) / sqrt(var + eps) * weight (+ bias). torch::nn::LayerNorm has no bias=False.
class LayerNormImpl : public torch::nn::Module {
 public:
  LayerNormImpl(int64_t dim, bool bias, double eps = 1e-5);
  torch::Tensor forward(const torch::Tensor& x);
  torch::Tensor weight, bias;  // bias undefined when bias=false

 private:
  int64_t dim_;
  double eps_;
};
TORCH_MODULE(LayerNorm);

// y = x * rsqrt(mean(x^2) + eps) * weight.
class RMSNormImpl : public torch::nn::Module {
 public:
  explicit RMSNormImpl(int64_t dim, double eps = 1e-5);
  torch::Tensor forward(const torch::Tensor& x);
  torch::Tensor weight;

 private:
  double eps_;
};
TORCH_MODULE(RMSNorm);

// Keys and values of earlier tokens, (B, H, P, D) each; empty before the first token.
struct KVCache {
  torch::Tensor k, v;
  int64_t length() const { return k.defined() ? k.size(2) : 0; }
};

// Causal attention over softmax(q k^T / sqrt(D)) with fused qkv projection (nanoGPT layout:
// c_attn (C -> 3C), c_proj (C -> C)). With a cache, new tokens attend to cached ones too and
// the cache is extended.
class CausalSelfAttentionImpl : public torch::nn::Module {
 public:
  CausalSelfAttentionImpl(int64_t d_model, int64_t n_head, bool bias, double dropout);
  torch::Tensor forward(const torch::Tensor& x, KVCache* cache = nullptr);  // (B,T,C) -> (B,T,C)
  torch::nn::Linear c_attn{nullptr}, c_proj{nullptr};

 private:
  int64_t n_head_;
  double dropout_;
  torch::nn::Dropout resid_drop_{nullptr};
};
TORCH_MODULE(CausalSelfAttention);

// Scaled dot-product attention of q (B,H,T,D) over k, v (B,H,P+T,D) with the causal mask offset
// by P (token i of the new ones sees keys 0..P+i). Plain math, every LibTorch version.
torch::Tensor causal_attention(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v,
                               double dropout, bool training);

// c_fc (C -> hidden) -> GELU (erf) -> c_proj (hidden -> C) -> dropout.
class MLPImpl : public torch::nn::Module {
 public:
  MLPImpl(int64_t d_model, int64_t hidden, bool bias, double dropout);
  torch::Tensor forward(const torch::Tensor& x);
  torch::nn::Linear c_fc{nullptr}, c_proj{nullptr};

 private:
  torch::nn::Dropout drop_{nullptr};
};
TORCH_MODULE(MLP);

// w2(silu(w1 x) * w3 x), no bias (Llama).
class SwiGLUImpl : public torch::nn::Module {
 public:
  SwiGLUImpl(int64_t d_model, int64_t hidden);
  torch::Tensor forward(const torch::Tensor& x);
  torch::nn::Linear w1{nullptr}, w2{nullptr}, w3{nullptr};
};
TORCH_MODULE(SwiGLU);

// Rotary position embedding on adjacent pairs of the last dim of x (B,H,T,D) at positions
// offset, offset+1, ...; base theta.
torch::Tensor apply_rope(const torch::Tensor& x, int64_t offset, double theta = 10000.0);

// GPT-2 initialisation: Linear and Embedding weights N(0, std), biases zero.
void init_gpt2(torch::nn::Module& module, double std = 0.02);

}  // namespace lmgrid::nn
