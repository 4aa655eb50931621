// Launch helpers for the kernels here: with_dtype (the element type of a DType), and a 1-D grid-stride loop over an
// index space whose every index runs a body `f(p, t)` (the __host__ __device__ bodies of *_body.cuh). nvcc only.
#pragma once

#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>

#include "launch.hpp"  // DType

namespace lmgrid::kernels::cuda_impl {

template <class P, void (*F)(const P&, int64_t)>
__global__ void for_each_index(P p, int64_t n) {
  for (int64_t t = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; t < n; t += int64_t{gridDim.x} * blockDim.x) F(p, t);
}

// Launches F over [0, n) on `stream`; returns the launch's cudaError_t (0: success).
template <class P, void (*F)(const P&, int64_t)>
int launch(const P& p, int64_t n, void* stream) {
  if (n <= 0) return 0;
  constexpr int kThreads = 256;
  const int64_t blocks = std::min<int64_t>((n + kThreads - 1) / kThreads, int64_t{1} << 20);
  for_each_index<P, F><<<static_cast<unsigned>(blocks), kThreads, 0, static_cast<cudaStream_t>(stream)>>>(p, n);
  return static_cast<int>(cudaGetLastError());
}

// Calls f(T{}) with T the element type of `dt` (float, double, __nv_bfloat16): one dtype switch
// for every entry point. -1 for a dtype it does not know.
template <class F>
int with_dtype(DType dt, F f) {
  switch (dt) {
    case DType::f32: return f(float{});
    case DType::f64: return f(double{});
    case DType::bf16: return f(__nv_bfloat16{});
  }
  return -1;
}

}  // namespace lmgrid::kernels::cuda_impl
