// Exports a run's newest checkpoint as files Python users load (`lmgrid export`).
//
// format "hf":
//   arch/gpt   -> config.json + model.safetensors of transformers' GPT2LMHeadModel: fused c_attn
//                 kept (q|k|v rows), every Linear transposed into GPT-2's Conv1D (in, out) layout,
//                 zero biases where the run had bias = false, activation "gelu" (lmgrid's GELU is
//                 the exact erf form), layer_norm_epsilon 1e-5, n_positions = the block size, the
//                 head tied to wte.
//   arch/llama -> config.json + model.safetensors of LlamaForCausalLM: q/k/v/o, gate (w1), up (w3),
//                 down (w2); q_proj and k_proj rows permuted per head from lmgrid's RoPE on adjacent
//                 pairs (2i, 2i+1) to transformers' rotate_half pairs (i, i + D/2); shared_norm
//                 writes the block's one gain as both input_layernorm and post_attention_layernorm.
//   others     -> the "raw" layout below.
// format "raw": model.safetensors with every named parameter and buffer under lmgrid's names, and
//   lmgrid_config.json (arch, plugin version, model params, tokenizer plugin/params/state, run id,
//   step, tensor names/dtypes/shapes).
// Both: tokenizer files for bpe runs (vocab.json + merges.txt in GPT-2's byte-to-unicode alphabet,
// tokenizer_config.json for GPT2Tokenizer) and sentencepiece runs (tokenizer.model, the run's own
// serialized model, and tokenizer_config.json for LlamaTokenizer). Padded vocabulary rows (never
// scored by lmgrid) are cut, so vocab_size is the tokenizer's and the logits are lmgrid's.
//
// The mappings read the architecture's parameters from the run's stored config and check every
// tensor name and shape they expect: a config key or tensor they do not know (a newer plugin) is
// refused (UserError naming it; --format raw still works), never exported approximately.
//
// The folder is written as a hidden sibling and renamed into place, so a failure leaves no
// half-written export; a non-empty folder is replaced only with `force`.
//
// Not here: other HF classes, quantised or half-precision export, import from HF.
#pragma once

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "lmgrid/plugin/registry.hpp"

namespace lmgrid {

struct ExportOptions {
  std::filesystem::path db;  // results database
  int64_t run_id = 0;
  std::string format = "hf";  // "hf" or "raw"
  std::filesystem::path out;  // folder to create (or replace with force)
  bool force = false;
  // When set: lmgrid_reference.safetensors with "input_ids" (I64, (1, T)) = this text encoded by
  // the run's tokenizer and "logits" (F32, (1, T, V)) = the lmgrid model's logits on them, for
  // checking a loader against lmgrid (tests/cli/test_export.sh).
  std::optional<std::string> reference_text;
};

struct ExportResult {
  std::string layout;              // "GPT2LMHeadModel", "LlamaForCausalLM" or "raw"
  int64_t step = 0;                // of the checkpoint exported
  std::vector<std::string> files;  // written, relative to out
  std::vector<std::string> notes;  // what the user should know (dropped training-only options, ...)
};

// Throws UserError for bad input: unknown run or format, no checkpoint, a non-empty `out`
// without force, a config the format cannot express exactly.
ExportResult export_run(const ExportOptions& options, const Registry& registry);

}  // namespace lmgrid
