// GPUs and the LibTorch build (see gpu.hpp).
#include "lmgrid/sys/gpu.hpp"

#include <algorithm>

#include <fmt/format.h>
#include <torch/torch.h>
#include <torch/version.h>

#include "lmgrid/base/env.hpp"
#include "lmgrid/base/util.hpp"
#include "lmgrid/plugin/torch_compat.hpp"
#include "lmgrid/sys/cpu.hpp"

#if LMGRID_WITH_CUDA
#include <ATen/cuda/CUDAContext.h>
#endif

namespace lmgrid {

namespace {

// The value of `key=` in at::show_config()'s build settings ("" when absent).
std::string config_value(const std::string& config, const std::string& key) {
  auto at = config.find(key + "=");
  if (at == std::string::npos) return "";
  at += key.size() + 1;
  auto end = config.find_first_of(", \n", at);
  return config.substr(at, end == std::string::npos ? std::string::npos : end - at);
}

}  // namespace

TorchBuild torch_build() {
  TorchBuild b;
  const std::string config = at::show_config();
  b.version = TORCH_VERSION;
  b.blas = config_value(config, "BLAS_INFO");
  b.cuda = config_value(config, "USE_CUDA") == "ON" || config_value(config, "USE_CUDA") == "1";
  b.cuda_version = config_value(config, "CUDA_VERSION");
  b.cudnn_version = config_value(config, "CUDNN_VERSION");
  const std::string cap = "CPU capability usage: ";
  if (auto at = config.find(cap); at != std::string::npos) {
    auto end = config.find('\n', at);
    b.cpu_capability = config.substr(at + cap.size(), end - at - cap.size());
  }
  return b;
}

std::vector<GpuInfo> gpus() {
  std::vector<GpuInfo> out;
  if (!torch::cuda::is_available()) return out;
  const int n = static_cast<int>(torch::cuda::device_count());
  for (int i = 0; i < n; ++i) {
    GpuInfo g;
    g.index = i;
#if LMGRID_WITH_CUDA
    const cudaDeviceProp* p = at::cuda::getDeviceProperties(i);
    g.name = p->name;
    g.memory_bytes = static_cast<int64_t>(p->totalGlobalMem);
    g.major = p->major, g.minor = p->minor;
#else
    g.name = "cuda:" + std::to_string(i);
#endif
    out.push_back(g);
  }
  return out;
}

double gpu_peak_flops(int index, c10::ScalarType dtype) {
  // A fixed peak overrides every device; machine_peak_gflops parses and validates it.
  if (!env_or("LMGRID_PEAK_GFLOPS", "").empty()) return machine_peak_gflops(1).gflops * 1e9;
  auto devices = gpus();
  if (index < 0 || index >= static_cast<int>(devices.size())) return 0;
  const bool half = dtype == c10::kBFloat16 || dtype == c10::kHalf;
  const int64_t n = half ? 8192 : 4096;
  auto opts = torch::TensorOptions().device(torch::Device(torch::kCUDA, static_cast<c10::DeviceIndex>(index)));
  auto a = torch::randn({n, n}, opts.dtype(half ? dtype : c10::kFloat));
  auto b = torch::randn({n, n}, opts.dtype(half ? dtype : c10::kFloat));
  for (int i = 0; i < 3; ++i) a.mm(b);  // warm-up: cuBLAS handle, kernel selection, clocks
  compat::cuda_synchronize();
  std::vector<double> rates;
  for (int i = 0; i < 7; ++i) {
    double t0 = monotonic_seconds();
    for (int r = 0; r < 4; ++r) a.mm(b);
    compat::cuda_synchronize();
    rates.push_back(4 * 2.0 * n * n * n / (monotonic_seconds() - t0));
  }
  std::sort(rates.begin(), rates.end());
  const double median = rates[rates.size() / 2];

  // The CPU's cache file and format; key "gpu:<name>" <TAB> dtype <TAB> "-".
  return remember_best_gflops("gpu:" + devices[index].name + "\t" + c10::toString(dtype) + "\t-", median / 1e9) * 1e9;
}

}  // namespace lmgrid
