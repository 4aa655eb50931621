// arch/ttt: the TTT layer of Sun et al. 2024 (arXiv 2407.04620, test-time-training/ttt-lm-pytorch)
// in a Llama-style LM. Per head an inner model f(x) = x + LN(g(x; W)), g linear (TTT-Linear) or a
// 2-layer GELU MLP (TTT-MLP), trained while reading by mini-batch GD on 1/2 |LN(g(xk)) - (xv - xk)|^2
// with a learnable per-token inner lr eta = base_lr sigmoid(theta x) / head_dim and the 1/i token
// scale; dual form for training and prefill, primal form while decoding (lmgrid/kernels/ttt.hpp).
// RoPE on q, k at position mod mini_batch_size. Backbones: Transformer (plain) and Mamba
// (pre_conv, share_qk, use_gate). SwiGLU MLP, RMSNorm, tied embeddings, no positional embedding.
// Not here: gradient checkpointing over mini-batches (scan_checkpoint_group_size).
#include <cmath>

#include <lmgrid/base/errors.hpp>
#include <lmgrid/kernels/ttt.hpp>
#include <lmgrid/nn.hpp>
#include <lmgrid/plugin/plugin.hpp>

namespace {

using namespace lmgrid;
namespace K = lmgrid::kernels;

// Letters: B batch, T tokens, C width, H heads, F head dim.
struct TTTConfig {
  int64_t vocab_size, padded_vocab, n_layer, d_model, n_head, intermediate, mini_batch, conv_kernel;
  std::string inner;
  double base_lr, rope_theta, rms_eps, init_std;
  bool pre_conv, share_qk, use_gate;
  bool mlp = true;  // false: no SwiGLU (mixer-only blocks, as Zoology's MQAR models)
};

// One layer's decoding state.
struct TTTLayerState : nn::LayerState {
  K::TTTInnerState inner;
  torch::Tensor conv_pre, conv_q, conv_k;  // causal-conv histories
};

class TTTLayerImpl : public torch::nn::Module {
 public:
  explicit TTTLayerImpl(const TTTConfig& c) : c_(c) {
    const int64_t C = c.d_model, H = c.n_head, F = C / H, b = c.mini_batch;
    auto lin = [&](const char* n) {
      return register_module(n, torch::nn::Linear(torch::nn::LinearOptions(C, C).bias(false)));
    };
    q_proj = lin("q_proj");
    if (!c.share_qk) k_proj = lin("k_proj");
    v_proj = lin("v_proj");
    o_proj = lin("o_proj");
    if (c.use_gate) g_proj = lin("g_proj");
    if (c.share_qk) {
      conv_q = register_module("conv_q", nn::CausalConv1d(C, c.conv_kernel));
      conv_k = register_module("conv_k", nn::CausalConv1d(C, c.conv_kernel));
    }
    lr_weight = register_parameter("learnable_ttt_lr_weight", torch::randn({H, C}) * c.init_std);
    lr_bias = register_parameter("learnable_ttt_lr_bias", torch::zeros({H}));
    token_idx_offset = register_parameter("learnable_token_idx", torch::zeros({b}));
    token_idx_base = register_buffer("token_idx_base", 1.0 / torch::arange(1, b + 1, torch::kFloat));  // 1/i
    ttt_norm_weight = register_parameter("ttt_norm_weight", torch::ones({H, F}));
    ttt_norm_bias = register_parameter("ttt_norm_bias", torch::zeros({H, F}));
    const int64_t hid = c.inner == "mlp" ? 4 * F : F;
    W1 = register_parameter("W1", torch::randn({H, F, hid}) * c.init_std);
    b1 = register_parameter("b1", torch::zeros({H, 1, hid}));
    if (c.inner == "mlp") {
      W2 = register_parameter("W2", torch::randn({H, hid, F}) * c.init_std);
      b2 = register_parameter("b2", torch::zeros({H, 1, F}));
    }
    post_norm = register_module("post_norm", nn::LayerNorm(C, true, 1e-6));
  }

  // x: the normalised hidden states (B,T,C); st: this layer's state (inner W undefined = fresh).
  torch::Tensor forward(const torch::Tensor& x, TTTLayerState& st, int64_t pos0, bool keep_conv) {
    const int64_t B = x.size(0), T = x.size(1), C = c_.d_model, H = c_.n_head, F = C / H, N = B * H;
    torch::Tensor xq, xk;
    if (c_.share_qk) {
      auto xqk = q_proj(x);
      xq = conv_q(xqk, keep_conv ? &st.conv_q : nullptr);
      xk = conv_k(xqk, keep_conv ? &st.conv_k : nullptr);
    } else {
      xq = q_proj(x), xk = k_proj(x);
    }
    auto xv = v_proj(x);
    auto heads = [&](const torch::Tensor& t) { return t.view({B, T, H, F}).transpose(1, 2); };  // (B,H,T,F)
    auto pos = torch::arange(pos0, pos0 + T, torch::TensorOptions().dtype(torch::kLong).device(x.device()))
                   .remainder(c_.mini_batch);
    auto q = nn::rope_heads(xq, H, pos, c_.rope_theta), k = nn::rope_heads(xk, H, pos, c_.rope_theta);  // (B,H,T,F)
    // eta's per-token factor: base_lr * sigmoid(theta_h . x + b_h) / head_dim, (B,H,T).
    auto lr = torch::sigmoid(torch::matmul(x, lr_weight.t()) + lr_bias).transpose(1, 2) * (c_.base_lr / F);
    auto token_idx = (token_idx_base + token_idx_offset).clamp_min(0.0);
    // Per head, shared by the batch: sequence b H + h reads row h (ttt_inner's G-row form, no copy
    // per sequence); the state holds one row per sequence after the first call.
    if (!st.inner.W1.defined()) {
      st.inner.W1 = W1, st.inner.b1 = b1;
      if (W2.defined()) st.inner.W2 = W2, st.inner.b2 = b2;
    }
    K::TTTNorm norm{ttt_norm_weight.unsqueeze(1), ttt_norm_bias.unsqueeze(1), 1e-6};
    auto flat = [&](const torch::Tensor& t) { return t.reshape({N, T, F}); };
    auto out = K::ttt_inner(flat(q), flat(k), flat(heads(xv)), lr.reshape({N, T}), token_idx, norm, st.inner,
                            c_.mini_batch);  // (N,T,F)
    out = post_norm(out.view({B, H, T, F}).transpose(1, 2).reshape({B, T, C}));
    if (c_.use_gate) out = nn::gelu_tanh_mul(g_proj(x), out);
    return o_proj(out);
  }

  torch::nn::Linear q_proj{nullptr}, k_proj{nullptr}, v_proj{nullptr}, o_proj{nullptr}, g_proj{nullptr};
  nn::CausalConv1d conv_q{nullptr}, conv_k{nullptr};
  nn::LayerNorm post_norm{nullptr};
  torch::Tensor lr_weight, lr_bias, token_idx_offset, token_idx_base, ttt_norm_weight, ttt_norm_bias, W1, b1, W2, b2;

 private:
  TTTConfig c_;
};
TORCH_MODULE(TTTLayer);

class BlockImpl : public nn::BlockOf<TTTLayerState> {
 public:
  explicit BlockImpl(const TTTConfig& c) : c_(c) {
    if (c.pre_conv) {
      conv_norm = register_module("conv_norm", nn::RMSNorm(c.d_model, c.rms_eps));
      conv = register_module("conv", nn::CausalConv1d(c.d_model, c.conv_kernel));
    }
    seq_norm = register_module("seq_norm", nn::RMSNorm(c.d_model, c.rms_eps));
    ttt = register_module("ttt", TTTLayer(c));
    if (!c.mlp) return;
    ffn_norm = register_module("ffn_norm", nn::RMSNorm(c.d_model, c.rms_eps));
    mlp = register_module("mlp", nn::SwiGLU(c.d_model, c.intermediate));
  }
  torch::Tensor forward(const torch::Tensor& x0, TTTLayerState& st, const nn::Step& step) override {
    auto x = x0;
    if (c_.pre_conv) x = x + conv(conv_norm(x), step.decoding ? &st.conv_pre : nullptr);
    x = x + ttt(seq_norm(x), st, step.pos, step.decoding);
    return mlp.is_empty() ? x : x + mlp(ffn_norm(x));
  }
  nn::RMSNorm conv_norm{nullptr}, seq_norm{nullptr}, ffn_norm{nullptr};
  nn::CausalConv1d conv{nullptr};
  TTTLayer ttt{nullptr};
  nn::SwiGLU mlp{nullptr};

 private:
  TTTConfig c_;
};
TORCH_MODULE(Block);

nn::CausalLMOptions lm_options(const TTTConfig& c) {
  nn::CausalLMOptions o;  // no positions (RoPE inside the layer), tied head
  o.vocab_size = c.vocab_size, o.padded_vocab = c.padded_vocab, o.d_model = c.d_model;
  o.tok_emb_name = "embed", o.final_norm_name = "norm";
  return o;
}

class TTTModel : public nn::CausalLM {
 public:
  explicit TTTModel(const TTTConfig& c) : nn::CausalLM(lm_options(c)), c_(c) {
    for (int64_t i = 0; i < c.n_layer; ++i) add_block(Block(c));
    finish(nn::RMSNorm(c.d_model, c.rms_eps));
    nn::init_gpt2(*this, c.init_std);  // Linear and Embedding N(0, 0.02) as the reference; convs keep PyTorch's init
  }

  // 6 N plus per token, layer and head the inner model's dual-form matmuls (about 3 passes of
  // 2 F hid for the gradients and reads, and b (F + hid) for the in-mini-batch attention), x3.
  double flops_per_token() const override {
    const double F = double(c_.d_model / c_.n_head), hid = c_.inner == "mlp" ? 4 * F : F, b = double(c_.mini_batch);
    double per_head = (c_.inner == "mlp" ? 2.0 : 1.0) * (6 * F * hid + 2 * b * (F + hid));
    return 6.0 * static_cast<double>(parameter_count()) + 3.0 * c_.n_layer * c_.n_head * per_head;
  }
  int64_t state_size() const override {
    const int64_t F = c_.d_model / c_.n_head, hid = c_.inner == "mlp" ? 4 * F : F;
    return c_.n_layer * c_.n_head * (c_.inner == "mlp" ? 2 * F * hid : F * hid);
  }

 private:
  TTTConfig c_;
};

class TTTPlugin : public ArchPlugin {
 public:
  std::string name() const override { return "ttt"; }
  std::string version() const override { return "1.0"; }
  std::string summary() const override {
    return "TTT-Linear / TTT-MLP (Sun et al. 2024): inner model trained by mini-batch GD while reading; dual form";
  }
  std::vector<ParamSpec> params() const override {
    return {
        string_param("inner", "linear", "inner model g: linear (TTT-Linear) or mlp (TTT-MLP, hidden 4 x head_dim)",
                     {"linear", "mlp"}),
        int_param("n_layer", 4, "blocks", 1, 256),
        int_param("d_model", 128, "width (must be divisible by n_head; head_dim even for RoPE)", 2, 65536),
        int_param("n_head", 4, "TTT heads", 1, 256),
        int_param("intermediate", 0, "SwiGLU hidden width (0 = 8/3 d_model rounded up to a multiple of 8)", 0),
        int_param("mini_batch_size", 16, "tokens per inner GD step b (reference: 16)", 1, 4096),
        real_param("base_lr", 1.0, "inner learning rate base (reference: 1; the paper uses 0.1 for mlp)", 0.0),
        bool_param("pre_conv", false, "Mamba backbone: causal depthwise conv before the TTT layer"),
        bool_param("share_qk", false, "Mamba backbone: q and k from one projection through two causal convs"),
        bool_param("use_gate", false, "Mamba backbone: output gate gelu(g_proj x)"),
        bool_param("mlp", true, "a SwiGLU MLP in every block (false: TTT-only blocks, as Zoology's MQAR models)"),
        int_param("conv_kernel", 4, "causal conv width", 1, 64),
        real_param("rope_theta", 10000.0, "RoPE base (positions restart every mini-batch)", 1.0),
        real_param("rms_norm_eps", 1e-6, "RMSNorm epsilon", 0.0),
        real_param("init_std", 0.02, "std of Linear/Embedding/inner weights init", 0.0),
        int_param("vocab_size", 0, "embedding rows (0 = the tokenizer's; larger pads, never smaller)", 0),
    };
  }
  std::map<std::string, Value> tiny_config() const override {
    // mini-batch 6 does not divide the sweep's 16 tokens; Mamba backbone and mlp cover the most code.
    return {{"n_layer", int64_t{2}},
            {"d_model", int64_t{16}},
            {"n_head", int64_t{2}},
            {"mini_batch_size", int64_t{6}},
            {"inner", std::string("mlp")},
            {"pre_conv", true},
            {"share_qk", true},
            {"use_gate", true}};
  }
  void check(const Params& p) const override {
    if (p.i("d_model") % p.i("n_head") != 0)
      throw UserError("d_model (" + std::to_string(p.i("d_model")) + ") must be divisible by n_head (" +
                      std::to_string(p.i("n_head")) + ")");
    if ((p.i("d_model") / p.i("n_head")) % 2 != 0)
      throw UserError("head_dim = d_model / n_head (" + std::to_string(p.i("d_model") / p.i("n_head")) +
                      ") must be even for RoPE");
  }
  std::shared_ptr<Model> create(const Params& p, const ModelContext& ctx) const override {
    check(p);
    const int64_t C = p.i("d_model");
    int64_t inter = p.i("intermediate") > 0 ? p.i("intermediate") : nn::swiglu_hidden(C);
    TTTConfig c{ctx.vocab_size,
                p.i("vocab_size"),
                p.i("n_layer"),
                C,
                p.i("n_head"),
                inter,
                p.i("mini_batch_size"),
                p.i("conv_kernel"),
                p.s("inner"),
                p.f("base_lr"),
                p.f("rope_theta"),
                p.f("rms_norm_eps"),
                p.f("init_std"),
                p.b("pre_conv"),
                p.b("share_qk"),
                p.b("use_gate"),
                p.b("mlp")};
    return std::make_shared<TTTModel>(c);
  }
};

}  // namespace

LMGRID_PLUGIN(TTTPlugin)
