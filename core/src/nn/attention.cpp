// Multi-head self-attention (see lmgrid/nn/attention.hpp).
// Letters: B, T new tokens, P cached, S = P + T, C, H, Hkv, D.
#include "lmgrid/nn/attention.hpp"

#include <cmath>
#include <limits>

#include "lmgrid/base/env.hpp"
#include "lmgrid/base/errors.hpp"
#include "lmgrid/kernels/attention.hpp"
#include "lmgrid/nn/rope.hpp"
#include "lmgrid/plugin/torch_compat.hpp"  // LMGRID_HAVE_SDPA, LMGRID_HAVE_SDPA_GQA

namespace lmgrid::nn {

namespace {

// Boolean (T, S) mask, true where new token i may see key j: j <= P + i.
torch::Tensor causal_mask(int64_t T, int64_t S, const torch::Device& device) {
  return torch::ones({T, S}, torch::TensorOptions().dtype(torch::kBool).device(device)).tril(S - T);
}

// LMGRID_CPU_ATTENTION (read at every call, so a test can switch it): whether CPU attention goes
// to lmgrid's tiled kernel. auto: yes, on both LibTorch sources: 12-20x the composite of 1.13 at
// T = 2K and 1.2-1.75x scaled_dot_product_attention's own CPU flash kernel on 2.11 at every shape
// of tools/bench/bench_attention.cpp (forward+backward, one thread, docs/performance.md).
bool tiled_on_cpu() {
  const std::string v = env_or("LMGRID_CPU_ATTENTION", "auto");
  if (v == "auto" || v == "tiled") return true;
  if (v == "library") return false;
  throw UserError("LMGRID_CPU_ATTENTION=" + v + ": expected auto, tiled or library");
}

}  // namespace

torch::Tensor causal_attention(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v, double dropout,
                               bool training, bool causal) {
  const int64_t T = q.size(2), S = k.size(2), H = q.size(1), Hkv = k.size(1);
  TORCH_CHECK(H % Hkv == 0, "causal_attention: ", Hkv, " key/value heads do not divide ", H, " query heads");
  const double p = training ? dropout : 0.0;
  // lmgrid's tiled kernel (kernels/attention.hpp) for CPU tensors without dropout on the weights:
  // 17x the composite's forward+backward at T = 2K, D = 16 and 2.2x at T = 256, D = 64
  // (tools/bench/bench_attention.cpp).
  if (p == 0.0 && q.device().is_cpu() && tiled_on_cpu() && kernels::tiled_attention_unsupported(q, k, v).empty())
    return kernels::tiled_attention(q, k, v, causal && T > 1, 1.0 / std::sqrt(static_cast<double>(q.size(-1))));
#if LMGRID_HAVE_SDPA
  // Flash or memory-efficient kernels on GPU, the flash kernel on CPU (2.1 on), math otherwise.
  // is_causal aligns the mask top-left; with cached keys (S > T) the mask is passed explicitly.
  torch::Tensor mask;  // undefined: none (an undefined tensor must not reach attn_mask)
  bool is_causal = false;
  if (causal && T > 1) {
    if (S == T)
      is_causal = true;
    else
      mask = causal_mask(T, S, q.device());
  }
#if LMGRID_HAVE_SDPA_GQA
  if (!mask.defined()) return torch::scaled_dot_product_attention(q, k, v, {}, p, is_causal, std::nullopt, Hkv != H);
  return torch::scaled_dot_product_attention(q, k, v, mask, p, is_causal, std::nullopt, Hkv != H);
#else
  auto kr = Hkv == H ? k : k.repeat_interleave(H / Hkv, 1), vr = Hkv == H ? v : v.repeat_interleave(H / Hkv, 1);
  if (!mask.defined()) return torch::scaled_dot_product_attention(q, kr, vr, {}, p, is_causal);
  return torch::scaled_dot_product_attention(q, kr, vr, mask, p, is_causal);
#endif
#else
  auto kr = Hkv == H ? k : k.repeat_interleave(H / Hkv, 1), vr = Hkv == H ? v : v.repeat_interleave(H / Hkv, 1);
  auto att = torch::matmul(q, kr.transpose(-2, -1)) * (1.0 / std::sqrt(static_cast<double>(q.size(-1))));  // (B,H,T,S)
  if (causal && T > 1)
    att = att.masked_fill(causal_mask(T, S, q.device()).logical_not(), -std::numeric_limits<float>::infinity());
  att = torch::softmax(att, -1);
  if (p > 0) att = torch::dropout(att, p, true);
  return torch::matmul(att, vr);  // (B,H,T,D)
#endif
}

CausalSelfAttentionImpl::CausalSelfAttentionImpl(int64_t d_model, int64_t n_head, bool bias, double dropout)
    : CausalSelfAttentionImpl(AttentionOptions(d_model, n_head).bias(bias).dropout(dropout)) {}

CausalSelfAttentionImpl::CausalSelfAttentionImpl(const AttentionOptions& o) : options_(o) {
  const int64_t C = o.d_model(), H = o.n_head();
  TORCH_CHECK(H > 0 && C % H == 0, "d_model (", C, ") must be divisible by n_head (", H, ")");
  n_kv_head_ = o.n_kv_head() > 0 ? o.n_kv_head() : H;
  TORCH_CHECK(H % n_kv_head_ == 0, "n_kv_head (", n_kv_head_, ") must divide n_head (", H, ")");
  head_dim_ = C / H;
  TORCH_CHECK(!o.rope() || head_dim_ % 2 == 0, "RoPE needs an even head dim, got ", head_dim_);
  const int64_t kv = n_kv_head_ * head_dim_;
  auto lin = [&](const char* name, int64_t in, int64_t out) {
    return register_module(name, torch::nn::Linear(torch::nn::LinearOptions(in, out).bias(o.bias())));
  };
  if (o.fused_qkv()) {
    c_attn = lin("c_attn", C, C + 2 * kv);
    c_proj = lin("c_proj", C, C);
  } else {
    q_proj = lin("q_proj", C, C);
    k_proj = lin("k_proj", C, kv);
    v_proj = lin("v_proj", C, kv);
    o_proj = lin("o_proj", C, C);
  }
  resid_drop_ = register_module("resid_drop", torch::nn::Dropout(o.dropout()));
}

torch::Tensor CausalSelfAttentionImpl::forward(const torch::Tensor& x, KVCache* cache) {
  const int64_t B = x.size(0), T = x.size(1), C = x.size(2), D = head_dim_, H = options_.n_head(), Hkv = n_kv_head_;
  torch::Tensor q, k, v;
  if (options_.fused_qkv()) {
    auto qkv = c_attn(x).split_with_sizes({C, Hkv * D, Hkv * D}, 2);
    q = qkv[0], k = qkv[1], v = qkv[2];
  } else {
    q = q_proj(x), k = k_proj(x), v = v_proj(x);
  }
  q = q.view({B, T, H, D}).transpose(1, 2);    // (B,H,T,D)
  k = k.view({B, T, Hkv, D}).transpose(1, 2);  // (B,Hkv,T,D)
  v = v.view({B, T, Hkv, D}).transpose(1, 2);
  if (options_.rope()) {
    const int64_t pos = cache ? cache->length() : 0;
    q = apply_rope(q, pos, options_.rope_base());
    k = apply_rope(k, pos, options_.rope_base());
  }
  if (cache) {
    if (cache->length() > 0) {
      k = torch::cat({cache->k, k}, 2);  // (B,Hkv,S,D)
      v = torch::cat({cache->v, v}, 2);
    }
    cache->k = k;
    cache->v = v;
  }
  // Query head h reads KV head h / (H / Hkv) (causal_attention repeats them where it must).
  auto y = causal_attention(q, k, v, options_.dropout(), is_training(), options_.causal());
  y = y.transpose(1, 2).contiguous().view({B, T, C});
  return resid_drop_(out_proj()(y));
}

}  // namespace lmgrid::nn
