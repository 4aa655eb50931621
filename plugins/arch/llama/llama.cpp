// arch/llama: a Llama-style decoder on the CausalLM base, with the options of BLM (the "baby
// language model" of Jha-Pranav/OpenTransformer): pre-RMSNorm blocks, RoPE attention with grouped
// KV heads and no biases, a SwiGLU MLP of configurable width, tied or untied head, GPT-2 init.
//   h = x + drop_r(attn(norm_a(x)));  out = h + drop_m(swiglu(norm_m(h)))
// shared_norm = true is BLM's quirk: norm_a and norm_m are one RMSNorm ("norm").
// Not here: memory (arch/lm2), sliding windows, MoE.
#include <cmath>

#include <lmgrid/base/errors.hpp>
#include <lmgrid/nn.hpp>
#include <lmgrid/plugin/plugin.hpp>

namespace {

using namespace lmgrid;

struct LlamaConfig {
  int64_t vocab_size, padded_vocab, block_size, n_layer, d_model, n_head, n_kv_head, mlp_hidden;
  double rope_base, norm_eps, init_std, embedding_dropout, attention_dropout, residual_dropout, mlp_dropout;
  bool tied_head, shared_norm, mlp;
};

class BlockImpl : public nn::BlockOf<nn::KVCache> {
 public:
  explicit BlockImpl(const LlamaConfig& c) {
    auto opts = nn::AttentionOptions(c.d_model, c.n_head)
                    .n_kv_head(c.n_kv_head)
                    .fused_qkv(false)
                    .rope(true)
                    .rope_base(c.rope_base)
                    .dropout(c.attention_dropout);
    if (c.shared_norm)
      norm = register_module("norm", nn::RMSNorm(c.d_model, c.norm_eps));
    else
      attn_norm = register_module("attn_norm", nn::RMSNorm(c.d_model, c.norm_eps));
    attn = register_module("attn", nn::CausalSelfAttention(opts));
    resid_drop = register_module("resid_drop", torch::nn::Dropout(c.residual_dropout));
    if (!c.mlp) return;  // attention-only blocks (Zoology's MQAR models)
    if (!c.shared_norm) mlp_norm = register_module("mlp_norm", nn::RMSNorm(c.d_model, c.norm_eps));
    mlp = register_module("mlp", nn::SwiGLU(c.d_model, c.mlp_hidden));
    mlp_drop = register_module("mlp_drop", torch::nn::Dropout(c.mlp_dropout));
  }
  torch::Tensor forward(const torch::Tensor& x, nn::KVCache& cache, const nn::Step& step) override {
    auto& n1 = norm.is_empty() ? attn_norm : norm;
    auto& n2 = norm.is_empty() ? mlp_norm : norm;
    auto h = x + resid_drop(attn(n1(x), step.decoding ? &cache : nullptr));  // (B,T,C)
    return mlp.is_empty() ? h : h + mlp_drop(mlp(n2(h)));
  }
  nn::RMSNorm norm{nullptr}, attn_norm{nullptr}, mlp_norm{nullptr};
  nn::CausalSelfAttention attn{nullptr};
  nn::SwiGLU mlp{nullptr};
  torch::nn::Dropout resid_drop{nullptr}, mlp_drop{nullptr};
};
TORCH_MODULE(Block);

nn::CausalLMOptions lm_options(const LlamaConfig& c) {
  nn::CausalLMOptions o;  // checkpoint keys: wte, drop, h.N.*, ln_f, lm_head (untied)
  o.vocab_size = c.vocab_size, o.padded_vocab = c.padded_vocab, o.d_model = c.d_model, o.block_size = c.block_size;
  o.dropout = c.embedding_dropout, o.tied_head = c.tied_head;
  return o;
}

class Llama : public nn::CausalLM {
 public:
  explicit Llama(const LlamaConfig& c) : nn::CausalLM(lm_options(c)), c_(c) {
    for (int64_t i = 0; i < c.n_layer; ++i) add_block(Block(c));
    finish(nn::RMSNorm(c.d_model, c.norm_eps));
    nn::init_gpt2(*this, c.init_std);
    // Both residual output projections (o_proj, w2) get std / sqrt(2 n_layer) (GPT-2's scheme).
    torch::NoGradGuard ng;
    for (size_t i = 0; i < n_block(); ++i) {
      auto& b = block<BlockImpl>(i);
      b.attn->o_proj->weight.normal_(0.0, nn::gpt2_residual_std(c.init_std, c.n_layer));
      if (!b.mlp.is_empty()) b.mlp->w2->weight.normal_(0.0, nn::gpt2_residual_std(c.init_std, c.n_layer));
    }
  }

  // The count the equations give: embedding (and head), per block norms + attention + SwiGLU (when mlp).
  int64_t declared_parameter_count() const override {
    const int64_t C = c_.d_model, D = C / c_.n_head, Vp = c_.padded_vocab;
    const int64_t attn = 2 * C * C + 2 * C * c_.n_kv_head * D, mlp = c_.mlp ? 3 * C * c_.mlp_hidden : 0;
    const int64_t norms = (c_.shared_norm || !c_.mlp ? 1 : 2) * C;
    return Vp * C * (c_.tied_head ? 1 : 2) + c_.n_layer * (norms + attn + mlp) + C;
  }
  // 6 N (without the embedding table when the head is untied: a lookup, not a matmul)
  // + 12 L H D T for attention scores and values at full context.
  double flops_per_token() const override {
    double n = static_cast<double>(parameter_count() - (c_.tied_head ? 0 : tok_emb->weight.numel()));
    return 6.0 * n + 12.0 * c_.n_layer * c_.d_model * static_cast<double>(c_.block_size);
  }
  int64_t state_size() const override {
    return 2 * c_.n_layer * c_.block_size * c_.n_kv_head * (c_.d_model / c_.n_head);
  }

 private:
  LlamaConfig c_;
};

class LlamaPlugin : public ArchPlugin {
 public:
  std::string name() const override { return "llama"; }
  std::string version() const override { return "1.0"; }
  std::string summary() const override {
    return "Llama/BLM: pre-RMSNorm, RoPE, grouped KV heads, SwiGLU, no biases, KV-cache decoding";
  }
  std::vector<ParamSpec> params() const override {
    return {
        int_param("n_layer", 4, "blocks", 1, 256),
        int_param("d_model", 128, "width", 2, 65536),
        int_param("n_head", 4, "query heads (divide d_model; even head dim)", 1, 256),
        int_param("n_kv_head", 0, "key/value heads (0 = n_head; must divide n_head)", 0, 256),
        int_param("mlp_hidden", 0, "SwiGLU hidden width (0 = 8/3 d_model rounded up to 8)", 0),
        real_param("rope_base", 1e4, "RoPE base (theta)", 1.0),
        real_param("norm_eps", 1e-5, "RMSNorm epsilon", 0.0, 1.0),
        bool_param("tied_head", true, "output head tied to the token embedding"),
        bool_param("shared_norm", false, "BLM's quirk: one RMSNorm for both sub-layers of a block"),
        bool_param("mlp", true, "a SwiGLU MLP in every block (false: attention-only blocks, as Zoology's MQAR models)"),
        real_param("init_std", 0.02, "std of the N(0, std) init (output projections / sqrt(2 n_layer))", 0.0),
        real_param("embedding_dropout", 0.0, "dropout on the token embeddings", 0.0, 1.0),
        real_param("attention_dropout", 0.0, "dropout on attention weights (lmgrid_nn also drops its output)", 0.0,
                   1.0),
        real_param("residual_dropout", 0.0, "dropout on the attention output before the residual add", 0.0, 1.0),
        real_param("mlp_dropout", 0.0, "dropout on the MLP output before the residual add", 0.0, 1.0),
        int_param("block_size", 0, "maximum context (0 = the dataset's seq_len)", 0),
        int_param("vocab_size", 0, "embedding rows (0 = the tokenizer's; larger pads, never smaller)", 0),
    };
  }
  std::map<std::string, Value> tiny_config() const override {
    return {{"n_layer", int64_t{2}}, {"d_model", int64_t{16}}, {"n_head", int64_t{4}}, {"n_kv_head", int64_t{2}}};
  }
  void check(const Params& p) const override {
    const int64_t C = p.i("d_model"), H = p.i("n_head"), Hkv = p.i("n_kv_head") ? p.i("n_kv_head") : H;
    if (C % H) throw UserError("n_head (" + std::to_string(H) + ") must divide d_model (" + std::to_string(C) + ")");
    if ((C / H) % 2) throw UserError("d_model / n_head must be even for RoPE (got " + std::to_string(C / H) + ")");
    if (H % Hkv)
      throw UserError("n_kv_head (" + std::to_string(Hkv) + ") must divide n_head (" + std::to_string(H) + ")");
  }
  std::shared_ptr<Model> create(const Params& p, const ModelContext& ctx) const override {
    check(p);
    const int64_t C = p.i("d_model");
    LlamaConfig c{ctx.vocab_size,
                  p.i("vocab_size"),
                  nn::resolve_block_size(p.i("block_size"), ctx.seq_len),
                  p.i("n_layer"),
                  C,
                  p.i("n_head"),
                  p.i("n_kv_head") ? p.i("n_kv_head") : p.i("n_head"),
                  p.i("mlp_hidden") ? p.i("mlp_hidden") : nn::swiglu_hidden(C),
                  p.f("rope_base"),
                  p.f("norm_eps"),
                  p.f("init_std"),
                  p.f("embedding_dropout"),
                  p.f("attention_dropout"),
                  p.f("residual_dropout"),
                  p.f("mlp_dropout"),
                  p.b("tied_head"),
                  p.b("shared_norm"),
                  p.b("mlp")};
    if (c.padded_vocab == 0) c.padded_vocab = c.vocab_size;
    return std::make_shared<Llama>(c);
  }
};

}  // namespace

LMGRID_PLUGIN(LlamaPlugin)
