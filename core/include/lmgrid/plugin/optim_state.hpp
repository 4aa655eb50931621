// Checkpoint state for optimizer plugins written from their equations (optim/sgd, lion, muon):
// the current learning rate(s), a step count where the update needs one, and per-parameter
// buffers. Buffers are read back in place with their shapes checked, so load(save()) restores the
// optimizer bit for bit and a checkpoint of another model is refused by name. Header-only.
#pragma once

#include <stdexcept>
#include <string>
#include <vector>

#include <torch/torch.h>

namespace lmgrid::optim_state {

// "lr" (float64): one entry per learning rate the optimizer keeps.
inline void write_lrs(torch::serialize::OutputArchive& a, const std::vector<double>& lrs) {
  a.write("lr", torch::tensor(lrs, torch::kFloat64));
}

inline void read_lrs(torch::serialize::InputArchive& a, const std::vector<double*>& lrs) {
  torch::Tensor t;
  a.read("lr", t);
  t = t.flatten();
  if (t.numel() != static_cast<int64_t>(lrs.size()))
    throw std::runtime_error("checkpoint holds " + std::to_string(t.numel()) + " learning rates, expected " +
                             std::to_string(lrs.size()));
  for (size_t i = 0; i < lrs.size(); ++i) *lrs[i] = t[static_cast<int64_t>(i)].item<double>();
}

// "step" (int64), for optimizers whose update depends on it (bias correction).
inline void write_step(torch::serialize::OutputArchive& a, int64_t step) {
  a.write("step", torch::tensor(step, torch::kLong));
}

inline void read_step(torch::serialize::InputArchive& a, int64_t& step) {
  torch::Tensor t;
  a.read("step", t);
  step = t.item<int64_t>();
}

// Reads `key` into the live buffer `dst` (same shape, copied in place). `who` names the
// optimizer and `param` the parameter in the error.
inline void read_buffer(torch::serialize::InputArchive& a, const std::string& key, torch::Tensor& dst,
                        const std::string& who, const std::string& param) {
  torch::NoGradGuard ng;
  torch::Tensor src;
  a.read(key, src);
  if (!src.sizes().equals(dst.sizes()))
    throw std::runtime_error(who + ": checkpoint state " + key + " of '" + param + "' has another shape");
  dst.copy_(src);
}

}  // namespace lmgrid::optim_state
