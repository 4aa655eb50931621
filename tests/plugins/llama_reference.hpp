// A naive float64 reference of the Llama forward (and LM2's paper-mode memory), written from the
// equations in plugins/arch/llama/README.md and plugins/arch/lm2/README.md with loops over
// batch, heads, positions and slots, reading the weights by checkpoint name. Used by
// test_llama.cpp and test_lm2.cpp; nothing here shares code with the plugins.
#pragma once

#include <cmath>
#include <map>
#include <string>
#include <vector>

#include <torch/torch.h>

namespace lmgrid::test {

struct LlamaRef {
  int64_t n_layer, n_head, n_kv_head;
  double eps = 1e-5, rope_base = 1e4;
  bool shared_norm = false, tied = true;
  std::vector<bool> memory;  // lm2 paper mode: layers with a memory bank
  int64_t slots = 0, segment = 0;
};

inline std::map<std::string, torch::Tensor> weights_of(const torch::nn::Module& m) {
  std::map<std::string, torch::Tensor> w;
  for (const auto& kv : m.named_parameters()) w[kv.key()] = kv.value().detach();
  return w;
}

inline torch::Tensor ref_rmsnorm(const torch::Tensor& x, const torch::Tensor& w, double eps) {
  return x / torch::sqrt((x * x).mean(-1, true) + eps) * w;
}

// x (T,D): pair (2i, 2i+1) at position t rotated by t * base^(-2i/D).
inline torch::Tensor ref_rope(const torch::Tensor& x, double base) {
  auto y = x.clone();
  const int64_t T = x.size(0), D = x.size(1);
  for (int64_t t = 0; t < T; ++t)
    for (int64_t i = 0; i < D / 2; ++i) {
      double a = t * std::pow(base, -2.0 * i / D), c = std::cos(a), s = std::sin(a);
      auto x0 = x[t][2 * i], x1 = x[t][2 * i + 1];
      y[t][2 * i] = x0 * c - x1 * s;
      y[t][2 * i + 1] = x0 * s + x1 * c;
    }
  return y;
}

// LM2 paper memory of one sequence: h (T,C) -> gated reads (T,C), bank N x C from the identity.
inline torch::Tensor ref_memory(const torch::Tensor& h, std::map<std::string, torch::Tensor>& w, const std::string& p,
                                int64_t N, int64_t S) {
  const int64_t T = h.size(0), C = h.size(1);
  auto Wq = w[p + "q_proj.weight"], Wk = w[p + "k_proj.weight"], Wv = w[p + "v_proj.weight"];
  auto Wo = w[p + "out_gate.weight"], Wi = w[p + "in_gate.weight"], Wf = w[p + "forget_gate.weight"];
  auto mem = torch::eye(N, C, h.options());
  auto out = torch::zeros_like(h);
  for (int64_t s0 = 0; s0 < T; s0 += S) {
    const int64_t L = std::min(S, T - s0);
    auto scores = torch::zeros({L, N}, h.options()), reads = torch::zeros({L, C}, h.options());
    for (int64_t t = 0; t < L; ++t) {
      auto q = torch::mv(Wq, h[s0 + t]);
      for (int64_t i = 0; i < N; ++i) scores[t][i] = torch::dot(q, torch::mv(Wk, mem[i])) / std::sqrt(double(C));
      auto a = torch::softmax(scores[t], 0);
      auto e = torch::zeros({C}, h.options());
      for (int64_t i = 0; i < N; ++i) e += a[i] * torch::mv(Wv, mem[i]);
      reads[t] = e;
      out[s0 + t] = torch::sigmoid(torch::mv(Wo, e)) * e;
    }
    if (L < S) break;  // an incomplete segment is never written
    auto next = mem.clone();
    for (int64_t i = 0; i < N; ++i) {
      auto alpha = torch::softmax(scores.select(1, i), 0);  // over the segment's tokens
      auto E = torch::zeros({C}, h.options()), H = torch::zeros({C}, h.options());
      for (int64_t t = 0; t < L; ++t) E += alpha[t] * reads[t], H += alpha[t] * h[s0 + t];
      next[i] = torch::sigmoid(torch::mv(Wi, H)) * torch::tanh(E) + torch::sigmoid(torch::mv(Wf, E)) * mem[i];
    }
    mem = next;
  }
  return out;
}

// Logits (B,T,V) of tokens (B,T).
inline torch::Tensor ref_llama(const torch::Tensor& tokens, std::map<std::string, torch::Tensor> w, const LlamaRef& r) {
  const int64_t B = tokens.size(0), T = tokens.size(1);
  auto wte = w["wte.weight"];
  const int64_t C = wte.size(1), H = r.n_head, Hkv = r.n_kv_head, D = C / H;
  std::vector<torch::Tensor> batch;
  for (int64_t b = 0; b < B; ++b) {
    auto x = wte.index_select(0, tokens[b]);  // (T,C)
    for (int64_t l = 0; l < r.n_layer; ++l) {
      const std::string p = "h." + std::to_string(l) + ".";
      auto n1 = r.shared_norm ? w[p + "norm.weight"] : w[p + "attn_norm.weight"];
      auto n2 = r.shared_norm ? w[p + "norm.weight"] : w[p + "mlp_norm.weight"];
      auto h = ref_rmsnorm(x, n1, r.eps);
      auto q = torch::matmul(h, w[p + "attn.q_proj.weight"].t()), k = torch::matmul(h, w[p + "attn.k_proj.weight"].t()),
           v = torch::matmul(h, w[p + "attn.v_proj.weight"].t());
      auto y = torch::zeros({T, C}, x.options());
      for (int64_t hd = 0; hd < H; ++hd) {
        const int64_t g = hd / (H / Hkv);
        auto qh = ref_rope(q.narrow(1, hd * D, D), r.rope_base), kh = ref_rope(k.narrow(1, g * D, D), r.rope_base);
        auto vh = v.narrow(1, g * D, D);
        for (int64_t t = 0; t < T; ++t) {
          auto sc = torch::zeros({t + 1}, x.options());
          for (int64_t s = 0; s <= t; ++s) sc[s] = torch::dot(qh[t], kh[s]) / std::sqrt(double(D));
          auto a = torch::softmax(sc, 0);
          for (int64_t s = 0; s <= t; ++s) y[t].narrow(0, hd * D, D) += a[s] * vh[s];
        }
      }
      auto att = torch::matmul(y, w[p + "attn.o_proj.weight"].t());
      auto x2 = x + att;
      if (!r.memory.empty() && r.memory[l]) x2 = x2 + ref_memory(h, w, p + "memory.", r.slots, r.segment);
      auto m = ref_rmsnorm(x2, n2, r.eps);
      auto f = torch::silu(torch::matmul(m, w[p + "mlp.w1.weight"].t())) * torch::matmul(m, w[p + "mlp.w3.weight"].t());
      x = x2 + torch::matmul(f, w[p + "mlp.w2.weight"].t());
    }
    x = ref_rmsnorm(x, w["ln_f.weight"], r.eps);
    batch.push_back(torch::matmul(x, (r.tied ? wte : w["lm_head.weight"]).t()));
  }
  return torch::stack(batch);
}

}  // namespace lmgrid::test
