// bench_gem: times GEM training steps (forward + backward + AdamW) in-process at GEM's config
// (batch 12, T 64, d 128, 4 layers, memory 64, minibatch 16) on random tokens, without the
// trainer, and with --profile prints LibTorch's per-op table. For finding where time goes; the
// end-to-end figure (through `lmgrid run`) is tools/bench/bench_gem.sh.
//   build/bin/bench_gem [steps=30] [threads=2] [--profile|-] [arch=gem]   (trace: /tmp/bench_gem_trace.json,
//   chrome-trace JSON; sum it per op name with any JSON tool)
#include <chrono>
#include <cstdio>
#include <cstring>

#include <torch/csrc/autograd/profiler_legacy.h>

#include <lmgrid/plugin/registry.hpp>
#include <lmgrid/train/trainer.hpp>

using namespace lmgrid;

int main(int argc, char** argv) {
  int steps = argc > 1 ? std::atoi(argv[1]) : 30;
  int threads = argc > 2 ? std::atoi(argv[2]) : 2;
  bool profile = argc > 3 && std::strcmp(argv[3], "--profile") == 0;
  std::string arch_name = argc > 4 ? argv[4] : "gem";  // e.g. gpt, for a comparison under the same load
  torch::set_num_threads(threads);
  const auto& reg = Registry::instance();
  const auto& arch = static_cast<const ArchPlugin&>(*reg.get(PluginKind::arch, arch_name).plugin);
  const auto& op = static_cast<const OptimPlugin&>(*reg.get(PluginKind::optim, "adamw").plugin);
  torch::manual_seed(1);
  auto model = arch.create(validate_params(arch.params(), {}, arch_name), {65, 64});
  auto opt = op.create(validate_params(op.params(), {{"lr", 1e-3}}, "adamw"), named_parameters_for_optim(*model));
  auto idx = torch::randint(0, 65, {12, 64}, torch::kLong), tgt = torch::randint(0, 65, {12, 64}, torch::kLong);
  auto step = [&] {
    opt->zero_grad();
    auto loss = lm_loss(model->forward(idx, nullptr).logits, tgt, {});
    loss.backward();
    torch::nn::utils::clip_grad_norm_(model->parameters(), 1.0);
    opt->step();
  };
  for (int i = 0; i < 5; ++i) step();
  auto t0 = std::chrono::steady_clock::now();
  if (profile) {
    torch::autograd::profiler::RecordProfile guard("/tmp/bench_gem_trace.json");
    for (int i = 0; i < steps; ++i) step();
  } else {
    for (int i = 0; i < steps; ++i) step();
  }
  double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  {
    torch::NoGradGuard ng;
    auto f0 = std::chrono::steady_clock::now();
    for (int i = 0; i < steps; ++i) model->forward(idx, nullptr);
    double fs = std::chrono::duration<double>(std::chrono::steady_clock::now() - f0).count();
    std::printf("gem: forward only (no grad) %.1f ms\n", 1e3 * fs / steps);
  }
  std::printf("%s: %d steps, %.1f ms/step, %.0f tok/s (threads %d)\n", arch_name.c_str(), steps, 1e3 * s / steps,
              steps * 12 * 64 / s, threads);
}
