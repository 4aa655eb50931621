// optim/lion: Lion (Chen et al. 2023, "Symbolic Discovery of Optimization Algorithms", Algorithm
// 2), per parameter with momentum m (zero at the start):
//   c = beta1 * m + (1 - beta1) * g;  p = p - lr * wd * p (decay params only);
//   p = p - lr * sign(c);  m = beta2 * m + (1 - beta2) * g.
// sign(0) = 0, as torch.sign. Written out from the equations; the state is m per parameter and
// the step count, saved and restored exactly.
#include <lmgrid/plugin/optim_state.hpp>
#include <lmgrid/plugin/plugin.hpp>

namespace {

using namespace lmgrid;

class Lion : public Optimizer {
 public:
  Lion(const Params& p, const std::vector<NamedParameter>& params)
      : base_lr_(p.f("lr")),
        lr_(base_lr_),
        beta1_(p.f("beta1")),
        beta2_(p.f("beta2")),
        wd_(p.f("weight_decay")),
        params_(params) {
    torch::NoGradGuard ng;
    for (const auto& np : params_) m_.push_back(torch::zeros_like(np.tensor));
  }
  void zero_grad() override {
    for (auto& np : params_) np.tensor.mutable_grad().reset();
  }
  void step() override {
    torch::NoGradGuard ng;
    for (size_t i = 0; i < params_.size(); ++i) {
      auto& p = params_[i].tensor;
      if (!p.grad().defined()) continue;
      const auto& g = p.grad();
      auto c = beta1_ * m_[i] + (1 - beta1_) * g;
      if (params_[i].decay && wd_ != 0) p.mul_(1 - lr_ * wd_);
      p.sub_(lr_ * torch::sign(c));
      m_[i].mul_(beta2_).add_((1 - beta2_) * g);
    }
  }
  void set_lr(double lr) override { lr_ = lr; }
  double base_lr() const override { return base_lr_; }
  void save(torch::serialize::OutputArchive& a) const override {
    optim_state::write_lrs(a, {lr_});
    for (size_t i = 0; i < m_.size(); ++i) a.write("m/" + std::to_string(i), m_[i]);
  }
  void load(torch::serialize::InputArchive& a) override {
    optim_state::read_lrs(a, {&lr_});
    for (size_t i = 0; i < m_.size(); ++i)
      optim_state::read_buffer(a, "m/" + std::to_string(i), m_[i], "lion", params_[i].name);
  }

 private:
  double base_lr_, lr_, beta1_, beta2_, wd_;
  std::vector<NamedParameter> params_;
  std::vector<torch::Tensor> m_;  // momentum, one per parameter
};

class LionPlugin : public OptimPlugin {
 public:
  std::string name() const override { return "lion"; }
  std::string version() const override { return "1.0"; }
  std::string summary() const override {
    return "Lion (sign of interpolated momentum), decoupled weight decay on matrices";
  }
  std::vector<ParamSpec> params() const override {
    return {
        real_param("lr", 1e-4, "peak learning rate (the [train] schedule scales it)", 0.0, 10.0),
        real_param("beta1", 0.9, "interpolation of momentum and gradient for the update", 0.0, 1.0),
        real_param("beta2", 0.99, "momentum decay", 0.0, 1.0),
        real_param("weight_decay", 0.1, "decoupled weight decay on matrices (p -= lr * wd * p)", 0.0, 100.0),
    };
  }
  std::shared_ptr<Optimizer> create(const Params& p, const std::vector<NamedParameter>& params) const override {
    return std::make_shared<Lion>(p, params);
  }
};

}  // namespace

LMGRID_PLUGIN(LionPlugin)
