// Shared blocks (see nn.hpp). Letters: B batch, T new tokens, P cached tokens, C, H, D.
#include "lmgrid/nn.hpp"

#include <cmath>

namespace lmgrid::nn {

namespace F = torch::nn::functional;

LayerNormImpl::LayerNormImpl(int64_t dim, bool bias, double eps) : dim_(dim), eps_(eps) {
  weight = register_parameter("weight", torch::ones({dim}));
  if (bias) this->bias = register_parameter("bias", torch::zeros({dim}));
}
torch::Tensor LayerNormImpl::forward(const torch::Tensor& x) {
  return torch::layer_norm(x, {dim_}, weight, bias.defined() ? bias : torch::Tensor(), eps_);
}

RMSNormImpl::RMSNormImpl(int64_t dim, double eps) : eps_(eps) {
  weight = register_parameter("weight", torch::ones({dim}));
}
torch::Tensor RMSNormImpl::forward(const torch::Tensor& x) {
  return x * torch::rsqrt(x.pow(2).mean(-1, true) + eps_) * weight;
}

torch::Tensor causal_attention(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v, double dropout,
                               bool training) {
  int64_t T = q.size(2), S = k.size(2), P = S - T;
  auto att = torch::matmul(q, k.transpose(-2, -1)) * (1.0 / std::sqrt(static_cast<double>(q.size(-1))));  // (B,H,T,S)
  if (T > 1) {
    auto mask = torch::ones({T, S}, torch::TensorOptions().dtype(torch::kBool).device(q.device())).tril(P);
    att = att.masked_fill(mask.logical_not(), -std::numeric_limits<float>::infinity());
  }
  att = torch::softmax(att, -1);
  if (training && dropout > 0) att = torch::dropout(att, dropout, true);
  return torch::matmul(att, v);  // (B,H,T,D)
}

CausalSelfAttentionImpl::CausalSelfAttentionImpl(int64_t d_model, int64_t n_head, bool bias, double dropout)
    : n_head_(n_head), dropout_(dropout) {
  TORCH_CHECK(d_model % n_head == 0, "d_model (", d_model, ") must be divisible by n_head (", n_head, ")");
  c_attn = register_module("c_attn", torch::nn::Linear(torch::nn::LinearOptions(d_model, 3 * d_model).bias(bias)));
  c_proj = register_module("c_proj", torch::nn::Linear(torch::nn::LinearOptions(d_model, d_model).bias(bias)));
  resid_drop_ = register_module("resid_drop", torch::nn::Dropout(dropout));
}

torch::Tensor CausalSelfAttentionImpl::forward(const torch::Tensor& x, KVCache* cache) {
  int64_t B = x.size(0), T = x.size(1), C = x.size(2), D = C / n_head_;
  auto qkv = c_attn(x).split(C, 2);
  auto q = qkv[0].view({B, T, n_head_, D}).transpose(1, 2);  // (B,H,T,D)
  auto k = qkv[1].view({B, T, n_head_, D}).transpose(1, 2);
  auto v = qkv[2].view({B, T, n_head_, D}).transpose(1, 2);
  if (cache) {
    if (cache->length() > 0) {
      k = torch::cat({cache->k, k}, 2);  // (B,H,P+T,D)
      v = torch::cat({cache->v, v}, 2);
    }
    cache->k = k;
    cache->v = v;
  }
  auto y = causal_attention(q, k, v, dropout_, is_training());
  y = y.transpose(1, 2).contiguous().view({B, T, C});
  return resid_drop_(c_proj(y));
}

MLPImpl::MLPImpl(int64_t d_model, int64_t hidden, bool bias, double dropout) {
  c_fc = register_module("c_fc", torch::nn::Linear(torch::nn::LinearOptions(d_model, hidden).bias(bias)));
  c_proj = register_module("c_proj", torch::nn::Linear(torch::nn::LinearOptions(hidden, d_model).bias(bias)));
  drop_ = register_module("drop", torch::nn::Dropout(dropout));
}
torch::Tensor MLPImpl::forward(const torch::Tensor& x) { return drop_(c_proj(torch::gelu(c_fc(x)))); }

SwiGLUImpl::SwiGLUImpl(int64_t d_model, int64_t hidden) {
  w1 = register_module("w1", torch::nn::Linear(torch::nn::LinearOptions(d_model, hidden).bias(false)));
  w2 = register_module("w2", torch::nn::Linear(torch::nn::LinearOptions(hidden, d_model).bias(false)));
  w3 = register_module("w3", torch::nn::Linear(torch::nn::LinearOptions(d_model, hidden).bias(false)));
}
torch::Tensor SwiGLUImpl::forward(const torch::Tensor& x) { return w2(torch::silu(w1(x)) * w3(x)); }

torch::Tensor apply_rope(const torch::Tensor& x, int64_t offset, double theta) {
  int64_t T = x.size(-2), D = x.size(-1);
  auto opts = torch::TensorOptions().dtype(torch::kFloat64).device(x.device());
  auto inv = torch::pow(theta, -torch::arange(0, D, 2, opts) / static_cast<double>(D));  // (D/2)
  auto pos = torch::arange(offset, offset + T, opts);                                     // (T)
  auto ang = torch::outer(pos, inv);                                                      // (T, D/2)
  auto cos = ang.cos().to(x.scalar_type()), sin = ang.sin().to(x.scalar_type());
  auto xr = x.unflatten(-1, {D / 2, 2});  // (..., T, D/2, 2)
  auto x0 = xr.select(-1, 0), x1 = xr.select(-1, 1);
  return torch::stack({x0 * cos - x1 * sin, x0 * sin + x1 * cos}, -1).flatten(-2);
}

void init_gpt2(torch::nn::Module& module, double std) {
  torch::NoGradGuard ng;
  for (auto& m : module.modules(/*include_self=*/false)) {
    if (auto* lin = m->as<torch::nn::Linear>()) {
      lin->weight.normal_(0.0, std);
      if (lin->bias.defined()) lin->bias.zero_();
    } else if (auto* emb = m->as<torch::nn::Embedding>()) {
      emb->weight.normal_(0.0, std);
    }
  }
}

}  // namespace lmgrid::nn
