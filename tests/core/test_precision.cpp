// Devices, dtypes, autocast and float16 loss scaling (lmgrid/train/precision.hpp,
// lmgrid/plugin/torch_compat.hpp). CPU here; the CUDA paths run in tools/gpu_check.sh.
#include <catch2/catch.hpp>

#include <cmath>
#include <limits>

#include <lmgrid/base/errors.hpp>
#include <lmgrid/config/train_settings.hpp>
#include <lmgrid/plugin/torch_compat.hpp>
#include <lmgrid/train/precision.hpp>

using namespace lmgrid;

TEST_CASE("device names: auto/cpu/cuda/cuda:N accepted, others refused", "[unit][precision]") {
  for (const char* ok : {"auto", "cpu", "cuda", "cuda:0", "cuda:12"}) CHECK_NOTHROW(check_train_device(ok));
  for (const char* bad : {"gpu", "cuda:", "cuda:x", "CUDA", "cuda:1:2", "cpu:0", ""})
    CHECK_THROWS_WITH(check_train_device(bad), Catch::Contains("is not one of auto, cpu, cuda, cuda:N"));
  CHECK(resolve_device("cpu").is_cpu());
  if (!torch::cuda::is_available()) {
    CHECK(resolve_device("auto").is_cpu());
    CHECK_THROWS_WITH(resolve_device("cuda"), Catch::Contains("no CUDA device is visible"));
    CHECK_THROWS_WITH(resolve_device("cuda:1"), Catch::Contains("no CUDA device is visible"));
  } else {
    CHECK(resolve_device("auto") == torch::Device(torch::kCUDA, 0));
    auto n = static_cast<int64_t>(torch::cuda::device_count());
    CHECK_THROWS_WITH(resolve_device("cuda:" + std::to_string(n)), Catch::Contains("CUDA device"));
  }
}

TEST_CASE("dtypes: parameters and autocast per [train] dtype", "[unit][precision]") {
  const torch::Device cpu(torch::kCPU);
  auto f32 = resolve_precision("float32", cpu);
  CHECK(f32.param_dtype == c10::kFloat);
  CHECK_FALSE(f32.autocast());
  auto f64 = resolve_precision("float64", cpu);
  CHECK(f64.param_dtype == c10::kDouble);
  CHECK_FALSE(f64.autocast());
  auto bf = resolve_precision("bfloat16", cpu);
  CHECK(bf.param_dtype == c10::kFloat);  // float32 master weights
  CHECK(bf.autocast_dtype == c10::kBFloat16);
  CHECK_FALSE(bf.loss_scaling);
  CHECK_THROWS_WITH(resolve_precision("float16", cpu), Catch::Contains("needs a CUDA device"));
  auto h = resolve_precision("float16", torch::Device(torch::kCUDA, 0));  // resolving needs no GPU
  CHECK(h.autocast_dtype == c10::kHalf);
  CHECK(h.loss_scaling);
}

TEST_CASE("AutocastGuard: bfloat16 matmuls on the CPU inside, float32 after, nesting restored", "[unit][precision]") {
  torch::manual_seed(0);
  torch::nn::Linear lin(16, 8);
  auto x = torch::randn({4, 16});
  CHECK_FALSE(compat::autocast_enabled(c10::DeviceType::CPU));
  torch::Tensor inside;
  {
    compat::AutocastGuard amp(c10::DeviceType::CPU, c10::kBFloat16);
    CHECK(compat::autocast_enabled(c10::DeviceType::CPU));
    inside = lin(x);
    CHECK(inside.scalar_type() == c10::kBFloat16);
    {
      compat::AutocastGuard off(c10::DeviceType::CPU, c10::kFloat);  // float32: a no-op guard
      CHECK(compat::autocast_enabled(c10::DeviceType::CPU));
    }
    CHECK(compat::autocast_enabled(c10::DeviceType::CPU));
  }
  CHECK_FALSE(compat::autocast_enabled(c10::DeviceType::CPU));
  auto outside = lin(x);
  CHECK(outside.scalar_type() == c10::kFloat);
  // bfloat16 keeps 8 bits of mantissa: relative error of a 16-term dot product well under 2e-2.
  double rel = ((inside.to(c10::kFloat) - outside).abs().max() / outside.abs().max()).item<double>();
  CHECK(rel < 2e-2);
  CHECK(rel > 0);  // it really ran in bfloat16
}

TEST_CASE("LossScaler: scales the loss, unscales gradients, skips non-finite steps, grows", "[unit][precision]") {
  auto w = torch::zeros({3}, torch::requires_grad());
  std::vector<torch::Tensor> params{w};
  LossScaler off(false);
  CHECK(off.scale() == 1.0);
  CHECK(off.unscale_and_update(params));  // no gradient at all: nothing to check

  LossScaler s(true, 1024.0, 2.0, 0.5, 3);
  auto loss = (w * torch::tensor({1.0, 2.0, 3.0})).sum();
  CHECK(s.scale_loss(loss).item<double>() == Approx(0.0));
  s.scale_loss(loss).backward();
  CHECK(w.grad()[2].item<double>() == Approx(3.0 * 1024));
  CHECK(s.unscale_and_update(params));
  CHECK(torch::allclose(w.grad(), torch::tensor({1.0f, 2.0f, 3.0f})));  // the true gradient again
  CHECK(s.scale() == 1024.0);

  w.mutable_grad().fill_(std::numeric_limits<float>::infinity());
  CHECK_FALSE(s.unscale_and_update(params));  // overflow: skip the step, back off
  CHECK(s.scale() == 512.0);
  CHECK(s.skipped() == 1);
  w.mutable_grad()[0] = std::nanf("");
  CHECK_FALSE(s.unscale_and_update(params));
  CHECK(s.scale() == 256.0);

  for (int i = 0; i < 3; ++i) {  // three finite steps in a row: the scale doubles
    w.mutable_grad().fill_(1.0);
    CHECK(s.unscale_and_update(params));
  }
  CHECK(s.scale() == 512.0);

  LossScaler back(true);
  back.restore(s.state());  // checkpoint round trip
  CHECK(back.scale() == 512.0);
  CHECK(back.skipped() == 2);
  CHECK(back.state() == s.state());
}
