// The CUDA paths against their CPU references ("[cuda]"; tools/gpu_check.sh runs them on a GPU
// machine). Without a GPU each case prints "SKIP ..." and passes; with one, each prints a
// "PARITY <what>: <error>" line that gpu_check.sh puts in its summary.
// Tolerances (the issue's): float32 on the GPU vs float32 on the CPU < 1e-4 relative (cuBLAS and
// the CPU BLAS sum in other orders; TF32 stays off); bfloat16 autocast vs float32 < 2e-2.
#include <catch2/catch.hpp>

#include <cstdio>
#include <filesystem>

#include <lmgrid/nn/attention.hpp>
#include <lmgrid/plugin/torch_compat.hpp>
#include <lmgrid/train/checkpoint.hpp>
#include <lmgrid/train/precision.hpp>
#include <lmgrid/train/trainer.hpp>

#include "../support.hpp"

using namespace lmgrid;

namespace {

bool have_cuda(const char* what) {
  if (torch::cuda::is_available()) return true;
  std::printf("SKIP %s: no CUDA device visible\n", what);
  return false;
}

void parity(const char* what, double err, double tol) {
  std::printf("PARITY %s: %.3g (tolerance %.0e)\n", what, err, tol);
  CHECK(err < tol);
}

std::shared_ptr<Model> tiny_gpt(int64_t vocab, int64_t T) {
  auto p = test::arch_params("gpt", {{"n_layer", int64_t{2}}, {"d_model", int64_t{64}}, {"n_head", int64_t{4}}});
  torch::manual_seed(3);
  return test::arch_plugin("gpt").create(p, {vocab, T});
}

}  // namespace

TEST_CASE("cuda: gpt forward on the GPU equals the CPU (float32, bfloat16 autocast)", "[cuda]") {
  if (!have_cuda("gpt forward parity")) return;
  const torch::Device gpu(torch::kCUDA, 0);
  auto m = tiny_gpt(97, 64);
  auto tokens = torch::randint(0, 97, {4, 64}, torch::kLong);
  torch::NoGradGuard ng;
  auto ref = m->forward(tokens, nullptr).logits;
  m->to(gpu);
  auto f32 = m->forward(tokens.to(gpu), nullptr).logits.cpu();
  parity("gpt forward float32 (rel)", test::rel_err(f32, ref), 1e-4);
  torch::Tensor bf;
  {
    compat::AutocastGuard amp(c10::DeviceType::CUDA, c10::kBFloat16);
    bf = m->forward(tokens.to(gpu), nullptr).logits.to(torch::kFloat).cpu();
  }
  parity("gpt forward bf16 autocast (rel)", test::rel_err(bf, ref), 2e-2);
}

TEST_CASE("cuda: one training step on the GPU equals the CPU's", "[cuda]") {
  if (!have_cuda("training step parity")) return;
  const torch::Device gpu(torch::kCUDA, 0);
  auto tokens = torch::randint(0, 97, {4, 33}, torch::kLong);
  auto inputs = tokens.narrow(1, 0, 32), targets = tokens.narrow(1, 1, 32);
  auto step = [&](const torch::Device& d) {
    auto m = tiny_gpt(97, 32);
    m->to(d);
    auto loss = lm_loss(m->forward(inputs.to(d), nullptr).logits, targets.to(d), {});
    loss.backward();
    std::vector<torch::Tensor> grads;
    for (auto& p : m->parameters()) grads.push_back(p.grad().flatten().cpu());
    return std::make_pair(loss.item<double>(), torch::cat(grads));
  };
  auto [cpu_loss, cpu_grad] = step(torch::kCPU);
  auto [gpu_loss, gpu_grad] = step(gpu);
  parity("gpt loss float32 (rel)", std::abs(gpu_loss - cpu_loss) / cpu_loss, 1e-4);
  parity("gpt gradients float32 (rel)", test::rel_err(gpu_grad, cpu_grad), 1e-4);
}

TEST_CASE("cuda: scaled_dot_product_attention on the GPU equals the math on the CPU", "[cuda]") {
  if (!have_cuda("attention parity")) return;
  const torch::Device gpu(torch::kCUDA, 0);
  torch::manual_seed(1);
  auto q = torch::randn({2, 8, 40, 32}), k = torch::randn({2, 2, 48, 32}), v = torch::randn({2, 2, 48, 32});
  auto ref = nn::causal_attention(q, k, v, 0.0, false);  // grouped heads, 8 cached keys
  auto got = nn::causal_attention(q.to(gpu), k.to(gpu), v.to(gpu), 0.0, false).cpu();
  parity("causal attention GQA float32 (rel)", test::rel_err(got, ref), 1e-4);
  auto bf = nn::causal_attention(q.to(gpu, torch::kBFloat16), k.to(gpu, torch::kBFloat16), v.to(gpu, torch::kBFloat16),
                                 0.0, false)
                .to(torch::kFloat)
                .cpu();
  parity("causal attention bf16 flash (rel)", test::rel_err(bf, ref), 2e-2);
}

TEST_CASE("cuda: checkpoints keep GPU tensors and the GPU generator", "[cuda]") {
  if (!have_cuda("checkpoint on GPU")) return;
  const torch::Device gpu(torch::kCUDA, 0);
  auto file = std::filesystem::temp_directory_path() / "lmgrid-cuda-ck.lmck";
  auto a = tiny_gpt(50, 16);
  a->to(gpu);
  CheckpointMeta meta;
  meta.config_json = "{}";
  torch::cuda::manual_seed_all(7);
  save_checkpoint(file, meta, *a, nullptr);
  auto r1 = torch::rand({5}, torch::TensorOptions().device(gpu)).cpu();  // the GPU generator goes on
  auto b = tiny_gpt(50, 16);
  b->to(gpu);
  torch::cuda::manual_seed_all(99);
  load_checkpoint(file, *b, nullptr, true, gpu);
  for (size_t i = 0; i < a->parameters().size(); ++i) {
    CHECK(b->parameters()[i].device() == gpu);
    CHECK(torch::equal(a->parameters()[i].cpu(), b->parameters()[i].cpu()));
  }
  auto r2 = torch::rand({5}, torch::TensorOptions().device(gpu)).cpu();
  CHECK(torch::equal(r1, r2));
  std::printf("PARITY checkpoint GPU round trip (weights, CUDA RNG): exact\n");
  std::filesystem::remove(file);
}
