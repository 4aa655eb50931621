// arch/gpt: the nanoGPT model on the CausalLM base. Learned positions, pre-LN blocks, causal
// attention, GELU MLP, dropout, weights tied between token embedding and output head, GPT-2
// initialisation.
// Not here: flash attention, KV-cache eviction (decoding stops at block_size context).
#include <cmath>

#include <lmgrid/base/errors.hpp>
#include <lmgrid/nn.hpp>
#include <lmgrid/plugin/plugin.hpp>

namespace {

using namespace lmgrid;

struct GPTConfig {
  int64_t vocab_size, padded_vocab, block_size, n_layer, n_head, d_model;
  double dropout;
  bool bias, mlp;
};

class BlockImpl : public nn::BlockOf<nn::KVCache> {
 public:
  explicit BlockImpl(const GPTConfig& c) {
    ln_1 = register_module("ln_1", nn::LayerNorm(c.d_model, c.bias));
    attn = register_module("attn", nn::CausalSelfAttention(c.d_model, c.n_head, c.bias, c.dropout));
    if (!c.mlp) return;  // attention-only blocks (Zoology's MQAR models)
    ln_2 = register_module("ln_2", nn::LayerNorm(c.d_model, c.bias));
    mlp = register_module("mlp", nn::MLP(c.d_model, 4 * c.d_model, c.bias, c.dropout));
  }
  torch::Tensor forward(const torch::Tensor& x, nn::KVCache& cache, const nn::Step& step) override {
    auto h = x + attn(ln_1(x), step.decoding ? &cache : nullptr);
    return mlp.is_empty() ? h : h + mlp(ln_2(h));
  }
  nn::LayerNorm ln_1{nullptr}, ln_2{nullptr};
  nn::CausalSelfAttention attn{nullptr};
  nn::MLP mlp{nullptr};
};
TORCH_MODULE(Block);

nn::CausalLMOptions lm_options(const GPTConfig& c) {
  nn::CausalLMOptions o;  // nanoGPT's names: wte, wpe, drop, h, ln_f; tied head
  o.vocab_size = c.vocab_size, o.padded_vocab = c.padded_vocab, o.d_model = c.d_model, o.block_size = c.block_size;
  o.learned_positions = true, o.dropout = c.dropout;
  return o;
}

class GPT : public nn::CausalLM {
 public:
  explicit GPT(const GPTConfig& c) : nn::CausalLM(lm_options(c)), c_(c) {
    for (int64_t i = 0; i < c.n_layer; ++i) add_block(Block(c));
    finish(nn::LayerNorm(c.d_model, c.bias));
    nn::init_gpt2(*this, 0.02);
    // Residual projections get std 0.02/sqrt(2 n_layer) (GPT-2 paper).
    torch::NoGradGuard ng;
    for (size_t i = 0; i < n_block(); ++i) {
      auto& b = block<BlockImpl>(i);
      b.attn->c_proj->weight.normal_(0.0, nn::gpt2_residual_std(0.02, c.n_layer));
      if (!b.mlp.is_empty()) b.mlp->c_proj->weight.normal_(0.0, nn::gpt2_residual_std(0.02, c.n_layer));
    }
  }

  // nanoGPT/PaLM estimate: 6 N + 12 L H Q T per token (N without position embeddings).
  double flops_per_token() const override {
    double n = static_cast<double>(parameter_count() - pos_emb->weight.numel());
    double q = static_cast<double>(c_.d_model / c_.n_head);
    return 6.0 * n + 12.0 * c_.n_layer * c_.n_head * q * c_.block_size;
  }
  int64_t state_size() const override { return 2 * c_.n_layer * c_.block_size * c_.d_model; }
  // wte (tied head) + wpe + per block ln_1, c_attn (3C^2), c_proj (C^2) and, with mlp, ln_2 and
  // the MLP (8C^2), biases where bias = true; + ln_f.
  int64_t declared_parameter_count() const override {
    const int64_t C = c_.d_model, b = c_.bias ? 1 : 0, V = c_.padded_vocab ? c_.padded_vocab : c_.vocab_size;
    const int64_t attn = C * (1 + b) + 4 * C * C + b * (3 * C + C), mlp = C * (1 + b) + 8 * C * C + b * (4 * C + C);
    const int64_t block = attn + (c_.mlp ? mlp : 0);
    return V * C + c_.block_size * C + c_.n_layer * block + C * (1 + b);
  }

 private:
  GPTConfig c_;
};

class GPTPlugin : public ArchPlugin {
 public:
  std::string name() const override { return "gpt"; }
  std::string version() const override { return "1.0"; }
  std::string summary() const override {
    return "nanoGPT: learned positions, pre-LN, causal attention, GELU MLP, tied embeddings";
  }
  std::vector<ParamSpec> params() const override {
    return {
        int_param("n_layer", 4, "transformer blocks", 1, 256),
        int_param("n_head", 4, "attention heads (must divide d_model)", 1, 256),
        int_param("d_model", 128, "embedding width", 1, 65536),
        real_param("dropout", 0.0, "dropout on embeddings, attention and residuals", 0.0, 1.0),
        bool_param("bias", false, "biases in Linear and LayerNorm (GPT-2: true)"),
        bool_param("mlp", true, "an MLP in every block (false: attention-only blocks, as Zoology's MQAR models)"),
        int_param("block_size", 0, "maximum context (0 = the dataset's seq_len)", 0),
        int_param("vocab_size", 0, "embedding rows (0 = the tokenizer's; larger pads, never smaller)", 0),
    };
  }
  std::map<std::string, Value> tiny_config() const override {
    return {{"n_layer", int64_t{2}}, {"n_head", int64_t{2}}, {"d_model", int64_t{16}}};
  }
  void check(const Params& p) const override {
    if (p.i("d_model") % p.i("n_head") != 0)
      throw UserError("d_model (" + std::to_string(p.i("d_model")) + ") must be divisible by n_head (" +
                      std::to_string(p.i("n_head")) + ")");
  }
  std::shared_ptr<Model> create(const Params& p, const ModelContext& ctx) const override {
    GPTConfig c{ctx.vocab_size, p.i("vocab_size"), nn::resolve_block_size(p.i("block_size"), ctx.seq_len),
                p.i("n_layer"), p.i("n_head"),     p.i("d_model"),
                p.f("dropout"), p.b("bias"),       p.b("mlp")};
    if (c.d_model % c.n_head != 0)
      throw std::invalid_argument("d_model (" + std::to_string(c.d_model) + ") must be divisible by n_head (" +
                                  std::to_string(c.n_head) + ")");
    return std::make_shared<GPT>(c);
  }
};

}  // namespace

LMGRID_PLUGIN(GPTPlugin)
