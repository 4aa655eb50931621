// arch/ys: the "YS-71M" / "Why Snakes" quadratic SSM (erikhyrkas/snakes at 19c67af), from the
// equations in the reference notes. One layer, no residual, no MLP, no positions:
//   e   = Embedding(V, E)(tokens);  x = Dropout(e)
//   s_t = LN_N( einsum('bij,ijk->bk', s_{t-1} s_{t-1}ᵀ, P) + Q x_t ),  s_0 = 0
//   y_t = R s_t + S x_t;  y = Dropout(y)
//   logits = Linear(O, V, bias)(LN_O(y))
// The state is detached every block_size tokens (truncated BPTT), counted from the start of
// each forward call. Cost O(N^3) per token. Decoding state = s (B, N).
#include <lmgrid/base/errors.hpp>
#include <lmgrid/nn.hpp>
#include <lmgrid/plugin/plugin.hpp>

namespace {

using namespace lmgrid;

struct YSConfig {
  int64_t vocab_size, padded_vocab, embedding_dim, state_dim, output_dim, block_size;
  double dropout;
};

struct YSLayer : nn::LayerState {
  torch::Tensor s;  // (B, N); undefined before the first token
};

// "Attention" in upstream's naming: the quadratic state recurrence plus the output map; the
// one block of the model (registered as "attention", no stack, no residual).
class QuadraticSSMImpl : public nn::BlockOf<YSLayer> {
 public:
  explicit QuadraticSSMImpl(const YSConfig& c) : c_(c) {
    const int64_t N = c.state_dim, E = c.embedding_dim, O = c.output_dim;
    // Upstream's identity-plus-constant inits: P[i] = 0.1 I + 0.01 for every i, Q = R = S = 0.1 I + 0.01
    // (rectangular identity where the shape is not square).
    P = register_parameter("P", (torch::eye(N) * 0.1 + 0.01).unsqueeze(0).repeat({N, 1, 1}));
    Q = register_parameter("Q", torch::eye(N, E) * 0.1 + 0.01);
    R = register_parameter("R", torch::eye(O, N) * 0.1 + 0.01);
    S = register_parameter("S", torch::eye(O, E) * 0.1 + 0.01);
    norm = register_module("norm", nn::LayerNorm(N, true));
    drop_in = register_module("drop_in", torch::nn::Dropout(c.dropout));
    drop_out = register_module("drop_out", torch::nn::Dropout(c.dropout));
  }

  torch::Tensor forward(const torch::Tensor& e, YSLayer& st, const nn::Step& step) override {
    return run(e, step.decoding ? &st.s : nullptr);
  }

  // e (B,T,E) -> y (B,T,O). *s is the state entering the first token (undefined = zeros); it
  // is replaced by the state after the last token.
  torch::Tensor run(const torch::Tensor& e, torch::Tensor* s_io) {
    const int64_t b = e.size(0), T = e.size(1), N = c_.state_dim;
    auto x = drop_in(e);
    auto qx = torch::matmul(x, Q.t());  // (B,T,N): the input term of every step at once
    auto P2 = P.view({N * N, N});       // einsum('bij,ijk->bk') == vec(s sᵀ) @ P.view(N², N)
    torch::Tensor s = s_io && s_io->defined() ? *s_io : torch::zeros({b, N}, e.options());
    std::vector<torch::Tensor> states;
    states.reserve(T);
    for (int64_t t = 0; t < T; ++t) {
      if (t > 0 && t % c_.block_size == 0) s = s.detach();  // truncated BPTT at block boundaries
      auto outer = (s.unsqueeze(2) * s.unsqueeze(1)).view({b, N * N});
      s = norm(torch::addmm(qx.select(1, t), outer, P2));
      states.push_back(s);
    }
    if (s_io) *s_io = s.detach();
    auto st = torch::stack(states, 1);  // (B,T,N)
    auto y = torch::matmul(st, R.t()) + torch::matmul(x, S.t());
    return drop_out(y);
  }

  torch::Tensor P, Q, R, S;
  nn::LayerNorm norm{nullptr};
  torch::nn::Dropout drop_in{nullptr}, drop_out{nullptr};

 private:
  YSConfig c_;
};
TORCH_MODULE(QuadraticSSM);

nn::CausalLMOptions lm_options(const YSConfig& c) {
  nn::CausalLMOptions o;  // upstream's names; no positions; untied head Linear(O, V) with bias
  o.vocab_size = c.vocab_size, o.padded_vocab = c.padded_vocab, o.d_model = c.embedding_dim;
  o.tied_head = false, o.head_in = c.output_dim, o.head_bias = true;
  o.tok_emb_name = "embedding", o.final_norm_name = "norm", o.head_name = "head";
  return o;
}

class YS : public nn::CausalLM {
 public:
  explicit YS(const YSConfig& c) : nn::CausalLM(lm_options(c)), c_(c) {  // embedding N(0,1)
    add_block(QuadraticSSM(c), "attention");
    finish(nn::LayerNorm(c.output_dim, true));  // then the head, PyTorch's default Linear init
  }

  // Forward multiply-adds per token: N^3 (P) + N E (Q) + O N (R) + O E (S) + O V (head); training
  // = 3 x forward = 6 x those MACs. The embedding is a lookup and costs nothing.
  double flops_per_token() const override {
    const double N = c_.state_dim, E = c_.embedding_dim, O = c_.output_dim, V = c_.vocab_size;
    return 6.0 * (N * N * N + N * E + O * N + O * E + O * V);
  }
  int64_t state_size() const override { return c_.state_dim; }

 private:
  YSConfig c_;
};

class YSPlugin : public ArchPlugin {
 public:
  std::string name() const override { return "ys"; }
  std::string version() const override { return "1.0"; }
  std::string summary() const override {
    return "YS-71M 'Why Snakes': one quadratic SSM layer s_t = LN(<s s^T, P> + Q x_t), O(N^3) per token";
  }
  std::vector<ParamSpec> params() const override {
    return {
        int_param("embedding_dim", 368, "E: token embedding width", 1, 65536),
        int_param("state_dim", 368, "N: state size (P has N^3 entries)", 1, 4096),
        int_param("output_dim", 368, "O: width of y_t = R s_t + S x_t", 1, 65536),
        int_param("block_size", 16, "detach the state every block_size tokens (truncated BPTT)", 1),
        real_param("dropout", 0.1, "dropout on the embeddings and on y", 0.0, 1.0),
        int_param("vocab_size", 0, "embedding rows (0 = the tokenizer's; larger pads, never smaller)", 0),
    };
  }
  std::map<std::string, Value> tiny_config() const override {
    return {{"embedding_dim", int64_t{8}},
            {"state_dim", int64_t{6}},
            {"output_dim", int64_t{7}},
            {"block_size", int64_t{4}},
            {"dropout", 0.0}};
  }
  std::shared_ptr<Model> create(const Params& p, const ModelContext& ctx) const override {
    YSConfig c{ctx.vocab_size,    p.i("vocab_size"), p.i("embedding_dim"), p.i("state_dim"),
               p.i("output_dim"), p.i("block_size"), p.f("dropout")};
    return std::make_shared<YS>(c);
  }
};

}  // namespace

LMGRID_PLUGIN(YSPlugin)
