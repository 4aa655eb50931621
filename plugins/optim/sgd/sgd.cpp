// optim/sgd: stochastic gradient descent with heavy-ball or Nesterov momentum and L2 weight
// decay on matrices (the parameters the trainer marks `decay`), in torch.optim.SGD's form:
//   g = grad + wd * p (decay params only);  b = mu * b + g;  d = nesterov ? g + mu * b : b;
//   p = p - lr * d.
// Written out (not torch::optim::SGD) so that the state is two named things per parameter and the
// step count, saved and restored exactly. Not: dampening, maximise.
#include <lmgrid/base/errors.hpp>
#include <lmgrid/plugin/optim_state.hpp>
#include <lmgrid/plugin/plugin.hpp>

namespace {

using namespace lmgrid;

class Sgd : public Optimizer {
 public:
  Sgd(const Params& p, const std::vector<NamedParameter>& params)
      : base_lr_(p.f("lr")),
        lr_(base_lr_),
        momentum_(p.f("momentum")),
        wd_(p.f("weight_decay")),
        nesterov_(p.b("nesterov")),
        params_(params) {
    torch::NoGradGuard ng;
    // Zero-initialised buffers: with no dampening, b = mu * 0 + g = g at the first step, which is
    // torch.optim.SGD's "buffer = clone(grad)".
    for (const auto& np : params_) buf_.push_back(torch::zeros_like(np.tensor));
  }
  void zero_grad() override {
    for (auto& np : params_) np.tensor.mutable_grad().reset();
  }
  void step() override {
    torch::NoGradGuard ng;
    for (size_t i = 0; i < params_.size(); ++i) {
      auto& p = params_[i].tensor;
      if (!p.grad().defined()) continue;
      auto g = p.grad();
      if (params_[i].decay && wd_ != 0) g = g + wd_ * p;
      if (momentum_ != 0) {
        buf_[i].mul_(momentum_).add_(g);
        g = nesterov_ ? g + momentum_ * buf_[i] : buf_[i];
      }
      p.sub_(lr_ * g);
    }
  }
  void set_lr(double lr) override { lr_ = lr; }
  double base_lr() const override { return base_lr_; }
  void save(torch::serialize::OutputArchive& a) const override {
    optim_state::write_lrs(a, {lr_});
    for (size_t i = 0; i < buf_.size(); ++i) a.write("momentum/" + std::to_string(i), buf_[i]);
  }
  void load(torch::serialize::InputArchive& a) override {
    optim_state::read_lrs(a, {&lr_});
    for (size_t i = 0; i < buf_.size(); ++i)
      optim_state::read_buffer(a, "momentum/" + std::to_string(i), buf_[i], "sgd", params_[i].name);
  }

 private:
  double base_lr_, lr_, momentum_, wd_;
  bool nesterov_;
  std::vector<NamedParameter> params_;
  std::vector<torch::Tensor> buf_;  // momentum buffers, one per parameter
};

class SgdPlugin : public OptimPlugin {
 public:
  std::string name() const override { return "sgd"; }
  std::string version() const override { return "1.0"; }
  std::string summary() const override { return "SGD with momentum or Nesterov, L2 weight decay on matrices"; }
  std::vector<ParamSpec> params() const override {
    return {
        real_param("lr", 0.05, "peak learning rate (the [train] schedule scales it)", 0.0, 100.0),
        real_param("momentum", 0.9, "momentum coefficient mu (0 = plain SGD)", 0.0, 1.0),
        bool_param("nesterov", false, "Nesterov momentum: step along g + mu * buffer"),
        real_param("weight_decay", 0.0, "L2 weight decay added to the gradient of matrices", 0.0, 10.0),
    };
  }
  void check(const Params& p) const override {
    if (p.b("nesterov") && p.f("momentum") <= 0) throw UserError("nesterov needs momentum > 0");
  }
  std::shared_ptr<Optimizer> create(const Params& p, const std::vector<NamedParameter>& params) const override {
    return std::make_shared<Sgd>(p, params);
  }
};

}  // namespace

LMGRID_PLUGIN(SgdPlugin)
