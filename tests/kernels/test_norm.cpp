// The fused CPU RMSNorm (plain and gated, in groups) against the nn composites
// (LMGRID_CPU_KERNELS=composite): outputs and the gradients of x, z and weight, float64 to 1e-12
// and float32 to 1e-5 relative (against float64); the same bits on 1 and 2 threads; refusals.
#include <catch2/catch.hpp>

#include <ATen/Parallel.h>
#include <lmgrid/kernels/norm.hpp>
#include <lmgrid/nn/norm.hpp>

#include "../support.hpp"

using namespace lmgrid;
using lmgrid::test::rel_err;

namespace {

// The composite: nn's own path with the kernels switched off.
torch::Tensor composite(const torch::Tensor& x, const torch::Tensor& z, const torch::Tensor& w, int64_t groups,
                        double eps) {
  setenv("LMGRID_CPU_KERNELS", "composite", 1);
  torch::Tensor y;
  if (z.defined()) {
    y = nn::gated_rms_norm(x, z, w, groups, eps);
  } else {
    nn::RMSNorm m(w.size(0), eps);
    m->to(x.scalar_type());
    m->weight = w;  // the same leaf, so its gradient is comparable
    y = m(x);
  }
  unsetenv("LMGRID_CPU_KERNELS");
  return y;
}

}  // namespace

TEST_CASE("norm: the fused CPU RMSNorm equals the composite (float64 1e-12, float32 1e-5, gradients)",
          "[unit][norm][fused]") {
  struct Case {
    std::vector<int64_t> shape;
    bool gated;
    int64_t groups;
  };
  const std::vector<Case> cases = {{{3, 70, 24}, false, 1},
                                   {{2, 5, 256}, true, 1},
                                   {{2, 7, 24}, true, 3},
                                   {{130, 17}, false, 1},
                                   {{1, 1, 8}, true, 2}};
  for (const auto& c : cases) {
    DYNAMIC_SECTION("shape " << c.shape.size() << "-d last " << c.shape.back() << " gated " << c.gated << " groups "
                             << c.groups) {
      torch::manual_seed(40 + c.shape.back());
      auto o = torch::kFloat64;
      auto x = torch::randn(c.shape, o).requires_grad_();
      auto z = c.gated ? torch::randn(c.shape, o).requires_grad_() : torch::Tensor();
      auto w = (1 + 0.3 * torch::randn({c.shape.back()}, o)).detach().requires_grad_();
      auto proj = torch::randn(c.shape, o);
      std::vector<torch::Tensor> leaves{x, w};
      if (c.gated) leaves.push_back(z);
      auto ref = composite(x, z, w, c.groups, 1e-5);
      auto got = kernels::rms_norm_cpu(x, z, w, c.groups, 1e-5);
      CHECK(rel_err(got, ref) < 1e-12);
      auto gr = torch::autograd::grad({(ref * proj).sum()}, leaves);
      auto gg = torch::autograd::grad({(got * proj).sum()}, leaves);
      for (size_t i = 0; i < gr.size(); ++i) {
        INFO("float64 gradient " << i);
        CHECK(rel_err(gg[i], gr[i]) < 1e-12);
      }
      auto f = [](const torch::Tensor& t) { return t.defined() ? t.detach().to(torch::kFloat32).requires_grad_() : t; };
      auto x32 = f(x), z32 = f(z), w32 = f(w);
      std::vector<torch::Tensor> l32{x32, w32};
      if (c.gated) l32.push_back(z32);
      auto got32 = kernels::rms_norm_cpu(x32, z32, w32, c.groups, 1e-5);
      CHECK(rel_err(got32.to(o), ref) < 1e-5);
      auto g32 = torch::autograd::grad({(got32 * proj.to(torch::kFloat32)).sum()}, l32);
      for (size_t i = 0; i < gr.size(); ++i) {
        INFO("float32 gradient " << i);
        CHECK(rel_err(g32[i].to(o), gr[i]) < 1e-5);
      }
    }
  }
}

TEST_CASE("norm: the fused RMSNorm gives the same bits on 1 and 2 threads; refusals", "[unit][norm][fused]") {
  torch::manual_seed(3);
  auto x = torch::randn({12, 64, 256}).requires_grad_(), z = torch::randn({12, 64, 256}).requires_grad_();
  auto w = torch::randn({256}).requires_grad_();
  auto run = [&](int threads) {
    at::set_num_threads(threads);
    auto y = kernels::rms_norm_cpu(x, z, w, 2, 1e-5);
    auto g = torch::autograd::grad({(y * y.detach().cos()).sum()}, {x, z, w});
    g.push_back(y);
    return g;
  };
  const int before = at::get_num_threads();
  auto a = run(1), b = run(2);
  at::set_num_threads(before);
  for (size_t i = 0; i < a.size(); ++i) CHECK(torch::equal(a[i], b[i]));
  CHECK(kernels::rms_norm_cpu_unsupported(x, z, w, 3) == "groups do not divide the channels");
  CHECK(kernels::rms_norm_cpu_unsupported(x, z.narrow(1, 0, 3), w, 1) == "z and x differ in shape");
  CHECK(kernels::rms_norm_cpu_unsupported(x.to(torch::kBFloat16), {}, w, 1) == "dtype is not float32 or float64");
  CHECK(kernels::rms_norm_cpu_unsupported(x, {}, w.narrow(0, 0, 5), 1) == "weight is not (C) for x's last dim");
  CHECK_THROWS_WITH(kernels::rms_norm_cpu(x, {}, w.to(torch::kFloat64), 1, 1e-5),
                    Catch::Contains("not CPU tensors of one dtype"));
}
