// Batched matrix products for the memory layers' many small products (GEM's chunks, TTT's dual
// form: batch = sequences x heads, matrices of 16 to 64 rows). LibTorch 1.13's CPU bmm takes
// every batch entry apart (select, addmm) once the matrices pass 400 multiply-adds: in a TTT-Linear
// training step that was ~40,000 selects, a fifth of the step. bmm_cpu runs lmgrid's register-
// blocked product (kernels/src/cpu_common.hpp) over the batch with no per-entry tensors.
//
// bmm and baddbmm route float32 and float64 CPU tensors to it (unless LMGRID_CPU_KERNELS=
// composite) and everything else to torch::bmm / torch::baddbmm. Differentiable to any order:
// the first-order backward uses the kernel, a backward that is itself differentiated
// (create_graph) uses torch::bmm.
#pragma once

#include <string>

#include <torch/torch.h>

namespace lmgrid::kernels {

// a (B,M,K), b (B,K,N) -> (B,M,N). Any strides (an expanded batch dim too).
torch::Tensor bmm(const torch::Tensor& a, const torch::Tensor& b);
// beta base + alpha a b; base broadcasts to (B,M,N).
torch::Tensor baddbmm(const torch::Tensor& base, const torch::Tensor& a, const torch::Tensor& b, double beta = 1.0,
                      double alpha = 1.0);

torch::Tensor bmm_cpu(const torch::Tensor& a, const torch::Tensor& b);
// "" when bmm_cpu takes these tensors, else why not.
std::string bmm_cpu_unsupported(const torch::Tensor& a, const torch::Tensor& b);

}  // namespace lmgrid::kernels
