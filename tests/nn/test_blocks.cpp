// lmgrid_nn blocks against naive references written from the equations, in float64.
// Tolerance 1e-12 (absolute and relative, torch::allclose) wherever both sides compute the same
// function in float64: values are O(1), so rounding differences are ~1e-15 and any change of
// formula (a head mapped to the wrong KV head, RoPE at a wrong position or base, a mask off by
// one) moves outputs by far more. Exceptions are stated where they occur.
//
// Letters: B batch, T tokens, C width, H query heads, G (Hkv) key/value heads, D head dim.
#include <catch2/catch.hpp>

#include <cmath>
#include <vector>

#include <lmgrid/base/errors.hpp>
#include <lmgrid/nn.hpp>

using namespace lmgrid;

namespace {

constexpr double kTol = 1e-12;
const auto kF64 = torch::kFloat64;

bool close(const torch::Tensor& a, const torch::Tensor& b, double tol = kTol) {
  return a.sizes() == b.sizes() && torch::allclose(a, b, tol, tol);
}

// RoPE of one head's rows x (T, D) at positions pos0.., by its definition, pair by pair.
torch::Tensor naive_rope(const torch::Tensor& x, int64_t pos0, double base) {
  auto y = x.clone();
  const int64_t T = x.size(0), D = x.size(1);
  for (int64_t t = 0; t < T; ++t)
    for (int64_t i = 0; i < D / 2; ++i) {
      const double a = double(pos0 + t) * std::pow(base, -2.0 * double(i) / double(D));
      auto x0 = x[t][2 * i], x1 = x[t][2 * i + 1];
      y[t][2 * i] = x0 * std::cos(a) - x1 * std::sin(a);
      y[t][2 * i + 1] = x0 * std::sin(a) + x1 * std::cos(a);
    }
  return y;
}

torch::Tensor affine(const torch::Tensor& x, const torch::nn::Linear& l) {
  auto y = torch::matmul(x, l->weight.t());
  return l->bias.defined() ? y + l->bias : y;
}

// Attention by a loop over batches, query heads and tokens: query head h reads KV head
// h / (H / G); causal: token i sees 0..i; softmax written out with its max subtracted.
torch::Tensor naive_attention(nn::CausalSelfAttentionImpl& m, const torch::Tensor& x) {
  const auto& o = m.options();
  const int64_t B = x.size(0), T = x.size(1), C = o.d_model(), H = o.n_head(), D = C / H;
  const int64_t G = o.n_kv_head() > 0 ? o.n_kv_head() : H;
  torch::Tensor q, k, v;
  if (o.fused_qkv()) {
    auto y = affine(x, m.c_attn);
    q = y.narrow(2, 0, C), k = y.narrow(2, C, G * D), v = y.narrow(2, C + G * D, G * D);
  } else {
    q = affine(x, m.q_proj), k = affine(x, m.k_proj), v = affine(x, m.v_proj);
  }
  auto out = torch::zeros({B, T, C}, x.options());
  for (int64_t b = 0; b < B; ++b)
    for (int64_t h = 0; h < H; ++h) {
      const int64_t g = h / (H / G);
      auto qh = q[b].narrow(1, h * D, D), kh = k[b].narrow(1, g * D, D), vh = v[b].narrow(1, g * D, D);  // (T,D)
      if (o.rope()) qh = naive_rope(qh, 0, o.rope_base()), kh = naive_rope(kh, 0, o.rope_base());
      for (int64_t i = 0; i < T; ++i) {
        const int64_t last = o.causal() ? i : T - 1;
        std::vector<double> s(last + 1);
        double mx = -1e300, z = 0;
        for (int64_t j = 0; j <= last; ++j)
          mx = std::max(mx, s[j] = (qh[i] * kh[j]).sum().item<double>() / std::sqrt(double(D)));
        for (auto& e : s) z += (e = std::exp(e - mx));
        for (int64_t j = 0; j <= last; ++j) out[b][i].narrow(0, h * D, D) += vh[j] * (s[j] / z);
      }
    }
  return affine(out, m.out_proj());
}

nn::CausalSelfAttention make_attention(const nn::AttentionOptions& o) {
  nn::CausalSelfAttention m(o);
  m->to(kF64);
  m->eval();
  return m;
}

// Separate q/k/v weights copied from a fused module (rows of c_attn: q | k | v).
void copy_fused_into_separate(nn::CausalSelfAttentionImpl& fused, nn::CausalSelfAttentionImpl& sep) {
  torch::NoGradGuard ng;
  const int64_t C = fused.options().d_model(), kv = (fused.c_attn->weight.size(0) - C) / 2;
  auto w = fused.c_attn->weight.split_with_sizes({C, kv, kv}, 0);
  sep.q_proj->weight.copy_(w[0]), sep.k_proj->weight.copy_(w[1]), sep.v_proj->weight.copy_(w[2]);
  sep.o_proj->weight.copy_(fused.c_proj->weight);
  if (fused.options().bias()) {
    auto b = fused.c_attn->bias.split_with_sizes({C, kv, kv}, 0);
    sep.q_proj->bias.copy_(b[0]), sep.k_proj->bias.copy_(b[1]), sep.v_proj->bias.copy_(b[2]);
    sep.o_proj->bias.copy_(fused.c_proj->bias);
  }
}

}  // namespace

TEST_CASE("nn attention: MHA, GQA and MQA equal a naive per-head loop with repeated KV heads", "[unit][nn]") {
  torch::manual_seed(10);
  auto x = torch::randn({2, 6, 24}, kF64);
  for (int64_t G : {6, 3, 2, 1}) {
    for (bool fused : {true, false}) {
      for (bool rope : {false, true}) {
        DYNAMIC_SECTION("n_kv_head " << G << (fused ? " fused" : " separate") << (rope ? " rope" : "")) {
          auto m = make_attention(
              nn::AttentionOptions(24, 6).n_kv_head(G).fused_qkv(fused).bias(true).rope(rope).rope_base(1000.0));
          CHECK(close(m(x), naive_attention(*m, x)));
        }
      }
    }
  }
}

TEST_CASE("nn attention: non-causal attention sees every token of the call", "[unit][nn]") {
  torch::manual_seed(11);
  auto x = torch::randn({2, 5, 16}, kF64);
  auto m = make_attention(nn::AttentionOptions(16, 4).n_kv_head(2).causal(false));
  CHECK(close(m(x), naive_attention(*m, x)));
}

TEST_CASE("nn attention: separate q/k/v projections equal the fused one with the same weights", "[unit][nn]") {
  torch::manual_seed(12);
  auto x = torch::randn({2, 7, 32}, kF64);
  for (int64_t G : {4, 2, 1}) {
    DYNAMIC_SECTION("n_kv_head " << G) {
      auto o = nn::AttentionOptions(32, 4).n_kv_head(G).bias(true).rope(true);
      auto fused = make_attention(o);
      auto sep = make_attention(nn::AttentionOptions(o).fused_qkv(false));
      CHECK(fused->c_attn->weight.size(0) == 32 + 2 * G * 8);
      CHECK(sep->k_proj->weight.size(0) == G * 8);
      copy_fused_into_separate(*fused, *sep);
      CHECK(close(fused(x), sep(x)));
    }
  }
}

TEST_CASE("nn attention: checkpoint keys of the two layouts", "[unit][nn]") {
  auto keys = [](nn::CausalSelfAttention m) {
    std::vector<std::string> k;
    for (const auto& p : m->named_parameters()) k.push_back(p.key());
    return k;
  };
  CHECK(keys(nn::CausalSelfAttention(16, 4, false, 0.0)) == std::vector<std::string>{"c_attn.weight", "c_proj.weight"});
  CHECK(keys(nn::CausalSelfAttention(nn::AttentionOptions(16, 4).fused_qkv(false))) ==
        std::vector<std::string>{"q_proj.weight", "k_proj.weight", "v_proj.weight", "o_proj.weight"});
  CHECK_THROWS_WITH(nn::CausalSelfAttention(nn::AttentionOptions(16, 4).n_kv_head(3)),
                    Catch::Contains("n_kv_head (3) must divide n_head (4)"));
}

TEST_CASE("nn rope: the base sets the angles; positions as an offset or a tensor agree", "[unit][nn]") {
  torch::manual_seed(13);
  auto x = torch::randn({2, 3, 5, 8}, kF64);  // (B,H,T,D)
  for (double base : {10000.0, 500000.0, 7.0}) {
    auto y = nn::apply_rope(x, 4, base);
    CHECK(close(y[1][2], naive_rope(x[1][2], 4, base)));
    CHECK(close(nn::apply_rope(x, torch::arange(4, 9, torch::kLong), base), y));
  }
  CHECK_FALSE(close(nn::apply_rope(x, 4, 10000.0), nn::apply_rope(x, 4, 500000.0), 1e-3));
  // Norm-preserving: each pair is rotated.
  CHECK(close(nn::apply_rope(x, 3, 10000.0).norm(2, -1), x.norm(2, -1)));
}

TEST_CASE("nn attention: KV-cache decoding equals the full forward (GQA, RoPE)", "[unit][nn]") {
  torch::manual_seed(14);
  auto m = make_attention(nn::AttentionOptions(24, 6).n_kv_head(2).fused_qkv(false).rope(true).rope_base(500.0));
  auto x = torch::randn({2, 9, 24}, kF64);
  auto full = m(x, nullptr);
  nn::KVCache cache;
  std::vector<torch::Tensor> parts{m(x.narrow(1, 0, 4), &cache)};  // prefill
  for (int64_t t = 4; t < 9; ++t) parts.push_back(m(x.narrow(1, t, 1), &cache));
  CHECK(cache.length() == 9);
  CHECK(cache.k.size(1) == 2);  // the cache holds the KV heads only
  CHECK(close(torch::cat(parts, 1), full));
  // A prefill chunk after cached tokens (T > 1 and P > 0: the offset causal mask).
  nn::KVCache c2;
  auto a = m(x.narrow(1, 0, 3), &c2), b = m(x.narrow(1, 3, 6), &c2);
  CHECK(close(torch::cat({a, b}, 1), full));
}

TEST_CASE("nn causal conv: function and module equal the definition; decoding equals the full pass", "[unit][nn]") {
  torch::manual_seed(15);
  const int64_t B = 2, T = 9, C = 5, k = 4;
  auto x = torch::randn({B, T, C}, kF64);
  auto w = torch::randn({C, k}, kF64), bias = torch::randn({C}, kF64);
  // y_t = sum_j w_j x_{t-k+1+j} + b, zeros before the start.
  auto ref = torch::zeros({B, T, C}, kF64);
  for (int64_t t = 0; t < T; ++t)
    for (int64_t j = 0; j < k; ++j)
      if (t - k + 1 + j >= 0) ref.select(1, t) += x.select(1, t - k + 1 + j) * w.select(1, j);
  ref += bias;
  CHECK(close(nn::causal_conv1d(x, w, bias, nullptr), ref));
  CHECK(close(nn::causal_conv1d(x, w, {}, nullptr), ref - bias));

  nn::CausalConv1d conv(C, k);
  conv->to(kF64);
  {
    torch::NoGradGuard ng;
    conv->conv->weight.copy_(w.unsqueeze(1));
    conv->conv->bias.copy_(bias);
  }
  CHECK(close(conv(x), ref));

  // Decoding: a prefill of 2 tokens, then one at a time (the history carries k-1 inputs).
  torch::Tensor h1, h2;
  std::vector<torch::Tensor> f{nn::causal_conv1d(x.narrow(1, 0, 2), w, bias, &h1)}, m{conv(x.narrow(1, 0, 2), &h2)};
  for (int64_t t = 2; t < T; ++t) {
    f.push_back(nn::causal_conv1d(x.narrow(1, t, 1), w, bias, &h1));
    m.push_back(conv(x.narrow(1, t, 1), &h2));
  }
  CHECK(h1.sizes() == torch::IntArrayRef({B, k - 1, C}));
  CHECK(close(torch::cat(f, 1), ref));
  CHECK(close(torch::cat(m, 1), ref));
}

TEST_CASE("nn SwiGLU equals w2(silu(w1 x) * w3 x) written out", "[unit][nn]") {
  torch::manual_seed(16);
  nn::SwiGLU m(8, nn::swiglu_hidden(8));
  m->to(kF64);
  CHECK(m->w1->weight.size(0) == 24);  // 8/3 * 8 = 21 -> 24
  auto x = torch::randn({2, 3, 8}, kF64);
  auto a = torch::matmul(x, m->w1->weight.t()), g = torch::matmul(x, m->w3->weight.t());
  auto ref = torch::matmul(a / (1 + torch::exp(-a)) * g, m->w2->weight.t());
  CHECK(close(m(x), ref));
  CHECK(nn::swiglu_hidden(128) == 344);
}

TEST_CASE("nn gated RMSNorm equals a loop over groups", "[unit][nn]") {
  torch::manual_seed(17);
  const int64_t C = 12, G = 3, W = C / G;
  nn::GatedRMSNorm m(C, G, 1e-5);
  m->to(kF64);
  {
    torch::NoGradGuard ng;
    m->weight.copy_(torch::randn({C}, kF64));
  }
  auto x = torch::randn({2, 4, C}, kF64), z = torch::randn({2, 4, C}, kF64);
  auto gated = x * z / (1 + torch::exp(-z));
  auto ref = torch::empty_like(x);
  for (int64_t g = 0; g < G; ++g) {
    auto part = gated.narrow(-1, g * W, W);
    ref.narrow(-1, g * W, W).copy_(part / torch::sqrt(part.pow(2).mean(-1, true) + 1e-5));
  }
  CHECK(close(m(x, z), ref * m->weight));
  CHECK_THROWS(nn::GatedRMSNorm(C, 5));
}

namespace {

// A minimal stack for the CausalLM tests: pre-norm attention (RoPE, GQA) and a SwiGLU.
class TestBlockImpl : public nn::BlockOf<nn::KVCache> {
 public:
  explicit TestBlockImpl(int64_t C) {
    norm = register_module("norm", nn::RMSNorm(C));
    attn = register_module("attn", nn::CausalSelfAttention(nn::AttentionOptions(C, 4).n_kv_head(2).rope(true)));
    mlp = register_module("mlp", nn::SwiGLU(C, 2 * C));
  }
  torch::Tensor forward(const torch::Tensor& x, nn::KVCache& kv, const nn::Step& step) override {
    auto h = x + attn(norm(x), step.decoding ? &kv : nullptr);
    return h + mlp(h);
  }
  nn::RMSNorm norm{nullptr};
  nn::CausalSelfAttention attn{nullptr};
  nn::SwiGLU mlp{nullptr};
};
TORCH_MODULE(TestBlock);

class TestLM : public nn::CausalLM {
 public:
  explicit TestLM(nn::CausalLMOptions o, int64_t n_layer = 2) : nn::CausalLM(o) {
    for (int64_t i = 0; i < n_layer; ++i) add_block(TestBlock(o.d_model));
    finish(nn::LayerNorm(o.d_model, false));
  }
};

nn::CausalLMOptions lm(int64_t V, int64_t padded = 0, bool tied = true) {
  nn::CausalLMOptions o;
  o.vocab_size = V, o.padded_vocab = padded, o.d_model = 16, o.tied_head = tied;
  return o;
}

}  // namespace

TEST_CASE("nn CausalLM: vocab_size pads the embedding and head; logits keep the tokenizer's vocabulary", "[unit][nn]") {
  torch::manual_seed(18);
  auto idx = torch::randint(0, 11, {2, 5}, torch::kLong);
  for (bool tied : {true, false}) {
    DYNAMIC_SECTION((tied ? "tied" : "untied")) {
      TestLM m(lm(11, 16, tied));
      m.eval();
      CHECK(m.tok_emb->weight.size(0) == 16);
      if (!tied) CHECK(m.lm_head->weight.size(0) == 16);
      auto logits = m.forward(idx, nullptr).logits;
      CHECK(logits.sizes() == torch::IntArrayRef({2, 5, 11}));
      // The cut logits are the first 11 of the padded head's.
      torch::Tensor x = m.tok_emb(idx);
      for (size_t i = 0; i < m.n_block(); ++i) {
        nn::KVCache scratch;
        x = m.block<TestBlockImpl>(i).forward(x, scratch, {});
      }
      x = m.final_norm.forward(x);
      auto full = tied ? torch::matmul(x, m.tok_emb->weight.t()) : m.lm_head(x);
      CHECK(full.size(-1) == 16);
      CHECK(torch::allclose(logits, full.narrow(-1, 0, 11), 1e-6, 1e-6));  // float32, same ops
    }
  }
  // Unpadded: exactly the tokenizer's rows; smaller than the tokenizer's: a clear error.
  CHECK(TestLM(lm(11)).tok_emb->weight.size(0) == 11);
  CHECK_THROWS_MATCHES(
      TestLM(lm(50257, 50000)), UserError,
      Catch::Message("vocab_size (50000) is smaller than the tokenizer's vocabulary (50257); it may only pad it"));
  // nanoGPT's padding of GPT-2's vocabulary.
  nn::CausalLMOptions o = lm(50257, 50304);
  o.d_model = 4;
  TestLM g(o, 0);
  CHECK(g.tok_emb->weight.size(0) == 50304);
  CHECK(g.forward(torch::zeros({1, 2}, torch::kLong), nullptr).logits.size(-1) == 50257);
}

TEST_CASE("nn CausalLM: decoding state per layer equals the full forward; learned positions and block_size",
          "[unit][nn]") {
  torch::manual_seed(19);
  auto o = lm(13);
  o.learned_positions = true, o.block_size = 8;
  TestLM m(o);
  m.to(kF64);
  m.eval();
  CHECK(m.max_context() == 8);
  CHECK(m.pos_emb->weight.size(0) == 8);
  auto idx = torch::randint(0, 13, {2, 8}, torch::kLong);
  auto full = m.forward(idx, nullptr).logits;
  auto st = m.new_decode_state(2);
  REQUIRE(st);
  std::vector<torch::Tensor> parts{m.forward(idx.narrow(1, 0, 3), st.get()).logits};
  for (int64_t t = 3; t < 8; ++t) parts.push_back(m.forward(idx.narrow(1, t, 1), st.get()).logits);
  CHECK(close(torch::cat(parts, 1), full));
  auto& cs = dynamic_cast<nn::CausalLMState&>(*st);
  CHECK(cs.pos == 8);
  REQUIRE(cs.layers.size() == 2);
  CHECK(dynamic_cast<nn::KVCache&>(*cs.layers[1]).length() == 8);
  CHECK_THROWS_WITH(m.forward(idx.narrow(1, 0, 1), st.get()),
                    Catch::Contains("sequence of 9 tokens exceeds block_size 8"));
  CHECK_THROWS_WITH(m.forward(torch::zeros({1, 9}, torch::kLong), nullptr), Catch::Contains("exceeds block_size 8"));
  // Checkpoint keys follow the options' names.
  std::vector<std::string> keys;
  for (const auto& p : m.named_parameters()) keys.push_back(p.key());
  CHECK(keys.front() == "wte.weight");
  CHECK(keys[1] == "wpe.weight");
  CHECK(keys[2] == "h.0.norm.weight");
  CHECK(keys.back() == "ln_f.weight");
  CHECK(nn::resolve_block_size(0, 64) == 64);
  CHECK(nn::resolve_block_size(32, 64) == 32);
}
