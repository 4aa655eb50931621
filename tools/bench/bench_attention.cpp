// bench_attention: CPU time of causal softmax attention, forward and forward+backward, in
// lmgrid's tiled kernel (kernels::tiled_attention) against the composite of LibTorch ops
// (kernels::attention_composite: what LibTorch 1.13 runs without it), float32, at the shapes
// lmgrid's experiments use. Every timing is the median of --reps runs after one warm-up, as the
// process's CPU time (robust to other processes on a shared machine). ratio = composite / tiled.
//
//   OPENBLAS_NUM_THREADS=1 LMGRID_THREADS=1 build/bin/bench_attention [--reps 5]
//
// GFLOP/s counts the two products of the forward pass (4 T S D per head, halved by the mask).
// Where LibTorch has scaled_dot_product_attention (2.x: a CPU flash kernel of its own) its
// forward+backward time and its ratio to the tiled kernel's are printed too (sdpa / tiled: above
// 1 means the tiled kernel is faster); that decides LMGRID_CPU_ATTENTION=auto on 2.x.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <ctime>
#include <string>
#include <vector>

#include <lmgrid/kernels/attention.hpp>
#include <lmgrid/plugin/torch_compat.hpp>  // LMGRID_HAVE_SDPA
#include <lmgrid/sys/cpu.hpp>

namespace {

double cpu_now() {
  timespec ts;
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return ts.tv_sec + 1e-9 * ts.tv_nsec;
}

template <class F>
double median_cpu(int reps, F&& f) {
  f();
  std::vector<double> t;
  for (int r = 0; r < reps; ++r) {
    const double c0 = cpu_now();
    f();
    t.push_back(cpu_now() - c0);
  }
  std::sort(t.begin(), t.end());
  return t[t.size() / 2];
}

struct Shape {
  const char* what;
  int64_t B, H, T, D;
};

}  // namespace

int main(int argc, char** argv) {
  lmgrid::ensure_fast_blas(argc, argv);
  int reps = 5;
  for (int i = 1; i + 1 < argc; i += 2)
    if (std::string(argv[i]) == "--reps") reps = std::max(3, std::stoi(argv[i + 1]));
  const std::vector<Shape> shapes = {
      {"babilong 2K (width 64, 4 heads)", 8, 4, 2112, 16},
      {"babilong 1K", 8, 4, 1056, 16},
      {"mqar (256, 16), width 64", 64, 1, 256, 64},
      {"mqar (256, 16), width 128", 64, 1, 256, 128},
      {"nanoGPT CPU recipe", 12, 4, 64, 32},
      {"quickstart gpt", 16, 4, 256, 32},
  };
  std::printf("threads %d, float32, causal; CPU ms per call (median of %d)\n", torch::get_num_threads(), reps);
  std::printf("%-48s %8s %8s %6s %7s | %9s %8s %6s%s\n", "shape (B, H, T, D)", "fwd comp", "tiled", "ratio", "GFLOP/s",
              "f+b comp", "tiled", "ratio", LMGRID_HAVE_SDPA ? " |  f+b sdpa  sdpa/tiled" : "");
  for (const Shape& s : shapes) {
    auto o = torch::TensorOptions().dtype(torch::kFloat32);
    torch::manual_seed(0);
    auto q = torch::randn({s.B, s.H, s.T, s.D}, o).requires_grad_();
    auto k = torch::randn({s.B, s.H, s.T, s.D}, o).requires_grad_();
    auto v = torch::randn({s.B, s.H, s.T, s.D}, o).requires_grad_();
    auto w = torch::randn({s.B, s.H, s.T, s.D}, o);
    const double scale = 1.0 / std::sqrt(static_cast<double>(s.D));
    auto call = [&](bool tiled, bool backward) {
      auto y = tiled ? lmgrid::kernels::tiled_attention(q, k, v, true, scale)
                     : lmgrid::kernels::attention_composite(q, k, v, true, scale);
      if (backward) torch::autograd::grad({(y * w).sum()}, {q, k, v});
    };
    std::string sdpa;
#if LMGRID_HAVE_SDPA
    const double sb = median_cpu(reps, [&] {
      auto y = torch::scaled_dot_product_attention(q, k, v, {}, 0.0, true);
      torch::autograd::grad({(y * w).sum()}, {q, k, v});
    });
#endif
    const double cf = median_cpu(reps, [&] { call(false, false); }), tf = median_cpu(reps, [&] { call(true, false); });
    const double cb = median_cpu(reps, [&] { call(false, true); }), tb = median_cpu(reps, [&] { call(true, true); });
    const double flops = 2.0 * s.B * s.H * s.T * s.T * s.D;
    char label[96];
    std::snprintf(label, sizeof label, "%s (%ld, %ld, %ld, %ld)", s.what, static_cast<long>(s.B),
                  static_cast<long>(s.H), static_cast<long>(s.T), static_cast<long>(s.D));
#if LMGRID_HAVE_SDPA
    char extra[64];
    std::snprintf(extra, sizeof extra, " | %9.2f %10.2fx", sb * 1e3, sb / tb);
    sdpa = extra;
#endif
    std::printf("%-48s %8.2f %8.2f %5.2fx %7.1f | %9.2f %8.2f %5.2fx%s\n", label, cf * 1e3, tf * 1e3, cf / tf,
                flops / tf / 1e9, cb * 1e3, tb * 1e3, cb / tb, sdpa.c_str());
  }
}
