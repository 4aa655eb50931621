// lmgrid env: what this machine gives lmgrid: LibTorch, threads, BLAS core (and whether lmgrid
// corrected it), the measured fp32 matmul rate, CUDA devices, search paths.
#include <fmt/format.h>
#include <sqlite3.h>

#include <lmgrid/sys/cpu.hpp>
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
    std::vector<std::vector<std::string>> rows{
        {"lmgrid", "0.1.0"},
        {"plugin_abi", std::to_string(kPluginAbiVersion)},
        {"libtorch", TORCH_VERSION},
        {"threads", std::to_string(threads)},
        {"blas_threads", bthreads > 0 ? std::to_string(bthreads) : "n/a"},
        {"cores", std::to_string(available_cores())},
        {"cores_online", std::to_string(std::thread::hardware_concurrency())},
        {"blas", b.library},
        {"blas_core", b.core},
        {"blas_core_best", best_openblas_core()},
        {"blas_corrected_by_lmgrid", b.corrected ? "yes" : "no"},
        {"OPENBLAS_CORETYPE", b.coretype_env},
        {fmt::format("matmul_fp32_{}_gflops", opt->n), fmt::format("{:.1f}", gflops)},
        {"mfu_peak_gflops", fmt::format("{:.1f} ({}, 512^3 at {} threads)", peak.gflops, peak.source, threads)},
        {"cuda_devices", std::to_string(torch::cuda::is_available() ? torch::cuda::device_count() : 0)},
        {"sqlite", sqlite3_libversion()},
        {"db", default_db_path().string()},
        {"plugin_path", paths},
        {"data_path", env_or("LMGRID_DATA_PATH", "")},
        {"cache", cache_dir().string()},
    };
    std::fputs(render_rows({"key", "value"}, rows, format).c_str(), stdout);
  });
}

}  // namespace lmgrid::cli
