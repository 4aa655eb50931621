// The trainer: generic over plugins. Builds tokenizer -> dataset -> model -> optimizer for one
// run config, then loops batches, forward, masked loss, backward, accumulation, clipping,
// optimizer step and LR schedule; evaluates, checkpoints, records metrics, stops early.
#pragma once

#include <atomic>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "lmgrid/config/run_config.hpp"
#include "lmgrid/plugin/plugin.hpp"
#include "lmgrid/plugin/registry.hpp"
#include "lmgrid/store/store.hpp"
#include "lmgrid/config/train_settings.hpp"
#include "lmgrid/train/precision.hpp"

namespace lmgrid {

namespace dist {
class Group;
}

// Learning rate at `step` (0-based) for schedule "constant" | "cosine" | "linear" | "wsd", nanoGPT's
// get_lr for all: warm-up lr * (step + 1) / (warmup + 1) for step < warmup; then constant
// stays at lr, cosine and linear decay to `lr_min` at `decay_steps` and stay there after; wsd
// (warm-up, stable, decay) stays at lr until step max(warmup, decay_steps - decay_fraction * decay_steps),
// then decays linearly to `lr_min` at `decay_steps` and stays there.
double scheduled_lr(const std::string& schedule, int64_t step, double lr, double lr_min, int64_t warmup,
                    int64_t decay_steps, double decay_fraction = 0.2);

// Everything one run needs, built from its config. The objects hold their plugin libraries.
struct RunObjects {
  torch::Device device{torch::kCPU};  // [train] device, resolved
  Precision precision;                // [train] dtype, resolved
  std::shared_ptr<Tokenizer> tokenizer;
  std::shared_ptr<Dataset> dataset;  // null when built without data (sampling)
  std::shared_ptr<Model> model;
  std::shared_ptr<Optimizer> optimizer;  // null when built without data
  std::vector<PluginRow> plugins;        // kind, name, version, file sha256
  std::vector<std::string> plugin_ids;   // "arch/gpt", ...
};

// Builds tokenizer, dataset (fits the tokenizer), model and optimizer. Seeds torch first.
RunObjects build_run(const RunConfig& cfg, const Registry& registry, bool with_data,
                     const std::string& tokenizer_state = "");

// Masked mean cross-entropy of logits (B,T,V) against targets (B,T); mask may be undefined.
torch::Tensor lm_loss(const torch::Tensor& logits, const torch::Tensor& targets, const torch::Tensor& mask);

// Parameters split into decay / no-decay for optimizers (dim >= 2 and not in no_weight_decay()).
std::vector<NamedParameter> named_parameters_for_optim(Model& model);

// Counts parameters of the model a config describes (tokenizer fitted on the data when the
// vocabulary depends on it). Used by `lmgrid grid`.
int64_t count_parameters(const RunConfig& cfg, const Registry& registry);

enum class RunOutcome { done, diverged, interrupted };

struct TrainHooks {
  std::atomic<bool>* stop = nullptr;  // set on SIGINT/SIGTERM: checkpoint and return interrupted
  bool progress_bar = false;          // redraw one line on a terminal; plain lines otherwise
  std::string label;                  // prefix of progress lines, e.g. "run 3"
  double peak_flops = 0;              // machine peak FLOP/s for MFU (0 = not recorded)
  // The peak of a GPU run instead (device, autocast dtype or float32) -> FLOP/s; unset: no MFU.
  std::function<double(const torch::Device&, c10::ScalarType)> gpu_peak_flops;
  // Data parallel: this process's rank group (null: one process). The batch_size of [train] is
  // the global batch, split over the ranks; results equal one process's up to float rounding.
  dist::Group* group = nullptr;
};

// Trains run `run_id` to the end (or resumes it from its last valid checkpoint).
// Records metrics and checkpoints in the store; returns how it ended. Throws on errors.
// Data parallel: rank 0 is this call (with hooks.group); the other ranks call train_follower.
RunOutcome train_run(Store& store, int64_t run_id, const Registry& registry, const TrainHooks& hooks);

// A data-parallel rank > 0: trains `row` (id, config_hash, config: as rank 0 published them) in
// lockstep with rank 0 and writes nothing; rank 0 records the run.
RunOutcome train_follower(const RunRow& row, const Registry& registry, const TrainHooks& hooks);

}  // namespace lmgrid
