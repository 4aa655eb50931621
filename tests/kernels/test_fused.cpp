// Fused kernels (lmgrid/kernels/fused.hpp). Without a GPU: the CUDA kernels' own bodies run by
// the CPU emulation against the LibTorch composites, forward and backward (autograd of the
// composite) in float64, tolerance 1e-12 relative (max |a - b| / max |b|; measured ~1e-16), and
// float32 emulation against the float64 composite to 1e-5; the glue: routes and their reasons,
// strides, undefined gradients, and ssd_chunked / gem_memory taking their kernel paths (via
// ScopedFusedEmulation) equal to their composite paths to 1e-12. With a GPU ([gpu], skipped with
// a printed SKIP otherwise): the CUDA kernels against the composite, float32 to 1e-4 relative,
// bfloat16 to 2e-2 (against float64 of the same rounded inputs), forward and gradients.
#include <catch2/catch.hpp>

#include <lmgrid/kernels/fused.hpp>
#include <lmgrid/kernels/ssd.hpp>
#include <lmgrid/kernels/ttt.hpp>

#include "../support.hpp"

using namespace lmgrid::kernels;
using lmgrid::test::rel_err;

namespace {

const auto kF64 = torch::TensorOptions().dtype(torch::kFloat64);

struct SsdIn {
  torch::Tensor u, a, h0;
};

// u (B,c,G,N,Hg,P), a (B,c,G*Hg) log-decays in [-3, 0] with a few below every cutoff.
SsdIn ssd_inputs(int64_t B, int64_t c, int64_t G, int64_t N, int64_t Hg, int64_t P, bool h0, uint64_t seed) {
  torch::manual_seed(seed);
  SsdIn in;
  in.u = torch::randn({B, c, G, N, Hg, P}, kF64).requires_grad_();
  auto a = -3.0 * torch::rand({B, c, G * Hg}, kF64);
  a.index_put_({0, 0, 0}, -700.0);             // below the float64 cutoff (600): decay exactly 0
  if (c > 1) a.index_put_({0, 1, 0}, -100.0);  // below the float32 cutoff only
  in.a = a.requires_grad_();
  if (h0) in.h0 = torch::randn({B, G, N, Hg, P}, kF64).requires_grad_();
  return in;
}

std::vector<torch::Tensor> leaves(const SsdIn& in) {
  std::vector<torch::Tensor> v{in.u, in.a};
  if (in.h0.defined()) v.push_back(in.h0);
  return v;
}

// Gradients of a fixed random projection of the outputs (either may be left out).
std::vector<torch::Tensor> proj_grads(const std::vector<torch::Tensor>& outs, const std::vector<torch::Tensor>& wrt,
                                      const std::vector<bool>& use) {
  torch::manual_seed(77);
  torch::Tensor loss;
  for (size_t i = 0; i < outs.size(); ++i) {
    // Drawn on the CPU in float64 whatever the outputs are, so CUDA and CPU runs see the same weights.
    auto w = torch::randn(outs[i].sizes(), kF64).to(outs[i].options());
    if (!use[i]) continue;
    auto l = (outs[i] * w).sum();
    loss = loss.defined() ? loss + l : l;
  }
  return torch::autograd::grad({loss}, wrt, {}, /*retain_graph=*/true, false, /*allow_unused=*/true);
}

double worst_rel(const std::vector<torch::Tensor>& a, const std::vector<torch::Tensor>& b) {
  double w = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    if (!b[i].defined()) continue;
    w = std::max(w, rel_err(a[i].to(torch::kFloat64), b[i].to(torch::kFloat64)));
  }
  return w;
}

struct GemIn {
  torch::Tensor aq, ak, v, V, eta;
};

// Addresses are softmaxes (rows summing to 1), as gem's are; V shared ((M,D) expanded) or per sequence.
GemIn gem_inputs(int64_t S, int64_t n, int64_t M, int64_t D, bool shared_V, uint64_t seed) {
  torch::manual_seed(seed);
  GemIn in;
  in.aq = torch::softmax(2.0 * torch::randn({S, n, M}, kF64), -1).detach().requires_grad_();
  in.ak = torch::softmax(2.0 * torch::randn({S, n, M}, kF64), -1).detach().requires_grad_();
  in.v = torch::randn({S, n, D}, kF64).requires_grad_();
  in.V = shared_V ? torch::randn({M, D}, kF64).requires_grad_() : torch::randn({S, M, D}, kF64).requires_grad_();
  in.eta = torch::full({}, 0.7, kF64).requires_grad_();
  return in;
}

torch::Tensor values_arg(const GemIn& in) {
  return in.V.dim() == 2 ? in.V.expand({in.aq.size(0), in.V.size(0), in.V.size(1)}) : in.V;
}

}  // namespace

TEST_CASE("fused ssd_state_passing: emulated kernel equals the composite, forward and backward", "[unit][fused]") {
  struct Case {
    int64_t B, c, G, N, Hg, P;
    bool h0;
  };
  const std::vector<Case> cases = {
      {2, 5, 1, 4, 3, 2, true}, {1, 1, 2, 3, 2, 4, true}, {2, 7, 2, 2, 1, 3, false}, {3, 4, 4, 1, 2, 1, true}};
  for (const auto& cs : cases) {
    DYNAMIC_SECTION("B" << cs.B << " c" << cs.c << " G" << cs.G << " N" << cs.N << " Hg" << cs.Hg << " P" << cs.P
                        << (cs.h0 ? " h0" : "")) {
      auto in = ssd_inputs(cs.B, cs.c, cs.G, cs.N, cs.Hg, cs.P, cs.h0, 31 * cs.c + cs.G);
      auto ref = ssd_state_passing_composite(in.u, in.a, in.h0);
      auto got = ssd_state_passing(in.u, in.a, in.h0, FusedImpl::emulation);
      double worst_b = 0;
      REQUIRE(got.h_in.sizes() == ref.h_in.sizes());
      REQUIRE(got.final_state.sizes() == ref.final_state.sizes());
      const double ef = std::max(rel_err(got.h_in, ref.h_in), rel_err(got.final_state, ref.final_state));
      CHECK(ef < 1e-12);
      for (std::vector<bool> use : {std::vector<bool>{true, true}, {true, false}, {false, true}}) {
        auto gr = proj_grads({ref.h_in, ref.final_state}, leaves(in), use);
        auto gg = proj_grads({got.h_in, got.final_state}, leaves(in), use);
        const double eb = worst_rel(gg, gr);
        INFO("uses h_in " << use[0] << ", final " << use[1] << ": forward " << ef << ", gradients " << eb);
        CHECK(eb < 1e-12);
        worst_b = std::max(worst_b, eb);
      }
      WARN("ssd_state_passing emulation float64: forward " << ef << ", gradients " << worst_b);
      // float32 emulation against the float64 composite.
      auto f = [](const torch::Tensor& t) { return t.defined() ? t.detach().to(torch::kFloat32) : t; };
      auto g32 = ssd_state_passing(f(in.u), f(in.a), f(in.h0), FusedImpl::emulation);
      CHECK(rel_err(g32.final_state.to(torch::kFloat64), ref.final_state) < 1e-5);
    }
  }
}

TEST_CASE("fused gem_chunk: emulated kernel equals the composite, forward and backward", "[unit][fused]") {
  for (bool self_write : {false, true}) {
    for (bool shared : {false, true}) {
      for (int64_t n : {1, 4, 9}) {
        DYNAMIC_SECTION((self_write ? "self_write" : "strict") << (shared ? " shared V" : " own V") << " n " << n) {
          auto in = gem_inputs(3, n, 6, 5, shared, 100 + n + 10 * shared + 20 * self_write);
          auto V = values_arg(in);
          auto ref = gem_chunk_composite(in.aq, in.ak, in.v, V, in.eta, self_write);
          auto got = gem_chunk(in.aq, in.ak, in.v, V, in.eta, self_write, FusedImpl::emulation);
          REQUIRE(got.r.sizes() == ref.r.sizes());
          REQUIRE(got.V.sizes() == ref.V.sizes());
          const double ef = std::max(rel_err(got.r, ref.r), rel_err(got.V, ref.V));
          CHECK(ef < 1e-12);
          std::vector<torch::Tensor> wrt{in.aq, in.ak, in.v, in.V, in.eta};
          double worst_b = 0;
          for (std::vector<bool> use : {std::vector<bool>{true, true}, {true, false}, {false, true}}) {
            auto gr = proj_grads({ref.r, ref.V}, wrt, use), gg = proj_grads({got.r, got.V}, wrt, use);
            const char* names[] = {"aq", "ak", "v", "V", "eta"};
            for (size_t i = 0; i < wrt.size(); ++i) {
              if (!gr[i].defined()) continue;
              REQUIRE(gg[i].defined());
              INFO("gradient " << names[i] << " (uses r " << use[0] << ", V' " << use[1] << ")");
              const double e = rel_err(gg[i], gr[i]);
              CHECK(e < 1e-12);
              worst_b = std::max(worst_b, e);
            }
          }
          WARN("gem_chunk emulation float64: forward " << ef << ", gradients " << worst_b);
          auto f = [](const torch::Tensor& t) { return t.detach().to(torch::kFloat32); };
          auto g32 = gem_chunk(f(in.aq), f(in.ak), f(in.v), f(V), f(in.eta), self_write, FusedImpl::emulation);
          CHECK(rel_err(g32.r.to(torch::kFloat64), ref.r) < 1e-5);
          CHECK(rel_err(g32.V.to(torch::kFloat64), ref.V) < 1e-5);
        }
      }
    }
  }
}

TEST_CASE("fused: routes, reasons, strides", "[unit][fused]") {
  auto in = ssd_inputs(2, 3, 2, 3, 2, 2, true, 5);
  SECTION("CPU tensors take the composite, saying why") {
    auto r = ssd_state_passing_route(in.u, in.a, in.h0);
    CHECK_FALSE(r.kernel);
    CHECK_THAT(r.reason, Catch::Contains("not a CUDA device"));
    auto g = gem_inputs(2, 4, 3, 2, true, 1);
    auto rg = gem_chunk_route(g.aq, g.ak, g.v, values_arg(g), g.eta);
    CHECK_FALSE(rg.kernel);
    CHECK_THAT(rg.reason, Catch::Contains("not a CUDA device"));
    // automatic on CPU is the composite exactly
    auto a = ssd_state_passing(in.u, in.a, in.h0), c = ssd_state_passing_composite(in.u, in.a, in.h0);
    CHECK(torch::equal(a.final_state, c.final_state));
  }
  SECTION("unsupported dtype, mixed dtypes, bad shapes") {
    auto h = [](const torch::Tensor& t) { return t.detach().to(torch::kFloat16); };
    CHECK_THAT(ssd_state_passing_route(h(in.u), h(in.a), h(in.h0)).reason, Catch::Contains("dtype Half"));
    CHECK_THAT(ssd_state_passing_route(in.u, in.a.to(torch::kInt64), in.h0).reason, Catch::Contains("dtype Long"));
    CHECK_THAT(ssd_state_passing_route(in.u, in.a.narrow(2, 0, 3), in.h0).reason, Catch::Contains("shapes"));
    CHECK_THAT(ssd_state_passing_route(in.u, in.a, in.h0.narrow(4, 0, 1)).reason, Catch::Contains("shapes"));
    auto g = gem_inputs(2, 4, 3, 2, false, 1);
    CHECK_THAT(gem_chunk_route(g.aq, g.ak, g.v, g.V.narrow(1, 0, 2), g.eta).reason, Catch::Contains("shapes"));
    CHECK_THAT(gem_chunk_route(g.aq, g.ak, g.v, g.V, torch::ones({2}, kF64)).reason, Catch::Contains("eta"));
    CHECK_THROWS(ssd_state_passing(h(in.u), h(in.a), h(in.h0), FusedImpl::emulation));
    CHECK_THROWS(ssd_state_passing(in.u, in.a.narrow(2, 0, 3), in.h0, FusedImpl::emulation));
  }
  SECTION("the emulation hook routes float CPU tensors to the kernel path, not bfloat16") {
    ScopedFusedEmulation emu;
    CHECK(ssd_state_passing_route(in.u, in.a, in.h0).kernel);
    auto b = [](const torch::Tensor& t) { return t.detach().to(torch::kBFloat16); };
    CHECK_FALSE(ssd_state_passing_route(b(in.u), b(in.a), b(in.h0)).kernel);
  }
  SECTION("mixed floating dtypes (autocast) run in their promoted dtype, gradients in each input's") {
    ScopedFusedEmulation emu;
    auto u32 = in.u.detach().to(torch::kFloat32).requires_grad_();
    REQUIRE(ssd_state_passing_route(u32, in.a, in.h0).kernel);
    auto got = ssd_state_passing(u32, in.a, in.h0);
    auto ref = ssd_state_passing_composite(u32, in.a, in.h0);
    CHECK(got.h_in.scalar_type() == torch::kFloat64);
    CHECK(rel_err(got.final_state, ref.final_state) < 1e-12);
    auto gu = torch::autograd::grad({got.final_state.sum()}, {u32})[0];
    CHECK(gu.scalar_type() == torch::kFloat32);
  }
  SECTION("strided inputs give the contiguous inputs' results") {
    // The same values through transposed storage: u built as (.., P, Hg) then transposed.
    auto u_t = in.u.detach().transpose(4, 5).contiguous().transpose(4, 5);
    auto a_t = in.a.detach().transpose(0, 1).contiguous().transpose(0, 1);
    REQUIRE_FALSE(u_t.is_contiguous());
    REQUIRE_FALSE(a_t.is_contiguous());
    auto s1 = ssd_state_passing(u_t, a_t, in.h0.detach(), FusedImpl::emulation);
    auto s2 = ssd_state_passing(in.u.detach(), in.a.detach(), in.h0.detach(), FusedImpl::emulation);
    CHECK(torch::equal(s1.h_in, s2.h_in));
    CHECK(torch::equal(s1.final_state, s2.final_state));
    auto g = gem_inputs(2, 4, 3, 2, false, 3);
    auto aq_t = g.aq.detach().transpose(1, 2).contiguous().transpose(1, 2);
    auto g1 = gem_chunk(aq_t, g.ak.detach(), g.v.detach(), g.V.detach(), g.eta.detach(), true, FusedImpl::emulation);
    auto g2 =
        gem_chunk(g.aq.detach(), g.ak.detach(), g.v.detach(), g.V.detach(), g.eta.detach(), true, FusedImpl::emulation);
    CHECK(torch::equal(g1.r, g2.r));
    CHECK(torch::equal(g1.V, g2.V));
  }
}

TEST_CASE("fused: ssd_chunked and gem_memory on their kernel paths equal their composite paths", "[unit][fused]") {
  SECTION("ssd_chunked") {
    torch::manual_seed(3);
    const int64_t b = 2, L = 37, H = 4, P = 3, G = 2, N = 5;
    auto x = torch::randn({b, L, H, P}, kF64).requires_grad_();
    auto dt = torch::nn::functional::softplus(torch::randn({b, L, H}, kF64) - 1.0).detach().requires_grad_();
    auto A = (-torch::rand({H}, kF64).exp()).detach().requires_grad_();
    auto Bm = torch::randn({b, L, G, N}, kF64).requires_grad_();
    auto Cm = torch::randn({b, L, G, N}, kF64).requires_grad_();
    auto h0 = torch::randn({b, H, P, N}, kF64).requires_grad_();
    std::vector<torch::Tensor> wrt{x, dt, A, Bm, Cm, h0};
    for (int64_t chunk : {5, 8, 64}) {
      for (bool with_h0 : {true, false}) {
        auto init = with_h0 ? h0 : torch::Tensor();
        auto ref = ssd_chunked(x, dt, A, Bm, Cm, chunk, init);
        SsdResult got;
        {
          ScopedFusedEmulation emu;
          got = ssd_chunked(x, dt, A, Bm, Cm, chunk, init);
        }
        INFO("chunk " << chunk << (with_h0 ? " with" : " without") << " initial state");
        CHECK(rel_err(got.y, ref.y) < 1e-12);
        CHECK(rel_err(got.final_state, ref.final_state) < 1e-12);
        auto gr = proj_grads({ref.y, ref.final_state}, wrt, {true, true});
        auto gg = proj_grads({got.y, got.final_state}, wrt, {true, true});
        CHECK(worst_rel(gg, gr) < 1e-12);
      }
    }
  }
  SECTION("gem_memory: training, prefill with a partial chunk, then decoding") {
    const int64_t S = 2, M = 6, D = 4, chunk = 4;
    for (bool self_write : {false, true}) {
      for (int64_t T : {16, 13}) {
        auto in = gem_inputs(S, T, M, D, true, 7 + T + self_write);
        std::vector<torch::Tensor> wrt{in.aq, in.ak, in.v, in.V, in.eta};
        GemMemoryState s_ref, s_got;
        auto ref = gem_memory(in.aq, in.ak, in.v, s_ref, chunk, in.eta, self_write, in.V);
        torch::Tensor got;
        {
          ScopedFusedEmulation emu;
          got = gem_memory(in.aq, in.ak, in.v, s_got, chunk, in.eta, self_write, in.V);
        }
        INFO("T " << T << (self_write ? " self_write" : ""));
        CHECK(rel_err(got, ref) < 1e-12);
        CHECK(rel_err(s_got.V, s_ref.V) < 1e-12);
        CHECK(s_got.pending() == s_ref.pending());
        auto gr = proj_grads({ref}, wrt, {true}), gg = proj_grads({got}, wrt, {true});
        CHECK(worst_rel(gg, gr) < 1e-12);
        // Against the naive token loop too (the kernel path is not only equal to itself).
        auto naive = gem_memory_naive(in.aq, in.ak, in.v, values_arg(in), chunk, in.eta, self_write);
        CHECK(rel_err(got, naive) < 1e-10);
        // Continue both states by one chunk of decoding and prefill.
        torch::NoGradGuard ng;
        auto more = gem_inputs(S, 5, M, D, true, 99);
        auto r1 = gem_memory(more.aq, more.ak, more.v, s_ref, chunk, in.eta, self_write, in.V);
        ScopedFusedEmulation emu;
        auto r2 = gem_memory(more.aq, more.ak, more.v, s_got, chunk, in.eta, self_write, in.V);
        CHECK(rel_err(r2, r1) < 1e-12);
      }
    }
  }
}

// ---------------------------------------------------------------------------------------------
// GPU: the CUDA kernels themselves.
// ---------------------------------------------------------------------------------------------
namespace {

bool gpu_or_skip(const char* what) {
  if (!cuda_kernels_built()) {
    WARN("SKIP " << what << ": lmgrid was built without its CUDA kernels");
    return false;
  }
  if (!torch::cuda::is_available()) {
    WARN("SKIP " << what << ": no CUDA device");
    return false;
  }
  return true;
}

}  // namespace

TEST_CASE("fused ssd_state_passing on the GPU equals the composite (float32, bfloat16)", "[unit][gpu][fused]") {
  if (!gpu_or_skip("ssd_state_passing CUDA kernel")) return;
  auto in = ssd_inputs(4, 16, 2, 16, 4, 32, true, 9);
  for (auto dtype : {torch::kFloat32, torch::kBFloat16}) {
    const double tol = dtype == torch::kFloat32 ? 1e-4 : 2e-2;
    auto cu = [&](const torch::Tensor& t) { return t.detach().to(torch::kCUDA, dtype).requires_grad_(); };
    SsdIn g{cu(in.u), cu(in.a), cu(in.h0)};
    REQUIRE(ssd_state_passing_route(g.u, g.a, g.h0).kernel);
    // The reference in float64 of the same rounded inputs.
    auto r64 = [](const torch::Tensor& t) { return t.detach().to(torch::kCPU, torch::kFloat64).requires_grad_(); };
    SsdIn rin{r64(g.u), r64(g.a), r64(g.h0)};
    auto rref = ssd_state_passing_composite(rin.u, rin.a, rin.h0);
    auto rg = proj_grads({rref.h_in, rref.final_state}, leaves(rin), {true, true});
    auto got = ssd_state_passing(g.u, g.a, g.h0);
    auto gg = proj_grads({got.h_in, got.final_state}, leaves(g), {true, true});
    const double ef = std::max(rel_err(got.h_in.cpu().to(torch::kFloat64), rref.h_in),
                               rel_err(got.final_state.cpu().to(torch::kFloat64), rref.final_state));
    const double eb = worst_rel({gg[0].cpu(), gg[1].cpu(), gg[2].cpu()}, rg);
    WARN("ssd_state_passing CUDA " << c10::toString(dtype) << ": forward " << ef << ", gradients " << eb);
    CHECK(ef < tol);
    CHECK(eb < tol);
  }
}

TEST_CASE("fused gem_chunk on the GPU equals the composite (float32, bfloat16)", "[unit][gpu][fused]") {
  if (!gpu_or_skip("gem_chunk CUDA kernel")) return;
  for (bool shared : {true, false}) {
    auto in = gem_inputs(8, 32, 64, 48, shared, 12);
    for (auto dtype : {torch::kFloat32, torch::kBFloat16}) {
      const double tol = dtype == torch::kFloat32 ? 1e-4 : 2e-2;
      auto cu = [&](const torch::Tensor& t) { return t.detach().to(torch::kCUDA, dtype).requires_grad_(); };
      GemIn g{cu(in.aq), cu(in.ak), cu(in.v), cu(in.V), cu(in.eta)};
      auto r64 = [](const torch::Tensor& t) { return t.detach().to(torch::kCPU, torch::kFloat64).requires_grad_(); };
      GemIn rin{r64(g.aq), r64(g.ak), r64(g.v), r64(g.V), r64(g.eta)};
      REQUIRE(gem_chunk_route(g.aq, g.ak, g.v, values_arg(g), g.eta).kernel);
      auto ref = gem_chunk_composite(rin.aq, rin.ak, rin.v, values_arg(rin), rin.eta, true);
      auto got = gem_chunk(g.aq, g.ak, g.v, values_arg(g), g.eta, true);
      std::vector<torch::Tensor> wg{g.aq, g.ak, g.v, g.V, g.eta}, wr{rin.aq, rin.ak, rin.v, rin.V, rin.eta};
      auto gr = proj_grads({ref.r, ref.V}, wr, {true, true}), gg = proj_grads({got.r, got.V}, wg, {true, true});
      for (auto& t : gg) t = t.cpu();
      const double ef =
          std::max(rel_err(got.r.cpu().to(torch::kFloat64), ref.r), rel_err(got.V.cpu().to(torch::kFloat64), ref.V));
      const double eb = worst_rel(gg, gr);
      WARN("gem_chunk CUDA " << c10::toString(dtype) << (shared ? " shared V" : "") << ": forward " << ef
                             << ", gradients " << eb);
      CHECK(ef < tol);
      CHECK(eb < tol);
    }
  }
}

TEST_CASE("fused: ssd_chunked and gem_memory on the GPU equal the CPU composite (float32)", "[unit][gpu][fused]") {
  if (!gpu_or_skip("ssd_chunked / gem_memory on CUDA")) return;
  auto o = torch::TensorOptions().dtype(torch::kFloat32);
  torch::manual_seed(4);
  const int64_t b = 2, L = 300, H = 8, P = 16, G = 1, N = 32;
  auto x = torch::randn({b, L, H, P}, o), dt = torch::rand({b, L, H}, o) * 0.1;
  auto A = -torch::rand({H}, o) * 8.0, Bm = torch::randn({b, L, G, N}, o), Cm = torch::randn({b, L, G, N}, o);
  auto cpu = ssd_chunked(x, dt, A, Bm, Cm, 64);
  auto gpu = ssd_chunked(x.cuda(), dt.cuda(), A.cuda(), Bm.cuda(), Cm.cuda(), 64);
  CHECK(rel_err(gpu.y.cpu(), cpu.y) < 1e-4);
  CHECK(rel_err(gpu.final_state.cpu(), cpu.final_state) < 1e-4);
  auto in = gem_inputs(4, 128, 64, 32, true, 5);
  auto f = [](const torch::Tensor& t) { return t.detach().to(torch::kFloat32); };
  GemMemoryState s1, s2;
  auto rc = gem_memory(f(in.aq), f(in.ak), f(in.v), s1, 16, f(in.eta), true, f(in.V));
  auto rg =
      gem_memory(f(in.aq).cuda(), f(in.ak).cuda(), f(in.v).cuda(), s2, 16, f(in.eta).cuda(), true, f(in.V).cuda());
  CHECK(rel_err(rg.cpu(), rc) < 1e-4);
  CHECK(rel_err(s2.V.cpu(), s1.V) < 1e-4);
}
