// bench_cpu_kernels: lmgrid's fused CPU kernels against the LibTorch composites they replace, at
// the shapes of experiments/quickstart.toml's models (batch 12 x 64 tokens), side by side in one
// process: CPU time per call of the forward pass and of forward + backward (the backward of a sum
// of the outputs times fixed random weights), the median of --reps runs after a warm-up, and the
// ratio composite / fused. One thread unless LMGRID_THREADS says otherwise.
//
//   OPENBLAS_NUM_THREADS=1 LMGRID_THREADS=1 build/bin/bench_cpu_kernels [--reps 21] [--only WORD]
//
// --only WORD: just the rows whose name contains WORD (e.g. SSD, conv, RMSNorm, TTT, bmm), for profiles.
//
// Rows: the SSD scan (mamba2: 4 heads x 64, d_state 64, chunk 64, loss of y alone), the causal
// convolution + SiLU (mamba2: 384 channels, width 4), SwiGLU's gate (373), the gated RMSNorm (mamba2: 256 channels)
// and the plain one (128), the TTT layer's dual form (48 sequences x heads, 64 tokens of 32,
// mini-batch 16; Linear and MLP with hidden 128), the batched products of the TTT dual form (48 sequences x heads,
// 16 x 32 by 32 x 32) and of GEM's chunks (48, 16 x 64 by 64 x 32).
#include <algorithm>
#include <cstdio>
#include <ctime>
#include <functional>
#include <string>
#include <vector>

#include <lmgrid/kernels/act.hpp>
#include <lmgrid/kernels/bmm.hpp>
#include <lmgrid/kernels/conv.hpp>
#include <lmgrid/kernels/norm.hpp>
#include <lmgrid/kernels/ssd.hpp>
#include <lmgrid/kernels/ttt.hpp>
#include <lmgrid/nn/conv.hpp>
#include <lmgrid/nn/norm.hpp>
#include <lmgrid/sys/cpu.hpp>

namespace {

double cpu_now() {
  timespec ts;
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return ts.tv_sec + 1e-9 * ts.tv_nsec;
}

double median_cpu(int reps, const std::function<void()>& f) {
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

using Fn = std::function<std::vector<torch::Tensor>(const std::vector<torch::Tensor>&)>;

// Forward and forward+backward times of f on fresh leaves made from `inputs`.
std::pair<double, double> time_both(int reps, const std::vector<torch::Tensor>& inputs, const Fn& f) {
  std::vector<torch::Tensor> leaves;
  for (const auto& t : inputs) leaves.push_back(t.detach().requires_grad_(t.is_floating_point()));
  auto outs = f(leaves);
  std::vector<torch::Tensor> w;
  for (const auto& o : outs) w.push_back(torch::randn(o.sizes(), o.options()));
  const double fwd = median_cpu(reps, [&] {
    torch::NoGradGuard ng;
    f(leaves);
  });
  const double fb = median_cpu(reps, [&] {
    for (auto& l : leaves) l.mutable_grad() = torch::Tensor();
    auto o = f(leaves);
    torch::Tensor loss = (o[0] * w[0]).sum();
    for (size_t i = 1; i < o.size(); ++i) loss = loss + (o[i] * w[i]).sum();
    loss.backward();
  });
  return {fwd, fb};
}

std::string g_only;

void row(const char* name, int reps, const std::vector<torch::Tensor>& inputs, const Fn& composite, const Fn& fused) {
  if (!g_only.empty() && std::string(name).find(g_only) == std::string::npos) return;
  auto [cf, cb] = time_both(reps, inputs, composite);
  auto [ff, fb] = time_both(reps, inputs, fused);
  std::printf("| %s | %.3f | %.3f | %.2fx | %.3f | %.3f | %.2fx |\n", name, 1e3 * cf, 1e3 * ff, cf / ff, 1e3 * cb,
              1e3 * fb, cb / fb);
}

// Runs f with LMGRID_CPU_KERNELS set to `mode` (nn's functions read it at each call).
Fn with_mode(const char* mode, Fn f) {
  return [mode, f](const std::vector<torch::Tensor>& x) {
    setenv("LMGRID_CPU_KERNELS", mode, 1);
    auto r = f(x);
    unsetenv("LMGRID_CPU_KERNELS");
    return r;
  };
}

}  // namespace

int main(int argc, char** argv) {
  lmgrid::ensure_fast_blas(argc, argv);
  int reps = 21;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string k = argv[i];
    if (k == "--reps") {
      reps = std::max(5, std::stoi(argv[i + 1]));
    } else if (k == "--only") {
      g_only = argv[i + 1];
    } else {
      std::fprintf(stderr, "bench_cpu_kernels: unknown option %s\n", k.c_str());
      return 2;
    }
  }
  torch::set_num_threads(lmgrid::default_threads());
  torch::manual_seed(0);
  std::printf("bench_cpu_kernels: %d thread(s), CPU ms per call, median of %d\n\n", torch::get_num_threads(), reps);
  std::printf("| kernel (shape) | forward composite | fused | ratio | fwd+bwd composite | fused | ratio |\n");
  std::printf("|---|---:|---:|---:|---:|---:|---:|\n");
  namespace K = lmgrid::kernels;
  {
    const int64_t b = 12, L = 64, H = 4, P = 64, N = 64;
    std::vector<torch::Tensor> in = {
        torch::randn({b, L, H, P}), torch::nn::functional::softplus(torch::randn({b, L, H}) - 4.0),
        -torch::empty({H}).uniform_(1, 16), torch::randn({b, L, 1, N}), torch::randn({b, L, 1, N})};
    row(
        "SSD scan (12, 64, 4 x 64, N 64, chunk 64)", reps, in,
        [](const auto& x) { return std::vector{K::ssd_chunked_composite(x[0], x[1], x[2], x[3], x[4], 64).y}; },
        [](const auto& x) { return std::vector{K::ssd_chunked_cpu(x[0], x[1], x[2], x[3], x[4], 64).y}; });
  }
  {
    std::vector<torch::Tensor> in = {torch::randn({12, 64, 384}), torch::randn({384, 4}), torch::randn({384})};
    auto conv = [](const auto& x) { return std::vector{lmgrid::nn::causal_conv1d(x[0], x[1], x[2], nullptr, true)}; };
    row("causal conv + SiLU (12, 64, 384, k 4)", reps, in, with_mode("composite", conv), with_mode("auto", conv));
  }
  {
    std::vector<torch::Tensor> in = {torch::randn({12, 64, 256}), torch::randn({12, 64, 256}), torch::randn({256})};
    auto norm = [](const auto& x) { return std::vector{lmgrid::nn::gated_rms_norm(x[0], x[1], x[2], 1, 1e-5)}; };
    row("gated RMSNorm (12, 64, 256)", reps, in, with_mode("composite", norm), with_mode("auto", norm));
  }
  {
    std::vector<torch::Tensor> in = {torch::randn({12, 64, 128}), torch::randn({128})};
    auto norm = [](const auto& x) {
      return std::vector{x[0] * torch::rsqrt(x[0].pow(2).mean(-1, true) + 1e-5) * x[1]};
    };
    auto fused = [](const auto& x) { return std::vector{K::rms_norm_cpu(x[0], {}, x[1], 1, 1e-5)}; };
    row("RMSNorm (12, 64, 128)", reps, in, norm, fused);
  }
  {
    std::vector<torch::Tensor> in = {torch::randn({12, 64, 373}), torch::randn({12, 64, 373})};
    row(
        "silu(a) * b (12, 64, 373)", reps, in, [](const auto& x) { return std::vector{torch::silu(x[0]) * x[1]}; },
        [](const auto& x) { return std::vector{K::act_mul_cpu(x[0], x[1], K::GateAct::silu)}; });
  }
  for (bool mlp : {false, true}) {  // the TTT layer's inner loop: 48 sequences x 64 tokens x 32, mini-batch 16
    const int64_t N = 48, T = 64, D = 32, Hd = mlp ? 4 * D : D;
    std::vector<torch::Tensor> in = {torch::randn({N, T, D}),
                                     torch::randn({N, T, D}),
                                     torch::randn({N, T, D}),
                                     torch::rand({N, T}) / D,
                                     1.0 / torch::arange(1, 17).to(torch::kFloat),
                                     torch::ones({N, 1, D}),
                                     torch::zeros({N, 1, D}),
                                     0.02 * torch::randn({N, D, Hd}),
                                     torch::zeros({N, 1, Hd}),
                                     0.02 * torch::randn({N, Hd, D}),
                                     torch::zeros({N, 1, D})};
    auto ttt = [mlp](const auto& x) {
      K::TTTNorm norm{x[5], x[6], 1e-6};
      K::TTTInnerState st;
      st.W1 = x[7], st.b1 = x[8];
      if (mlp) st.W2 = x[9], st.b2 = x[10];
      return std::vector{K::ttt_inner(x[0], x[1], x[2], x[3], x[4], norm, st, 16)};
    };
    row(mlp ? "TTT-MLP dual form (48, 64 x 32, hidden 128, b 16)" : "TTT-Linear dual form (48, 64 x 32, b 16)", reps,
        in, with_mode("composite", ttt), with_mode("auto", ttt));
  }
  {
    std::vector<torch::Tensor> in = {torch::randn({48, 16, 32}), torch::randn({48, 32, 32})};
    row(
        "bmm, TTT dual form (48, 16 x 32 x 32)", reps, in,
        [](const auto& x) { return std::vector{torch::bmm(x[0], x[1])}; },
        [](const auto& x) { return std::vector{K::bmm_cpu(x[0], x[1])}; });
  }
  {
    std::vector<torch::Tensor> in = {torch::randn({48, 16, 64}), torch::randn({48, 64, 32})};
    row(
        "bmm, GEM chunk (48, 16 x 64 x 32)", reps, in,
        [](const auto& x) { return std::vector{torch::bmm(x[0], x[1])}; },
        [](const auto& x) { return std::vector{K::bmm_cpu(x[0], x[1])}; });
  }
  {
    std::vector<torch::Tensor> in = {torch::randn({48, 64, 64}), torch::randn({48, 64, 64})};
    row(
        "bmm (48, 64 x 64 x 64)", reps, in, [](const auto& x) { return std::vector{torch::bmm(x[0], x[1])}; },
        [](const auto& x) { return std::vector{K::bmm_cpu(x[0], x[1])}; });
  }
  return 0;
}
