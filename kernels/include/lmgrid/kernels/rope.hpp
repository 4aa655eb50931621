// Rotary position embedding fused with the split into heads, on the CPU: for x (B, T, H*D), head
// h's slice at token t is rotated in adjacent pairs (as lmgrid::nn::apply_rope, which is the
// reference) and written to out (B, H, T, D), contiguous:
//   out[b,h,t,2i]   = x0 cos[t,i] - x1 sin[t,i],   out[b,h,t,2i+1] = x0 sin[t,i] + x1 cos[t,i],
//   x0 = x[b,t,h*D+2i], x1 = x[b,t,h*D+2i+1].
// The composite (a transposed view, rotation by selects, stack, flatten and a reshape copy) was
// a dozen passes and autograd nodes each way for the TTT layer's queries and keys; this is one
// pass forward and one backward (dx = the inverse rotation of dout, in x's layout).
#pragma once

#include <string>

#include <torch/torch.h>

namespace lmgrid::kernels {

// x (B, T, H*D) with its last dim contiguous, cos and sin (T, D/2) in x's dtype (no gradient),
// D even. Float32 or float64 CPU tensors; first-order differentiable in x (no create_graph).
torch::Tensor rope_heads_cpu(const torch::Tensor& x, int64_t heads, const torch::Tensor& cos, const torch::Tensor& sin);

// "" when rope_heads_cpu takes these tensors, else why not.
std::string rope_heads_cpu_unsupported(const torch::Tensor& x, int64_t heads, const torch::Tensor& cos,
                                       const torch::Tensor& sin);

}  // namespace lmgrid::kernels
