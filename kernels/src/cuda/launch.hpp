// The CUDA kernels' entry points as plain C++ (no LibTorch, no CUDA headers): fused.cpp fills the
// argument structs with raw pointers of contiguous tensors and calls these; the .cu files define
// them (nvcc never sees LibTorch's headers). `stream` is the cudaStream_t to launch on. Each
// function returns 0, or the cudaError_t of the launch.
#pragma once

#include "gem_chunk_body.cuh"
#include "ssd_passing_body.cuh"

namespace lmgrid::kernels::cuda_impl {

enum class DType { f32, f64, bf16 };

// T is float, double or the bf16 storage type; the structs' pointers are reinterpreted per dtype.
int ssd_passing_forward(DType dt, const SsdPassingFwd<void>& p, void* stream);
int ssd_passing_backward(DType dt, const SsdPassingBwd<void>& p, void* stream);
int gem_chunk_forward(DType dt, const GemFwd<void>& p, void* stream);
int gem_chunk_backward(DType dt, const GemBwd<void>& p, void* stream);

}  // namespace lmgrid::kernels::cuda_impl
