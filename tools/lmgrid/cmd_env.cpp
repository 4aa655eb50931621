// lmgrid env: what this machine gives lmgrid: LibTorch, threads, BLAS core (and whether lmgrid
// corrected it), the measured fp32 matmul rate, CUDA devices, search paths.
#include <fmt/format.h>
#include <fmt/ranges.h>
#include <sqlite3.h>

#include <lmgrid/sys/cpu.hpp>
#include <lmgrid/sys/memory.hpp>
#include <lmgrid/sys/gpu.hpp>
#include <lmgrid/data/data_source.hpp>
#include <lmgrid/plugin/plugin.hpp>
#include <lmgrid/plugin/registry.hpp>
#include <lmgrid/store/store.hpp>
#include <lmgrid/base/util.hpp>
#include <lmgrid/report/table.hpp>
#include <lmgrid/base/env.hpp>

#include "commands.hpp"

namespace lmgrid::cli {

void add_env(CLI::App& app) {
  struct Opt {
    std::string format = "table";
    int n = 1024;
  };
  auto opt = std::make_shared<Opt>();
  auto* cmd = app.add_subcommand("env", "Show LibTorch, threads, BLAS core, measured matmul GFLOP/s, devices");
  cmd->add_option("--format", opt->format, "table, csv or json");
  cmd->add_option("--matmul-size", opt->n, "n of the n x n x n fp32 matmul measured")->check(CLI::Range(16, 8192));
  cmd->callback([opt] {
    Format format = parse_format(opt->format);
    BlasInfo b = blas_info();
    std::string paths;
    for (const auto& p : Registry::default_search_path()) paths += (paths.empty() ? "" : ":") + p.string();
    double gflops = measure_matmul_gflops(opt->n, 7);
    const int threads = torch::get_num_threads(), bthreads = blas_threads();
    PeakGflops peak = machine_peak_gflops(threads);
    const TorchBuild tb = torch_build();
    const std::vector<std::string> bf16 = cpu_bf16_features();
    const std::vector<GpuInfo> devices = gpus();
    std::vector<std::vector<std::string>> rows{
        {"lmgrid", "0.1.0"},
        {"plugin_abi", std::to_string(kPluginAbiVersion)},
        {"libtorch", tb.version},
        {"libtorch_build", tb.cuda ? fmt::format("CUDA {} (cuDNN {})", tb.cuda_version, tb.cudnn_version) : "CPU only"},
        {"libtorch_blas", tb.blas},
        {"cpu_capability", tb.cpu_capability},
        {"cpu_bf16", bf16.empty() ? "none (bfloat16 autocast is emulated)" : fmt::format("{}", fmt::join(bf16, " "))},
        {"threads", std::to_string(threads)},
        {"blas_threads", bthreads > 0 ? std::to_string(bthreads) : "n/a"},
        {"cores", std::to_string(available_cores())},
        {"cores_online", std::to_string(std::thread::hardware_concurrency())},
        {"blas", b.library},
        {"blas_core", b.core},
        {"blas_core_best", best_openblas_core()},
        {"blas_corrected_by_lmgrid", b.corrected ? "yes" : "no"},
        {"OPENBLAS_CORETYPE", b.coretype_env},
        {"worker_malloc", allocator_plan()},
        {fmt::format("matmul_fp32_{}_gflops", opt->n), fmt::format("{:.1f}", gflops)},
        {"mfu_peak_gflops", fmt::format("{:.1f} ({}, 512^3 at {} threads)", peak.gflops, peak.source, threads)},
        {"cuda_devices", std::to_string(devices.size())},
        {"sqlite", sqlite3_libversion()},
        {"db", default_db_path().string()},
        {"plugin_path", paths},
        {"data_path", env_or("LMGRID_DATA_PATH", "")},
        {"cache", cache_dir().string()},
    };
    // Each GPU: memory and the measured matmul peaks MFU divides by (cached like the CPU's).
    for (const auto& g : devices) {
      const std::string k = fmt::format("cuda:{}", g.index);
      rows.push_back(
          {k, fmt::format("{} ({:.1f} GiB, compute {}.{})", g.name, g.memory_bytes / 1073741824.0, g.major, g.minor)});
      rows.push_back({k + "_peak_tflops_fp32", fmt::format("{:.1f}", gpu_peak_flops(g.index, c10::kFloat) / 1e12)});
      rows.push_back({k + "_peak_tflops_bf16", fmt::format("{:.1f}", gpu_peak_flops(g.index, c10::kBFloat16) / 1e12)});
    }
    std::fputs(render_rows({"key", "value"}, rows, format).c_str(), stdout);
  });
}

}  // namespace lmgrid::cli
