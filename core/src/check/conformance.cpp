// The conformance check of an arch plugin (see lmgrid/check/conformance.hpp).
// Letters: B batch, T tokens, V vocabulary, j the changed position.
#include "lmgrid/check/conformance.hpp"

#include <algorithm>
#include <functional>
#include <set>

#include <unistd.h>

#include <fmt/format.h>
#include <fmt/ranges.h>  // fmt::join (in ranges.h from fmt 11 on: the torch wheel bundles 12)

#include "lmgrid/train/checkpoint.hpp"

namespace lmgrid {

const char* check_status_name(CheckStatus s) {
  switch (s) {
    case CheckStatus::pass: return "pass";
    case CheckStatus::fail: return "FAIL";
    case CheckStatus::not_applicable: return "n/a";
  }
  return "?";
}

bool all_passed(const std::vector<CheckResult>& results) {
  return std::none_of(results.begin(), results.end(),
                      [](const CheckResult& r) { return r.status == CheckStatus::fail; });
}

namespace {

constexpr double kExactTol = 1e-10;  // float64: a causal model changes earlier logits by rounding at most
constexpr double kDecodeTol = 1e-9;  // float64: decoding vs the full forward, relative

// max |a - b| / max |b|.
double rel_err(const torch::Tensor& a, const torch::Tensor& b) {
  return (a - b).abs().max().item<double>() / std::max(b.abs().max().item<double>(), 1e-300);
}

CheckResult measured(std::string name, double err, double tol, std::string detail = "") {
  return {std::move(name), err <= tol ? CheckStatus::pass : CheckStatus::fail, err, tol, std::move(detail)};
}

CheckResult not_applicable(std::string name, std::string why) {
  return {std::move(name), CheckStatus::not_applicable, NAN, NAN, std::move(why)};
}

class Checker {
 public:
  Checker(const ArchPlugin& plugin, const Params& params, const ConformanceOptions& o)
      : plugin_(plugin), params_(params), o_(o), V_(o.vocab_size), T_(o.seq_len), B_(o.batch) {}

  std::shared_ptr<Model> build(uint64_t seed, torch::Dtype dtype = torch::kFloat32) const {
    torch::manual_seed(seed);
    auto m = plugin_.create(params_, {V_, T_});
    m->to(dtype);
    m->eval();
    return m;
  }
  torch::Tensor tokens(uint64_t seed) const {
    torch::manual_seed(seed);
    return torch::randint(0, V_, {B_, T_}, torch::kLong);
  }
  torch::Tensor logits(Model& m, const torch::Tensor& x, DecodeState* st = nullptr) const {
    return m.forward(x, st).logits;
  }

  CheckResult forward() const {
    auto m = build(o_.seed);
    torch::NoGradGuard ng;
    auto out = m->forward(tokens(o_.seed + 1), nullptr);
    const auto& l = out.logits;
    std::string got =
        fmt::format("logits {} {}", fmt::join(l.sizes().vec(), "x"), std::string(c10::toString(l.scalar_type())));
    bool ok =
        l.dim() == 3 && l.size(0) == B_ && l.size(1) == T_ && l.size(2) == V_ && l.scalar_type() == torch::kFloat32;
    if (ok && out.aux_loss.defined())
      ok = out.aux_loss.numel() == 1 && torch::isfinite(out.aux_loss).all().item<bool>();
    ok = ok && torch::isfinite(l).all().item<bool>();
    return {"forward: shape (B,T,V), float32", ok ? CheckStatus::pass : CheckStatus::fail, NAN, NAN,
            got + fmt::format(" (want {}x{}x{} Float)", B_, T_, V_)};
  }

  std::vector<int64_t> changed_positions() const {
    std::set<int64_t> js{1, T_ / 2, T_ - 1};
    js.erase(0);
    return {js.begin(), js.end()};
  }

  CheckResult causal_values() const {
    auto m = build(o_.seed, torch::kFloat64);
    torch::NoGradGuard ng;
    auto x = tokens(o_.seed + 2);
    auto base = logits(*m, x);
    double worst = 0;
    int64_t worst_j = 0;
    for (int64_t j : changed_positions()) {
      auto y = x.clone();
      y.select(1, j).add_(1 + torch::randint(0, V_ - 1, {B_}, torch::kLong)).remainder_(V_);  // another token at j
      double e = rel_err(logits(*m, y).narrow(1, 0, j), base.narrow(1, 0, j));
      if (e > worst) worst = e, worst_j = j;
    }
    return measured("causal: changing token j moves no logit before j", worst, kExactTol,
                    worst > kExactTol
                        ? fmt::format("leak at j = {}: max |change| / max |logit| = {:.3g}", worst_j, worst)
                        : fmt::format("j in {{{}}}", fmt::join(changed_positions(), ", ")));
  }

  CheckResult causal_gradient() const {
    const std::string name = "causal: d(logits before j)/d(embeddings from j on) = 0";
    auto m = build(o_.seed, torch::kFloat64);
    std::vector<torch::Tensor> tables;  // token embeddings: Embedding modules with >= V rows
    for (const auto& mod : m->modules(false))
      if (const auto* e = mod->as<torch::nn::Embedding>())
        if (e->weight.size(0) >= V_ && e->weight.requires_grad()) tables.push_back(e->weight);
    if (tables.empty()) return not_applicable(name, "no token Embedding table with >= V rows");
    if (V_ < 4) return not_applicable(name, "needs V >= 4");
    double worst = 0;
    int64_t worst_j = 0;
    torch::manual_seed(o_.seed + 3);
    for (int64_t j : changed_positions()) {
      // Tokens before j come from one half of the vocabulary, from j on from the other, and only
      // the first half's logits are differentiated: a tied head then adds nothing to the rows of
      // the second half, whose gradient can only come through the inputs at positions >= j.
      auto perm = torch::randperm(V_, torch::kLong);
      auto early_ids = perm.narrow(0, 0, V_ / 2), late_ids = perm.narrow(0, V_ / 2, V_ - V_ / 2);
      auto x = torch::cat({early_ids.index({torch::randint(0, early_ids.size(0), {B_, j}, torch::kLong)}),
                           late_ids.index({torch::randint(0, late_ids.size(0), {B_, T_ - j}, torch::kLong)})},
                          1);
      m->zero_grad();
      auto early = logits(*m, x).narrow(1, 0, j).index_select(2, early_ids);  // (B,j,V/2)
      (early * torch::randn_like(early)).sum().backward();
      for (const auto& w : tables) {
        if (!w.grad().defined()) continue;
        double late = w.grad().index_select(0, late_ids).abs().max().item<double>();
        double ref = w.grad().index_select(0, early_ids).abs().max().item<double>();
        double e = late / std::max(ref, 1e-300);
        if (e > worst) worst = e, worst_j = j;
      }
    }
    return measured(name, worst, kExactTol,
                    worst > kExactTol
                        ? fmt::format("leak at j = {}: max |grad later| / max |grad earlier| = {:.3g}", worst_j, worst)
                        : "");
  }

  CheckResult determinism() const {
    auto a = build(o_.seed), b = build(o_.seed);
    torch::NoGradGuard ng;
    compare_params(*a, *b);
    auto x = tokens(o_.seed + 4);
    auto la = logits(*a, x), la2 = logits(*a, x), lb = logits(*b, x);
    double e = std::max((la - lb).abs().max().item<double>(), (la - la2).abs().max().item<double>());
    bool same = params_equal_ && torch::equal(la, lb) && torch::equal(la, la2);
    return {"deterministic: same seed, same model and logits", same ? CheckStatus::pass : CheckStatus::fail, e, 0.0,
            params_equal_ ? "" : "parameters differ between two builds with one seed"};
  }

  std::vector<CheckResult> decoding() const {
    const std::string n1 = "decode: token by token = full forward", n2 = "decode: after a prefill = full forward",
                      n3 = "state: two halves = one call";
    auto m = build(o_.seed, torch::kFloat64);
    torch::NoGradGuard ng;
    auto x = tokens(o_.seed + 5);
    if (!m->new_decode_state(B_)) {
      std::string why = "the model does not decode incrementally (no new_decode_state)";
      return {not_applicable(n1, why), not_applicable(n2, why), not_applicable(n3, why)};
    }
    auto full = logits(*m, x);
    auto stepwise = [&](int64_t prefill) {
      auto st = m->new_decode_state(B_);
      std::vector<torch::Tensor> parts;
      if (prefill > 0) parts.push_back(logits(*m, x.narrow(1, 0, prefill), st.get()));
      for (int64_t t = prefill; t < T_; ++t) parts.push_back(logits(*m, x.narrow(1, t, 1), st.get()));
      return rel_err(torch::cat(parts, 1), full);
    };
    const int64_t p = std::max<int64_t>(1, T_ / 3), h = T_ / 2;
    auto st = m->new_decode_state(B_);
    auto halves =
        torch::cat({logits(*m, x.narrow(1, 0, h), st.get()), logits(*m, x.narrow(1, h, T_ - h), st.get())}, 1);
    return {measured(n1, stepwise(0), kDecodeTol), measured(n2, stepwise(p), kDecodeTol, fmt::format("prefill {}", p)),
            measured(n3, rel_err(halves, full), kDecodeTol, fmt::format("{} + {} tokens", h, T_ - h))};
  }

  CheckResult checkpoint() const {
    auto a = build(o_.seed);
    auto dir = o_.scratch.empty() ? std::filesystem::temp_directory_path() : o_.scratch;
    auto file = dir / fmt::format("lmgrid-check-{}-{}.lmck", plugin_.name(), static_cast<long>(::getpid()));
    CheckpointMeta meta;
    meta.config_json = "{}";
    save_checkpoint(file, meta, *a, nullptr);
    auto b = build(o_.seed + 1000);
    load_checkpoint(file, *b, nullptr, false);
    std::filesystem::remove(file);
    b->eval();
    torch::NoGradGuard ng;
    auto x = tokens(o_.seed + 6);
    auto la = logits(*a, x), lb = logits(*b, x);
    return {"checkpoint: save, load into another build = same logits",
            torch::equal(la, lb) ? CheckStatus::pass : CheckStatus::fail, (la - lb).abs().max().item<double>(), 0.0,
            ""};
  }

  CheckResult parameter_count() const {
    const std::string name = "params: declared count = the module's";
    auto m = build(o_.seed);
    const int64_t declared = m->declared_parameter_count(), n = m->parameter_count();
    if (declared == 0) return not_applicable(name, fmt::format("no declared count; the module has {}", n));
    return {name, declared == n ? CheckStatus::pass : CheckStatus::fail, static_cast<double>(std::abs(declared - n)),
            0.0, fmt::format("declared {}, module {}", declared, n)};
  }

  CheckResult flops() const {
    auto m = build(o_.seed);
    const double n = static_cast<double>(m->parameter_count()), f = m->flops_per_token();
    double attn = 0;
    const auto& v = params_.values();
    auto L = v.find("n_layer"), d = v.find("d_model");
    if (L != v.end() && d != v.end() && std::holds_alternative<int64_t>(L->second) &&
        std::holds_alternative<int64_t>(d->second))
      attn = 12.0 * static_cast<double>(std::get<int64_t>(L->second) * std::get<int64_t>(d->second) * T_);
    const double ref = 6 * n + attn, ratio = f / ref;
    return measured("flops: flops_per_token within 2x of 6N + attention", std::abs(std::log2(ratio)), 1.0,
                    fmt::format("{:.4g} / ({:.4g} + {:.4g}) = {:.3f}", f, 6 * n, attn, ratio));
  }

 private:
  void compare_params(Model& a, Model& b) const {
    auto pa = a.named_parameters(), pb = b.named_parameters();
    params_equal_ = pa.size() == pb.size();
    for (const auto& kv : pa)
      if (params_equal_) params_equal_ = pb.contains(kv.key()) && torch::equal(kv.value(), pb[kv.key()]);
  }

  const ArchPlugin& plugin_;
  const Params& params_;
  ConformanceOptions o_;
  int64_t V_, T_, B_;
  mutable bool params_equal_ = true;
};

// One check, its exceptions turned into a failure that says what was thrown.
void run_one(std::vector<CheckResult>& out, const std::string& name,
             const std::function<std::vector<CheckResult>()>& f) {
  try {
    for (auto& r : f()) out.push_back(std::move(r));
  } catch (const std::exception& e) {
    out.push_back({name, CheckStatus::fail, NAN, NAN, std::string("threw: ") + e.what()});
  }
}

}  // namespace

std::vector<CheckResult> check_arch(const ArchPlugin& plugin, const Params& params, const ConformanceOptions& options) {
  Checker c(plugin, params, options);
  std::vector<CheckResult> out;
  auto one = [](auto f) { return [f] { return std::vector<CheckResult>{f()}; }; };
  run_one(out, "forward", one([&] { return c.forward(); }));
  run_one(out, "causal", one([&] { return c.causal_values(); }));
  run_one(out, "causal gradient", one([&] { return c.causal_gradient(); }));
  run_one(out, "deterministic", one([&] { return c.determinism(); }));
  run_one(out, "decode", [&] { return c.decoding(); });
  run_one(out, "checkpoint", one([&] { return c.checkpoint(); }));
  run_one(out, "params", one([&] { return c.parameter_count(); }));
  run_one(out, "flops", one([&] { return c.flops(); }));
  return out;
}

}  // namespace lmgrid
