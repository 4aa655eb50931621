// optim/adamw: AdamW (decoupled weight decay) over two parameter groups: weight decay on
// matrices (dim >= 2, as the trainer marks them), none on biases, norms and 1-d parameters.
// Uses LibTorch's torch::optim::AdamW.
#include <lmgrid/plugin/plugin.hpp>

namespace {

using namespace lmgrid;

class AdamW : public Optimizer {
 public:
  AdamW(const Params& p, const std::vector<NamedParameter>& params) : base_lr_(p.f("lr")) {
    std::vector<torch::Tensor> decay, no_decay;
    for (const auto& np : params) (np.decay ? decay : no_decay).push_back(np.tensor);
    auto opts = torch::optim::AdamWOptions(base_lr_).betas({p.f("beta1"), p.f("beta2")}).eps(p.f("eps"));
    std::vector<torch::optim::OptimizerParamGroup> groups;
    auto with_decay = std::make_unique<torch::optim::AdamWOptions>(opts);
    with_decay->weight_decay(p.f("weight_decay"));
    auto without = std::make_unique<torch::optim::AdamWOptions>(opts);
    without->weight_decay(0.0);
    groups.emplace_back(decay, std::move(with_decay));
    groups.emplace_back(no_decay, std::move(without));
    opt_ = std::make_unique<torch::optim::AdamW>(groups, opts);
  }
  void zero_grad() override { opt_->zero_grad(); }
  void step() override { opt_->step(); }
  void set_lr(double lr) override {
    for (auto& g : opt_->param_groups()) static_cast<torch::optim::AdamWOptions&>(g.options()).lr(lr);
  }
  double base_lr() const override { return base_lr_; }
  void save(torch::serialize::OutputArchive& a) const override { opt_->save(a); }
  void load(torch::serialize::InputArchive& a) override { opt_->load(a); }

 private:
  double base_lr_;
  std::unique_ptr<torch::optim::AdamW> opt_;
};

class AdamWPlugin : public OptimPlugin {
 public:
  std::string name() const override { return "adamw"; }
  std::string version() const override { return "1.0"; }
  std::string summary() const override { return "AdamW, weight decay on matrices only"; }
  std::vector<ParamSpec> params() const override {
    return {
        real_param("lr", 1e-3, "peak learning rate (the [train] schedule scales it)", 0.0, 10.0),
        real_param("beta1", 0.9, "first-moment decay", 0.0, 1.0),
        real_param("beta2", 0.99, "second-moment decay", 0.0, 1.0),
        real_param("eps", 1e-8, "denominator epsilon", 0.0, 1.0),
        real_param("weight_decay", 0.1, "decoupled weight decay on matrices", 0.0, 10.0),
    };
  }
  std::shared_ptr<Optimizer> create(const Params& p, const std::vector<NamedParameter>& params) const override {
    return std::make_shared<AdamW>(p, params);
  }
};

}  // namespace

LMGRID_PLUGIN(AdamWPlugin)
