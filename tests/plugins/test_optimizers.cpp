// The optimizer plugins sgd, lion and muon against references written out naively here (loops
// over plain doubles, Newton-Schulz with triple-loop matmuls), in float64 with a stated
// tolerance; their exact resume (2N steps == N steps + save + load + N steps, bit for bit); muon's
// split of a model's parameters between Newton-Schulz and AdamW for every arch in the build; and
// the wsd learning-rate schedule. Not: convergence (the [sweep] and experiments/optimizers.toml).
#include <catch2/catch.hpp>

#include <cmath>
#include <functional>
#include <set>
#include <sstream>

#include <filesystem>

#include <lmgrid/config/train_settings.hpp>
#include <lmgrid/kernels/optim.hpp>
#include <lmgrid/train/checkpoint.hpp>
#include <lmgrid/train/trainer.hpp>

#include "../support.hpp"

using namespace lmgrid;

namespace {

// Every reference below is float64 throughout; both sides do the same few operations per
// element (more for Newton-Schulz, whose 5 iterations amplify rounding ~500x), so 1e-12 relative
// to the tensor's largest entry is loose by orders of magnitude and tight enough to catch any
// wrong coefficient, sign or bias correction.
constexpr double kTol = 1e-12;

const OptimPlugin& optim_plugin(const std::string& name) {
  return static_cast<const OptimPlugin&>(*test::built_plugins().get(PluginKind::optim, name).plugin);
}

std::shared_ptr<Optimizer> make(const std::string& name, const std::map<std::string, Value>& values,
                                const std::vector<NamedParameter>& params) {
  const auto& p = optim_plugin(name);
  return p.create(validate_params(p.params(), values, name), params);
}

using Vec = std::vector<double>;

Vec to_vec(const torch::Tensor& t) {
  auto c = t.detach().contiguous().to(torch::kFloat64);
  return Vec(c.data_ptr<double>(), c.data_ptr<double>() + c.numel());
}
torch::Tensor to_tensor(const Vec& v, torch::IntArrayRef shape) {
  return torch::tensor(v, torch::kFloat64).reshape(shape);
}

// Two float64 parameters: a matrix with weight decay, a vector without; fixed gradients per step.
struct Problem {
  std::vector<torch::Tensor> init;
  std::vector<bool> decay;
  std::vector<std::vector<torch::Tensor>> grads;  // [step][param]
};
Problem problem(int steps) {
  torch::manual_seed(7);
  Problem pr;
  pr.init = {torch::randn({3, 4}, torch::kFloat64), torch::randn({4}, torch::kFloat64)};
  pr.decay = {true, false};
  for (int s = 0; s < steps; ++s) {
    std::vector<torch::Tensor> g;
    for (const auto& t : pr.init) g.push_back(torch::randn(t.sizes(), torch::kFloat64));
    // An exact zero in the gradient, so that Lion's sign(0) = 0 is exercised at the first step.
    if (s == 0) g[1][0] = 0.0;
    pr.grads.push_back(g);
  }
  return pr;
}

// Runs `opt` over `params` with the problem's gradients and the per-step learning rates.
void run_steps(Optimizer& opt, std::vector<torch::Tensor>& params, const std::vector<std::vector<torch::Tensor>>& grads,
               const std::vector<double>& lrs) {
  for (size_t s = 0; s < grads.size(); ++s) {
    opt.set_lr(lrs[s]);
    opt.zero_grad();
    for (size_t i = 0; i < params.size(); ++i) params[i].mutable_grad() = grads[s][i].clone();
    opt.step();
  }
}

std::vector<NamedParameter> named(std::vector<torch::Tensor>& params, const std::vector<std::string>& names,
                                  const std::vector<bool>& decay) {
  std::vector<NamedParameter> out;
  for (size_t i = 0; i < params.size(); ++i) out.push_back({names[i], params[i], decay[i]});
  return out;
}

// Plain n x m matrices for the naive Newton-Schulz.
struct Mat {
  int64_t r = 0, c = 0;
  Vec a;
  double& operator()(int64_t i, int64_t j) { return a[i * c + j]; }
  double operator()(int64_t i, int64_t j) const { return a[i * c + j]; }
};
Mat zeros(int64_t r, int64_t c) { return {r, c, Vec(r * c, 0.0)}; }
Mat matmul(const Mat& x, const Mat& y) {
  Mat z = zeros(x.r, y.c);
  for (int64_t i = 0; i < x.r; ++i)
    for (int64_t j = 0; j < y.c; ++j) {
      double s = 0;
      for (int64_t k = 0; k < x.c; ++k) s += x(i, k) * y(k, j);
      z(i, j) = s;
    }
  return z;
}
Mat transpose(const Mat& x) {
  Mat z = zeros(x.c, x.r);
  for (int64_t i = 0; i < x.r; ++i)
    for (int64_t j = 0; j < x.c; ++j) z(j, i) = x(i, j);
  return z;
}
// X = G / (||G||_F + 1e-7), transposed when rows > cols; 5 x {A = X Xᵀ; B = b A + c A A;
// X = a X + B X}; transposed back.
Mat newton_schulz_naive(Mat x) {
  const double a = 3.4445, b = -4.7750, c = 2.0315;
  bool tr = x.r > x.c;
  if (tr) x = transpose(x);
  double n = 0;
  for (double v : x.a) n += v * v;
  n = std::sqrt(n) + 1e-7;
  for (double& v : x.a) v /= n;
  for (int it = 0; it < 5; ++it) {
    Mat A = matmul(x, transpose(x));
    Mat AA = matmul(A, A);
    Mat B = zeros(A.r, A.c);
    for (size_t k = 0; k < B.a.size(); ++k) B.a[k] = b * A.a[k] + c * AA.a[k];
    Mat BX = matmul(B, x);
    for (size_t k = 0; k < x.a.size(); ++k) x.a[k] = a * x.a[k] + BX.a[k];
  }
  return tr ? transpose(x) : x;
}

// 2N steps in one go equal N steps, save, load into a fresh optimizer over copies of the
// parameters, N more steps: bit for bit. Also checks that skipping the load changes the result
// when the optimizer keeps state (so that the comparison is not vacuous).
void check_exact_resume(const std::string& name, const std::map<std::string, Value>& values, bool stateful) {
  const int N = 4;
  torch::manual_seed(11);
  std::vector<std::string> names{"h.0.mlp.c_fc.weight", "h.0.ln_1.weight", "wte.weight"};
  std::vector<torch::Tensor> init{torch::randn({6, 4}), torch::randn({6}), torch::randn({9, 4})};
  std::vector<bool> decay{true, false, true};
  std::vector<std::vector<torch::Tensor>> grads;
  std::vector<double> lrs;
  for (int s = 0; s < 2 * N; ++s) {
    std::vector<torch::Tensor> g;
    for (const auto& t : init) g.push_back(torch::randn(t.sizes()));
    grads.push_back(g);
    lrs.push_back(1e-2 * (1.0 - 0.1 * s));  // a decaying schedule, set before every step
  }
  auto clone_all = [](const std::vector<torch::Tensor>& v) {
    std::vector<torch::Tensor> out;
    for (const auto& t : v) out.push_back(t.detach().clone().requires_grad_(true));
    return out;
  };
  auto first = [&](int n) { return std::vector<std::vector<torch::Tensor>>(grads.begin(), grads.begin() + n); };
  auto last = [&](int n) { return std::vector<std::vector<torch::Tensor>>(grads.end() - n, grads.end()); };

  auto a = clone_all(init);
  auto opt_a = make(name, values, named(a, names, decay));
  run_steps(*opt_a, a, grads, lrs);

  auto b = clone_all(init);
  auto opt_b = make(name, values, named(b, names, decay));
  run_steps(*opt_b, b, first(N), lrs);
  torch::serialize::OutputArchive out;
  opt_b->save(out);
  std::stringstream ss;
  out.save_to(ss);

  auto c = clone_all(b);
  auto opt_c = make(name, values, named(c, names, decay));
  torch::serialize::InputArchive in;
  in.load_from(ss);
  opt_c->load(in);
  std::vector<double> later(lrs.begin() + N, lrs.end());
  run_steps(*opt_c, c, last(N), later);

  auto d = clone_all(b);  // the same, without the load
  auto opt_d = make(name, values, named(d, names, decay));
  run_steps(*opt_d, d, last(N), later);

  bool all_equal = true, any_differs = false;
  for (size_t i = 0; i < a.size(); ++i) {
    all_equal = all_equal && torch::equal(a[i], c[i]);
    any_differs = any_differs || !torch::equal(a[i], d[i]);
  }
  CHECK(all_equal);
  CHECK(any_differs == stateful);
}

// Steps `opt` once and compares with reference(1), then once more and compares with reference(2).
void check_two_steps(Optimizer& opt, std::vector<torch::Tensor>& params, const Problem& pr,
                     const std::vector<double>& lrs, const std::function<std::vector<Vec>(int)>& reference) {
  for (int s = 0; s < 2; ++s) {
    run_steps(opt, params, {pr.grads[s]}, {lrs[s]});
    auto ref = reference(s + 1);
    for (size_t i = 0; i < params.size(); ++i) {
      INFO("after step " << s + 1 << ", parameter " << i);
      CHECK(test::rel_err(params[i], to_tensor(ref[i], params[i].sizes())) < kTol);
    }
  }
}

}  // namespace

TEST_CASE("sgd: one and two steps equal the naive formulas (plain, momentum, nesterov)", "[unit][optim]") {
  struct Case {
    const char* label;
    double mu;
    bool nesterov;
  };
  for (const Case& k : {Case{"plain", 0.0, false}, Case{"momentum", 0.9, false}, Case{"nesterov", 0.9, true}}) {
    DYNAMIC_SECTION("sgd " << k.label) {
      const double wd = 0.05;
      const std::vector<double> lrs{0.1, 0.07};
      auto pr = problem(2);
      std::vector<torch::Tensor> params{pr.init[0].clone(), pr.init[1].clone()};
      auto opt = make("sgd", {{"lr", 0.1}, {"momentum", k.mu}, {"nesterov", k.nesterov}, {"weight_decay", wd}},
                      named(params, {"w", "b"}, pr.decay));
      // Per element: g = grad + wd p (decay params only); buf = mu buf + g (buf starts at 0);
      // d = nesterov ? g + mu buf : (mu > 0 ? buf : g); p = p - lr d.
      check_two_steps(*opt, params, pr, lrs, [&](int steps) {
        std::vector<Vec> out;
        for (size_t i = 0; i < pr.init.size(); ++i) {
          Vec p = to_vec(pr.init[i]), buf(p.size(), 0.0);
          for (int s = 0; s < steps; ++s) {
            Vec g = to_vec(pr.grads[s][i]);
            for (size_t j = 0; j < p.size(); ++j) {
              double gj = g[j] + (pr.decay[i] ? wd * p[j] : 0.0);
              buf[j] = k.mu * buf[j] + gj;
              double dj = k.nesterov ? gj + k.mu * buf[j] : (k.mu > 0 ? buf[j] : gj);
              p[j] -= lrs[s] * dj;
            }
          }
          out.push_back(p);
        }
        return out;
      });
    }
  }
}

TEST_CASE("lion: one and two steps equal the naive formulas", "[unit][optim]") {
  const double b1 = 0.9, b2 = 0.99, wd = 0.1;
  const std::vector<double> lrs{1e-2, 5e-3};
  auto pr = problem(2);
  std::vector<torch::Tensor> params{pr.init[0].clone(), pr.init[1].clone()};
  auto opt = make("lion", {{"lr", 1e-2}, {"beta1", b1}, {"beta2", b2}, {"weight_decay", wd}},
                  named(params, {"w", "b"}, pr.decay));
  // Per element: c = b1 m + (1 - b1) g; p = p (1 - lr wd) (decay params only);
  // p = p - lr sign(c) with sign(0) = 0; m = b2 m + (1 - b2) g (m starts at 0).
  check_two_steps(*opt, params, pr, lrs, [&](int steps) {
    std::vector<Vec> out;
    for (size_t i = 0; i < pr.init.size(); ++i) {
      Vec p = to_vec(pr.init[i]), m(p.size(), 0.0);
      for (int s = 0; s < steps; ++s) {
        Vec g = to_vec(pr.grads[s][i]);
        for (size_t j = 0; j < p.size(); ++j) {
          double c = b1 * m[j] + (1 - b1) * g[j];
          double sign = c > 0 ? 1.0 : (c < 0 ? -1.0 : 0.0);
          if (pr.decay[i]) p[j] = p[j] * (1 - lrs[s] * wd);
          p[j] = p[j] - lrs[s] * sign;
          m[j] = b2 * m[j] + (1 - b2) * g[j];
        }
      }
      out.push_back(p);
    }
    return out;
  });
}

// Muon's reference: Newton-Schulz on the momentum for the two matrices (one wide, one tall, so
// that the transposed path runs), AdamW with bias correction for the embedding and the vector.
TEST_CASE("muon: one and two steps equal Newton-Schulz and AdamW written out", "[unit][optim]") {
  const double mu = 0.95, wd = 0.01, alr = 3e-3, ab1 = 0.9, ab2 = 0.99, eps = 1e-8, awd = 0.1, base = 0.02;
  const std::vector<double> lrs{0.02, 0.01};  // the second halves AdamW's lr too
  torch::manual_seed(3);
  Problem pr;
  pr.init = {torch::randn({3, 5}, torch::kFloat64), torch::randn({6, 4}, torch::kFloat64),
             torch::randn({7, 4}, torch::kFloat64), torch::randn({4}, torch::kFloat64)};
  std::vector<std::string> names{"h.0.attn.c_proj.weight", "h.0.mlp.c_fc.weight", "wte.weight", "h.0.ln_1.weight"};
  pr.decay = {true, true, true, false};
  const std::vector<bool> is_matrix{true, true, false, false};
  for (int s = 0; s < 2; ++s) {
    std::vector<torch::Tensor> g;
    for (const auto& t : pr.init) g.push_back(torch::randn(t.sizes(), torch::kFloat64));
    pr.grads.push_back(g);
  }
  for (bool nesterov : {true, false}) {
    DYNAMIC_SECTION("nesterov " << nesterov) {
      std::vector<torch::Tensor> params;
      for (const auto& t : pr.init) params.push_back(t.clone());
      auto opt = make("muon",
                      {{"lr", base},
                       {"momentum", mu},
                       {"nesterov", nesterov},
                       {"weight_decay", wd},
                       {"ns_dtype", std::string("float64")},
                       {"adamw_lr", alr},
                       {"adamw_beta1", ab1},
                       {"adamw_beta2", ab2},
                       {"adamw_eps", eps},
                       {"adamw_weight_decay", awd}},
                      named(params, names, pr.decay));
      check_two_steps(*opt, params, pr, lrs, [&](int steps) {
        std::vector<Vec> out;
        for (size_t i = 0; i < pr.init.size(); ++i) {
          Vec p = to_vec(pr.init[i]), m(p.size(), 0.0), v(p.size(), 0.0);
          const int64_t rows = pr.init[i].size(0), cols = pr.init[i].numel() / rows;
          for (int s = 0; s < steps; ++s) {
            Vec g = to_vec(pr.grads[s][i]);
            const double lr = lrs[s], adamw_lr = alr * lrs[s] / base;
            if (is_matrix[i]) {
              // B = mu B + (1 - mu) G; U = nesterov ? (1 - mu) G + mu B : B; O = NS5(U);
              // W = W (1 - lr wd); W = W - lr max(1, rows / cols)^0.5 O.
              Mat u = zeros(rows, cols);
              for (size_t j = 0; j < p.size(); ++j) {
                m[j] = mu * m[j] + (1 - mu) * g[j];
                u.a[j] = nesterov ? (1 - mu) * g[j] + mu * m[j] : m[j];
              }
              Mat o = newton_schulz_naive(u);
              double scale = std::sqrt(std::max(1.0, double(rows) / double(cols)));
              for (size_t j = 0; j < p.size(); ++j) p[j] = p[j] * (1 - lr * wd) - lr * scale * o.a[j];
            } else {
              // AdamW at step t = s + 1 with bias correction, decoupled decay on matrices.
              const double t = s + 1, bc1 = 1 - std::pow(ab1, t), bc2 = 1 - std::pow(ab2, t);
              for (size_t j = 0; j < p.size(); ++j) {
                m[j] = ab1 * m[j] + (1 - ab1) * g[j];
                v[j] = ab2 * v[j] + (1 - ab2) * g[j] * g[j];
                if (pr.decay[i]) p[j] = p[j] * (1 - adamw_lr * awd);
                p[j] -= adamw_lr * (m[j] / bc1) / (std::sqrt(v[j] / bc2) + eps);
              }
            }
          }
          out.push_back(p);
        }
        return out;
      });
    }
  }
}

// The default float32 Newton-Schulz (modded-nanogpt: bfloat16) agrees with the float64 one to
// float32 precision: same equations, only the iteration's dtype differs.
TEST_CASE("muon: Newton-Schulz in float32 and bfloat16 close to float64", "[unit][optim]") {
  torch::manual_seed(5);
  auto w0 = torch::randn({8, 5}, torch::kFloat64), g = torch::randn({8, 5}, torch::kFloat64);
  auto delta = [&](const std::string& dtype) {
    std::vector<torch::Tensor> p{w0.clone()};
    auto opt = make("muon", {{"lr", 1.0}, {"ns_dtype", dtype}, {"nesterov", false}, {"momentum", 0.0}},
                    named(p, {"h.0.w"}, {false}));
    p[0].mutable_grad() = g.clone();
    opt->step();
    return (w0 - p[0]).detach();
  };
  auto ref = delta("float64");
  CHECK(test::rel_err(delta("float32"), ref) < 1e-5);
  CHECK(test::rel_err(delta("bfloat16"), ref) < 0.1);  // 8 mantissa bits, amplified by the iteration
  // The update has the matrix's shape scaled by sqrt(8/5): singular values of NS5's output lie
  // around 1 (roughly 0.7 to 1.2 for this quintic), so the largest is near sqrt(8/5).
  auto sv = torch::linalg_svdvals(ref);
  CHECK(sv.max().item<double>() / std::sqrt(8.0 / 5.0) == Approx(1.0).margin(0.35));
}

TEST_CASE("optimizers: N steps + save + load + N steps equals 2N steps bit for bit", "[unit][optim]") {
  const std::vector<std::pair<std::string, std::map<std::string, Value>>> cases{
      {"sgd", {{"momentum", 0.0}, {"weight_decay", 0.1}}},
      {"sgd", {{"momentum", 0.9}, {"weight_decay", 0.1}}},
      {"sgd", {{"momentum", 0.9}, {"nesterov", true}}},
      {"lion", {}},
      {"adamw", {}},
      {"muon", {}},
      {"muon", {{"nesterov", false}, {"weight_decay", 0.1}, {"ns_dtype", std::string("bfloat16")}}},
  };
  for (size_t k = 0; k < cases.size(); ++k) {
    DYNAMIC_SECTION(cases[k].first << " case " << k) {
      // Plain SGD keeps no state but the step count, so skipping the load changes nothing there.
      check_exact_resume(cases[k].first, cases[k].second, /*stateful=*/k != 0);
      if (cases[k].first == "adamw") {  // LibTorch's own step too
        test::ScopedEnv env("LMGRID_CPU_KERNELS", "composite");
        check_exact_resume(cases[k].first, cases[k].second, true);
      }
    }
  }
}

// The same through a model and the trainer's checkpoint files: a tiny gpt trained 2N steps on
// fixed batches under the wsd schedule equals N steps, a checkpoint (model and optimizer), a
// fresh model and optimizer loaded from it, and N more steps, bit for bit.
TEST_CASE("optimizers: checkpoint resume of a tiny gpt is exact", "[unit][optim]") {
  const auto& gpt = static_cast<const ArchPlugin&>(*test::built_plugins().get(PluginKind::arch, "gpt").plugin);
  const int64_t V = 11, T = 16, B = 2, N = 3;
  const std::vector<std::pair<std::string, std::map<std::string, Value>>> cases{
      {"sgd", {{"lr", 0.1}}}, {"lion", {{"lr", 1e-3}}}, {"muon", {{"lr", 0.02}}}};
  for (const auto& [name, values] : cases) {
    DYNAMIC_SECTION("optim/" << name) {
      auto fresh = [&]() {
        torch::manual_seed(0);
        return gpt.create(validate_params(gpt.params(), gpt.tiny_config(), "gpt"), {V, T});
      };
      auto train = [&](Model& m, Optimizer& opt, int64_t from, int64_t to) {
        for (int64_t s = from; s < to; ++s) {
          torch::manual_seed(100 + s);  // batch s
          auto idx = torch::randint(0, V, {B, T}, torch::kLong), tgt = torch::randint(0, V, {B, T}, torch::kLong);
          opt.set_lr(scheduled_lr("wsd", s, opt.base_lr(), 0.1 * opt.base_lr(), 1, 2 * N, 0.5));
          opt.zero_grad();
          lm_loss(m.forward(idx, nullptr).logits, tgt, {}).backward();
          opt.step();
        }
      };
      auto a = fresh();
      auto opt_a = make(name, values, named_parameters_for_optim(*a));
      train(*a, *opt_a, 0, 2 * N);

      auto b = fresh();
      auto opt_b = make(name, values, named_parameters_for_optim(*b));
      train(*b, *opt_b, 0, N);
      auto file = std::filesystem::temp_directory_path() / ("lmgrid-optim-resume-" + name + ".lmck");
      CheckpointMeta meta;
      meta.config_json = "{}";
      meta.step = N;
      save_checkpoint(file, meta, *b, opt_b.get());
      torch::manual_seed(123);
      auto c = gpt.create(validate_params(gpt.params(), gpt.tiny_config(), "gpt"), {V, T});
      auto opt_c = make(name, values, named_parameters_for_optim(*c));
      load_checkpoint(file, *c, opt_c.get(), false);
      std::filesystem::remove(file);
      train(*c, *opt_c, N, 2 * N);

      auto pa = a->named_parameters(), pc = c->named_parameters();
      bool equal = pa.size() == pc.size();
      for (const auto& item : pa) equal = equal && torch::equal(item.value(), pc[item.key()]);
      CHECK(equal);
    }
  }
}

// Muon sends every Embedding weight (token and position tables; a tied head is one of them), an
// untied output head (a Linear registered on the model itself), convolution filters and every
// 1-d parameter to AdamW, and the remaining matrices to Newton-Schulz; for every arch in the
// build, with its tiny config. Seen by behaviour: with adamw_lr = 0 only Muon's parameters move.
TEST_CASE("muon: embeddings, head, 1-d params to AdamW and hidden matrices to Newton-Schulz, every arch",
          "[unit][optim]") {
  for (const auto* lp : test::built_plugins().list(PluginKind::arch)) {
    const auto& plugin = static_cast<const ArchPlugin&>(*lp->plugin);
    DYNAMIC_SECTION("arch/" << plugin.name()) {
      torch::manual_seed(0);
      auto model = plugin.create(validate_params(plugin.params(), plugin.tiny_config(), plugin.name()), {11, 16});
      // Embedding tables anywhere; the head is a Linear registered on the model itself.
      std::set<const void*> embedding, head;
      for (const auto& m : model->named_modules())
        if (auto* e = dynamic_cast<torch::nn::EmbeddingImpl*>(m.value().get()))
          embedding.insert(e->weight.unsafeGetTensorImpl());
      for (const auto& m : model->named_children())
        if (auto* l = dynamic_cast<torch::nn::LinearImpl*>(m.value().get()))
          for (const auto& t : l->parameters()) head.insert(t.unsafeGetTensorImpl());
      REQUIRE(!embedding.empty());
      auto params = named_parameters_for_optim(*model);
      std::vector<torch::Tensor> before;
      for (auto& np : params) {
        before.push_back(np.tensor.detach().clone());
        np.tensor.mutable_grad() = torch::randn_like(np.tensor);
      }
      auto opt = make("muon", {{"lr", 0.01}, {"adamw_lr", 0.0}}, params);
      opt->step();
      int n_muon = 0;
      for (size_t i = 0; i < params.size(); ++i) {
        const auto& np = params[i];
        bool moved = !torch::equal(np.tensor, before[i]);
        const void* impl = np.tensor.unsafeGetTensorImpl();
        bool to_adamw = np.tensor.dim() < 2 || embedding.count(impl) || head.count(impl) ||
                        np.name.find("conv") != std::string::npos;
        INFO(np.name << " " << np.tensor.sizes() << (moved ? " moved" : " did not move"));
        CHECK(moved == !to_adamw);
        n_muon += moved;
      }
      CHECK(n_muon > 0);
    }
  }
}

TEST_CASE("wsd schedule: warm-up, stable, linear decay over the last decay_fraction", "[unit][optim]") {
  const double lr = 1e-3, lo = 1e-4;
  // warmup 10, decay_steps 110, decay_fraction 0.2: stable from 10 to 88, decay 88 -> 110.
  CHECK(scheduled_lr("wsd", 0, lr, lo, 10, 110, 0.2) == Approx(lr * 1 / 11).epsilon(1e-12));
  CHECK(scheduled_lr("wsd", 9, lr, lo, 10, 110, 0.2) == Approx(lr * 10 / 11).epsilon(1e-12));
  CHECK(scheduled_lr("wsd", 10, lr, lo, 10, 110, 0.2) == lr);
  CHECK(scheduled_lr("wsd", 50, lr, lo, 10, 110, 0.2) == lr);
  CHECK(scheduled_lr("wsd", 87, lr, lo, 10, 110, 0.2) == lr);
  CHECK(scheduled_lr("wsd", 88, lr, lo, 10, 110, 0.2) == Approx(lr).epsilon(1e-12));
  CHECK(scheduled_lr("wsd", 99, lr, lo, 10, 110, 0.2) == Approx(lo + 0.5 * (lr - lo)).epsilon(1e-12));
  CHECK(scheduled_lr("wsd", 104, lr, lo, 10, 110, 0.2) == Approx(lo + (6.0 / 22.0) * (lr - lo)).epsilon(1e-12));
  CHECK(scheduled_lr("wsd", 110, lr, lo, 10, 110, 0.2) == Approx(lo).epsilon(1e-12));
  CHECK(scheduled_lr("wsd", 111, lr, lo, 10, 110, 0.2) == lo);
  // nanoGPT-like: 2000 steps, 100 warm-up, the default fraction: decay from step 1600.
  CHECK(scheduled_lr("wsd", 1599, lr, lo, 100, 2000) == lr);
  CHECK(scheduled_lr("wsd", 1800, lr, lo, 100, 2000) == Approx(lo + 0.5 * (lr - lo)).epsilon(1e-12));
  // A fraction reaching into the warm-up decays from the warm-up's end: linear's schedule.
  for (int64_t s : {10, 35, 60, 110})
    CHECK(scheduled_lr("wsd", s, lr, lo, 10, 110, 1.0) ==
          Approx(scheduled_lr("linear", s, lr, lo, 10, 110)).epsilon(1e-12));
  // Fraction 0: stable to the end, lr_min after decay_steps.
  CHECK(scheduled_lr("wsd", 109, lr, lo, 10, 110, 0.0) == lr);
  CHECK(scheduled_lr("wsd", 111, lr, lo, 10, 110, 0.0) == lo);
  // The [train] key: declared with default 0.2 and read into TrainSettings.
  auto ts = TrainSettings::from(validate_params(trainer_params(), {{"schedule", std::string("wsd")}}, "[train]"));
  CHECK(ts.schedule == "wsd");
  CHECK(ts.decay_fraction == 0.2);
  CHECK_THROWS(validate_params(trainer_params(), {{"decay_fraction", 1.5}}, "[train]"));
}

// A parameter with more than two dimensions is orthogonalised as the matrix (size(0), rest):
// its step equals the step of the same numbers held as that matrix (tall, so the transposed path).
TEST_CASE("muon: a 3-d parameter steps as its (size(0), rest) matrix", "[unit][optim]") {
  torch::manual_seed(9);
  auto w = torch::randn({6, 2, 2}, torch::kFloat64), g = torch::randn({6, 2, 2}, torch::kFloat64);
  std::vector<torch::Tensor> p3{w.clone()}, p2{w.reshape({6, 4}).clone()};
  std::map<std::string, Value> values{{"lr", 0.05}, {"ns_dtype", std::string("float64")}};
  auto o3 = make("muon", values, named(p3, {"h.0.w"}, {false}));
  auto o2 = make("muon", values, named(p2, {"h.0.w"}, {false}));
  p3[0].mutable_grad() = g.clone();
  p2[0].mutable_grad() = g.reshape({6, 4}).clone();
  o3->step();
  o2->step();
  CHECK(test::rel_err(p3[0].reshape({6, 4}), p2[0]) < kTol);
  CHECK(!torch::equal(p3[0], w));
}

// adamw's fused step (kernels/src/optim_cpu.cpp) against LibTorch's torch::optim::AdamW step
// (LMGRID_CPU_KERNELS=composite): parameters after 1 to 3 steps in float64 to 1e-12 relative and
// float32 to 1e-6; the two share the optimizer state, so steps may alternate between them (which
// would diverge if the fused path kept its moments under other keys than LibTorch's).
TEST_CASE("adamw: the fused step equals LibTorch's AdamW step, and they share its state", "[unit][optim][fused]") {
  const Problem pr = problem(3);
  const std::vector<double> lrs{1e-2, 8e-3, 6e-3};
  const std::map<std::string, Value> values{{"weight_decay", 0.1}, {"beta2", 0.95}};
  auto run = [&](torch::ScalarType dtype, const std::vector<std::string>& modes) {
    std::vector<torch::Tensor> params;
    for (const auto& t : pr.init) params.push_back(t.to(dtype).clone().requires_grad_(true));
    auto opt = make("adamw", values, named(params, {"w", "b"}, pr.decay));
    for (size_t s = 0; s < modes.size(); ++s) {
      test::ScopedEnv env("LMGRID_CPU_KERNELS", modes[s]);
      std::vector<std::vector<torch::Tensor>> g{{pr.grads[s][0].to(dtype), pr.grads[s][1].to(dtype)}};
      run_steps(*opt, params, g, {lrs[s]});
    }
    return params;
  };
  for (auto dtype : {torch::kFloat64, torch::kFloat32}) {
    const double tol = dtype == torch::kFloat64 ? 1e-12 : 1e-6;
    auto ref = run(dtype, {"composite", "composite", "composite"});
    auto fused = run(dtype, {"auto", "auto", "auto"});
    auto mixed = run(dtype, {"auto", "composite", "auto"});
    for (size_t i = 0; i < ref.size(); ++i) {
      INFO("parameter " << i << (dtype == torch::kFloat64 ? " float64" : " float32"));
      CHECK(test::rel_err(fused[i], ref[i]) < tol);
      CHECK(test::rel_err(mixed[i], ref[i]) < tol);
      CHECK(test::rel_err(ref[i], pr.init[i].to(dtype)) > 1e-4);  // the steps moved it
    }
  }
}

TEST_CASE("sum_squares_cpu equals LibTorch's, refuses what it cannot take", "[unit][optim][fused]") {
  torch::manual_seed(3);
  std::vector<torch::Tensor> ts{torch::randn({300, 700}), torch::randn({5}), torch::randn({70000})};
  double ref = 0;
  for (const auto& t : ts) ref += t.to(torch::kFloat64).pow(2).sum().item<double>();
  CHECK(kernels::sum_squares_cpu(ts) == Approx(ref).epsilon(1e-6));
  std::vector<torch::Tensor> t64{torch::randn({123, 45}, torch::kFloat64)};
  CHECK(kernels::sum_squares_cpu(t64) == Approx(t64[0].pow(2).sum().item<double>()).epsilon(1e-13));
  CHECK(kernels::sum_squares_cpu_unsupported({torch::randn({4, 4}).t()}) ==
        "not contiguous float32/float64 CPU tensors");
  CHECK_THROWS_WITH(kernels::sum_squares_cpu({torch::ones({3}, torch::kInt64)}), Catch::Contains("sum_squares_cpu"));
}
