// arch/gpt: the nanoGPT model. Learned positions, pre-LN blocks, causal attention, GELU MLP,
// dropout, weights tied between token embedding and output head, GPT-2 initialisation.
// Not here: flash attention, KV-cache eviction (decoding stops at block_size context).
#include <cmath>

#include <lmgrid/errors.hpp>
#include <lmgrid/nn.hpp>
#include <lmgrid/plugin.hpp>

namespace {

using namespace lmgrid;

struct GPTConfig {
  int64_t vocab_size, block_size, n_layer, n_head, d_model;
  double dropout;
  bool bias;
};

class BlockImpl : public torch::nn::Module {
 public:
  explicit BlockImpl(const GPTConfig& c) {
    ln_1 = register_module("ln_1", nn::LayerNorm(c.d_model, c.bias));
    attn = register_module("attn", nn::CausalSelfAttention(c.d_model, c.n_head, c.bias, c.dropout));
    ln_2 = register_module("ln_2", nn::LayerNorm(c.d_model, c.bias));
    mlp = register_module("mlp", nn::MLP(c.d_model, 4 * c.d_model, c.bias, c.dropout));
  }
  torch::Tensor forward(torch::Tensor x, nn::KVCache* cache) {
    x = x + attn(ln_1(x), cache);
    return x + mlp(ln_2(x));
  }
  nn::LayerNorm ln_1{nullptr}, ln_2{nullptr};
  nn::CausalSelfAttention attn{nullptr};
  nn::MLP mlp{nullptr};
};
TORCH_MODULE(Block);

struct GPTState : DecodeState {
  std::vector<nn::KVCache> layers;
};

class GPT : public Model {
 public:
  explicit GPT(const GPTConfig& c) : c_(c) {
    wte = register_module("wte", torch::nn::Embedding(c.vocab_size, c.d_model));
    wpe = register_module("wpe", torch::nn::Embedding(c.block_size, c.d_model));
    drop = register_module("drop", torch::nn::Dropout(c.dropout));
    h = register_module("h", torch::nn::ModuleList());
    for (int64_t i = 0; i < c.n_layer; ++i) h->push_back(Block(c));
    ln_f = register_module("ln_f", nn::LayerNorm(c.d_model, c.bias));
    nn::init_gpt2(*this, 0.02);
    // Residual projections get std 0.02/sqrt(2 n_layer) (GPT-2 paper).
    torch::NoGradGuard ng;
    for (auto& m : *h) {
      auto* b = m->as<BlockImpl>();
      b->attn->c_proj->weight.normal_(0.0, 0.02 / std::sqrt(2.0 * c.n_layer));
      b->mlp->c_proj->weight.normal_(0.0, 0.02 / std::sqrt(2.0 * c.n_layer));
    }
  }

  ModelOutput forward(const torch::Tensor& idx, DecodeState* state) override {
    auto* st = static_cast<GPTState*>(state);
    int64_t T = idx.size(1), past = st && !st->layers.empty() ? st->layers[0].length() : 0;
    TORCH_CHECK(past + T <= c_.block_size, "sequence of ", past + T, " tokens exceeds block_size ", c_.block_size);
    auto pos = torch::arange(past, past + T, torch::TensorOptions().dtype(torch::kLong).device(idx.device()));
    auto x = drop(wte(idx) + wpe(pos));  // (B,T,C)
    if (st && st->layers.empty()) st->layers.resize(c_.n_layer);
    for (size_t i = 0; i < h->size(); ++i) x = h[i]->as<BlockImpl>()->forward(x, st ? &st->layers[i] : nullptr);
    x = ln_f(x);
    return {torch::nn::functional::linear(x, wte->weight), {}};  // tied head: (B,T,V)
  }

  // nanoGPT/PaLM estimate: 6 N + 12 L H Q T per token (N without position embeddings).
  double flops_per_token() const override {
    double n = static_cast<double>(parameter_count() - wpe->weight.numel());
    double q = static_cast<double>(c_.d_model / c_.n_head);
    return 6.0 * n + 12.0 * c_.n_layer * c_.n_head * q * c_.block_size;
  }
  int64_t state_size() const override { return 2 * c_.n_layer * c_.block_size * c_.d_model; }
  std::unique_ptr<DecodeState> new_decode_state(int64_t) override { return std::make_unique<GPTState>(); }
  int64_t max_context() const override { return c_.block_size; }

  torch::nn::Embedding wte{nullptr}, wpe{nullptr};
  torch::nn::Dropout drop{nullptr};
  torch::nn::ModuleList h{nullptr};
  nn::LayerNorm ln_f{nullptr};

 private:
  GPTConfig c_;
};

class GPTPlugin : public ArchPlugin {
 public:
  std::string name() const override { return "gpt"; }
  std::string version() const override { return "1.0"; }
  std::string summary() const override { return "nanoGPT: learned positions, pre-LN, causal attention, GELU MLP, tied embeddings"; }
  std::vector<ParamSpec> params() const override {
    return {
        int_param("n_layer", 4, "transformer blocks", 1, 256),
        int_param("n_head", 4, "attention heads (must divide d_model)", 1, 256),
        int_param("d_model", 128, "embedding width", 1, 65536),
        real_param("dropout", 0.0, "dropout on embeddings, attention and residuals", 0.0, 1.0),
        bool_param("bias", false, "biases in Linear and LayerNorm (GPT-2: true)"),
        int_param("block_size", 0, "maximum context (0 = the dataset's seq_len)", 0),
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
    GPTConfig c{ctx.vocab_size, p.i("block_size") > 0 ? p.i("block_size") : ctx.seq_len, p.i("n_layer"), p.i("n_head"),
                p.i("d_model"), p.f("dropout"), p.b("bias")};
    if (c.d_model % c.n_head != 0)
      throw std::invalid_argument("d_model (" + std::to_string(c.d_model) + ") must be divisible by n_head (" +
                                  std::to_string(c.n_head) + ")");
    return std::make_shared<GPT>(c);
  }
};

}  // namespace

LMGRID_PLUGIN(GPTPlugin)
