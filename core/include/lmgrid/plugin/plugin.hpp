// lmgrid plugin ABI, version 4 (3: Tokenizer::bos_id/eos_id, the document markers; 4: Batch's
// answer_ids and tags, for accuracy by answer and by slice).
//
// This header is the contract between the host (`lmgrid`) and every plugin library. A plugin
// is a shared library that exports exactly one symbol through Boost.DLL's alias mechanism:
//
//     LMGRID_PLUGIN(MyPluginClass)   // at namespace scope in one .cpp of the plugin
//
// The exported function returns a PluginEntry, a plain struct whose first member is the
// BuildStamp the plugin was compiled with. The host compares the stamp with its own BEFORE it
// calls anything else in the library; a mismatch (ABI version, LibTorch version, C++ ABI flag)
// is refused with a message that names both sides. Only then does the host call
// `entry->create()` to get the Plugin object.
//
// Kinds: arch (a Model), data (a Dataset), tokenizer (a Tokenizer), optim (an Optimizer).
// Each plugin declares its parameters (ParamSpec: name, type, default, range, doc) and a tiny
// config used by the all-plugins test sweep. The host validates user configs against the specs
// and hands `create` a Params table with every declared key present.
//
// Lifetime rules:
//  * The host never unloads a plugin library (LibTorch registers global state: pytorch#61111).
//  * Every object a plugin returns is wrapped by the host so that it also holds a reference to
//    its library; objects may therefore outlive the registry that loaded them.
//  * Exceptions thrown by plugin code are caught at the boundary by the host and re-thrown as
//    PluginError naming the plugin ("plugin arch/gpt: ...").
//
// Compatibility: any change to a class or struct in this header bumps kPluginAbiVersion.
#pragma once

#include <cstdint>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include <torch/torch.h>
#include <torch/version.h>

#include "lmgrid/base/params.hpp"

namespace lmgrid {

inline constexpr uint32_t kPluginAbiVersion = 4;

// ---------------------------------------------------------------------------------------------
// Build stamp: plain data, layout frozen, compared before anything else is called.
// ---------------------------------------------------------------------------------------------
struct BuildStamp {
  uint32_t struct_size;    // sizeof(BuildStamp) in the plugin's build
  uint32_t abi_version;    // kPluginAbiVersion in the plugin's build
  char torch_version[32];  // TORCH_VERSION, e.g. "1.13.0"
  int32_t cxx11_abi;       // _GLIBCXX_USE_CXX11_ABI (0 or 1), -1 if unknown
  char compiler[64];       // __VERSION__, informational only
};

// The stamp of the translation unit that includes this header (host or plugin).
inline BuildStamp current_build_stamp() {
  BuildStamp s{};
  s.struct_size = sizeof(BuildStamp);
  s.abi_version = kPluginAbiVersion;
  std::strncpy(s.torch_version, TORCH_VERSION, sizeof(s.torch_version) - 1);
#ifdef _GLIBCXX_USE_CXX11_ABI
  s.cxx11_abi = _GLIBCXX_USE_CXX11_ABI;
#else
  s.cxx11_abi = -1;
#endif
#ifdef __VERSION__
  std::strncpy(s.compiler, __VERSION__, sizeof(s.compiler) - 1);
#endif
  return s;
}

enum class PluginKind { arch, data, tokenizer, optim };
const char* kind_name(PluginKind k);  // "arch", "data", ...

// ---------------------------------------------------------------------------------------------
// Tokenizer
// ---------------------------------------------------------------------------------------------
class Tokenizer {
 public:
  virtual ~Tokenizer() = default;
  // Learns a vocabulary from training text. Tokenizers with a fixed vocabulary ignore it.
  // The dataset calls it once, with the train split, before encoding anything.
  virtual void fit(const std::string& text) {}
  // Text -> token ids in [0, vocab_size()).
  virtual std::vector<int64_t> encode(const std::string& text) const = 0;
  // Token ids -> text. Unknown ids are an error.
  virtual std::string decode(const std::vector<int64_t>& ids) const = 0;
  virtual int64_t vocab_size() const = 0;
  // Serialised learned state (e.g. the char vocabulary); saved with the run and its checkpoints.
  virtual std::string save() const = 0;
  // Restores what save() produced; afterwards encode/decode behave exactly as before.
  virtual void load(const std::string& state) = 0;
  // Document markers, or -1 when the tokenizer has none. Datasets join documents with eos_id()
  // (`join = "eos"`), and `lmgrid data tokenize` starts every document with bos_id() as llm.c
  // (GPT-2: <|endoftext|>) and LM2 (Llama-3: <|begin_of_text|>) do. Valid after fit() or load().
  virtual int64_t bos_id() const { return -1; }
  virtual int64_t eos_id() const { return -1; }
};

// The convention for tokenizers whose specials are strings (byte, bpe): EOS is "<|endoftext|>",
// else "</s>", else "<eos>"; BOS is "<|begin_of_text|>", else "<s>", else "<bos>", else the EOS
// (GPT-2 starts documents with <|endoftext|>). Returns the index into `specials`, or -1.
inline int64_t document_marker_index(const std::vector<std::string>& specials, bool bos) {
  auto find = [&](std::initializer_list<const char*> names) -> int64_t {
    for (const char* n : names)
      for (size_t k = 0; k < specials.size(); ++k)
        if (specials[k] == n) return static_cast<int64_t>(k);
    return -1;
  };
  int64_t eos = find({"<|endoftext|>", "</s>", "<eos>"});
  if (!bos) return eos;
  int64_t b = find({"<|begin_of_text|>", "<s>", "<bos>"});
  return b >= 0 ? b : eos;
}

// ---------------------------------------------------------------------------------------------
// Dataset
// ---------------------------------------------------------------------------------------------
enum class Split { train, val, test };
const char* split_name(Split s);

// One batch. inputs and targets are int64 (B, T); loss_mask is float (B, T) with 1 where the
// target is scored, or undefined when every position counts.
//
// Tasks with answers (MQAR, bAbI) may add, on evaluation batches:
//   answer_ids  int64 (B, T): the scored positions of a row that hold the same id >= 0 form one
//               answer, correct when the model's argmax is right at every one of them (exact
//               match of a multi-token answer; -1 elsewhere). Undefined: every scored position
//               is an answer of its own (token accuracy).
//   tags        one string per row naming the slices it belongs to, "key=value" pairs separated
//               by spaces ("seq_len=256 num_kv_pairs=16"); empty: no slices. The trainer records
//               accuracy and loss per slice (val/accuracy/num_kv_pairs=16).
struct Batch {
  torch::Tensor inputs;
  torch::Tensor targets;
  torch::Tensor loss_mask;
  torch::Tensor answer_ids;
  std::vector<std::string> tags;
};

// Datasets are deterministic functions of (seed, index): the data cursor the trainer saves in
// checkpoints is just the index of the next training batch. This makes resume exact.
class Dataset {
 public:
  virtual ~Dataset() = default;
  // Training batch number `index` (0, 1, 2, ...). Same seed and index -> same batch.
  virtual Batch train_batch(int64_t index, int64_t batch_size) = 0;
  // Number of fixed evaluation batches available for `split` (0 if the split is empty).
  virtual int64_t eval_batch_count(Split split, int64_t batch_size) const = 0;
  // Evaluation batch `index` of `split`: fixed windows, independent of the seed.
  virtual Batch eval_batch(Split split, int64_t index, int64_t batch_size) = 0;
  // Tokens in the training split (for epochs and reports).
  virtual int64_t train_tokens() const = 0;
};

// ---------------------------------------------------------------------------------------------
// Model (architecture)
// ---------------------------------------------------------------------------------------------
struct ModelOutput {
  torch::Tensor logits;    // (B, T, V) float
  torch::Tensor aux_loss;  // scalar added to the loss, or undefined
};

// Opaque per-sequence state for incremental decoding (KV cache, recurrent memory ...).
class DecodeState {
 public:
  virtual ~DecodeState() = default;
};

struct ModelContext {
  int64_t vocab_size = 0;  // from the tokenizer
  int64_t seq_len = 0;     // training context length from the dataset config
};

class Model : public torch::nn::Module {
 public:
  // Logits for tokens (B, T) int64. With state == nullptr the sequence starts fresh. With a
  // state from new_decode_state(), the tokens continue that state and the state is advanced
  // (prefill with T > 1, one token at a time with T == 1).
  virtual ModelOutput forward(const torch::Tensor& tokens, DecodeState* state) = 0;
  // Training FLOPs (forward + backward) per token, for MFU. Default: 6 x parameters.
  virtual double flops_per_token() const;
  // Elements of recurrent/decoding state per sequence at full context (0 = none). Optional.
  virtual int64_t state_size() const { return 0; }
  // Optional: a fresh decoding state for `batch` sequences, or nullptr when the model does not
  // decode incrementally (the host then re-runs the window of the last max_context() tokens).
  virtual std::unique_ptr<DecodeState> new_decode_state(int64_t batch) { return nullptr; }
  // Longest context the model accepts in one forward (0 = unlimited).
  virtual int64_t max_context() const { return 0; }
  // Parameter names that must not get weight decay beyond the default rule (dim < 2). Optional.
  virtual std::vector<std::string> no_weight_decay() const { return {}; }
  // Optional: the parameter count the architecture's equations give for its config (0 = not
  // declared). `lmgrid plugins check` compares it with parameter_count().
  virtual int64_t declared_parameter_count() const { return 0; }

  int64_t parameter_count() const;
  // Parameters held by torch::nn::Embedding modules (token and position tables; a tied head
  // counts once, here). parameter_count() minus this is the "non-embedding" count.
  int64_t embedding_parameter_count() const;
};

// ---------------------------------------------------------------------------------------------
// Optimizer
// ---------------------------------------------------------------------------------------------
struct NamedParameter {
  std::string name;
  torch::Tensor tensor;
  bool decay = true;  // false for biases, norms, 1-d tensors and the model's no_weight_decay()
};

class Optimizer {
 public:
  virtual ~Optimizer() = default;
  virtual void zero_grad() = 0;
  virtual void step() = 0;
  // The trainer's schedule sets the absolute learning rate before every step.
  virtual void set_lr(double lr) = 0;
  // The configured peak learning rate (the schedule's maximum).
  virtual double base_lr() const = 0;
  // Optimizer state for checkpoints; load(save()) restores it exactly.
  virtual void save(torch::serialize::OutputArchive& archive) const = 0;
  virtual void load(torch::serialize::InputArchive& archive) = 0;
};

// ---------------------------------------------------------------------------------------------
// Plugins: one class per library, derived from exactly one of the four kind bases.
// ---------------------------------------------------------------------------------------------
class Plugin {
 public:
  virtual ~Plugin() = default;
  virtual PluginKind kind() const = 0;
  // Name used in configs, the database and checkpoints; chosen once, never renamed.
  virtual std::string name() const = 0;
  virtual std::string version() const = 0;
  // One line for `lmgrid plugins`.
  virtual std::string summary() const = 0;
  // Declared parameters; the host validates user tables against them.
  virtual std::vector<ParamSpec> params() const = 0;
  // Overrides of the defaults that make a tiny, fast instance (for the test sweep).
  virtual std::map<std::string, Value> tiny_config() const { return {}; }
  // Optional: checks across parameters (d_model divisible by n_head) and of external inputs
  // (a data file exists or can be downloaded), run at validation time before anything runs.
  // Throws UserError saying what is wrong.
  virtual void check(const Params& params) const {}
};

class TokenizerPlugin : public Plugin {
 public:
  PluginKind kind() const final { return PluginKind::tokenizer; }
  virtual std::shared_ptr<Tokenizer> create(const Params& params) const = 0;
};

struct DataContext {
  std::shared_ptr<Tokenizer> tokenizer;  // fit() it on the train split if it learns a vocabulary
  uint64_t seed = 0;                     // the run's seed, for train_batch sampling
};

class DataPlugin : public Plugin {
 public:
  PluginKind kind() const final { return PluginKind::data; }
  virtual std::shared_ptr<Dataset> create(const Params& params, const DataContext& ctx) const = 0;
  // The training context length implied by params (passed to the model as ModelContext.seq_len).
  virtual int64_t seq_len(const Params& params) const = 0;
};

class ArchPlugin : public Plugin {
 public:
  PluginKind kind() const final { return PluginKind::arch; }
  virtual std::shared_ptr<Model> create(const Params& params, const ModelContext& ctx) const = 0;
};

class OptimPlugin : public Plugin {
 public:
  PluginKind kind() const final { return PluginKind::optim; }
  virtual std::shared_ptr<Optimizer> create(const Params& params,
                                            const std::vector<NamedParameter>& parameters) const = 0;
};

// What the exported symbol returns. Plain data: the host reads `stamp` first.
struct PluginEntry {
  BuildStamp stamp;
  Plugin* (*create)();  // new'ed Plugin; the host owns it. Called only after the stamp is accepted.
};

}  // namespace lmgrid

// Exports the plugin class CLASS (default-constructible) as this library's one factory symbol.
#include <boost/dll/alias.hpp>
#define LMGRID_PLUGIN(CLASS)                                                                   \
  namespace lmgrid_plugin_export {                                                             \
  inline ::lmgrid::Plugin* create_plugin() { return new CLASS(); }                             \
  const ::lmgrid::PluginEntry* plugin_entry() {                                                \
    static const ::lmgrid::PluginEntry entry{::lmgrid::current_build_stamp(), &create_plugin}; \
    return &entry;                                                                             \
  }                                                                                            \
  }                                                                                            \
  BOOST_DLL_ALIAS(lmgrid_plugin_export::plugin_entry, lmgrid_plugin_entry)
