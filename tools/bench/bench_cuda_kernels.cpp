// bench_cuda_kernels: lmgrid's CUDA kernels (lmgrid/kernels/fused.hpp) against their LibTorch
// composites on the GPU, forward and forward+backward, at Mamba-2 and GEM shapes. One table:
// time per call (median of --reps after warm-up, synchronised), the kernel's speed-up over the
// composite, and the kernel's achieved bandwidth = bytes its call must move (inputs read once,
// outputs written once; backward: incoming gradients, saved tensors and gradients out) / time.
// With no GPU or no kernels in this build it prints why and exits 0 (tools/gpu_check.sh runs it).
//
//   build-pip/bin/bench_cuda_kernels [--reps 20] [--dtype float32|bfloat16]
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <functional>
#include <string>
#include <vector>

#include <torch/cuda.h>
#include <lmgrid/kernels/fused.hpp>

namespace K = lmgrid::kernels;

namespace {

double now() { return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count(); }

double median_seconds(int reps, const std::function<void()>& f) {
  for (int i = 0; i < 3; ++i) f();  // warm-up (allocator, first launches)
  torch::cuda::synchronize();
  std::vector<double> t;
  for (int r = 0; r < reps; ++r) {
    const double t0 = now();
    f();
    torch::cuda::synchronize();
    t.push_back(now() - t0);
  }
  std::sort(t.begin(), t.end());
  return t[t.size() / 2];
}

struct Row {
  std::string name, pass;
  double t_kernel, t_composite, bytes;
};

void print(const std::vector<Row>& rows) {
  std::printf("%-44s %-9s %12s %12s %9s %10s\n", "case", "pass", "kernel us", "composite us", "speed-up", "GB/s");
  for (const auto& r : rows)
    std::printf("%-44s %-9s %12.1f %12.1f %8.2fx %10.1f\n", r.name.c_str(), r.pass.c_str(), 1e6 * r.t_kernel,
                1e6 * r.t_composite, r.t_composite / r.t_kernel, r.bytes / r.t_kernel / 1e9);
}

double nbytes(const std::vector<torch::Tensor>& ts) {
  double b = 0;
  for (const auto& t : ts) b += static_cast<double>(t.numel()) * t.element_size();
  return b;
}

// SSD state passing at a Mamba-2 layer: B sequences of L tokens, chunk Q, H heads of P, state N.
void bench_ssd(std::vector<Row>& rows, int reps, torch::ScalarType dt, int64_t B, int64_t L, int64_t Q, int64_t H,
               int64_t P, int64_t N) {
  auto o = torch::TensorOptions().dtype(dt).device(torch::kCUDA);
  const int64_t c = L / Q, G = 1;
  auto u = torch::randn({B, c, G, N, H, P}, o).requires_grad_();
  auto a = (-torch::rand({B, c, H}, o) * 3.0).detach().requires_grad_();
  auto h0 = torch::randn({B, G, N, H, P}, o).requires_grad_();
  auto gi = torch::randn({B, c, G, N, H, P}, o), gf = torch::randn({B, G, N, H, P}, o);
  char name[96];
  std::snprintf(name, sizeof name, "ssd_state_passing B%ld c%ld H%ld P%ld N%ld", long(B), long(c), long(H), long(P),
                long(N));
  auto fwd = [&](K::FusedImpl impl) {
    torch::NoGradGuard ng;
    K::ssd_state_passing(u, a, h0, impl);
  };
  auto both = [&](K::FusedImpl impl) {
    auto s = K::ssd_state_passing(u, a, h0, impl);
    torch::autograd::grad({s.h_in, s.final_state}, {u, a, h0}, {gi, gf});
  };
  const double fb = nbytes({u, a, h0}) + nbytes({u, h0});  // read u, a, h0; write h_in, final
  rows.push_back({name, "fwd", median_seconds(reps, [&] { fwd(K::FusedImpl::automatic); }),
                  median_seconds(reps, [&] { fwd(K::FusedImpl::composite); }), fb});
  // backward: read g_hin, g_final, a, h_in (saved); write gu, gh0, ga
  rows.push_back({name, "fwd+bwd", median_seconds(reps, [&] { both(K::FusedImpl::automatic); }),
                  median_seconds(reps, [&] { both(K::FusedImpl::composite); }),
                  fb + nbytes({gi, gf, a, u}) + nbytes({u, h0, a})});
}

// One GEM chunk: S sequences, n tokens, M slots, D width; V0 shared as in training's first chunk.
void bench_gem(std::vector<Row>& rows, int reps, torch::ScalarType dt, int64_t S, int64_t n, int64_t M, int64_t D) {
  auto o = torch::TensorOptions().dtype(dt).device(torch::kCUDA);
  auto aq = torch::softmax(torch::randn({S, n, M}, o), -1).detach().requires_grad_();
  auto ak = torch::softmax(torch::randn({S, n, M}, o), -1).detach().requires_grad_();
  auto v = torch::randn({S, n, D}, o).requires_grad_();
  auto V = torch::randn({S, M, D}, o).requires_grad_();
  auto eta = torch::full({}, 0.5, o).requires_grad_();
  auto gr = torch::randn({S, n, D}, o), gV = torch::randn({S, M, D}, o);
  char name[96];
  std::snprintf(name, sizeof name, "gem_chunk S%ld n%ld M%ld D%ld", long(S), long(n), long(M), long(D));
  auto fwd = [&](K::FusedImpl impl) {
    torch::NoGradGuard ng;
    K::gem_chunk(aq, ak, v, V, eta, true, impl);
  };
  auto both = [&](K::FusedImpl impl) {
    auto g = K::gem_chunk(aq, ak, v, V, eta, true, impl);
    torch::autograd::grad({g.r, g.V}, {aq, ak, v, V, eta}, {gr, gV});
  };
  const double fb = nbytes({aq, ak, v, V}) + nbytes({v, V});  // inputs; r, V'
  rows.push_back({name, "fwd", median_seconds(reps, [&] { fwd(K::FusedImpl::automatic); }),
                  median_seconds(reps, [&] { fwd(K::FusedImpl::composite); }), fb});
  rows.push_back({name, "fwd+bwd", median_seconds(reps, [&] { both(K::FusedImpl::automatic); }),
                  median_seconds(reps, [&] { both(K::FusedImpl::composite); }),
                  fb + nbytes({gr, gV, aq, ak, V}) + nbytes({aq, ak, v, V})});
}

}  // namespace

int main(int argc, char** argv) {
  int reps = 20;
  torch::ScalarType dt = torch::kFloat32;
  for (int i = 1; i < argc; ++i) {
    if (!std::strcmp(argv[i], "--reps") && i + 1 < argc) {
      reps = std::max(1, std::atoi(argv[++i]));
    } else if (!std::strcmp(argv[i], "--dtype") && i + 1 < argc) {
      const std::string d = argv[++i];
      if (d != "float32" && d != "bfloat16") {
        std::fprintf(stderr, "bench_cuda_kernels: --dtype is float32 or bfloat16, not %s\n", d.c_str());
        return 2;
      }
      dt = d == "float32" ? torch::kFloat32 : torch::kBFloat16;
    } else {
      std::fprintf(stderr, "usage: bench_cuda_kernels [--reps N] [--dtype float32|bfloat16]\n");
      return 2;
    }
  }
  if (!K::cuda_kernels_built()) {
    std::printf("bench_cuda_kernels: no CUDA device (this build has no CUDA kernels)\n");
    return 0;
  }
  if (!torch::cuda::is_available()) {
    std::printf("bench_cuda_kernels: no CUDA device\n");
    return 0;
  }
  std::vector<Row> rows;
  bench_ssd(rows, reps, dt, 12, 256, 64, 8, 64, 64);    // quickstart-scale Mamba-2
  bench_ssd(rows, reps, dt, 8, 2048, 64, 24, 64, 128);  // a 130M-class layer
  bench_gem(rows, reps, dt, 12, 64, 128, 128);          // quickstart-scale GEM
  bench_gem(rows, reps, dt, 32, 64, 512, 768);          // a GPT-2-small-width GEM
  std::printf("dtype %s, median of %d\n", dt == torch::kFloat32 ? "float32" : "bfloat16", reps);
  print(rows);
  return 0;
}
