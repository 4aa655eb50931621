// arch/lm2: LM2, Large Memory Models (Kang et al. 2025, arXiv 2502.06049), on the Llama backbone
// of arch/llama: pre-RMSNorm blocks, RoPE attention with grouped KV heads, SwiGLU, and a memory
// module in all layers, the first k or a listed set. Two modes (README.md has the equations):
//   paper  a bank of N slots of width C per memory layer, read by cross-attention through an
//          output gate beside the attention output, written at the end of every segment from
//          that segment's tokens only (input gate, forget gate, tanh): causal at any length,
//          decodes token by token with the bank as state.
//   code   the released code as it is: an M x M memory (M = C = T), chained through the layers,
//          gates that average the inputs over the whole sequence (so not causal), no output
//          gate, the layer's output x + a + M'. No incremental decoding.
// Not here: top-k memory reads, loading a released memory bank.
//
// Letters: B batch, T new tokens, C width, N slots, S segment length, M the code's memory size.
#include <cmath>
#include <set>
#include <sstream>

#include <lmgrid/base/errors.hpp>
#include <lmgrid/nn.hpp>
#include <lmgrid/plugin/plugin.hpp>

namespace {

using namespace lmgrid;

struct LM2Config {
  int64_t vocab_size, padded_vocab, block_size, n_layer, d_model, n_head, n_kv_head, mlp_hidden;
  int64_t memory_slots, segment_len, memory_heads;
  double rope_base, norm_eps, init_std, memory_dropout, forget_bias, input_bias;
  bool tied_head, carry, code;
  std::vector<bool> has_memory;  // per layer
  bool mlp = true;               // false: no SwiGLU (mixer-only blocks, as Zoology's MQAR models)
};

// A layer's decoding state: its KV cache, and (paper mode) its memory bank and the tokens of the
// segment being read, kept until the segment is complete and written.
struct LM2State : nn::KVCache {
  torch::Tensor memory;   // (B,N,C) the bank the current segment reads; undefined: the initial one
  torch::Tensor h, e, s;  // the segment so far: read inputs (B,P,C), reads (B,P,C), scores (B,P,N)
};

torch::nn::Linear linear(int64_t in, int64_t out, bool bias) {
  return torch::nn::Linear(torch::nn::LinearOptions(in, out).bias(bias));
}

// Paper mode. Read (every token t of segment s, from the bank M_s written before s):
//   q_t = h_t Wq,  K = M_s Wk,  V = M_s Wv,  a_t = softmax(q_t K^T / sqrt C) (over slots),
//   e_t = a_t V,  read_t = sigmoid(e_t Wout) * e_t
// Write (at the end of segment s, from its tokens only), alpha = the read scores normalised over
// the segment's tokens for each slot:
//   E_i = sum_t alpha_ti e_t,  H_i = sum_t alpha_ti h_t,
//   M_{s+1,i} = sigmoid(H_i Win) * tanh(E_i) + sigmoid(E_i Wforget) * M_{s,i}
// With S = 1, alpha = 1 and this is the paper's M_{t+1} = g_in tanh(E_mem) + g_forget M_t token by
// token (g_in = sigmoid(E_t Win), g_forget = sigmoid(E_mem Wforget)).
class PaperMemoryImpl : public torch::nn::Module {
 public:
  PaperMemoryImpl(int64_t C, int64_t S) : C_(C), S_(S) {
    q_proj = register_module("q_proj", linear(C, C, false));
    k_proj = register_module("k_proj", linear(C, C, false));
    v_proj = register_module("v_proj", linear(C, C, false));
    out_gate = register_module("out_gate", linear(C, C, false));
    in_gate = register_module("in_gate", linear(C, C, false));
    forget_gate = register_module("forget_gate", linear(C, C, false));
  }
  // h (B,T,C) at positions pos..pos+T-1 -> the gated reads (B,T,C); st.memory is advanced past
  // every segment that ends in this call.
  torch::Tensor forward(const torch::Tensor& h, LM2State& st, int64_t pos, const torch::Tensor& start) {
    if (!st.memory.defined()) st.memory = start;
    const int64_t T = h.size(1);
    std::vector<torch::Tensor> out;
    for (int64_t t0 = 0; t0 < T;) {
      const int64_t done = (pos + t0) % S_, len = std::min(S_ - done, T - t0);
      auto hc = h.narrow(1, t0, len);                                                              // (B,len,C)
      auto k = k_proj(st.memory), v = v_proj(st.memory);                                           // (B,N,C)
      auto s = torch::matmul(q_proj(hc), k.transpose(1, 2)) / std::sqrt(static_cast<double>(C_));  // (B,len,N)
      auto e = torch::matmul(torch::softmax(s, -1), v);                                            // (B,len,C)
      out.push_back(torch::sigmoid(out_gate(e)) * e);
      st.h = done ? torch::cat({st.h, hc}, 1) : hc;
      st.e = done ? torch::cat({st.e, e}, 1) : e;
      st.s = done ? torch::cat({st.s, s}, 1) : s;
      if (done + len == S_) st.memory = write(st.memory, st.h, st.e, st.s);
      t0 += len;
    }
    return torch::cat(out, 1);
  }
  torch::Tensor write(const torch::Tensor& m, const torch::Tensor& h, const torch::Tensor& e, const torch::Tensor& s) {
    auto alpha = torch::softmax(s, 1).transpose(1, 2);              // (B,N,S) over the segment's tokens
    auto E = torch::matmul(alpha, e), H = torch::matmul(alpha, h);  // (B,N,C)
    return torch::sigmoid(in_gate(H)) * torch::tanh(E) + torch::sigmoid(forget_gate(E)) * m;
  }
  torch::nn::Linear q_proj{nullptr}, k_proj{nullptr}, v_proj{nullptr}, out_gate{nullptr}, in_gate{nullptr},
      forget_gate{nullptr};

 private:
  int64_t C_, S_;
};
TORCH_MODULE(PaperMemory);

// Code mode: the released MemoryModule on an M x M memory. a (B,M,M) is the layer's attention
// output (T = M), mem (B,M,M) the memory; returns the next memory M'.
class CodeMemoryImpl : public torch::nn::Module {
 public:
  CodeMemoryImpl(int64_t M, int64_t heads, double dropout, double forget_bias, double input_bias)
      : M_(M), heads_(heads), dropout_(dropout) {
    query_proj = register_module("query_proj", linear(M, M, true));
    key_proj = register_module("key_proj", linear(M, M, true));
    value_proj = register_module("value_proj", linear(M, M, true));
    mlp = register_module("mlp", linear(M, M, true));  // one Linear, applied twice
    ln1 = register_module("ln1", nn::LayerNorm(M, true));
    ln2 = register_module("ln2", nn::LayerNorm(M, true));
    input_gate_w = register_parameter("input_gate_w", torch::randn({M}));
    input_gate = register_module("input_gate", linear(M, 2 * M, true));
    const double r = 1.0 / std::sqrt(2.0 * M);
    memory_gate_w = register_parameter("memory_gate_w", torch::empty({M, 2 * M}).uniform_(-r, r));
    memory_gate_b = register_parameter("memory_gate_b", torch::empty({2 * M}).uniform_(-r, r));
    this->input_bias = register_parameter("input_bias", torch::full({}, input_bias));
    this->forget_bias = register_parameter("forget_bias", torch::full({}, forget_bias));
  }
  torch::Tensor forward(const torch::Tensor& a, const torch::Tensor& mem) {
    const int64_t B = a.size(0), T = a.size(1), H = heads_, D = M_ / heads_;
    auto q = query_proj(a).view({B, T, H, D}).transpose(1, 2);   // (B,H,T,D)
    auto k = key_proj(mem).view({B, M_, H, D}).transpose(1, 2);  // (B,H,M,D)
    auto v = value_proj(mem).view({B, M_, H, D}).transpose(1, 2);
    auto att = torch::matmul(q, k.transpose(-2, -1)) / std::sqrt(static_cast<double>(D));  // (B,H,T,M)
    auto mask = torch::ones({T, M_}, torch::TensorOptions().dtype(torch::kBool).device(a.device())).tril();
    att = torch::softmax(att.masked_fill(mask.logical_not(), -INFINITY), -1);  // token t sees slots 0..t
    att = torch::dropout(att, dropout_, is_training());
    auto read = torch::matmul(att, v).transpose(1, 2).reshape({B, T, M_});  // (B,T,M)
    auto m1 = ln1(mem + read);                                              // needs T = M
    auto m2 = ln2(m1 + torch::relu(mlp(torch::relu(mlp(m1)))));
    auto gi = input_gate(torch::relu(input_gate_w * a).mean(1)).unsqueeze(1);  // (B,1,2M): the whole sequence
    auto gm = torch::matmul(torch::tanh(mem), memory_gate_w) + memory_gate_b;  // (B,M,2M)
    auto gates = (gm + gi).chunk(2, -1);
    auto ig = torch::sigmoid(gates[0] + input_bias), fg = torch::sigmoid(gates[1] + forget_bias);
    return ig * torch::tanh(m2) + fg * mem;  // (B,M,M)
  }
  // 3 (M^2 + M) q/k/v + (M^2 + M) mlp + 4 M norms + M + (2M^2 + 2M) input gate + (2M^2 + 2M) memory gate + 2.
  static int64_t parameter_count(int64_t M) { return 8 * M * M + 13 * M + 2; }

  torch::nn::Linear query_proj{nullptr}, key_proj{nullptr}, value_proj{nullptr}, mlp{nullptr}, input_gate{nullptr};
  nn::LayerNorm ln1{nullptr}, ln2{nullptr};
  torch::Tensor input_gate_w, memory_gate_w, memory_gate_b, input_bias, forget_bias;

 private:
  int64_t M_, heads_;
  double dropout_;
};
TORCH_MODULE(CodeMemory);

// What the code mode's layers pass along: the memory chained from one layer to the next.
struct Chain {
  torch::Tensor memory;  // (B,M,M)
};

class BlockImpl : public nn::BlockOf<LM2State> {
 public:
  BlockImpl(const LM2Config& c, bool memory, std::shared_ptr<Chain> chain) : c_(c), chain_(std::move(chain)) {
    auto opts = nn::AttentionOptions(c.d_model, c.n_head)
                    .n_kv_head(c.n_kv_head)
                    .fused_qkv(false)
                    .rope(true)
                    .rope_base(c.rope_base);
    attn_norm = register_module("attn_norm", nn::RMSNorm(c.d_model, c.norm_eps));
    attn = register_module("attn", nn::CausalSelfAttention(opts));
    if (memory && c.code)
      code_memory = register_module(
          "memory", CodeMemory(c.d_model, c.memory_heads, c.memory_dropout, c.forget_bias, c.input_bias));
    else if (memory)
      paper_memory = register_module("memory", PaperMemory(c.d_model, c.segment_len));
    if (!c.mlp) return;
    mlp_norm = register_module("mlp_norm", nn::RMSNorm(c.d_model, c.norm_eps));
    mlp = register_module("mlp", nn::SwiGLU(c.d_model, c.mlp_hidden));
  }
  torch::Tensor forward(const torch::Tensor& x, LM2State& st, const nn::Step& step) override {
    auto h = attn_norm(x);  // (B,T,C)
    auto a = attn(h, step.decoding ? &st : nullptr);
    auto y = x + a;
    if (!paper_memory.is_empty()) {
      y = y + paper_memory(h, st, step.pos, start_memory(x));
      if (c_.carry && is_training() && !step.decoding) carried_ = st.memory.detach();
    } else if (!code_memory.is_empty()) {
      TORCH_CHECK(x.size(1) == c_.d_model, "lm2 mode code needs T = d_model = ", c_.d_model, " tokens, got ", x.size(1),
                  " (the released code's constraint)");
      chain_->memory = code_memory(a, chain_->memory);
      y = y + chain_->memory;  // x + a + M'
    }
    return mlp.is_empty() ? y : y + mlp(mlp_norm(y));
  }
  // The bank a fresh sequence starts from: identity slots, or (carry, training) the bank the
  // previous training step ended with, detached.
  torch::Tensor start_memory(const torch::Tensor& x) const {
    const int64_t B = x.size(0);
    if (c_.carry && is_training() && carried_.defined() && carried_.size(0) == B) return carried_;
    return torch::eye(c_.memory_slots, c_.d_model, x.options()).expand({B, c_.memory_slots, c_.d_model});
  }

  nn::RMSNorm attn_norm{nullptr}, mlp_norm{nullptr};
  nn::CausalSelfAttention attn{nullptr};
  PaperMemory paper_memory{nullptr};
  CodeMemory code_memory{nullptr};
  nn::SwiGLU mlp{nullptr};

 private:
  LM2Config c_;
  std::shared_ptr<Chain> chain_;
  torch::Tensor carried_;
};
TORCH_MODULE(Block);

nn::CausalLMOptions lm_options(const LM2Config& c) {
  nn::CausalLMOptions o;  // checkpoint keys: wte, h.N.{attn_norm,attn,memory,mlp_norm,mlp}, ln_f, lm_head
  o.vocab_size = c.vocab_size, o.padded_vocab = c.padded_vocab, o.d_model = c.d_model, o.block_size = c.block_size;
  o.tied_head = c.tied_head;
  return o;
}

class LM2 : public nn::CausalLM {
 public:
  explicit LM2(const LM2Config& c) : nn::CausalLM(lm_options(c)), c_(c), chain_(std::make_shared<Chain>()) {
    for (int64_t i = 0; i < c.n_layer; ++i) add_block(Block(c, c.has_memory[i], chain_));
    finish(nn::RMSNorm(c.d_model, c.norm_eps));
    torch::NoGradGuard ng;
    // N(0, std) on every Linear and Embedding (the code's memory gate keeps its uniform init, its
    // input gate vector its N(0, 1)); residual output projections std / sqrt(2 n_layer).
    nn::init_gpt2(*this, c.init_std);
    for (size_t i = 0; i < n_block(); ++i) {
      auto& b = block<BlockImpl>(i);
      b.attn->o_proj->weight.normal_(0.0, nn::gpt2_residual_std(c.init_std, c.n_layer));
      if (!b.mlp.is_empty()) b.mlp->w2->weight.normal_(0.0, nn::gpt2_residual_std(c.init_std, c.n_layer));
    }
  }

  ModelOutput forward(const torch::Tensor& tokens, DecodeState* state) override {
    if (!c_.code) return nn::CausalLM::forward(tokens, state);
    const int64_t B = tokens.size(0), M = c_.d_model;
    auto opts = tok_emb->weight.options();
    chain_->memory = c_.carry && is_training() && carried_.defined() && carried_.size(0) == B
                         ? carried_
                         : torch::eye(M, opts).expand({B, M, M});
    auto out = nn::CausalLM::forward(tokens, nullptr);
    if (c_.carry && is_training()) carried_ = chain_->memory.detach();
    chain_->memory = torch::Tensor();
    return out;
  }
  // The code mode is not causal (its gates average over the sequence): no incremental decoding.
  std::unique_ptr<DecodeState> new_decode_state(int64_t batch) override {
    return c_.code ? nullptr : nn::CausalLM::new_decode_state(batch);
  }
  int64_t declared_parameter_count() const override {
    const int64_t C = c_.d_model, D = C / c_.n_head;
    const int64_t layer = C + 2 * C * C + 2 * C * c_.n_kv_head * D + (c_.mlp ? C + 3 * C * c_.mlp_hidden : 0);
    const int64_t memory = c_.code ? CodeMemoryImpl::parameter_count(C) : 6 * C * C;
    int64_t n = c_.padded_vocab * C * (c_.tied_head ? 1 : 2) + c_.n_layer * layer + C;
    for (bool m : c_.has_memory) n += m ? memory : 0;
    return n;
  }
  // 6 N + 12 L C T for self-attention + per memory layer the reads (paper: N slots; code: M x M
  // attention and the memory's own M x M matmuls are in 6 N already).
  double flops_per_token() const override {
    double n = static_cast<double>(parameter_count() - (c_.tied_head ? 0 : tok_emb->weight.numel()));
    double mem_layers = 0;
    for (bool m : c_.has_memory) mem_layers += m;
    const double slots = c_.code ? c_.d_model : c_.memory_slots;
    return 6.0 * n + 12.0 * c_.n_layer * c_.d_model * static_cast<double>(c_.block_size) +
           12.0 * mem_layers * slots * c_.d_model;
  }
  int64_t state_size() const override {
    double mem_layers = 0;
    for (bool m : c_.has_memory) mem_layers += m;
    return 2 * c_.n_layer * c_.block_size * c_.n_kv_head * (c_.d_model / c_.n_head) +
           static_cast<int64_t>(mem_layers) * (c_.memory_slots + c_.segment_len * 2) * c_.d_model;
  }

 private:
  LM2Config c_;
  std::shared_ptr<Chain> chain_;
  torch::Tensor carried_;
};

// "all", "first:K" or a list of layer indices "0,3,5".
std::vector<bool> parse_memory_layers(const std::string& spec, int64_t n_layer) {
  std::vector<bool> out(n_layer, false);
  if (spec == "all") return std::vector<bool>(n_layer, true);
  auto bad = [&] {
    return UserError("memory_layers must be \"all\", \"first:K\" (1 <= K <= n_layer) or layer indices \"0,2\" below " +
                     std::to_string(n_layer) + " (got '" + spec + "')");
  };
  try {
    if (spec.rfind("first:", 0) == 0) {
      size_t used = 0;
      int64_t k = std::stoll(spec.substr(6), &used);
      if (used != spec.size() - 6 || k < 1 || k > n_layer) throw bad();
      for (int64_t i = 0; i < k; ++i) out[i] = true;
      return out;
    }
    std::stringstream ss(spec);
    std::string item;
    while (std::getline(ss, item, ',')) {
      size_t used = 0;
      int64_t i = std::stoll(item, &used);
      if (used != item.size() || i < 0 || i >= n_layer) throw bad();
      out[i] = true;
    }
  } catch (const std::logic_error&) {
    throw bad();
  }
  return out;
}

class LM2Plugin : public ArchPlugin {
 public:
  std::string name() const override { return "lm2"; }
  std::string version() const override { return "1.0"; }
  std::string summary() const override {
    return "LM2: Llama backbone + gated memory bank; mode paper (causal, segment writes) or code (as released)";
  }
  std::vector<ParamSpec> params() const override {
    return {
        string_param("mode", "paper", "paper: causal segment memory; code: the released code (M = d_model = seq_len)",
                     {"paper", "code"}),
        int_param("n_layer", 4, "blocks", 1, 256),
        int_param("d_model", 128, "width (code mode: also the memory size M and the sequence length)", 2, 65536),
        int_param("n_head", 4, "query heads (divide d_model; even head dim)", 1, 256),
        int_param("n_kv_head", 0, "key/value heads (0 = n_head; must divide n_head)", 0, 256),
        int_param("mlp_hidden", 0, "SwiGLU hidden width (0 = 8/3 d_model rounded up to 8)", 0),
        real_param("rope_base", 1e4, "RoPE base (theta)", 1.0),
        real_param("norm_eps", 1e-5, "RMSNorm epsilon", 0.0, 1.0),
        bool_param("tied_head", true, "output head tied to the token embedding"),
        bool_param("mlp", true,
                   "a SwiGLU MLP in every block (false: attention + memory only, as Zoology's MQAR models)"),
        real_param("init_std", 0.02, "std of the N(0, std) init (output projections / sqrt(2 n_layer))", 0.0),
        string_param("memory_layers", "all", "layers with memory: all, first:K, or indices like 0,2"),
        int_param("memory_slots", 16, "paper mode: slots N of the memory bank", 1, 1 << 20),
        int_param("segment_len", 16, "paper mode: tokens per memory write", 1, 1 << 20),
        bool_param("memory_carry", false,
                   "carry the memory across training steps, detached (the released code); false: reset per sequence"),
        int_param("memory_heads", 8, "code mode: heads of the memory read (divide d_model)", 1, 4096),
        real_param("memory_dropout", 0.9, "code mode: dropout on the memory attention weights (released: 0.9)", 0.0,
                   1.0),
        real_param("forget_bias", 1.0, "code mode: initial learnable forget-gate bias", -100.0, 100.0),
        real_param("input_bias", 0.0, "code mode: initial learnable input-gate bias", -100.0, 100.0),
        int_param("block_size", 0, "maximum context (0 = the dataset's seq_len)", 0),
        int_param("vocab_size", 0, "embedding rows (0 = the tokenizer's; larger pads, never smaller)", 0),
    };
  }
  std::map<std::string, Value> tiny_config() const override {
    // segment 5 does not divide the sweep's 16 tokens: partial segments are exercised too.
    return {{"n_layer", int64_t{2}},     {"d_model", int64_t{16}},     {"n_head", int64_t{4}},
            {"n_kv_head", int64_t{2}},   {"memory_slots", int64_t{4}}, {"segment_len", int64_t{5}},
            {"memory_heads", int64_t{4}}};
  }
  void check(const Params& p) const override {
    const int64_t C = p.i("d_model"), H = p.i("n_head"), Hkv = p.i("n_kv_head") ? p.i("n_kv_head") : H;
    if (C % H) throw UserError("n_head (" + std::to_string(H) + ") must divide d_model (" + std::to_string(C) + ")");
    if ((C / H) % 2) throw UserError("d_model / n_head must be even for RoPE (got " + std::to_string(C / H) + ")");
    if (H % Hkv)
      throw UserError("n_kv_head (" + std::to_string(Hkv) + ") must divide n_head (" + std::to_string(H) + ")");
    if (p.s("mode") == "code" && C % p.i("memory_heads"))
      throw UserError("memory_heads (" + std::to_string(p.i("memory_heads")) + ") must divide d_model (" +
                      std::to_string(C) + ")");
    parse_memory_layers(p.s("memory_layers"), p.i("n_layer"));
  }
  std::shared_ptr<Model> create(const Params& p, const ModelContext& ctx) const override {
    check(p);
    const int64_t C = p.i("d_model");
    LM2Config c{ctx.vocab_size,
                p.i("vocab_size") ? p.i("vocab_size") : ctx.vocab_size,
                nn::resolve_block_size(p.i("block_size"), ctx.seq_len),
                p.i("n_layer"),
                C,
                p.i("n_head"),
                p.i("n_kv_head") ? p.i("n_kv_head") : p.i("n_head"),
                p.i("mlp_hidden") ? p.i("mlp_hidden") : nn::swiglu_hidden(C),
                p.s("mode") == "code" ? C : p.i("memory_slots"),
                p.i("segment_len"),
                p.i("memory_heads"),
                p.f("rope_base"),
                p.f("norm_eps"),
                p.f("init_std"),
                p.f("memory_dropout"),
                p.f("forget_bias"),
                p.f("input_bias"),
                p.b("tied_head"),
                p.b("memory_carry"),
                p.s("mode") == "code",
                parse_memory_layers(p.s("memory_layers"), p.i("n_layer")),
                p.b("mlp")};
    if (c.code && ctx.seq_len != 0 && ctx.seq_len != C)
      throw UserError("mode code needs seq_len = d_model (the released code's T = M = d constraint); got seq_len " +
                      std::to_string(ctx.seq_len) + ", d_model " + std::to_string(C));
    return std::make_shared<LM2>(c);
  }
};

}  // namespace

LMGRID_PLUGIN(LM2Plugin)
