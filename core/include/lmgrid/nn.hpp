// The lmgrid_nn library (target lmgrid::nn, links LibTorch and the plugin contract only): the
// shared blocks architectures are written with. One header per part, under lmgrid/nn/:
//   norm.hpp       LayerNorm (bias optional), RMSNorm, gated RMSNorm
//   rope.hpp       rotary position embedding with a configurable base
//   attention.hpp  CausalSelfAttention: fused or separate q/k/v, RoPE, grouped KV heads,
//                  causal or not, KV cache; causal_attention()
//   mlp.hpp        GELU MLP, SwiGLU
//   conv.hpp       causal depthwise conv with a decoding state
//   init.hpp       GPT-2 initialisation
//   block.hpp      the Block / LayerState interface of a stack
//   causal_lm.hpp  CausalLM: embeddings, stack, final norm, tied or untied head, vocabulary
//                  padding and the decoding-state plumbing
// This header includes them all (what plugins written before the split include).
#pragma once

#include "lmgrid/nn/attention.hpp"
#include "lmgrid/nn/block.hpp"
#include "lmgrid/nn/causal_lm.hpp"
#include "lmgrid/nn/conv.hpp"
#include "lmgrid/nn/init.hpp"
#include "lmgrid/nn/mlp.hpp"
#include "lmgrid/nn/norm.hpp"
#include "lmgrid/nn/rope.hpp"
