// lmgrid's CPU batched product against torch::bmm: float64 to 1e-12 and float32 to 1e-5
// relative, over shapes on and off the register blocks, transposed and expanded operands;
// gradients, second derivatives (create_graph takes LibTorch's products in the backward); the
// same bits on 1 and 2 threads; baddbmm; routing and refusals. The first-order-only kernels
// (SSD, convolution, RMSNorm) refuse create_graph with a clear message.
#include <catch2/catch.hpp>

#include <ATen/Parallel.h>
#include <lmgrid/kernels/bmm.hpp>
#include <lmgrid/kernels/norm.hpp>
#include <lmgrid/kernels/split.hpp>

#include "../support.hpp"

using namespace lmgrid;
using lmgrid::test::rel_err;

TEST_CASE("bmm: the CPU batched product equals torch::bmm (values, gradients, second derivatives)",
          "[unit][bmm][fused]") {
  struct Case {
    int64_t B, M, K, N;
  };
  for (const auto& c :
       std::vector<Case>{{3, 16, 16, 64}, {5, 17, 9, 33}, {2, 64, 64, 64}, {4, 1, 16, 5}, {1, 3, 0, 4}}) {
    for (int layout = 0; layout < 4; ++layout) {  // plain, a transposed, b transposed, b expanded
      DYNAMIC_SECTION("B=" << c.B << " M=" << c.M << " K=" << c.K << " N=" << c.N << " layout " << layout) {
        torch::manual_seed(c.M + 7 * layout);
        auto o = torch::kFloat64;
        torch::Tensor a =
            layout == 1 ? torch::randn({c.B, c.K, c.M}, o).transpose(1, 2) : torch::randn({c.B, c.M, c.K}, o);
        torch::Tensor b = layout == 2   ? torch::randn({c.B, c.N, c.K}, o).transpose(1, 2)
                          : layout == 3 ? torch::randn({c.K, c.N}, o).expand({c.B, c.K, c.N})
                                        : torch::randn({c.B, c.K, c.N}, o);
        a = a.detach().requires_grad_(), b = b.detach().requires_grad_();
        auto ref = torch::bmm(a, b), got = kernels::bmm_cpu(a, b);
        CHECK(rel_err(got, ref) < 1e-12);
        if (c.K == 0) continue;
        auto w = torch::randn(ref.sizes(), o);
        auto gr = torch::autograd::grad({(ref * w).sum()}, {a, b}, {}, true, true);
        auto gg = torch::autograd::grad({(got * w).sum()}, {a, b}, {}, true, true);
        CHECK(rel_err(gg[0], gr[0]) < 1e-12);
        CHECK(rel_err(gg[1], gr[1]) < 1e-12);
        // Second derivatives through the backward.
        auto hr = torch::autograd::grad({gr[0].pow(2).sum() + gr[1].pow(2).sum()}, {a, b}, {}, true, false, true);
        auto hg = torch::autograd::grad({gg[0].pow(2).sum() + gg[1].pow(2).sum()}, {a, b}, {}, true, false, true);
        for (int i = 0; i < 2; ++i) {
          REQUIRE(hr[i].defined() == hg[i].defined());
          if (hr[i].defined()) CHECK(rel_err(hg[i], hr[i]) < 1e-12);
        }
        auto got32 = kernels::bmm_cpu(a.detach().to(torch::kFloat32), b.detach().to(torch::kFloat32));
        CHECK(rel_err(got32.to(o), ref) < 1e-5);
      }
    }
  }
}

TEST_CASE("bmm: one and two threads, baddbmm, routing, refusals; first-order kernels refuse create_graph",
          "[unit][bmm][fused]") {
  torch::manual_seed(1);
  auto a = torch::randn({48, 64, 64}), b = torch::randn({48, 64, 64});
  const int before = at::get_num_threads();
  at::set_num_threads(1);
  auto c1 = kernels::bmm_cpu(a, b);
  at::set_num_threads(2);
  auto c2 = kernels::bmm_cpu(a, b);
  at::set_num_threads(before);
  CHECK(torch::equal(c1, c2));
  auto base = torch::randn({48, 1, 64});
  CHECK(rel_err(kernels::baddbmm(base, a, b, 1.0, -0.5), torch::baddbmm(base, a, b, 1.0, -0.5)) < 1e-5);
  CHECK(rel_err(kernels::baddbmm(base, a, b, 0.5, 2.0), torch::baddbmm(base, a, b, 0.5, 2.0)) < 1e-5);
  // Gradients of baddbmm, with base broadcast over rows and over the batch, and the input never
  // written (base of the output's own shape).
  for (auto bshape : std::vector<std::vector<int64_t>>{{6, 1, 5}, {4, 5}, {6, 4, 5}}) {
    auto o = torch::kFloat64;
    auto bs = torch::randn(bshape, o).requires_grad_(), x = torch::randn({6, 4, 3}, o).requires_grad_();
    auto y = torch::randn({6, 3, 5}, o).requires_grad_();
    const auto before_base = bs.detach().clone();
    for (double beta : {1.0, 0.5, 0.0}) {
      auto ref = torch::baddbmm(bs, x, y, beta, -0.7), got = kernels::baddbmm(bs, x, y, beta, -0.7);
      INFO("base " << bshape.size() << "-d, beta " << beta);
      CHECK(rel_err(got, ref) < 1e-12);
      auto w = torch::randn(ref.sizes(), o);
      std::vector<torch::Tensor> leaves{bs, x, y};
      auto gr = torch::autograd::grad({(ref * w).sum()}, leaves, {}, false, false, true);
      auto gg = torch::autograd::grad({(got * w).sum()}, leaves, {}, false, false, true);
      for (size_t i = 0; i < 3; ++i) {
        if (!gr[i].defined()) {
          CHECK((!gg[i].defined() || gg[i].abs().max().item<double>() == 0.0));
          continue;
        }
        CHECK(rel_err(gg[i], gr[i]) < 1e-12);
      }
    }
    CHECK(torch::equal(bs.detach(), before_base));
  }
  // Routing: integer tensors go to LibTorch.
  auto ia = torch::ones({2, 3, 4}, torch::kInt64), ib = torch::ones({2, 4, 5}, torch::kInt64);
  CHECK(kernels::bmm(ia, ib).sum().item<int64_t>() == 2 * 3 * 5 * 4);
  CHECK(kernels::bmm_cpu_unsupported(ia, ib) == "dtype is not float32 or float64");
  CHECK(kernels::bmm_cpu_unsupported(a, b.narrow(1, 0, 3)) == "shapes do not multiply");
  CHECK(kernels::bmm_cpu_unsupported(a, b.to(torch::kFloat64)) == "not CPU tensors of one dtype");
  // The RMSNorm kernel's backward is first order only: create_graph is refused, not wrong.
  auto x = torch::randn({4, 8}).requires_grad_(), wt = torch::ones({8}).requires_grad_();
  auto y = kernels::rms_norm_cpu(x, {}, wt, 1, 1e-5);
  CHECK_THROWS_WITH(torch::autograd::grad({y.pow(2).sum()}, {x}, {}, true, true), Catch::Contains("first order only"));
}

TEST_CASE("split_last: pieces equal the slices; gradients (also of unused pieces) equal cat's", "[unit][fused]") {
  torch::manual_seed(4);
  for (auto dt : {torch::kFloat64, torch::kFloat32, torch::kBFloat16}) {
    auto x = torch::randn({3, 5, 11}, torch::kFloat64).to(dt).requires_grad_();
    auto parts = kernels::split_last(x, {4, 0, 7});
    REQUIRE(parts.size() == 3);
    CHECK(torch::equal(parts[0], x.narrow(-1, 0, 4)));
    CHECK(torch::equal(parts[2], x.narrow(-1, 4, 7)));
    CHECK(parts[0].is_contiguous());
    auto w = torch::randn({3, 5, 7}, torch::kFloat64).to(dt);
    auto g = torch::autograd::grad({(parts[2] * w).sum()}, {x})[0];  // the first piece unused
    CHECK(torch::equal(g.narrow(-1, 0, 4), torch::zeros({3, 5, 4}, g.options())));
    CHECK(torch::equal(g.narrow(-1, 4, 7), w));
  }
  // Second derivatives: the backward is differentiable when create_graph asks.
  auto x = torch::randn({2, 6}, torch::kFloat64).requires_grad_();
  auto p = kernels::split_last(x, {2, 4});
  auto g = torch::autograd::grad({(p[0].pow(3)).sum() + p[1].sum()}, {x}, {}, true, true)[0];
  auto h = torch::autograd::grad({g.sum()}, {x})[0];
  CHECK(rel_err(h.narrow(-1, 0, 2), 6 * x.detach().narrow(-1, 0, 2)) < 1e-12);
  CHECK_THROWS_WITH(kernels::split_last(x, {2, 3}), Catch::Contains("sizes must add up"));
}
