// A run's numeric precision: where it trains, in which dtype, and the loss scaling float16 needs.
//   [train] device = auto | cpu | cuda | cuda:N
//   [train] dtype  = float32      parameters and compute in float32
//                    float64      parameters and compute in float64 (tests, references)
//                    bfloat16     autocast: float32 parameters and optimizer state; matmuls,
//                                 linear layers and attention in bfloat16 (CPU with AVX512-BF16
//                                 or AMX, and GPUs from Ampere on)
//                    float16      autocast in float16 with dynamic loss scaling (CUDA only: the
//                                 range of float16 needs the scaling; bfloat16 does not)
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>
#include <torch/torch.h>

namespace lmgrid {

// The device of `[train] device`: auto is the first GPU when one is visible, else the CPU.
// Throws UserError for cuda or cuda:N when that GPU is not there.
torch::Device resolve_device(const std::string& device);

struct Precision {
  c10::ScalarType param_dtype = c10::kFloat;     // the parameters' (and optimizer state's) dtype
  c10::ScalarType autocast_dtype = c10::kFloat;  // kBFloat16 / kHalf: autocast on; kFloat: off
  bool loss_scaling = false;                     // float16
  bool autocast() const { return autocast_dtype != c10::kFloat; }
};
// Throws UserError for float16 on a CPU.
Precision resolve_precision(const std::string& dtype, const torch::Device& device);

// Dynamic loss scaling (as torch.amp.GradScaler): the loss is multiplied by `scale` before the
// backward pass so that small float16 gradients do not flush to zero; the gradients are divided
// by it again before clipping and the step. A step whose gradients hold an inf or NaN is skipped
// and the scale halves; after `interval` finite steps in a row it doubles. Disabled: scale 1,
// nothing skipped. Its state goes into checkpoints, so a resumed run scales as it would have.
class LossScaler {
 public:
  explicit LossScaler(bool enabled, double init_scale = 65536.0, double growth = 2.0, double backoff = 0.5,
                      int64_t interval = 2000);
  bool enabled() const { return enabled_; }
  double scale() const { return enabled_ ? scale_ : 1.0; }
  // loss x scale (the loss itself when disabled).
  torch::Tensor scale_loss(const torch::Tensor& loss) const;
  // Divides the gradients by the scale, then updates it. False: some gradient is not finite, so
  // skip this optimizer step (always true when disabled).
  bool unscale_and_update(const std::vector<torch::Tensor>& params);
  int64_t skipped() const { return skipped_; }

  nlohmann::json state() const;
  void restore(const nlohmann::json& state);  // what state() gave; an empty object keeps the defaults

 private:
  bool enabled_;
  double scale_, growth_, backoff_;
  int64_t interval_, good_steps_ = 0, skipped_ = 0;
};

}  // namespace lmgrid
