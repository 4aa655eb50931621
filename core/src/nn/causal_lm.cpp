// The CausalLM base (see lmgrid/nn/causal_lm.hpp). Letters: B, T new tokens, C, V, Vp.
#include "lmgrid/nn/causal_lm.hpp"

#include <string>

#include "lmgrid/base/errors.hpp"

namespace lmgrid::nn {

int64_t resolve_block_size(int64_t configured, int64_t seq_len) {
  const int64_t n = configured > 0 ? configured : seq_len;
  if (n <= 0) throw UserError("block_size is 0 and the dataset gives no seq_len: set block_size");
  return n;
}

CausalLM::CausalLM(CausalLMOptions o) : options_(std::move(o)) {
  auto& op = options_;
  if (op.vocab_size <= 0) throw std::invalid_argument("CausalLM: vocab_size must be positive");
  if (op.padded_vocab == 0) op.padded_vocab = op.vocab_size;
  if (op.padded_vocab < op.vocab_size)
    throw UserError("vocab_size (" + std::to_string(op.padded_vocab) +
                    ") is smaller than the tokenizer's vocabulary (" + std::to_string(op.vocab_size) +
                    "); it may only pad it");
  if (op.learned_positions && op.block_size <= 0)
    throw std::invalid_argument("CausalLM: learned positions need block_size > 0");
  if (op.head_in == 0) op.head_in = op.d_model;
  tok_emb = register_module(op.tok_emb_name, torch::nn::Embedding(op.padded_vocab, op.d_model));
  if (op.learned_positions) pos_emb = register_module(op.pos_emb_name, torch::nn::Embedding(op.block_size, op.d_model));
  if (op.dropout > 0) drop = register_module("drop", torch::nn::Dropout(op.dropout));
}

void CausalLM::add_block_ptr(std::shared_ptr<Block> block, const std::string& name) {
  TORCH_CHECK(!finished_, "CausalLM: add_block after finish");
  if (!name.empty()) {
    register_module(name, block);
  } else {
    if (stack.is_empty()) stack = register_module(options_.blocks_name, torch::nn::ModuleList());
    stack->push_back(block);
  }
  blocks_.push_back(std::move(block));
}

void CausalLM::finish_any(torch::nn::AnyModule norm) {
  TORCH_CHECK(!finished_, "CausalLM: finish called twice");
  if (!norm.is_empty()) {
    final_norm = std::move(norm);
    register_module(options_.final_norm_name, final_norm.ptr());
  }
  if (!options_.tied_head)
    lm_head = register_module(
        options_.head_name,
        torch::nn::Linear(torch::nn::LinearOptions(options_.head_in, options_.padded_vocab).bias(options_.head_bias)));
  finished_ = true;
}

torch::Tensor CausalLM::embed(const torch::Tensor& tokens, int64_t pos) {
  auto x = tok_emb(tokens);  // (B,T,C)
  if (!pos_emb.is_empty()) {
    const int64_t T = tokens.size(1);
    x = x + pos_emb(torch::arange(pos, pos + T, torch::TensorOptions().dtype(torch::kLong).device(tokens.device())));
  }
  return drop.is_empty() ? x : drop(x);
}

torch::Tensor CausalLM::head(const torch::Tensor& x) {
  return options_.tied_head ? torch::nn::functional::linear(x, tok_emb->weight) : lm_head(x);  // (B,T,Vp)
}

ModelOutput CausalLM::forward(const torch::Tensor& tokens, DecodeState* state) {
  TORCH_CHECK(finished_, "CausalLM: the model constructor must call finish()");
  CausalLMState* st = nullptr;
  if (state) {
    st = dynamic_cast<CausalLMState*>(state);
    TORCH_CHECK(st, "CausalLM: the decoding state does not come from this model's new_decode_state()");
  }
  const int64_t T = tokens.size(1), past = st ? st->pos : 0;
  if (options_.block_size > 0)
    TORCH_CHECK(past + T <= options_.block_size, "sequence of ", past + T, " tokens exceeds block_size ",
                options_.block_size);
  std::vector<std::unique_ptr<LayerState>> fresh;
  auto& layers = st ? st->layers : fresh;
  if (layers.empty())
    for (const auto& b : blocks_) layers.push_back(b->new_state());
  const Step step{past, st != nullptr};
  auto x = embed(tokens, past);
  for (size_t i = 0; i < blocks_.size(); ++i) x = blocks_[i]->forward_block(x, *layers[i], step);
  if (!final_norm.is_empty()) x = final_norm.forward(x);
  auto logits = head(x);
  if (options_.padded_vocab != options_.vocab_size) logits = logits.narrow(-1, 0, options_.vocab_size);  // (B,T,V)
  if (st) st->pos += T;
  return {logits, {}};
}

std::unique_ptr<DecodeState> CausalLM::new_decode_state(int64_t) { return std::make_unique<CausalLMState>(); }

}  // namespace lmgrid::nn
