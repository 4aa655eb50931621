// arch/gem: GEM (asbikov/GEM), a small LM whose token mixer is a TTT-style trainable memory.
// Pre-LN blocks (LayerNorm without bias); per layer Q/K/V/proj linears with bias, a memory of
// memory_size learned slot keys K0 and initial values V0 addressed by A = softmax(x K0^T / sqrt d),
// written by mini-batch gradient descent on 1/2 |A_k V - v|^2 over chunks of minibatch_size tokens
// and read causally inside the chunk (dual form, lmgrid/kernels/ttt.hpp); GELU MLP; learned
// positions; token embedding tied to the head (the CausalLM base). The memory is reset at the
// start of every sequence.
// Unlike upstream: any batch size (one memory per sequence), out-of-place autograd instead of the
// reversible in-place trick, incremental decoding that carries the memory.
#include <cmath>

#include <lmgrid/base/errors.hpp>
#include <lmgrid/kernels/ttt.hpp>
#include <lmgrid/nn.hpp>
#include <lmgrid/plugin/plugin.hpp>

namespace {

using namespace lmgrid;
namespace K = lmgrid::kernels;

// Letters: B batch, T tokens, C width (d), M memory slots.
struct GEMConfig {
  int64_t vocab_size, padded_vocab, block_size, n_layer, d_model, memory_size, minibatch_size;
  double eta;
  bool learn_eta, self_write;
  bool mlp = true;  // false: memory-only blocks (Zoology's MQAR models have no MLP)
};

// One layer's memory while decoding.
struct GEMLayer : nn::LayerState {
  K::GemMemoryState mem;
};

class MemoryBlockImpl : public nn::BlockOf<GEMLayer> {
 public:
  explicit MemoryBlockImpl(const GEMConfig& c) : c_(c) {
    const int64_t C = c.d_model;
    ln_1 = register_module("ln_1", nn::LayerNorm(C, false));
    q = register_module("q", torch::nn::Linear(C, C));
    k = register_module("k", torch::nn::Linear(C, C));
    v = register_module("v", torch::nn::Linear(C, C));
    proj = register_module("proj", torch::nn::Linear(C, C));
    K0 = register_parameter("K0", torch::randn({c.memory_size, C}));  // slot keys, never written
    V0 = register_parameter("V0", torch::randn({c.memory_size, C}));  // initial slot values
    // A fixed eta is a buffer, so the parameter count stays GEM's 874,240.
    eta = c.learn_eta ? register_parameter("eta", torch::full({}, c.eta))
                      : register_buffer("eta", torch::full({}, c.eta));
    if (!c.mlp) return;
    ln_2 = register_module("ln_2", nn::LayerNorm(C, false));
    mlp = register_module("mlp", nn::MLP(C, 4 * C, true, 0.0));
  }

  // st.mem: this layer's memory (V undefined = fresh sequence), kept when decoding.
  torch::Tensor forward(const torch::Tensor& x, GEMLayer& st, const nn::Step& step) override {
    const int64_t B = x.size(0), T = x.size(1), C = c_.d_model;
    const int64_t M = c_.memory_size;
    auto xn = ln_1(x);
    // q and k are only ever used through q K0^T and k K0^T, so the address logits are one linear
    // map of xn: (K0 Wq) xn + K0 bq (same function and gradients, 2 M C instead of 2 C^2 + 2 C M
    // multiply-adds per token). One GEMM gives both address logits and v.
    const double scale = 1.0 / std::sqrt(static_cast<double>(C));
    auto w = torch::cat({torch::matmul(K0, q->weight) * scale, torch::matmul(K0, k->weight) * scale, v->weight});
    auto bias = torch::cat({torch::mv(K0, q->bias) * scale, torch::mv(K0, k->bias) * scale, v->bias});
    auto y = torch::linear(xn, w, bias);                                       // (B,T,2M+C)
    auto addr = torch::softmax(y.narrow(2, 0, 2 * M).view({B, T, 2, M}), -1);  // (B,T,2,M): A_q, A_k
    auto aq = addr.select(2, 0), ak = addr.select(2, 1);
    auto r =
        K::gem_memory(aq, ak, y.narrow(2, 2 * M, C), st.mem, c_.minibatch_size, eta, c_.self_write, V0, step.decoding);
    auto h = x + proj(r);
    return mlp.is_empty() ? h : h + mlp(ln_2(h));
  }

  nn::LayerNorm ln_1{nullptr}, ln_2{nullptr};
  torch::nn::Linear q{nullptr}, k{nullptr}, v{nullptr}, proj{nullptr};
  nn::MLP mlp{nullptr};
  torch::Tensor K0, V0, eta;

 private:
  GEMConfig c_;
};
TORCH_MODULE(MemoryBlock);

nn::CausalLMOptions lm_options(const GEMConfig& c) {
  nn::CausalLMOptions o;  // names wte, wpe, h, ln_f; tied head
  o.vocab_size = c.vocab_size, o.padded_vocab = c.padded_vocab, o.d_model = c.d_model, o.block_size = c.block_size,
  o.learned_positions = true;
  return o;
}

class GEM : public nn::CausalLM {
 public:
  explicit GEM(const GEMConfig& c) : nn::CausalLM(lm_options(c)), c_(c) {
    for (int64_t i = 0; i < c.n_layer; ++i) add_block(MemoryBlock(c));
    finish(nn::LayerNorm(c.d_model, false));
    // Upstream: the tied matrix starts as the head's nn.Linear init, U(+-1/sqrt d); positions N(0, 0.02).
    torch::NoGradGuard ng;
    const double a = 1.0 / std::sqrt(static_cast<double>(c.d_model));
    tok_emb->weight.uniform_(-a, a);
    pos_emb->weight.normal_(0.0, 0.02);
  }

  // 6 N (N without positions) plus the memory's matmuls per token and layer, x3 for training:
  // addresses 2 (2 C M), reads and residuals 2 (2 M C), in-chunk scores and mixing about
  // 2 b (M + C) / 2 on average, the write 2 M C.
  double flops_per_token() const override {
    const double C = double(c_.d_model), M = double(c_.memory_size), b = double(c_.minibatch_size);
    double n = static_cast<double>(parameter_count() - pos_emb->weight.numel());
    double mem = 4 * C * M + 4 * M * C + b * (M + C) + 2 * M * C;
    return 6.0 * n + 3.0 * c_.n_layer * mem;
  }
  int64_t state_size() const override { return c_.n_layer * (c_.memory_size * c_.d_model); }

 private:
  GEMConfig c_;
};

class GEMPlugin : public ArchPlugin {
 public:
  std::string name() const override { return "gem"; }
  std::string version() const override { return "1.0"; }
  std::string summary() const override {
    return "GEM: pre-LN blocks whose mixer is a TTT memory (softmax slot addressing, mini-batch GD writes)";
  }
  std::vector<ParamSpec> params() const override {
    return {
        int_param("n_layer", 4, "blocks", 1, 256),
        int_param("d_model", 128, "embedding width (GEM: embedding_size)", 1, 65536),
        int_param("memory_size", 64, "memory slots M per layer", 1, 1 << 20),
        int_param("minibatch_size", 16, "tokens per memory write (chunk of the mini-batch GD)", 1, 1 << 20),
        int_param("block_size", 0, "learned positions / maximum context (0 = the dataset's seq_len)", 0),
        real_param("eta", 1.0, "inner learning rate of the memory write (GEM: 1)", 0.0),
        bool_param("learn_eta", false, "make eta a trainable parameter per layer (GEM: fixed)"),
        bool_param("self_write", false,
                   "a token reads the memory including its own write (GEM: false, strictly causal)"),
        bool_param("mlp", true, "a GELU MLP in every block (false: memory-only blocks, as Zoology's MQAR models)"),
        int_param("vocab_size", 0, "embedding rows (0 = the tokenizer's; larger pads, never smaller)", 0),
    };
  }
  std::map<std::string, Value> tiny_config() const override {
    // minibatch 6 does not divide the sweep's 16 tokens: partial chunks are exercised too.
    return {
        {"n_layer", int64_t{2}}, {"d_model", int64_t{16}}, {"memory_size", int64_t{8}}, {"minibatch_size", int64_t{6}}};
  }
  std::shared_ptr<Model> create(const Params& p, const ModelContext& ctx) const override {
    GEMConfig c{ctx.vocab_size,        p.i("vocab_size"), nn::resolve_block_size(p.i("block_size"), ctx.seq_len),
                p.i("n_layer"),        p.i("d_model"),    p.i("memory_size"),
                p.i("minibatch_size"), p.f("eta"),        p.b("learn_eta"),
                p.b("self_write"),     p.b("mlp")};
    return std::make_shared<GEM>(c);
  }
};

}  // namespace

LMGRID_PLUGIN(GEMPlugin)
