// The [train] table's parameters and their typed form (see train_settings.hpp).
#include "lmgrid/config/train_settings.hpp"

#include <algorithm>

#include "lmgrid/base/errors.hpp"

namespace lmgrid {

const std::vector<ParamSpec>& trainer_params() {
  static const std::vector<ParamSpec> specs{
      // Upper bounds keep a typo from passing validation and failing (or allocating) later.
      int_param("steps", 1000, "optimizer steps to train", 1, 1e12),
      int_param("batch_size", 12, "sequences per micro-batch", 1, 1 << 20),
      int_param("grad_accum", 1, "micro-batches accumulated per optimizer step", 1, 1 << 20),
      real_param("clip", 1.0, "clip the global gradient norm to this (0 = off)", 0.0),
      string_param("schedule", "cosine", "learning-rate schedule", {"constant", "cosine", "linear", "wsd"}),
      int_param("warmup", 0, "linear warm-up steps", 0, 1e12),
      real_param("lr_min", 0.0, "learning rate at the end of the decay (absolute)", 0.0),
      int_param("decay_steps", 0, "step at which decay reaches lr_min (0 = steps)", 0, 1e12),
      real_param("decay_fraction", 0.2, "wsd: the last fraction of decay_steps spent decaying to lr_min", 0.0, 1.0),
      int_param("eval_every", 200, "evaluate on the val split every N steps (and at the end)", 1, 1e12),
      int_param("eval_batches", 20, "fixed val batches per evaluation", 1, 1 << 20),
      int_param("checkpoint_every", 200, "write a checkpoint every N steps (and at the end)", 1, 1e12),
      int_param("keep_checkpoints", 2, "checkpoints kept per run", 1, 1 << 20),
      int_param("early_stop_patience", 0, "stop after N evaluations without improvement (0 = off)", 0, 1e12),
      real_param("early_stop_min_delta", 0.0, "improvement smaller than this does not count", 0.0),
      int_param("log_every", 10, "record train metrics every N steps", 1, 1e12),
      string_param("device", "auto",
                   "where to train: auto (the first GPU when one is visible, else cpu), cpu, cuda, cuda:N"),
      string_param("dtype", "float32",
                   "precision: float32; float64 (parameters in double); bfloat16 or float16 (autocast: float32 "
                   "parameters, matmuls in half precision; float16 with dynamic loss scaling, CUDA only)",
                   {"float32", "float64", "bfloat16", "float16"}),
  };
  return specs;
}

TrainSettings TrainSettings::from(const Params& p) {
  TrainSettings s;
  s.steps = p.i("steps"), s.batch_size = p.i("batch_size"), s.grad_accum = p.i("grad_accum");
  s.warmup = p.i("warmup"), s.decay_steps = p.i("decay_steps");
  s.eval_every = p.i("eval_every"), s.eval_batches = p.i("eval_batches");
  s.checkpoint_every = p.i("checkpoint_every"), s.keep_checkpoints = p.i("keep_checkpoints");
  s.early_stop_patience = p.i("early_stop_patience"), s.log_every = p.i("log_every");
  s.clip = p.f("clip"), s.lr_min = p.f("lr_min"), s.decay_fraction = p.f("decay_fraction");
  s.early_stop_min_delta = p.f("early_stop_min_delta");
  s.schedule = p.s("schedule"), s.device = p.s("device"), s.dtype = p.s("dtype");
  return s;
}

void check_train_device(const std::string& device) {
  if (device == "auto" || device == "cpu" || device == "cuda") return;
  const std::string prefix = "cuda:";
  bool digits = device.size() > prefix.size() && device.size() <= prefix.size() + 3 && device.rfind(prefix, 0) == 0 &&
                std::all_of(device.begin() + prefix.size(), device.end(), [](char c) { return c >= '0' && c <= '9'; });
  if (!digits) throw UserError("device '" + device + "' is not one of auto, cpu, cuda, cuda:N");
}

}  // namespace lmgrid
