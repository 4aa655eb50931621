// The conformance check of an architecture plugin (`lmgrid plugins check`, and the all-plugins
// sweep): the same checks for every arch, in the tree or dropped in, on one config.
//
//   forward       logits (B,T,V) float32; aux_loss, when given, a finite scalar
//   causal        changing token j changes no logit at a position before j (float64, three j)
//   causal grad   the gradient of the logits before j w.r.t. the embeddings of tokens at j and
//                 later is zero (float64; needs an Embedding table of >= V rows, else n/a)
//   deterministic the same seed builds the same model, which gives the same logits twice
//   decode        where new_decode_state() gives a state: token by token from the start, and
//                 one token at a time after a prefill, equal the full forward (float64)
//   state halves  where the model has state: two calls over the halves equal one call
//   checkpoint    save, load into a model built with another seed: identical logits
//   params        declared_parameter_count(), where declared, equals parameter_count()
//   flops         flops_per_token() within a factor 2 of 6 N + 12 L d T (the attention term
//                 where the config has n_layer and d_model)
// Each check is pass, fail (with the measured error against its tolerance) or not applicable.
// Not here: speed, training quality, numerical agreement with an external reference.
//
// Letters: B batch, T tokens, V vocabulary.
#pragma once

#include <cmath>
#include <filesystem>
#include <string>
#include <vector>

#include "lmgrid/plugin/plugin.hpp"

namespace lmgrid {

enum class CheckStatus { pass, fail, not_applicable };
const char* check_status_name(CheckStatus s);  // "pass", "FAIL", "n/a"

struct CheckResult {
  std::string name;
  CheckStatus status = CheckStatus::not_applicable;
  double error = NAN;      // the measured error (relative unless the detail says otherwise)
  double tolerance = NAN;  // pass iff error <= tolerance
  std::string detail;
};

struct ConformanceOptions {
  int64_t vocab_size = 40;  // ModelContext.vocab_size of the models built
  int64_t seq_len = 16;     // T, also ModelContext.seq_len
  int64_t batch = 2;        // B
  uint64_t seed = 0;
  std::filesystem::path scratch;  // folder for the checkpoint file (default: the temp folder)
};

// Runs every check on models built by `plugin` from `params` (validated, every key present).
// Exceptions inside a check make that check fail with the message; nothing is thrown.
std::vector<CheckResult> check_arch(const ArchPlugin& plugin, const Params& params,
                                    const ConformanceOptions& options = {});

// True iff no check failed.
bool all_passed(const std::vector<CheckResult>& results);

}  // namespace lmgrid
