// optim/adamw: AdamW (decoupled weight decay) over two parameter groups: weight decay on
// matrices (dim >= 2, as the trainer marks them), none on biases, norms and 1-d parameters.
// Uses LibTorch's torch::optim::AdamW (its options, state and checkpoint format); on float32 and
// float64 CPU parameters its update runs as one fused pass per parameter
// (lmgrid/kernels/optim.hpp) unless LMGRID_CPU_KERNELS=composite.
#include <sstream>
#include <type_traits>

#include <lmgrid/kernels/cpu_kernels.hpp>
#include <lmgrid/kernels/optim.hpp>
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
  void step() override {
    if (!fused_step()) opt_->step();
  }
  void set_lr(double lr) override {
    for (auto& g : opt_->param_groups()) static_cast<torch::optim::AdamWOptions&>(g.options()).lr(lr);
  }
  double base_lr() const override { return base_lr_; }
  void save(torch::serialize::OutputArchive& a) const override { opt_->save(a); }
  void load(torch::serialize::InputArchive& a) override { opt_->load(a); }

 private:
  // torch::optim::AdamW's step through the fused kernel, on its own state (created as it creates
  // it, so checkpoints and resumes are unchanged); false, with nothing done, where a parameter is
  // not a float32/float64 contiguous CPU tensor or amsgrad is on.
  bool fused_step() {
    if (!kernels::cpu_kernels_enabled()) return false;
    auto& state = opt_->state();
    for (auto& group : opt_->param_groups()) {
      if (static_cast<torch::optim::AdamWOptions&>(group.options()).amsgrad()) return false;
      for (auto& p : group.params()) {
        if (!p.grad().defined()) continue;
        auto it = state.find(key(state, p));
        if (it == state.end()) {
          if (!kernels::adamw_update_cpu_unsupported(p, p.grad(), p, p).empty()) return false;
        } else {
          auto& st = static_cast<torch::optim::AdamWParamState&>(*it->second);
          if (!kernels::adamw_update_cpu_unsupported(p, p.grad(), st.exp_avg(), st.exp_avg_sq()).empty()) return false;
        }
      }
    }
    torch::NoGradGuard no_grad;
    for (auto& group : opt_->param_groups()) {
      const auto& o = static_cast<torch::optim::AdamWOptions&>(group.options());
      for (auto& p : group.params()) {
        if (!p.grad().defined()) continue;
        auto& slot = state[key(state, p)];
        if (!slot) {
          auto fresh = std::make_unique<torch::optim::AdamWParamState>();
          fresh->step(0);
          fresh->exp_avg(torch::zeros_like(p, torch::MemoryFormat::Preserve));
          fresh->exp_avg_sq(torch::zeros_like(p, torch::MemoryFormat::Preserve));
          slot = std::move(fresh);
        }
        auto& st = static_cast<torch::optim::AdamWParamState&>(*slot);
        st.step(st.step() + 1);
        auto m = st.exp_avg(), v = st.exp_avg_sq();
        kernels::adamw_update_cpu(
            p, p.grad(), m, v,
            {o.lr(), std::get<0>(o.betas()), std::get<1>(o.betas()), o.eps(), o.weight_decay(), st.step()});
      }
    }
    return true;
  }

  // The optimizer's state key of a parameter: LibTorch 1.13 keys by the TensorImpl's address
  // printed as a string, 2.x by the address itself.
  template <class Map>
  static typename Map::key_type key(const Map&, const torch::Tensor& p) {
    if constexpr (std::is_same_v<typename Map::key_type, std::string>) {
      std::ostringstream s;
      s << p.unsafeGetTensorImpl();
      return s.str();
    } else {
      return static_cast<typename Map::key_type>(p.unsafeGetTensorImpl());
    }
  }

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
