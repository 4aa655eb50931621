// CausalLM: the parts every decoder-only language model shares, so that an architecture plugin
// is its block and its config:
//   x = drop(tok_emb(tokens) [+ pos_emb(positions)])         (B,T,C)
//   x = block_L(... block_1(x))                              each with its own decoding state
//   logits = head(final_norm(x))                             tied: x tok_emb^T, or a Linear
// plus the ModelContext/decoding plumbing: one LayerState per layer created on the first call,
// the position counter, the block_size limit, vocabulary padding.
//
// A plugin's model constructor calls, in this order (registration order = init RNG order and
// checkpoint key order): the CausalLM constructor (token embedding, positions, dropout), then
// add_block() once per layer, then finish(final_norm) (the final norm, then an untied head).
// Checkpoint keys are the names in CausalLMOptions: the defaults are nanoGPT's (wte, wpe, h.N.*,
// ln_f, lm_head); architectures whose checkpoints use other names set them once.
//
// Vocabulary padding: padded_vocab > vocab_size gives the embedding and an untied head
// padded_vocab rows (nanoGPT pads GPT-2's 50,257 to 50,304 for faster matmuls); logits are cut to
// the tokenizer's vocab_size, so padded ids are never scored or sampled. Smaller is an error.
//
// Not here: MoE routing, auxiliary losses (override forward), KV-cache eviction.
//
// Letters: B batch, T new tokens, C width (d_model), V vocabulary, Vp padded vocabulary.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include <torch/torch.h>

#include "lmgrid/nn/block.hpp"
#include "lmgrid/plugin/plugin.hpp"

namespace lmgrid::nn {

struct CausalLMOptions {
  int64_t vocab_size = 0;          // the tokenizer's (ModelContext::vocab_size)
  int64_t padded_vocab = 0;        // rows of embedding and head; 0 = vocab_size; < vocab_size: UserError
  int64_t d_model = 0;             // embedding width C
  int64_t block_size = 0;          // maximum context (0 = unlimited); see resolve_block_size()
  bool learned_positions = false;  // pos_emb: Embedding(block_size, C) added to the tokens
  double dropout = 0.0;            // on the embeddings ("drop"), registered only when > 0
  bool tied_head = true;           // logits = x tok_emb^T; false: Linear(head_in, Vp)
  int64_t head_in = 0;             // width entering an untied head (0 = d_model)
  bool head_bias = false;          // bias of an untied head
  // Checkpoint names, chosen once per architecture.
  std::string tok_emb_name = "wte", pos_emb_name = "wpe", blocks_name = "h", final_norm_name = "ln_f",
              head_name = "lm_head";
};

// nanoGPT's rule for the context: the configured block_size, or the dataset's seq_len when 0.
int64_t resolve_block_size(int64_t configured, int64_t seq_len);

// The decoding state of a CausalLM: one LayerState per block and the tokens consumed so far.
struct CausalLMState : DecodeState {
  std::vector<std::unique_ptr<LayerState>> layers;  // empty until the first forward
  int64_t pos = 0;
};

class CausalLM : public Model {
 public:
  explicit CausalLM(CausalLMOptions options);

  // Appends a block to the stack "h" (blocks_name). With `name`, the block is registered under
  // that name instead (a one-layer model whose checkpoints name its layer; no stack is made).
  template <class Holder>
  void add_block(Holder block, const std::string& name = "") {
    add_block_ptr(block.ptr(), name);
  }
  // Registers the final norm (any module with forward(Tensor) -> Tensor; an empty holder for
  // none) and then the untied head. The last call of a model constructor.
  template <class Holder>
  void finish(Holder final_norm) {
    finish_any(final_norm.is_empty() ? torch::nn::AnyModule() : torch::nn::AnyModule(final_norm));
  }
  void finish() { finish_any(torch::nn::AnyModule()); }

  // Logits (B,T,V) of tokens (B,T). state: nullptr (fresh sequence) or from new_decode_state().
  ModelOutput forward(const torch::Tensor& tokens, DecodeState* state) override;
  std::unique_ptr<DecodeState> new_decode_state(int64_t batch) override;
  int64_t max_context() const override { return options_.block_size; }

  size_t n_block() const { return blocks_.size(); }
  // Block i as its implementation type, e.g. block<BlockImpl>(0).attn.
  template <class Impl>
  Impl& block(size_t i) {
    return dynamic_cast<Impl&>(*blocks_.at(i));
  }
  const CausalLMOptions& options() const { return options_; }

  torch::nn::Embedding tok_emb{nullptr}, pos_emb{nullptr};  // pos_emb empty without learned positions
  torch::nn::Dropout drop{nullptr};                         // empty when dropout == 0
  torch::nn::ModuleList stack{nullptr};                     // the blocks under blocks_name
  torch::nn::AnyModule final_norm;
  torch::nn::Linear lm_head{nullptr};  // empty when tied

 protected:
  // The input of the first block for tokens at positions pos, pos+1, ...: (B,T,C).
  virtual torch::Tensor embed(const torch::Tensor& tokens, int64_t pos);
  // Logits (B,T,Vp) of the last block's output.
  virtual torch::Tensor head(const torch::Tensor& x);

 private:
  void add_block_ptr(std::shared_ptr<Block> block, const std::string& name);
  void finish_any(torch::nn::AnyModule final_norm);

  CausalLMOptions options_;
  std::vector<std::shared_ptr<Block>> blocks_;
  bool finished_ = false;
};

}  // namespace lmgrid::nn
