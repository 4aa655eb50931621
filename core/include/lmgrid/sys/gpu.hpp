// GPUs and the LibTorch build: what `lmgrid env` shows and the MFU denominator of a CUDA run.
//   torch_build()       the linked LibTorch's version, BLAS, CPU capability, CUDA/cuDNN versions
//                       (from at::show_config(), so a CUDA build is recognised with no GPU present)
//   gpus()              the visible CUDA devices: name, memory, compute capability
//   gpu_peak_flops()    a measured matmul peak of one device in one dtype, the best ever measured
//                       kept in cache_dir()/peak_gflops.tsv like the CPU's (machine_peak_gflops)
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <c10/core/ScalarType.h>

namespace lmgrid {

struct TorchBuild {
  std::string version;         // TORCH_VERSION, e.g. "2.11.0"
  std::string blas;            // BLAS_INFO: mkl, open, generic ...
  std::string cpu_capability;  // what ATen dispatches to: AVX2, AVX512 ...
  bool cuda = false;           // built with CUDA (USE_CUDA=ON), whether or not a GPU is visible
  std::string cuda_version;    // CUDA_VERSION ("" for a CPU build)
  std::string cudnn_version;   // CUDNN_VERSION
};
TorchBuild torch_build();

struct GpuInfo {
  int index = 0;
  std::string name;
  int64_t memory_bytes = 0;
  int major = 0, minor = 0;  // compute capability (9.0 = Hopper)
};
// Visible CUDA devices; empty for a CPU build or with no GPU.
std::vector<GpuInfo> gpus();

// Matmul peak of CUDA device `index` in `dtype` (float32 or bfloat16/float16), FLOP/s: the median
// of timed n x n x n products (n = 8192 for half precision, 4096 for float32), the larger of it
// and the best cached for this device and dtype. 0 without CUDA. LMGRID_PEAK_GFLOPS overrides.
double gpu_peak_flops(int index, c10::ScalarType dtype);

}  // namespace lmgrid
