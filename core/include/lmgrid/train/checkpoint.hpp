// Checkpoints: self-describing, checksummed, written atomically.
//
// File layout:  "LMGRIDCK" | u32 format version | u64 header length | header JSON | payload
// The header holds step, tokens, elapsed time, data cursor, the resolved config, plugin names,
// the tokenizer state, payload length and payload sha256. The payload is a LibTorch archive
// with "model", "optim" and "rng". A checkpoint whose magic, version, length or checksum does
// not match throws CheckpointError and is never loaded.
#pragma once

#include <cmath>
#include <cstdint>
#include <filesystem>
#include <string>

#include <nlohmann/json.hpp>

#include "lmgrid/plugin/plugin.hpp"

namespace lmgrid {

inline constexpr uint32_t kCheckpointVersion = 1;

struct CheckpointMeta {
  int64_t step = 0;         // optimizer steps completed
  int64_t tokens = 0;       // training tokens seen
  double elapsed_s = 0;     // training wall time so far
  int64_t data_cursor = 0;  // index of the next training batch
  double best_val = 0;      // best val loss so far (NaN if none)
  int64_t evals_since_best = 0;
  // What the run's summaries need when it resumes from its final checkpoint (NaN / 0 in
  // checkpoints written before these fields existed).
  double train_time_s = 0;  // training time so far (evaluation and checkpoints excluded)
  double last_train_loss = NAN;
  double last_val = NAN;    // val loss of the newest evaluation
  std::string config_json;  // canonical run config
  std::string tokenizer_state;
  nlohmann::json extra;  // free-form (plugin names, versions)
};

// Writes model + optimizer (may be null) + torch RNG states (CPU, every visible GPU) + meta to
// `file` atomically.
// Returns the file's sha256.
std::string save_checkpoint(const std::filesystem::path& file, const CheckpointMeta& meta, Model& model,
                            const Optimizer* optimizer);
// Reads and verifies only the header (no payload load). Throws CheckpointError.
CheckpointMeta read_checkpoint_meta(const std::filesystem::path& file);
// Verifies, then loads state into model (and optimizer, RNG when given), its tensors placed on
// `device` (the model's). Throws CheckpointError.
CheckpointMeta load_checkpoint(const std::filesystem::path& file, Model& model, Optimizer* optimizer, bool restore_rng,
                               const torch::Device& device = torch::kCPU);

}  // namespace lmgrid
