// SSD scan parity, float64: the chunked algorithm equals the sequential recurrence for outputs,
// final state and gradients (x, dt, A, B, C, initial state), across chunk sizes (including ones
// that do not divide L, chunk > L, and chunk 1 with many chunks, which takes the loop path of the
// state passing), 1 and several groups, with a non-zero initial state; two halves with the state
// passed equal the whole; the step loop equals the full scan.
#include <catch2/catch.hpp>

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
  auto wy = torch::randn(r.y.sizes(), r.y.options());
  auto ws = torch::randn(r.final_state.sizes(), r.final_state.options());
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
      auto got = ssd_chunked(in.x, in.dt, in.A, in.B, in.C, cs.chunk, in.h0);
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
      WARN("ssd parity L=" << cs.L << " chunk=" << cs.chunk << " G=" << cs.G << ": y " << ey << ", state " << es
                           << ", grads " << eg);
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
