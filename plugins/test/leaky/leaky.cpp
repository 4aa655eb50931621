// arch/leaky: a test-only model that sees the future on purpose, so that tests can check that
// `lmgrid plugins check` catches it. Token embedding -> + leak -> Linear head, where the leak is
//   leak = "value":    x_t + mean_s x_s over the whole sequence (later tokens move every logit)
//   leak = "gradient": x_t + (m - detach(m)), m = that mean: the values are causal, the gradient
//                      is not (only the gradient check can see it)
//   leak = "none":     a causal bigram model (passes every check).
#include <lmgrid/plugin/plugin.hpp>

namespace {

using namespace lmgrid;

class Leaky : public Model {
 public:
  Leaky(int64_t vocab, int64_t d, std::string leak) : leak_(std::move(leak)) {
    emb = register_module("emb", torch::nn::Embedding(vocab, d));
    head = register_module("head", torch::nn::Linear(d, vocab));
  }
  ModelOutput forward(const torch::Tensor& idx, DecodeState*) override {
    auto x = emb(idx);         // (B,T,C)
    auto m = x.mean(1, true);  // (B,1,C): every position, the future included
    if (leak_ == "value") x = x + m;
    if (leak_ == "gradient") x = x + (m - m.detach());
    return {head(torch::tanh(x)), {}};
  }
  torch::nn::Embedding emb{nullptr};
  torch::nn::Linear head{nullptr};

 private:
  std::string leak_;
};

class LeakyPlugin : public ArchPlugin {
 public:
  std::string name() const override { return "leaky"; }
  std::string version() const override { return "0.1"; }
  std::string summary() const override { return "test plugin: a model that sees the future on purpose"; }
  std::vector<ParamSpec> params() const override {
    return {int_param("d_model", 8, "embedding width", 1),
            string_param("leak", "value", "how the future leaks in", {"value", "gradient", "none"})};
  }
  std::shared_ptr<Model> create(const Params& p, const ModelContext& ctx) const override {
    return std::make_shared<Leaky>(ctx.vocab_size, p.i("d_model"), p.s("leak"));
  }
};

}  // namespace

LMGRID_PLUGIN(LeakyPlugin)
