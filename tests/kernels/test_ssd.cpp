// SSD scan parity, float64: the chunked algorithm equals the sequential recurrence for outputs,
// final state and gradients (x, dt, A, B, C, initial state), across chunk sizes (including ones
// that do not divide L, chunk > L, and chunk 1 with many chunks, which takes the loop path of the
// state passing), 1 and several groups, with a non-zero initial state; two halves with the state
// passed equal the whole; the step loop equals the full scan. The fused CPU kernel
// (ssd_chunked_cpu, which ssd_chunked takes for CPU tensors) against the composite in float64 and
// float32, gradients included, on 1 and 2 threads.
#include <catch2/catch.hpp>

#include <ATen/Parallel.h>
#include <lmgrid/kernels/ssd.hpp>

#include "../support.hpp"

using namespace lmgrid::kernels;

namespace {

struct Inputs {
  torch::Tensor x, dt, A, B, C, h0;
  std::vector<torch::Tensor> all() const { return {x, dt, A, B, C, h0}; }
};

Inputs make_inputs(int64_t b, int64_t L, int64_t H, int64_t P, int64_t G, int64_t N, uint64_t seed) {
  torch::manual_seed(seed);
  auto o = torch::TensorOptions().dtype(torch::kFloat64);
  Inputs in;
  in.x = torch::randn({b, L, H, P}, o).requires_grad_();
  // Mamba's test distribution: dt = softplus(randn - 4) (small positive), A = -exp(rand).
  // A larger spread of dt makes decay matter within a chunk.
  in.dt = torch::nn::functional::softplus(torch::randn({b, L, H}, o) - 1.0).detach().requires_grad_();
  in.A = (-torch::rand({H}, o).exp()).detach().requires_grad_();
  in.B = torch::randn({b, L, G, N}, o).requires_grad_();
  in.C = torch::randn({b, L, G, N}, o).requires_grad_();
  in.h0 = torch::randn({b, H, P, N}, o).requires_grad_();
  return in;
}

using lmgrid::test::rel_err;

// Gradients of a fixed random projection of (y, final_state) w.r.t. all inputs.
std::vector<torch::Tensor> grads(const SsdResult& r, const Inputs& in) {
  torch::manual_seed(99);
  // Drawn in float64 whatever the dtype, so float32 runs see the same projection.
  auto wy = torch::randn(r.y.sizes(), torch::kFloat64).to(r.y.scalar_type());
  auto ws = torch::randn(r.final_state.sizes(), torch::kFloat64).to(r.final_state.scalar_type());
  auto loss = (r.y * wy).sum() + (r.final_state * ws).sum();
  return torch::autograd::grad({loss}, in.all());
}

}  // namespace

TEST_CASE("ssd: chunked equals naive recurrence (outputs, final state, gradients)", "[unit][ssd]") {
  struct Case {
    int64_t L, chunk, G;
  };
  const std::vector<Case> cases = {{37, 8, 1}, {37, 16, 1}, {37, 64, 1}, {37, 16, 2}, {37, 1, 2},
                                   {32, 8, 4}, {32, 32, 1}, {1, 4, 1},   {37, 5, 4}};
  const int64_t b = 2, H = 4, P = 3, N = 5;
  double worst_y = 0, worst_s = 0, worst_g = 0;
  for (const auto& cs : cases) {
    DYNAMIC_SECTION("L=" << cs.L << " chunk=" << cs.chunk << " G=" << cs.G) {
      auto in = make_inputs(b, cs.L, H, P, cs.G, N, 1000 + cs.L * 7 + cs.chunk + cs.G);
      auto ref = ssd_naive(in.x, in.dt, in.A, in.B, in.C, in.h0);
      const bool fused = GENERATE(false, true);
      INFO((fused ? "fused CPU kernel" : "composite"));
      auto got = fused ? ssd_chunked_cpu(in.x, in.dt, in.A, in.B, in.C, cs.chunk, in.h0)
                       : ssd_chunked_composite(in.x, in.dt, in.A, in.B, in.C, cs.chunk, in.h0);
      REQUIRE(got.y.sizes() == ref.y.sizes());
      REQUIRE(got.final_state.sizes() == ref.final_state.sizes());
      double ey = rel_err(got.y, ref.y), es = rel_err(got.final_state, ref.final_state);
      CHECK(ey < 1e-8);
      CHECK(es < 1e-8);
      auto gr = grads(ref, in), gg = grads(got, in);
      const char* names[] = {"x", "dt", "A", "B", "C", "initial_state"};
      double eg = 0;
      for (size_t i = 0; i < gr.size(); ++i) {
        INFO("gradient w.r.t. " << names[i]);
        double e = rel_err(gg[i], gr[i]);
        CHECK(e < 1e-8);
        eg = std::max(eg, e);
      }
      worst_y = std::max(worst_y, ey);
      worst_s = std::max(worst_s, es);
      worst_g = std::max(worst_g, eg);
      WARN("ssd parity (" << (fused ? "fused" : "composite") << ") L=" << cs.L << " chunk=" << cs.chunk << " G=" << cs.G
                          << ": y " << ey << ", state " << es << ", grads " << eg);
    }
  }
}

TEST_CASE("ssd: zero initial state equals no initial state", "[unit][ssd]") {
  auto in = make_inputs(1, 20, 2, 3, 1, 4, 5);
  auto a = ssd_chunked(in.x, in.dt, in.A, in.B, in.C, 8);
  auto z = ssd_chunked(in.x, in.dt, in.A, in.B, in.C, 8, torch::zeros_like(in.h0));
  auto n = ssd_naive(in.x, in.dt, in.A, in.B, in.C);
  CHECK(rel_err(a.y, z.y) < 1e-12);
  CHECK(rel_err(a.y, n.y) < 1e-8);
  CHECK(rel_err(a.final_state, n.final_state) < 1e-8);
}

TEST_CASE("ssd: two halves with the state passed equal the whole", "[unit][ssd]") {
  const int64_t L = 45, split = 19;
  auto in = make_inputs(2, L, 4, 3, 2, 5, 11);
  for (int64_t chunk : {4, 16, 64}) {
    auto whole = ssd_chunked(in.x, in.dt, in.A, in.B, in.C, chunk, in.h0);
    auto first = ssd_chunked(in.x.narrow(1, 0, split), in.dt.narrow(1, 0, split), in.A, in.B.narrow(1, 0, split),
                             in.C.narrow(1, 0, split), chunk, in.h0);
    auto second =
        ssd_chunked(in.x.narrow(1, split, L - split), in.dt.narrow(1, split, L - split), in.A,
                    in.B.narrow(1, split, L - split), in.C.narrow(1, split, L - split), chunk, first.final_state);
    INFO("chunk " << chunk);
    CHECK(rel_err(torch::cat({first.y, second.y}, 1), whole.y) < 1e-10);
    CHECK(rel_err(second.final_state, whole.final_state) < 1e-10);
  }
}

TEST_CASE("ssd: recurrent step loop equals the full chunked scan", "[unit][ssd]") {
  const int64_t L = 23;
  auto in = make_inputs(2, L, 4, 3, 2, 5, 21);
  auto full = ssd_chunked(in.x, in.dt, in.A, in.B, in.C, 8, in.h0);
  torch::Tensor h = in.h0;
  std::vector<torch::Tensor> ys;
  for (int64_t t = 0; t < L; ++t) {
    auto r = ssd_step(in.x.select(1, t), in.dt.select(1, t), in.A, in.B.select(1, t), in.C.select(1, t), h);
    ys.push_back(r.y);
    h = r.final_state;
  }
  CHECK(rel_err(torch::stack(ys, 1), full.y) < 1e-10);
  CHECK(rel_err(h, full.final_state) < 1e-10);
}

TEST_CASE("ssd: large log-decays (fallback path) stay finite and match the recurrence", "[unit][ssd]") {
  // dt*A down to a few hundred per step: chunks decay by far more than the factorised path allows
  // (e^±300 per factor in fp64), so this takes the masked-segsum path; a naive exp(cumsum) /
  // exp(-cumsum) split would overflow. Also in fp32.
  for (int64_t G : {1, 2}) {
    auto in = make_inputs(2, 40, 4, 3, G, 4, 3 + G);
    in.dt = (in.dt.detach() * 400.0).requires_grad_();
    auto r = ssd_chunked(in.x, in.dt, in.A, in.B, in.C, 16, in.h0);
    auto n = ssd_naive(in.x, in.dt, in.A, in.B, in.C, in.h0);
    REQUIRE(torch::isfinite(r.y).all().item<bool>());
    INFO("G " << G);
    CHECK(rel_err(r.y, n.y) < 1e-8);
    CHECK(rel_err(r.final_state, n.final_state) < 1e-8);
    auto gr = grads(n, in), gg = grads(r, in);
    for (size_t i = 0; i < gr.size(); ++i) {
      INFO("gradient " << i);
      REQUIRE(torch::isfinite(gg[i]).all().item<bool>());
      CHECK(rel_err(gg[i], gr[i]) < 1e-8);
    }
    auto r32 = ssd_chunked(in.x.to(torch::kFloat32), in.dt.to(torch::kFloat32), in.A.to(torch::kFloat32),
                           in.B.to(torch::kFloat32), in.C.to(torch::kFloat32), 16, in.h0.to(torch::kFloat32));
    CHECK(rel_err(r32.y.to(torch::kFloat64), n.y) < 1e-4);
  }
}

TEST_CASE("ssd: float32 fast path agrees with the float64 recurrence", "[unit][ssd]") {
  // Per-step log-decays up to about -1.6 (Mamba-2 init: dt <= 0.1, A >= -16) over chunks of 64.
  auto in = make_inputs(1, 150, 4, 8, 1, 16, 8);
  auto dt = torch::rand({1, 150, 4}, torch::kFloat64) * 0.1;
  auto A = -torch::full({4}, 16.0, torch::kFloat64);
  auto n = ssd_naive(in.x, dt, A, in.B, in.C, in.h0);
  auto f = [](const torch::Tensor& t) { return t.detach().to(torch::kFloat32); };
  auto r = ssd_chunked(f(in.x), f(dt), f(A), f(in.B), f(in.C), 64, f(in.h0));
  CHECK(rel_err(r.y.to(torch::kFloat64), n.y) < 1e-5);
  CHECK(rel_err(r.final_state.to(torch::kFloat64), n.final_state) < 1e-5);
}

TEST_CASE("ssd: bad shapes are refused", "[unit][ssd]") {
  auto in = make_inputs(1, 8, 3, 2, 1, 4, 1);
  auto B2 = torch::randn({1, 8, 2, 4}, torch::kFloat64);  // 3 heads, 2 groups
  CHECK_THROWS(ssd_chunked(in.x, in.dt, in.A, B2, B2, 4));
  CHECK_THROWS(ssd_chunked(in.x, in.dt, in.A, in.B, in.C, 0));
  CHECK_THROWS(ssd_chunked(in.x, in.dt.narrow(1, 0, 7), in.A, in.B, in.C, 4));
}

TEST_CASE("ssd: the fused CPU kernel equals the composite (float64 1e-10, float32 1e-4, gradients)",
          "[unit][ssd][fused]") {
  struct Case {
    int64_t b, L, H, P, G, N, chunk;
    double dt_scale;  // 1: moderate decays; 400: log-decays of hundreds per step (cut to zero)
  };
  const std::vector<Case> cases = {{2, 64, 4, 16, 1, 8, 64, 1},  {2, 37, 4, 8, 2, 5, 16, 1},
                                   {3, 50, 6, 4, 3, 6, 7, 1},    {1, 1, 2, 4, 1, 3, 8, 1},
                                   {2, 40, 4, 3, 2, 4, 16, 400}, {1, 130, 2, 32, 1, 16, 64, 1}};
  double worst64 = 0, worst32 = 0;
  for (const auto& c : cases) {
    DYNAMIC_SECTION("b=" << c.b << " L=" << c.L << " H=" << c.H << " G=" << c.G << " chunk=" << c.chunk << " dt x"
                         << c.dt_scale) {
      auto in = make_inputs(c.b, c.L, c.H, c.P, c.G, c.N, 300 + c.L + c.H);
      if (c.dt_scale != 1) in.dt = (in.dt.detach() * c.dt_scale).requires_grad_();
      auto ref = ssd_chunked_composite(in.x, in.dt, in.A, in.B, in.C, c.chunk, in.h0);
      auto got = ssd_chunked_cpu(in.x, in.dt, in.A, in.B, in.C, c.chunk, in.h0);
      const char* names[] = {"x", "dt", "A", "B", "C", "initial_state"};
      double e = std::max(rel_err(got.y, ref.y), rel_err(got.final_state, ref.final_state));
      CHECK(e < 1e-10);
      auto gr = grads(ref, in), gg = grads(got, in);
      for (size_t i = 0; i < gr.size(); ++i) {
        INFO("float64 gradient w.r.t. " << names[i]);
        const double ei = rel_err(gg[i], gr[i]);
        CHECK(ei < 1e-10);
        e = std::max(e, ei);
      }
      worst64 = std::max(worst64, e);
      // float32 kernel against the float64 composite.
      Inputs f;
      auto to32 = [](const torch::Tensor& t) { return t.detach().to(torch::kFloat32).requires_grad_(); };
      f.x = to32(in.x), f.dt = to32(in.dt), f.A = to32(in.A), f.B = to32(in.B), f.C = to32(in.C), f.h0 = to32(in.h0);
      auto got32 = ssd_chunked_cpu(f.x, f.dt, f.A, f.B, f.C, c.chunk, f.h0);
      // With strong decays float32 cuts decays below e^-60 to zero (float64: e^-600), in the
      // composite as here, so there the reference is the float32 composite.
      SsdResult ref32 = ref;
      std::vector<torch::Tensor> gr32 = gr;
      if (c.dt_scale != 1) {
        ref32 = ssd_chunked_composite(f.x, f.dt, f.A, f.B, f.C, c.chunk, f.h0);
        gr32 = grads(ref32, f);
      }
      auto to64 = [](const torch::Tensor& t) { return t.to(torch::kFloat64); };
      double e32 =
          std::max(rel_err(to64(got32.y), to64(ref32.y)), rel_err(to64(got32.final_state), to64(ref32.final_state)));
      CHECK(e32 < 1e-4);
      auto g32 = grads(got32, f);
      for (size_t i = 0; i < gr.size(); ++i) {
        INFO("float32 gradient w.r.t. " << names[i]);
        const double ei = rel_err(to64(g32[i]), to64(gr32[i]));
        CHECK(ei < 1e-4);
        e32 = std::max(e32, ei);
      }
      worst32 = std::max(worst32, e32);
      WARN("ssd fused vs composite: float64 " << e << ", float32 " << e32);
    }
  }
}

TEST_CASE("ssd: the fused CPU kernel gives the same bits on 1 and 2 threads; only y or only the state",
          "[unit][ssd][fused]") {
  auto in = make_inputs(4, 200, 8, 64, 2, 64, 77);  // big enough for a second thread
  const int before = at::get_num_threads();
  at::set_num_threads(1);
  auto r1 = ssd_chunked_cpu(in.x, in.dt, in.A, in.B, in.C, 64, in.h0);
  auto g1 = grads(r1, in);
  at::set_num_threads(2);
  auto r2 = ssd_chunked_cpu(in.x, in.dt, in.A, in.B, in.C, 64, in.h0);
  auto g2 = grads(r2, in);
  at::set_num_threads(before);
  CHECK(torch::equal(r1.y, r2.y));
  CHECK(torch::equal(r1.final_state, r2.final_state));
  for (size_t i = 0; i < g1.size(); ++i) CHECK(torch::equal(g1[i], g2[i]));
  // A loss of y alone, or of the final state alone (the other gradient undefined).
  auto small = make_inputs(2, 30, 4, 3, 2, 5, 78);
  for (int which : {0, 1}) {
    auto ref = ssd_chunked_composite(small.x, small.dt, small.A, small.B, small.C, 8, small.h0);
    auto got = ssd_chunked_cpu(small.x, small.dt, small.A, small.B, small.C, 8, small.h0);
    auto lr = which == 0 ? ref.y.pow(2).sum() : ref.final_state.pow(2).sum();
    auto lg = which == 0 ? got.y.pow(2).sum() : got.final_state.pow(2).sum();
    // The state does not depend on C: the composite leaves that gradient undefined, the kernel zero.
    auto gr = torch::autograd::grad({lr}, small.all(), {}, false, false, true);
    auto gg = torch::autograd::grad({lg}, small.all(), {}, false, false, true);
    for (size_t i = 0; i < gr.size(); ++i) {
      INFO((which == 0 ? "y only" : "state only") << ", gradient " << i);
      REQUIRE(gg[i].defined());
      if (gr[i].defined())
        CHECK(rel_err(gg[i], gr[i]) < 1e-10);
      else
        CHECK(gg[i].abs().max().item<double>() == 0.0);
    }
  }
  // Without an initial state (as training runs: the kernel then skips the first chunk's state
  // and the last chunk's state gradient), loss of y alone, one chunk and several.
  for (int64_t chunk : {8, 64}) {
    auto a = ssd_chunked_cpu(small.x, small.dt, small.A, small.B, small.C, chunk);
    auto b = ssd_chunked_composite(small.x, small.dt, small.A, small.B, small.C, chunk);
    INFO("no initial state, chunk " << chunk);
    CHECK(rel_err(a.y, b.y) < 1e-10);
    CHECK(rel_err(a.final_state, b.final_state) < 1e-10);
    std::vector<torch::Tensor> leaves = {small.x, small.dt, small.A, small.B, small.C};
    auto ga = torch::autograd::grad({(a.y * a.y.detach().sin()).sum()}, leaves);
    auto gb = torch::autograd::grad({(b.y * b.y.detach().sin()).sum()}, leaves);
    for (size_t i = 0; i < ga.size(); ++i) {
      INFO("gradient " << i);
      CHECK(rel_err(ga[i], gb[i]) < 1e-10);
    }
  }
  CHECK(ssd_chunked_cpu_unsupported(small.x, small.dt, small.A, small.B, small.C, small.h0).empty());
  CHECK(ssd_chunked_cpu_unsupported(small.x.to(torch::kBFloat16), small.dt, small.A, small.B, small.C, {}) ==
        "dtype is not float32 or float64");
  CHECK(ssd_chunked_cpu_unsupported(small.x, small.dt.to(torch::kFloat32), small.A, small.B, small.C, {}) ==
        "inputs differ in dtype");
}
