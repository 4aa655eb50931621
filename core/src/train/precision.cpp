// Devices, dtypes and loss scaling (see precision.hpp).
#include "lmgrid/train/precision.hpp"

#include <cmath>

#include <fmt/format.h>
#include <torch/cuda.h>

#include "lmgrid/base/errors.hpp"
#include "lmgrid/dist/process_group.hpp"

namespace lmgrid {

torch::Device resolve_device(const std::string& device) {
  const bool have_cuda = torch::cuda::is_available();
  if (device == "cpu" || (device == "auto" && !have_cuda)) return torch::Device(torch::kCPU);
  if (!have_cuda) throw UserError("[train] device = \"" + device + "\" but no CUDA device is visible here");
  const auto count = static_cast<int64_t>(torch::cuda::device_count());
  // Data parallel: `auto` and `cuda` are the GPU of this rank on its machine (LOCAL_RANK).
  if (device == "auto" || device == "cuda") {
    dist::LaunchEnv le = dist::LaunchEnv::from_environment();
    return torch::Device(torch::kCUDA, static_cast<c10::DeviceIndex>(le.distributed() ? le.local_rank % count : 0));
  }
  int64_t index = 0;
  if (device.rfind("cuda:", 0) == 0) index = std::stoll(device.substr(5));
  if (index >= count)
    throw UserError(fmt::format("[train] device = \"{}\" but this machine has {} CUDA device{} (cuda:0..cuda:{})",
                                device, count, count == 1 ? "" : "s", count - 1));
  return torch::Device(torch::kCUDA, static_cast<c10::DeviceIndex>(index));
}

Precision resolve_precision(const std::string& dtype, const torch::Device& device) {
  Precision p;
  if (dtype == "float64") {
    p.param_dtype = c10::kDouble;
  } else if (dtype == "bfloat16") {
    p.autocast_dtype = c10::kBFloat16;
  } else if (dtype == "float16") {
    if (!device.is_cuda())
      throw UserError("[train] dtype = \"float16\" needs a CUDA device (this run trains on " + device.str() +
                      "); use bfloat16 on a CPU");
    p.autocast_dtype = c10::kHalf;
    p.loss_scaling = true;
  } else if (dtype != "float32") {
    throw UserError("[train] dtype '" + dtype + "' is not one of float32, float64, bfloat16, float16");
  }
  return p;
}

LossScaler::LossScaler(bool enabled, double init_scale, double growth, double backoff, int64_t interval)
    : enabled_(enabled), scale_(init_scale), growth_(growth), backoff_(backoff), interval_(interval) {}

torch::Tensor LossScaler::scale_loss(const torch::Tensor& loss) const { return enabled_ ? loss * scale_ : loss; }

bool LossScaler::unscale_and_update(const std::vector<torch::Tensor>& params) {
  if (!enabled_) return true;
  torch::NoGradGuard ng;
  const double inv = 1.0 / scale_;
  torch::Tensor bad;  // one flag on the device, read once (one synchronisation per step)
  for (const auto& p : params) {
    if (!p.grad().defined()) continue;
    p.grad().mul_(inv);
    auto b = torch::isfinite(p.grad()).logical_not().any();
    bad = bad.defined() ? bad.logical_or(b) : b;
  }
  const bool finite = !bad.defined() || !bad.item<bool>();
  if (finite) {
    if (++good_steps_ >= interval_) scale_ *= growth_, good_steps_ = 0;
  } else {
    scale_ *= backoff_, good_steps_ = 0, ++skipped_;
  }
  return finite;
}

nlohmann::json LossScaler::state() const {
  return {{"scale", scale_}, {"good_steps", good_steps_}, {"skipped", skipped_}};
}

void LossScaler::restore(const nlohmann::json& state) {
  if (!state.is_object() || state.empty()) return;
  scale_ = state.value("scale", scale_);
  good_steps_ = state.value("good_steps", good_steps_);
  skipped_ = state.value("skipped", skipped_);
}

}  // namespace lmgrid
