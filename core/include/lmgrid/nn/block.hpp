// The block interface of a CausalLM stack (lmgrid/nn/causal_lm.hpp): one layer of an
// architecture, with its own decoding state. An architecture plugin writes its block as
//
//   struct MyState : nn::LayerState { ... };                 // what one layer carries between calls
//   class MyBlockImpl : public nn::BlockOf<MyState> {
//     torch::Tensor forward(const torch::Tensor& x, MyState& state, const nn::Step& step) override;
//   };
//
// Not here: the stack, embeddings, head (causal_lm.hpp).
//
// Letters: B batch, T new tokens, C width.
#pragma once

#include <memory>

#include <torch/torch.h>

namespace lmgrid::nn {

// What one layer carries from one forward call to the next while decoding (KV cache, conv
// history, recurrent memory). Blocks derive their own; a stateless block uses LayerState itself.
struct LayerState {
  virtual ~LayerState() = default;
};

// Where the new tokens of a forward call are.
struct Step {
  int64_t pos = 0;        // position of the first new token in its sequence
  bool decoding = false;  // true: the layer state belongs to a DecodeState and must be advanced;
                          // false: a fresh sequence, the state is scratch that is dropped after
};

// One layer. forward maps x (B,T,C) to the next layer's input. The stack creates one state per
// layer and sequence with new_state() and passes the same object on every later call.
class Block : public torch::nn::Module {
 public:
  virtual std::unique_ptr<LayerState> new_state() const { return std::make_unique<LayerState>(); }
  virtual torch::Tensor forward_block(const torch::Tensor& x, LayerState& state, const Step& step) = 0;
};

// A block whose layer state has type State (derived from LayerState).
template <class State>
class BlockOf : public Block {
 public:
  virtual torch::Tensor forward(const torch::Tensor& x, State& state, const Step& step) = 0;

  std::unique_ptr<LayerState> new_state() const final { return std::make_unique<State>(); }
  torch::Tensor forward_block(const torch::Tensor& x, LayerState& state, const Step& step) final {
    return forward(x, static_cast<State&>(state), step);
  }
};

}  // namespace lmgrid::nn
