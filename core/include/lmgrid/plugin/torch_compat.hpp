// The one place where lmgrid's code differs by LibTorch version. lmgrid builds against Debian's
// LibTorch 1.13 (libtorch-dev) and LibTorch 2.x from the `torch` wheel (tools/setup.sh,
// LMGRID_TORCH=debian|pip); every `#if` on the version lives here, so the rest of the code
// calls one spelling:
//   LMGRID_TORCH_AT_LEAST(M, m)     the compiled LibTorch is version M.m or later
//   LMGRID_HAVE_SDPA                 torch::scaled_dot_product_attention (2.0; CPU flash 2.1)
//   LMGRID_HAVE_SDPA_GQA             its enable_gqa argument (2.5): no repeat of KV heads
//   autocast_enabled / AutocastGuard mixed precision per device type (the API was renamed in 2.4)
//   cuda_synchronize()               wait for the current CUDA device (a no-op without CUDA)
#pragma once

#include <ATen/autocast_mode.h>
#include <torch/cuda.h>
#include <torch/torch.h>
#include <torch/version.h>

#define LMGRID_TORCH_AT_LEAST(major, minor) \
  (TORCH_VERSION_MAJOR > (major) || (TORCH_VERSION_MAJOR == (major) && TORCH_VERSION_MINOR >= (minor)))

#define LMGRID_HAVE_SDPA LMGRID_TORCH_AT_LEAST(2, 0)
#define LMGRID_HAVE_SDPA_GQA LMGRID_TORCH_AT_LEAST(2, 5)

namespace lmgrid::compat {

inline bool autocast_enabled(c10::DeviceType device) {
#if LMGRID_TORCH_AT_LEAST(2, 4)
  return at::autocast::is_autocast_enabled(device);
#else
  return device == c10::DeviceType::CUDA ? at::autocast::is_enabled() : at::autocast::is_cpu_enabled();
#endif
}

inline c10::ScalarType autocast_dtype(c10::DeviceType device) {
#if LMGRID_TORCH_AT_LEAST(2, 4)
  return at::autocast::get_autocast_dtype(device);
#else
  return device == c10::DeviceType::CUDA ? at::autocast::get_autocast_gpu_dtype()
                                         : at::autocast::get_autocast_cpu_dtype();
#endif
}

inline void set_autocast(c10::DeviceType device, bool enabled, c10::ScalarType dtype) {
#if LMGRID_TORCH_AT_LEAST(2, 4)
  at::autocast::set_autocast_enabled(device, enabled);
  at::autocast::set_autocast_dtype(device, dtype);
#else
  if (device == c10::DeviceType::CUDA) {
    at::autocast::set_enabled(enabled);
    at::autocast::set_autocast_gpu_dtype(dtype);
  } else {
    at::autocast::set_cpu_enabled(enabled);
    at::autocast::set_autocast_cpu_dtype(dtype);
  }
#endif
}

// Mixed precision for the scope: eligible ops (matmuls, convolutions, linear layers) on `device`
// run in `dtype` (bfloat16 or float16) while parameters stay float32; the previous setting is
// restored, and the cast-weight cache cleared, when the scope ends (as torch.autocast does).
// Disabled (a no-op) when dtype is float32 or float64.
class AutocastGuard {
 public:
  AutocastGuard(c10::DeviceType device, c10::ScalarType dtype)
      : device_(device), active_(dtype == c10::kBFloat16 || dtype == c10::kHalf) {
    if (!active_) return;
    prev_enabled_ = autocast_enabled(device_);
    prev_dtype_ = autocast_dtype(device_);
    set_autocast(device_, true, dtype);
    at::autocast::increment_nesting();
  }
  ~AutocastGuard() {
    if (!active_) return;
    if (at::autocast::decrement_nesting() == 0) at::autocast::clear_cache();
    set_autocast(device_, prev_enabled_, prev_dtype_);
  }
  AutocastGuard(const AutocastGuard&) = delete;
  AutocastGuard& operator=(const AutocastGuard&) = delete;

 private:
  c10::DeviceType device_;
  bool active_;
  bool prev_enabled_ = false;
  c10::ScalarType prev_dtype_ = c10::kFloat;
};

inline void cuda_synchronize() {
  if (torch::cuda::is_available()) torch::cuda::synchronize();
}

}  // namespace lmgrid::compat
