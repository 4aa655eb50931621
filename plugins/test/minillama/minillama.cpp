// arch/minillama: the example of docs/plugins.md. A Llama-style decoder on the CausalLM base:
// pre-RMSNorm blocks of RoPE attention with grouped KV heads and a SwiGLU MLP, untied head.
#include <lmgrid/base/errors.hpp>
#include <lmgrid/nn.hpp>
#include <lmgrid/plugin.hpp>

namespace {
using namespace lmgrid;

class BlockImpl : public nn::BlockOf<nn::KVCache> {  // a layer's decoding state: its KV cache
 public:
  explicit BlockImpl(const Params& p) {
    const int64_t C = p.i("d_model");
    auto attn_opts = nn::AttentionOptions(C, p.i("n_head")).n_kv_head(p.i("n_kv_head")).fused_qkv(false);
    attn_norm = register_module("attn_norm", nn::RMSNorm(C));
    attn = register_module("attn", nn::CausalSelfAttention(attn_opts.rope(true).rope_base(p.f("rope_base"))));
    mlp_norm = register_module("mlp_norm", nn::RMSNorm(C));
    mlp = register_module("mlp", nn::SwiGLU(C, nn::swiglu_hidden(C)));
  }
  torch::Tensor forward(const torch::Tensor& x, nn::KVCache& kv, const nn::Step& step) override {
    auto h = x + attn(attn_norm(x), step.decoding ? &kv : nullptr);  // (B,T,C)
    return h + mlp(mlp_norm(h));
  }
  nn::RMSNorm attn_norm{nullptr}, mlp_norm{nullptr};
  nn::CausalSelfAttention attn{nullptr};
  nn::SwiGLU mlp{nullptr};
};
TORCH_MODULE(Block);

class MiniLlamaPlugin : public ArchPlugin {
 public:
  std::string name() const override { return "minillama"; }
  std::string version() const override { return "1.0"; }
  std::string summary() const override { return "docs example: RoPE, grouped KV heads, SwiGLU on the CausalLM base"; }
  std::vector<ParamSpec> params() const override {
    return {int_param("n_layer", 2, "blocks", 1),         int_param("d_model", 64, "width", 2),
            int_param("n_head", 4, "query heads", 1),     int_param("n_kv_head", 2, "key/value heads", 1),
            real_param("rope_base", 1e4, "RoPE base", 1), int_param("vocab_size", 0, "padded vocabulary", 0)};
  }
  std::map<std::string, Value> tiny_config() const override { return {{"d_model", int64_t{16}}}; }
  void check(const Params& p) const override {
    if (p.i("d_model") % p.i("n_head") || p.i("n_head") % p.i("n_kv_head") || p.i("d_model") / p.i("n_head") % 2)
      throw UserError("need n_head | d_model, n_kv_head | n_head and an even head dim");
  }
  std::shared_ptr<Model> create(const Params& p, const ModelContext& ctx) const override {
    check(p);
    nn::CausalLMOptions o;  // checkpoint keys: wte, h.N.*, ln_f, lm_head
    o.vocab_size = ctx.vocab_size, o.padded_vocab = p.i("vocab_size"), o.d_model = p.i("d_model"), o.tied_head = false;
    auto m = std::make_shared<nn::CausalLM>(o);
    for (int64_t i = 0; i < p.i("n_layer"); ++i) m->add_block(Block(p));
    m->finish(nn::RMSNorm(p.i("d_model")));
    nn::init_gpt2(*m, 0.02);
    return m;
  }
};

}  // namespace

LMGRID_PLUGIN(MiniLlamaPlugin)
