// bench_ssd: CPU time of the chunked SSD scan (lmgrid::kernels::ssd_chunked), forward and
// forward+backward, against the time its matrix products alone would take at this machine's
// measured matmul rate (a 1024^3 fp32 product timed in the same process).
//
//   build/bin/bench_ssd [--batch 1] [--T 1024] [--heads 8] [--reps 7] [--chunks 32,64,128,256]
//                       [--loss y+state|y]
//
// Shape: Mamba-2 at headdim 64, d_state 64, ngroups 1, 8 heads (d_model 256, expand 2) unless
// --heads says otherwise (the quickstart's mamba2: --batch 12 --T 64 --heads 4 --chunks 64). Each
// row is timed for both implementations side by side: the LibTorch composite
// (ssd_chunked_composite) and the fused CPU kernel (ssd_chunked_cpu). --loss y differentiates y
// alone, as training does (the final state unused); the default also sums the final state. Matmul FLOPs are counted
// analytically (kernels::ssd_chunked_matmul_flops; backward = 2 x forward: each product has two gradient products).
// ratio = measured / matmul-only time; the target is <= 3. Every timing is the median of --reps runs after one warm-up,
// taken as the process's CPU time (robust to other processes on a shared machine; wall time in brackets).
// LMGRID_THREADS sets LibTorch's thread count (default: all cores); OpenBLAS reads its own
// OPENBLAS_NUM_THREADS at start-up. The figure to quote is single-threaded:
//   OPENBLAS_NUM_THREADS=1 LMGRID_THREADS=1 build/bin/bench_ssd --reps 9 --chunks 64,128
// (measured 2026-11-22, quiet 2-core machine: chunk 64 forward 2.52x, forward+backward 3.37x;
// chunk 128: 1.91x / 2.50x). At these shapes a second thread does not shorten the wall time, so
// with 2 threads the CPU time per token doubles (ratio ~4.7). Developer aid: BENCH_SSD_TRACE=PREFIX
// writes a profiler trace PREFIX{composite,fused}<chunk>.json of one forward+backward.
#include <algorithm>
#include <chrono>
#include <ctime>
#include <cstdio>
#include <cstring>
#include <sstream>
#include <string>
#include <vector>

#include <torch/csrc/autograd/profiler.h>
#include <lmgrid/sys/cpu.hpp>
#include <lmgrid/kernels/ssd.hpp>

namespace {

double wall_now() { return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count(); }
// CPU time of the whole process (all threads): robust to other processes on a shared machine.
double cpu_now() {
  timespec ts;
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return ts.tv_sec + 1e-9 * ts.tv_nsec;
}

struct Timing {
  double wall, cpu;  // medians, seconds
};

template <class F>
Timing median_times(int reps, F&& f) {
  f();  // warm-up
  std::vector<double> w, c;
  for (int r = 0; r < reps; ++r) {
    double w0 = wall_now(), c0 = cpu_now();
    f();
    c.push_back(cpu_now() - c0);
    w.push_back(wall_now() - w0);
  }
  std::sort(w.begin(), w.end());
  std::sort(c.begin(), c.end());
  return {w[w.size() / 2], c[c.size() / 2]};
}

}  // namespace

int main(int argc, char** argv) {
  lmgrid::ensure_fast_blas(argc, argv);  // before any BLAS call: may re-exec with OPENBLAS_CORETYPE
  int64_t batch = 1, T = 1024, H = 8;
  int reps = 7;
  bool y_only = false;
  std::vector<int64_t> chunks = {32, 64, 128, 256};
  for (int i = 1; i + 1 < argc; i += 2) {
    std::string k = argv[i], v = argv[i + 1];
    if (k == "--batch")
      batch = std::stoll(v);
    else if (k == "--T")
      T = std::stoll(v);
    else if (k == "--heads")
      H = std::stoll(v);
    else if (k == "--loss")
      y_only = v == "y";
    else if (k == "--reps")
      reps = std::max(5, std::stoi(v));
    else if (k == "--chunks") {
      chunks.clear();
      std::stringstream ss(v);
      for (std::string part; std::getline(ss, part, ',');) chunks.push_back(std::stoll(part));
    } else {
      std::fprintf(stderr, "bench_ssd: unknown option %s\n", k.c_str());
      return 2;
    }
  }
  torch::set_num_threads(lmgrid::default_threads());
  const int64_t P = 64, d_inner = H * P, d_model = d_inner / 2, N = 64, G = 1;
  auto info = lmgrid::blas_info();
  const double gflops_wall = lmgrid::measure_matmul_gflops(1024, 7);
  // The same 1024^3 product timed in process CPU time (the ratio below uses CPU time on both sides).
  auto ma = torch::randn({1024, 1024}), mb = torch::randn({1024, 1024});
  Timing mm = median_times(reps, [&] { auto c = torch::mm(ma, mb); });
  const double gflops = 2.0 * 1024.0 * 1024.0 * 1024.0 / mm.cpu / 1e9;
  std::printf(
      "bench_ssd: d_model %lld (d_inner %lld, %lld heads x headdim %lld), d_state %lld, ngroups %lld, "
      "T %lld, batch %lld, fp32, %d threads, BLAS %s/%s\n",
      (long long)d_model, (long long)d_inner, (long long)H, (long long)P, (long long)N, (long long)G, (long long)T,
      (long long)batch, torch::get_num_threads(), info.library.c_str(), info.core.c_str());
  std::printf(
      "measured matmul rate (1024^3 fp32): %.1f GFLOP/s per CPU-second (wall: %.1f GFLOP/s, "
      "lmgrid::measure_matmul_gflops)\n",
      gflops, gflops_wall);
  std::printf(
      "times: median of %d, CPU time of the process per token (wall time in brackets); mm-only = matmul\n"
      "FLOPs / CPU-time matmul rate; ratio = CPU time / mm-only (target <= 3)\n",
      reps);
  std::printf("%6s %-10s %20s %9s %7s   %20s %9s %7s\n", "chunk", "path", "fwd us/tok", "mm-only", "ratio",
              "fwd+bwd us/tok", "mm-only", "ratio");

  torch::manual_seed(0);
  auto x = torch::randn({batch, T, H, P});
  auto dt = torch::nn::functional::softplus(torch::randn({batch, T, H}) - 4.0);
  auto A = -torch::empty({H}).uniform_(1, 16);
  auto Bm = torch::randn({batch, T, G, N});
  auto Cm = torch::randn({batch, T, G, N});
  const double tokens = static_cast<double>(batch * T);
  // Diagnostic: the forward's four batched products alone, on random tensors of the shapes the
  // scan uses (factorised path, G = 1): how much of the ratio is small-matmul inefficiency.
  auto shape_note = [&](int64_t chunk) {
    const int64_t Q = std::min(chunk, T), c = (T + Q - 1) / Q;
    auto cq = torch::randn({batch, c, G, Q, N}), bq = torch::randn({batch, c, G, Q, N});
    auto xs = torch::randn({batch, c, G, Q, H / G * P}), hs = torch::randn({batch, c, G, N, H / G * P});
    Timing t = median_times(reps, [&] {
      torch::NoGradGuard ng;
      auto cb = torch::matmul(cq, bq.transpose(-1, -2));
      auto yd = torch::matmul(cb, xs);
      auto st = torch::matmul(bq.transpose(-1, -2), xs);
      auto yo = torch::matmul(cq, hs);
    });
    const double f = batch * lmgrid::kernels::ssd_chunked_matmul_flops(T, H, P, G, N, chunk);
    std::printf("        (its forward matmuls alone at these shapes: %.2f us/tok = %.1f GFLOP/s per CPU-second)\n",
                1e6 * t.cpu / tokens, f / t.cpu / 1e9);
  };
  for (int64_t chunk : chunks) {
    const double f_fwd = batch * lmgrid::kernels::ssd_chunked_matmul_flops(T, H, P, G, N, chunk);
    for (const bool fused : {false, true}) {
      auto scan = [&](const torch::Tensor& x_, const torch::Tensor& dt_, const torch::Tensor& A_,
                      const torch::Tensor& B_, const torch::Tensor& C_) {
        return fused ? lmgrid::kernels::ssd_chunked_cpu(x_, dt_, A_, B_, C_, chunk)
                     : lmgrid::kernels::ssd_chunked_composite(x_, dt_, A_, B_, C_, chunk);
      };
      Timing t_fwd = median_times(reps, [&] {
        torch::NoGradGuard ng;
        auto r = scan(x, dt, A, Bm, Cm);
      });
      std::vector<torch::Tensor> leaves;
      for (const auto& t : {x, dt, A, Bm, Cm}) leaves.push_back(t.detach().requires_grad_());
      auto fwd_bwd = [&] {
        auto r = scan(leaves[0], leaves[1], leaves[2], leaves[3], leaves[4]);
        (y_only ? r.y.sum() : r.y.sum() + r.final_state.sum()).backward();
      };
      if (std::getenv("BENCH_SSD_TRACE")) {
        // Developer aid: BENCH_SSD_TRACE=/tmp/prefix writes a profiler trace of one forward+backward.
        torch::autograd::profiler::RecordProfile guard(std::string(std::getenv("BENCH_SSD_TRACE")) +
                                                       (fused ? "fused" : "composite") + std::to_string(chunk) +
                                                       ".json");
        fwd_bwd();
      }
      Timing t_fb = median_times(reps, [&] {
        for (auto& l : leaves) l.mutable_grad() = torch::Tensor();
        fwd_bwd();
      });
      const double mm_fwd = f_fwd / (gflops * 1e9), mm_fb = 3.0 * f_fwd / (gflops * 1e9);
      std::printf("%6lld %-10s %9.2f (%8.2f) %9.2f %7.2f   %9.2f (%8.2f) %9.2f %7.2f\n", (long long)chunk,
                  fused ? "fused" : "composite", 1e6 * t_fwd.cpu / tokens, 1e6 * t_fwd.wall / tokens,
                  1e6 * mm_fwd / tokens, t_fwd.cpu / mm_fwd, 1e6 * t_fb.cpu / tokens, 1e6 * t_fb.wall / tokens,
                  1e6 * mm_fb / tokens, t_fb.cpu / mm_fb);
    }
    shape_note(chunk);
  }
  return 0;
}
