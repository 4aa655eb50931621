// arch/mamba2: a Mamba-2 language model (state-spaces/mamba `Mamba2Simple` mixer in the
// `MambaLMHeadModel` backbone), reimplemented from the equations in the reference notes:
//   embedding -> n_layer x [x + Mamba2(RMSNorm(x))] -> RMSNorm -> tied head; no positions
// (the CausalLM base with MambaLMHeadModel's names).
// Mixer: in_proj -> (z, xBC, dt_raw); depthwise causal conv (d_conv) + SiLU over xBC;
// dt = softplus(dt_raw + dt_bias); A = -exp(A_log); y = SSD(x, dt, A, B, C) + D x;
// y = rmsnorm_groups(y * silu(z)) * w; out_proj.
// The SSD scan is lmgrid::kernels::ssd_chunked (training, prefill) / ssd_step (decoding).
// Decoding state per layer: the last d_conv-1 conv inputs and the SSM state (B,H,P,N), so
// sampling costs O(1) per token; forward() with a state also takes multi-token prefill chunks.
#include <cmath>

#include <lmgrid/base/errors.hpp>
#include <lmgrid/kernels/split.hpp>
#include <lmgrid/kernels/ssd.hpp>
#include <lmgrid/nn.hpp>
#include <lmgrid/plugin/plugin.hpp>

namespace {

using namespace lmgrid;
namespace F = torch::nn::functional;

struct Mamba2Config {
  int64_t vocab_size, padded_vocab, d_model, n_layer, d_state, d_conv, expand, headdim, ngroups, chunk_size;
  double dt_min, dt_max, dt_init_floor, A_init_min, A_init_max, norm_eps;
  bool conv_bias;
  int64_t d_inner() const { return expand * d_model; }
  int64_t nheads() const { return d_inner() / headdim; }
  int64_t conv_dim() const { return d_inner() + 2 * ngroups * d_state; }
};

struct Mamba2Layer : nn::LayerState {
  torch::Tensor conv;  // (B, d_conv-1, conv_dim): the last d_conv-1 inputs of the conv, oldest first
  torch::Tensor ssm;   // (B, H, P, N)
};

class Mamba2MixerImpl : public torch::nn::Module {
 public:
  explicit Mamba2MixerImpl(const Mamba2Config& c) : c_(c) {
    const int64_t di = c.d_inner(), H = c.nheads();
    in_proj = register_module(
        "in_proj",
        torch::nn::Linear(torch::nn::LinearOptions(c.d_model, 2 * di + 2 * c.ngroups * c.d_state + H).bias(false)));
    // Depthwise conv weights (conv_dim, d_conv): PyTorch Conv1d's default init, U(-1/sqrt(k), 1/sqrt(k))
    // with fan_in = d_conv for a depthwise kernel; same bound for the bias.
    const double bound = 1.0 / std::sqrt(static_cast<double>(c.d_conv));
    conv_weight = register_parameter("conv_weight", torch::empty({c.conv_dim(), c.d_conv}).uniform_(-bound, bound));
    if (c.conv_bias) conv_bias = register_parameter("conv_bias", torch::empty({c.conv_dim()}).uniform_(-bound, bound));
    // dt_bias = softplus^-1(dt), dt log-uniform in [dt_min, dt_max], floored at dt_init_floor.
    auto dt = (torch::rand({H}) * (std::log(c.dt_max) - std::log(c.dt_min)) + std::log(c.dt_min)).exp();
    dt = dt.clamp_min(c.dt_init_floor);
    dt_bias = register_parameter("dt_bias", dt + torch::log(-torch::expm1(-dt)));
    // A_log = log U(A_init_min, A_init_max); A = -exp(A_log).
    A_log = register_parameter("A_log", torch::empty({H}).uniform_(c.A_init_min, c.A_init_max).log());
    D = register_parameter("D", torch::ones({H}));
    norm_weight = register_parameter("norm_weight", torch::ones({di}));
    out_proj = register_module("out_proj", torch::nn::Linear(torch::nn::LinearOptions(di, c.d_model).bias(false)));
  }

  // u (B,T,d_model) -> (B,T,d_model). With st, continues st and advances it.
  torch::Tensor forward(const torch::Tensor& u, Mamba2Layer* st) {
    const int64_t b = u.size(0), T = u.size(1), di = c_.d_inner(), H = c_.nheads(), P = c_.headdim;
    const int64_t G = c_.ngroups, N = c_.d_state, cd = c_.conv_dim();
    // split_last, not narrow: the backward of three narrows writes three full-size zero
    // gradients, and LibTorch's split backward (a cat along the last dim) is slow on the CPU.
    auto parts = kernels::split_last(in_proj(u), {di, cd, H});
    auto z = parts[0], xBC = parts[1], dt_raw = parts[2];

    // Causal depthwise conv: left context = the state's last d_conv-1 inputs (zeros for a fresh start).
    xBC = nn::causal_conv1d(xBC, conv_weight, conv_bias, st ? &st->conv : nullptr, /*silu=*/true);

    auto xbc = kernels::split_last(xBC, {di, G * N, G * N});
    auto x = xbc[0].view({b, T, H, P});
    auto Bm = xbc[1].view({b, T, G, N});
    auto Cm = xbc[2].view({b, T, G, N});
    auto dt = F::softplus(dt_raw + dt_bias);  // (B,T,H)
    auto A = -A_log.exp();

    torch::Tensor init = st && st->ssm.defined() ? st->ssm : torch::Tensor();
    kernels::SsdResult r;
    if (st && T == 1) {
      r = kernels::ssd_step(x.select(1, 0), dt.select(1, 0), A, Bm.select(1, 0), Cm.select(1, 0), init);
      r.y = r.y.unsqueeze(1);
    } else {
      r = kernels::ssd_chunked(x.contiguous(), dt.contiguous(), A, Bm.contiguous(), Cm.contiguous(), c_.chunk_size,
                               init);
    }
    if (st) st->ssm = r.final_state.detach();
    auto y = r.y + x * D.view({H, 1});  // (B,T,H,P)

    // Gated RMSNorm (norm_before_gate = false): rmsnorm(y * silu(z)) per group of d_inner/ngroups.
    return out_proj(nn::gated_rms_norm(y.reshape({b, T, di}), z, norm_weight, G, c_.norm_eps));
  }

  torch::nn::Linear in_proj{nullptr}, out_proj{nullptr};
  torch::Tensor conv_weight, conv_bias, dt_bias, A_log, D, norm_weight;

 private:
  Mamba2Config c_;
};
TORCH_MODULE(Mamba2Mixer);

class BlockImpl : public nn::BlockOf<Mamba2Layer> {
 public:
  explicit BlockImpl(const Mamba2Config& c) {
    norm = register_module("norm", nn::RMSNorm(c.d_model, c.norm_eps));
    mixer = register_module("mixer", Mamba2Mixer(c));
  }
  torch::Tensor forward(const torch::Tensor& x, Mamba2Layer& st, const nn::Step& step) override {
    return x + mixer->forward(norm(x), step.decoding ? &st : nullptr);
  }
  nn::RMSNorm norm{nullptr};
  Mamba2Mixer mixer{nullptr};
};
TORCH_MODULE(Block);

nn::CausalLMOptions lm_options(const Mamba2Config& c) {
  nn::CausalLMOptions o;  // MambaLMHeadModel's names; no positions; tied head
  o.vocab_size = c.vocab_size, o.padded_vocab = c.padded_vocab, o.d_model = c.d_model;
  o.tok_emb_name = "embedding", o.blocks_name = "layers", o.final_norm_name = "norm_f";
  return o;
}

class Mamba2LM : public nn::CausalLM {
 public:
  explicit Mamba2LM(const Mamba2Config& c) : nn::CausalLM(lm_options(c)), c_(c) {
    for (int64_t i = 0; i < c.n_layer; ++i) add_block(Block(c));
    finish(nn::RMSNorm(c.d_model, c.norm_eps));
    // mixer_seq_simple._init_weights: embedding N(0, 0.02); in_proj keeps PyTorch's Linear init
    // (kaiming-uniform a=sqrt(5)); out_proj is kaiming-uniform(a=sqrt(5)) / sqrt(n_layer)
    // (one residual branch per layer). torch::nn::Linear's default init is that kaiming-uniform.
    torch::NoGradGuard ng;
    tok_emb->weight.normal_(0.0, 0.02);
    for (size_t i = 0; i < n_block(); ++i)
      block<BlockImpl>(i).mixer->out_proj->weight.div_(std::sqrt(static_cast<double>(c.n_layer)));
  }

  // 6 x parameters (projections, embedding as the tied head) plus the scan's matmuls
  // (forward + backward = 3 x the forward matmul FLOPs) per token at full chunks.
  double flops_per_token() const override {
    const int64_t Q = c_.chunk_size;
    double scan = kernels::ssd_chunked_matmul_flops(Q, c_.nheads(), c_.headdim, c_.ngroups, c_.d_state, Q) /
                  static_cast<double>(Q);
    return 6.0 * static_cast<double>(parameter_count()) + 3.0 * c_.n_layer * scan;
  }
  int64_t state_size() const override {
    return c_.n_layer * ((c_.d_conv - 1) * c_.conv_dim() + c_.nheads() * c_.headdim * c_.d_state);
  }
  std::vector<std::string> no_weight_decay() const override {
    std::vector<std::string> names;
    for (int64_t i = 0; i < c_.n_layer; ++i)
      for (const char* p : {"A_log", "dt_bias", "D"}) names.push_back("layers." + std::to_string(i) + ".mixer." + p);
    return names;
  }

 private:
  Mamba2Config c_;
};

class Mamba2Plugin : public ArchPlugin {
 public:
  std::string name() const override { return "mamba2"; }
  std::string version() const override { return "1.0"; }
  std::string summary() const override {
    return "Mamba-2 (SSD): RMSNorm residual stack of Mamba2 mixers, chunked scan, O(1) decoding, tied embeddings";
  }
  std::vector<ParamSpec> params() const override {
    return {
        int_param("d_model", 128, "residual width", 1, 65536),
        int_param("n_layer", 4, "Mamba-2 blocks", 1, 256),
        int_param("d_state", 64, "SSM state size N per head (Mamba2Simple: 64, Mamba2: 128)", 1, 4096),
        int_param("d_conv", 4, "depthwise causal conv kernel width", 1, 64),
        int_param("expand", 2, "d_inner = expand * d_model", 1, 64),
        int_param("headdim", 64, "head dim P; nheads = d_inner / headdim", 1, 65536),
        int_param("ngroups", 1, "groups sharing B and C (must divide nheads)", 1, 4096),
        int_param("chunk_size", 64, "SSD chunk length (upstream 256; 64 is faster on CPU)", 1, 65536),
        real_param("dt_min", 1e-3, "dt init: lower end of the log-uniform range", 1e-8, 10.0),
        real_param("dt_max", 0.1, "dt init: upper end of the log-uniform range", 1e-8, 10.0),
        real_param("dt_init_floor", 1e-4, "dt init: floor after sampling", 0.0, 10.0),
        real_param("A_init_min", 1.0, "A_log = log U(A_init_min, A_init_max)", 1e-8, 1e6),
        real_param("A_init_max", 16.0, "A_log = log U(A_init_min, A_init_max)", 1e-8, 1e6),
        bool_param("conv_bias", true, "bias in the depthwise conv"),
        real_param("norm_eps", 1e-5, "epsilon of the RMSNorms", 0.0, 1.0),
        int_param("vocab_size", 0, "embedding rows (0 = the tokenizer's; larger pads, never smaller)", 0),
    };
  }
  std::map<std::string, Value> tiny_config() const override {
    return {{"d_model", int64_t{16}}, {"n_layer", int64_t{2}}, {"d_state", int64_t{8}},
            {"headdim", int64_t{8}},  {"ngroups", int64_t{2}}, {"chunk_size", int64_t{4}}};
  }
  void check(const Params& p) const override {
    const int64_t di = p.i("expand") * p.i("d_model");
    if (di % p.i("headdim") != 0)
      throw UserError("expand * d_model (" + std::to_string(di) + ") must be divisible by headdim (" +
                      std::to_string(p.i("headdim")) + ")");
    const int64_t H = di / p.i("headdim");
    if (H % p.i("ngroups") != 0)
      throw UserError("nheads = expand * d_model / headdim (" + std::to_string(H) + ") must be divisible by ngroups (" +
                      std::to_string(p.i("ngroups")) + ")");
    if (p.f("dt_min") > p.f("dt_max"))
      throw UserError("dt_min (" + std::to_string(p.f("dt_min")) + ") must be <= dt_max (" +
                      std::to_string(p.f("dt_max")) + ")");
    if (p.f("A_init_min") > p.f("A_init_max"))
      throw UserError("A_init_min (" + std::to_string(p.f("A_init_min")) + ") must be <= A_init_max (" +
                      std::to_string(p.f("A_init_max")) + ")");
  }
  std::shared_ptr<Model> create(const Params& p, const ModelContext& ctx) const override {
    check(p);
    Mamba2Config c{ctx.vocab_size,  p.i("vocab_size"), p.i("d_model"),       p.i("n_layer"),    p.i("d_state"),
                   p.i("d_conv"),   p.i("expand"),     p.i("headdim"),       p.i("ngroups"),    p.i("chunk_size"),
                   p.f("dt_min"),   p.f("dt_max"),     p.f("dt_init_floor"), p.f("A_init_min"), p.f("A_init_max"),
                   p.f("norm_eps"), p.b("conv_bias")};
    return std::make_shared<Mamba2LM>(c);
  }
};

}  // namespace

LMGRID_PLUGIN(Mamba2Plugin)
