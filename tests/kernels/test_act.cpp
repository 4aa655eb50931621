// The fused CPU gated activations (kernels/src/act_cpu.cpp) against LibTorch's ops: silu(a) * b
// and gelu_tanh(a) * b; values and gradients in float64 to 1e-12 relative and float32 to 1e-6,
// over inputs from -12 to 12 (tails included) and a non-contiguous input; the same bits on 1 and 2
// threads; routing through lmgrid::nn; refusals.
#include <catch2/catch.hpp>

#include <ATen/Parallel.h>
#include <lmgrid/kernels/act.hpp>
#include <lmgrid/nn/mlp.hpp>

#include "../support.hpp"

using namespace lmgrid;
namespace K = lmgrid::kernels;
using lmgrid::test::rel_err;

TEST_CASE("act: fused gated activations equal LibTorch's (values, gradients)", "[unit][fused]") {
  for (auto dtype : {torch::kFloat64, torch::kFloat32}) {
    const double tol = dtype == torch::kFloat64 ? 1e-12 : 1e-6;
    torch::manual_seed(4);
    // 40,000 values: a grid over [-12, 12] and random ones; a transposed view for b.
    auto grid = torch::linspace(-12, 12, 20000, torch::kFloat64);
    auto a = torch::cat({grid, 3 * torch::randn({20000}, torch::kFloat64)}).view({200, 200}).to(dtype);
    auto b = torch::randn({200, 200}, torch::kFloat64).to(dtype).t();
    a.requires_grad_(true), b.requires_grad_(true);
    auto w = torch::randn({200, 200}, torch::kFloat64).to(dtype);
    struct Case {
      const char* name;
      std::function<torch::Tensor()> ref, got;
    };
    std::vector<Case> cases{
        {"silu gate", [&] { return torch::silu(a) * b; }, [&] { return K::act_mul_cpu(a, b, K::GateAct::silu); }},
        {"gelu_tanh gate", [&] { return torch::gelu(a, "tanh") * b; },
         [&] { return K::act_mul_cpu(a, b, K::GateAct::gelu_tanh); }},
    };
    for (const auto& c : cases) {
      INFO(c.name << " " << (dtype == torch::kFloat64 ? "float64" : "float32"));
      auto ref = c.ref(), got = c.got();
      CHECK(rel_err(got.to(torch::kFloat64), ref.to(torch::kFloat64)) < tol);
      auto gr = torch::autograd::grad({(ref * w).sum()}, {a, b}, {}, true, false, true);
      auto gg = torch::autograd::grad({(got * w).sum()}, {a, b}, {}, true, false, true);
      for (int i = 0; i < 2; ++i) {
        REQUIRE(gr[i].defined() == gg[i].defined());
        if (gr[i].defined()) CHECK(rel_err(gg[i].to(torch::kFloat64), gr[i].to(torch::kFloat64)) < tol);
      }
    }
  }
}

TEST_CASE("act: the same bits on 1 and 2 threads, routing through lmgrid::nn, refusals", "[unit][fused]") {
  torch::manual_seed(5);
  auto a = torch::randn({12, 64, 512}), b = torch::randn({12, 64, 512});
  const int before = at::get_num_threads();
  std::vector<torch::Tensor> outs;
  for (int threads : {1, 2}) {
    at::set_num_threads(threads);
    outs.push_back(K::act_mul_cpu(a, b, K::GateAct::gelu_tanh));
    outs.push_back(K::act_mul_cpu(a, b, K::GateAct::silu));
  }
  at::set_num_threads(before);
  CHECK(torch::equal(outs[0], outs[2]));
  CHECK(torch::equal(outs[1], outs[3]));
  auto x = a.detach().requires_grad_(true);
  {
    test::ScopedEnv env("LMGRID_CPU_KERNELS", "auto");
    CHECK(nn::silu_mul(x, b).grad_fn()->name().find("ActCpu") != std::string::npos);
    CHECK(nn::gelu_tanh_mul(x, b).grad_fn()->name().find("ActCpu") != std::string::npos);
  }
  {
    test::ScopedEnv env("LMGRID_CPU_KERNELS", "composite");
    CHECK(nn::gelu_tanh_mul(x, b).grad_fn()->name().find("ActCpu") == std::string::npos);
    CHECK(torch::equal(nn::silu_mul(x, b), torch::silu(x) * b));
  }
  CHECK(K::act_cpu_unsupported(a, b.narrow(2, 0, 5)) == "a and b differ in shape");
  CHECK(K::act_cpu_unsupported(a.to(torch::kBFloat16), b) == "dtype is not float32 or float64");
  CHECK(K::act_cpu_unsupported(a, b.to(torch::kFloat64)) == "not CPU tensors of one dtype");
  CHECK_THROWS_WITH(K::act_mul_cpu(a, b.narrow(2, 0, 5), K::GateAct::silu),
                    Catch::Contains("act_mul_cpu: a and b differ in shape"));
  CHECK_THROWS_WITH(torch::autograd::grad({K::act_mul_cpu(x, b, K::GateAct::silu).pow(2).sum()}, {x}, {}, true, true),
                    Catch::Contains("first order only"));
}
