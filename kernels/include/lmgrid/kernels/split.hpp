// Split along the last dim into contiguous pieces, with a backward that writes the pieces'
// gradients into one tensor row by row. Mamba-2 splits its input projection (z, xBC, dt) and then
// xBC (x, B, C): LibTorch's split backward is a cat along the last dim, which took 0.5 ms for a
// (12, 64, 644) float tensor on LibTorch 1.13 (9% of a quickstart mamba2 step), and the pieces
// were made contiguous afterwards anyway. Any device and dtype: CPU float32 / float64 take the
// row copies, everything else LibTorch's split and cat. An undefined piece gradient is zeros.
#pragma once

#include <vector>

#include <torch/torch.h>

namespace lmgrid::kernels {

// x (..., W), sizes summing to W -> contiguous pieces (..., sizes[i]). Differentiable (first and
// higher order: the backward is itself made of differentiable ops when create_graph asks).
std::vector<torch::Tensor> split_last(const torch::Tensor& x, const std::vector<int64_t>& sizes);

}  // namespace lmgrid::kernels
