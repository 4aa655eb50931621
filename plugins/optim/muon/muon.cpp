// optim/muon: Muon (Keller Jordan et al., as modded-nanogpt uses it) for the hidden weight
// matrices, and AdamW for everything else (embeddings, the output head, norms, biases, 1-d
// parameters). Per matrix W (rows x cols) with gradient G and momentum buffer B (zero at the start):
//   B = mu * B + (1 - mu) * G;  U = nesterov ? (1 - mu) * G + mu * B : B;
//   O = NS5(U);  W = W - lr * wd * W (decay params only);  W = W - lr * max(1, rows/cols)^0.5 * O.
// NS5 is the quintic Newton-Schulz iteration: X = U / (||U||_F + 1e-7), transposed when
// rows > cols; 5 times A = X Xᵀ, X = a X + (b A + c A A) X with (a, b, c) = (3.4445, -4.7750,
// 2.0315); transposed back. modded-nanogpt computes it in bfloat16; here `ns_dtype` picks the
// precision (float32 by default). Parameters with more than two dimensions are flattened to
// (size(0), rest). The AdamW part is written out: m, v per parameter, bias correction by the
// optimizer's step count, decoupled weight decay. Not: distributed sharding, per-group lrs
// beyond `lr` and `adamw_lr`.
#include <sstream>

#include <lmgrid/base/errors.hpp>
#include <lmgrid/plugin/optim_state.hpp>
#include <lmgrid/plugin/plugin.hpp>

namespace {

using namespace lmgrid;

std::vector<std::string> split_patterns(const std::string& list) {
  std::vector<std::string> out;
  std::stringstream ss(list);
  std::string item;
  while (std::getline(ss, item, ',')) {
    auto b = item.find_first_not_of(" \t"), e = item.find_last_not_of(" \t");
    if (b != std::string::npos) out.push_back(item.substr(b, e - b + 1));
  }
  return out;
}

c10::ScalarType ns_type(const std::string& name) {
  if (name == "bfloat16") return torch::kBFloat16;
  if (name == "float64") return torch::kFloat64;
  return torch::kFloat32;
}

// The quintic Newton-Schulz iteration on a 2-d tensor, in `dtype`; returns the input's dtype.
torch::Tensor newton_schulz5(const torch::Tensor& g, int64_t steps, c10::ScalarType dtype) {
  const double a = 3.4445, b = -4.7750, c = 2.0315;
  auto x = g.to(dtype);
  bool transposed = g.size(0) > g.size(1);
  if (transposed) x = x.t();
  x = x / (x.norm() + 1e-7);
  for (int64_t i = 0; i < steps; ++i) {
    auto A = torch::matmul(x, x.t());
    auto B = b * A + c * torch::matmul(A, A);
    x = a * x + torch::matmul(B, x);
  }
  if (transposed) x = x.t();
  return x.to(g.scalar_type());
}

class Muon : public Optimizer {
 public:
  Muon(const Params& p, const std::vector<NamedParameter>& params)
      : base_lr_(p.f("lr")),
        lr_(base_lr_),
        momentum_(p.f("momentum")),
        wd_(p.f("weight_decay")),
        nesterov_(p.b("nesterov")),
        ns_steps_(p.i("ns_steps")),
        ns_dtype_(ns_type(p.s("ns_dtype"))),
        adamw_base_lr_(p.f("adamw_lr")),
        adamw_lr_(adamw_base_lr_),
        beta1_(p.f("adamw_beta1")),
        beta2_(p.f("adamw_beta2")),
        eps_(p.f("adamw_eps")),
        adamw_wd_(p.f("adamw_weight_decay")),
        params_(params) {
    auto patterns = split_patterns(p.s("adamw_params"));
    torch::NoGradGuard ng;
    for (const auto& np : params_) {
      bool to_adamw = np.tensor.dim() < 2;
      for (const auto& pat : patterns) to_adamw = to_adamw || np.name.find(pat) != std::string::npos;
      is_matrix_.push_back(!to_adamw);
      // Muon: the momentum buffer in m; v stays empty. AdamW: m and v.
      m_.push_back(torch::zeros_like(np.tensor));
      v_.push_back(to_adamw ? torch::zeros_like(np.tensor) : torch::Tensor());
    }
  }
  void zero_grad() override {
    for (auto& np : params_) np.tensor.mutable_grad().reset();
  }
  void step() override {
    torch::NoGradGuard ng;
    ++step_;
    const double bc1 = 1 - std::pow(beta1_, static_cast<double>(step_));
    const double bc2 = 1 - std::pow(beta2_, static_cast<double>(step_));
    for (size_t i = 0; i < params_.size(); ++i) {
      auto& p = params_[i].tensor;
      if (!p.grad().defined()) continue;
      const auto& g = p.grad();
      if (is_matrix_[i]) {
        m_[i].mul_(momentum_).add_((1 - momentum_) * g);
        auto u = nesterov_ ? (1 - momentum_) * g + momentum_ * m_[i] : m_[i];
        auto u2 = u.reshape({u.size(0), -1});
        double scale = std::sqrt(std::max(1.0, static_cast<double>(u2.size(0)) / static_cast<double>(u2.size(1))));
        auto o = newton_schulz5(u2, ns_steps_, ns_dtype_).reshape(p.sizes());
        if (params_[i].decay && wd_ != 0) p.mul_(1 - lr_ * wd_);
        p.sub_((lr_ * scale) * o);
      } else {
        m_[i].mul_(beta1_).add_((1 - beta1_) * g);
        v_[i].mul_(beta2_).add_((1 - beta2_) * g * g);
        if (params_[i].decay && adamw_wd_ != 0) p.mul_(1 - adamw_lr_ * adamw_wd_);
        auto denom = (v_[i] / bc2).sqrt() + eps_;
        p.sub_(adamw_lr_ * (m_[i] / bc1) / denom);
      }
    }
  }
  // The schedule's factor lr / base_lr applies to both parts.
  void set_lr(double lr) override {
    lr_ = lr;
    adamw_lr_ = base_lr_ > 0 ? adamw_base_lr_ * (lr / base_lr_) : adamw_base_lr_;
  }
  double base_lr() const override { return base_lr_; }
  void save(torch::serialize::OutputArchive& a) const override {
    optim_state::write_step(a, step_);
    optim_state::write_lrs(a, {lr_, adamw_lr_});
    for (size_t i = 0; i < m_.size(); ++i) {
      a.write("m/" + std::to_string(i), m_[i]);
      if (v_[i].defined()) a.write("v/" + std::to_string(i), v_[i]);
    }
  }
  void load(torch::serialize::InputArchive& a) override {
    optim_state::read_step(a, step_);
    optim_state::read_lrs(a, {&lr_, &adamw_lr_});
    for (size_t i = 0; i < m_.size(); ++i) {
      optim_state::read_buffer(a, "m/" + std::to_string(i), m_[i], "muon", params_[i].name);
      if (v_[i].defined()) optim_state::read_buffer(a, "v/" + std::to_string(i), v_[i], "muon", params_[i].name);
    }
  }

 private:
  double base_lr_, lr_, momentum_, wd_;
  bool nesterov_;
  int64_t ns_steps_;
  c10::ScalarType ns_dtype_;
  double adamw_base_lr_, adamw_lr_, beta1_, beta2_, eps_, adamw_wd_;
  int64_t step_ = 0;
  std::vector<NamedParameter> params_;
  std::vector<bool> is_matrix_;       // true: Muon; false: AdamW
  std::vector<torch::Tensor> m_, v_;  // Muon momentum or AdamW first moment; AdamW second moment
};

class MuonPlugin : public OptimPlugin {
 public:
  std::string name() const override { return "muon"; }
  std::string version() const override { return "1.0"; }
  std::string summary() const override {
    return "Muon (Newton-Schulz orthogonalised momentum) for hidden matrices, AdamW for the rest";
  }
  std::vector<ParamSpec> params() const override {
    return {
        real_param("lr", 0.02, "peak Muon learning rate (the [train] schedule scales it)", 0.0, 10.0),
        real_param("momentum", 0.95, "Muon momentum mu", 0.0, 1.0),
        bool_param("nesterov", true, "Nesterov momentum for Muon"),
        int_param("ns_steps", 5, "Newton-Schulz iterations", 1, 100),
        string_param("ns_dtype", "float32", "precision of the Newton-Schulz iteration (modded-nanogpt: bfloat16)",
                     {"float32", "bfloat16", "float64"}),
        real_param("weight_decay", 0.0, "decoupled weight decay on Muon matrices (p -= lr * wd * p)", 0.0, 100.0),
        string_param("adamw_params", "wte,wpe,embed,lm_head,head,conv",
                     "comma-separated name substrings of parameters sent to AdamW (besides every 1-d one)"),
        real_param("adamw_lr", 1e-3, "peak AdamW learning rate (scaled by the schedule's lr / lr)", 0.0, 10.0),
        real_param("adamw_beta1", 0.9, "AdamW first-moment decay", 0.0, 1.0),
        real_param("adamw_beta2", 0.99, "AdamW second-moment decay", 0.0, 1.0),
        real_param("adamw_eps", 1e-8, "AdamW denominator epsilon", 0.0, 1.0),
        real_param("adamw_weight_decay", 0.1, "AdamW decoupled weight decay on its matrices (embeddings, head)", 0.0,
                   10.0),
    };
  }
  std::shared_ptr<Optimizer> create(const Params& p, const std::vector<NamedParameter>& params) const override {
    return std::make_shared<Muon>(p, params);
  }
};

}  // namespace

LMGRID_PLUGIN(MuonPlugin)
