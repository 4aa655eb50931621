// The [train] table: its declared parameters (validated like a plugin's) and the typed settings
// the trainer runs on. Part of the config layer: experiments validate [train] without the trainer.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "lmgrid/base/params.hpp"

namespace lmgrid {

// Parameters of the [train] table, with defaults, bounds and docs (`lmgrid plugins show` style).
const std::vector<ParamSpec>& trainer_params();

// The validated [train] table as typed fields: read once when a run starts, so the training
// loop does no string look-ups. Field names are the TOML keys.
struct TrainSettings {
  int64_t steps = 0, batch_size = 0, grad_accum = 0, warmup = 0, decay_steps = 0;  // decay_steps 0 -> steps
  int64_t eval_every = 0, eval_batches = 0, checkpoint_every = 0, keep_checkpoints = 0;
  int64_t early_stop_patience = 0, log_every = 0;
  double clip = 0, lr_min = 0, decay_fraction = 0, early_stop_min_delta = 0;
  std::string schedule, device, dtype;

  // From a Params table validated against trainer_params() (every key present and typed).
  static TrainSettings from(const Params& p);
  // The step at which decay reaches lr_min: decay_steps, or steps when it is 0.
  int64_t decay_end() const { return decay_steps > 0 ? decay_steps : steps; }
};

// Throws UserError unless `device` is auto, cpu, cuda or cuda:N (whether that GPU exists is
// known only where the run trains).
void check_train_device(const std::string& device);

}  // namespace lmgrid
