// Read speed of llm.c token shards (issue 13: >= 1 GB/s): writes one shard of --tokens tokens
// (default 256M uint16 = 512 MB) into --dir (default $TMPDIR), warms the page cache with one
// pass, then measures, as GB/s of token bytes read (median of --runs):
//   scan     MappedShard::max_token, the validation pass of data/shards' check()
//   copy     a sequential read of the whole shard widened to int64 (ShardStream::copy)
//   gather   the same random windows copied into one reused int64 buffer (the mapping's share)
//   windows  data/shards' train_batch (random windows of seq_len + 1 tokens into (B, T) int64
//            tensors), built through the plugin as a run builds it; seq_len + 1 tokens per window
// The shard is removed at the end unless --keep. The token values are random below 256 (the
// byte tokenizer's vocabulary): speed does not depend on them.
//
//   build/bin/bench_shards [--tokens N] [--format v1|v7] [--dir DIR] [--runs 5] [--batch 64] [--seq-len 1024] [--keep]
#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <string>
#include <vector>

#include <ATen/Parallel.h>

#include <lmgrid/base/util.hpp>
#include <lmgrid/data/shards.hpp>
#include <lmgrid/plugin/registry.hpp>

using namespace lmgrid;

namespace {

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

uint64_t splitmix64(uint64_t x) {
  x += 0x9E3779B97F4A7C15ull;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}

}  // namespace

int main(int argc, char** argv) {
  int64_t tokens = 256ll << 20, batch = 64, seq_len = 1024;
  int runs = 5;
  bool keep = false;
  std::string format = "v1", dir = std::getenv("TMPDIR") ? std::getenv("TMPDIR") : "/tmp";
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i], v = i + 1 < argc ? argv[i + 1] : "";
    if (a == "--keep") {
      keep = true;
      continue;
    }
    if (a == "--tokens")
      tokens = std::atoll(v.c_str());
    else if (a == "--format")
      format = v;
    else if (a == "--dir")
      dir = v;
    else if (a == "--runs")
      runs = std::max(1, std::atoi(v.c_str()));
    else if (a == "--batch")
      batch = std::atoll(v.c_str());
    else if (a == "--seq-len")
      seq_len = std::atoll(v.c_str());
    else {
      std::fprintf(
          stderr, "usage: %s [--tokens N] [--format v1|v7] [--dir DIR] [--runs N] [--batch B] [--seq-len T] [--keep]\n",
          argv[0]);
      return 2;
    }
    ++i;
  }
  try {
    auto file = std::filesystem::path(dir) / ("lmgrid-bench-shard-" + std::to_string(::getpid()) + ".bin");
    double t0 = monotonic_seconds();
    {
      ShardWriter w(file, format == "v7" ? ShardFormat::v7 : ShardFormat::v1);
      std::vector<int64_t> chunk(1 << 20);
      uint64_t x = 1;
      for (int64_t done = 0; done < tokens;) {
        auto n = static_cast<size_t>(std::min<int64_t>(static_cast<int64_t>(chunk.size()), tokens - done));
        for (size_t k = 0; k < n; ++k) chunk[k] = static_cast<int64_t>((x = splitmix64(x)) & 255);
        w.append(chunk.data(), n);
        done += static_cast<int64_t>(n);
      }
      w.commit();
    }
    double write_s = monotonic_seconds() - t0;
    MappedShard shard(file);
    const double width = shard.header().token_bytes(), gb = static_cast<double>(tokens) * width / 1e9;
    std::printf("shard: %s, %lld tokens (version %d, %.0f-byte tokens, %.2f GB), written in %.2f s (%.2f GB/s)\n",
                file.c_str(), static_cast<long long>(tokens), shard.header().version, width, gb, write_s, gb / write_s);
    shard.max_token();  // warm the page cache: every figure below is a warm-cache read
    std::printf("page cache warm (one pass before timing); train_batch on %d LibTorch threads; load average %s\n",
                at::get_num_threads(), read_file("/proc/loadavg").substr(0, 14).c_str());

    std::vector<double> scan, copy, gather, windows;
    ShardStream stream({file});
    std::vector<int64_t> buf(1 << 20);
    const auto& reg = Registry::instance();
    const auto& dp = static_cast<const DataPlugin&>(*reg.get(PluginKind::data, "shards").plugin);
    const auto& tp = static_cast<const TokenizerPlugin&>(*reg.get(PluginKind::tokenizer, "byte").plugin);
    Params p = validate_params(
        dp.params(),
        {{"train", file.string()}, {"val", file.string()}, {"seq_len", seq_len}, {"vocab_size", int64_t{256}}},
        "[data]");
    auto data = dp.create(p, {tp.create(validate_params(tp.params(), {}, "byte")), 1});
    // Windows per run: as many token bytes as a quarter of the shard, at least 50 batches.
    const int64_t n_batches = std::max<int64_t>(
        50, static_cast<int64_t>(gb * 1e9 / 4 / (static_cast<double>(batch * (seq_len + 1)) * width)));
    int64_t sink = 0;
    for (int r = 0; r < runs; ++r) {
      double s0 = monotonic_seconds();
      sink += shard.max_token();
      scan.push_back(gb / (monotonic_seconds() - s0));

      s0 = monotonic_seconds();
      for (int64_t at = 0; at < tokens; at += static_cast<int64_t>(buf.size())) {
        int64_t n = std::min<int64_t>(static_cast<int64_t>(buf.size()), tokens - at);
        stream.copy(at, n, buf.data());
        sink += buf[static_cast<size_t>(n - 1)];
      }
      copy.push_back(gb / (monotonic_seconds() - s0));

      // The same random windows gathered into one reused buffer: the mapping's share of the cost.
      s0 = monotonic_seconds();
      std::mt19937_64 rng(static_cast<uint64_t>(r));
      std::uniform_int_distribution<int64_t> dist(0, tokens - seq_len - 1);
      std::vector<int64_t> win(static_cast<size_t>(batch * (seq_len + 1)));
      std::vector<int64_t> at(static_cast<size_t>(batch));
      for (int64_t b = 0; b < n_batches; ++b) {
        for (auto& a : at) a = dist(rng);
        for (int64_t w = 0; w < batch; ++w) {
          if (w + 1 < batch) stream.prefetch(at[static_cast<size_t>(w + 1)], seq_len + 1);
          stream.copy(at[static_cast<size_t>(w)], seq_len + 1, win.data() + w * (seq_len + 1));
        }
        sink += win[static_cast<size_t>(b % batch)];
      }
      gather.push_back(static_cast<double>(n_batches * batch * (seq_len + 1)) * width / 1e9 /
                       (monotonic_seconds() - s0));

      s0 = monotonic_seconds();
      for (int64_t b = 0; b < n_batches; ++b)
        sink += data->train_batch(r * n_batches + b, batch).targets[0][0].item<int64_t>();
      double s = monotonic_seconds() - s0;
      windows.push_back(static_cast<double>(n_batches * batch * (seq_len + 1)) * width / 1e9 / s);
      std::printf(
          "run %d: scan %.2f GB/s, copy %.2f GB/s, gather %.2f GB/s, windows %.2f GB/s (%lld batches of %lld x "
          "%lld)\n",
          r + 1, scan.back(), copy.back(), gather.back(), windows.back(), static_cast<long long>(n_batches),
          static_cast<long long>(batch), static_cast<long long>(seq_len));
    }
    std::printf(
        "median of %d: scan %.2f GB/s, copy %.2f GB/s, gather %.2f GB/s, windows %.2f GB/s (%.0f M tokens/s) "
        "[%lld]\n",
        runs, median(scan), median(copy), median(gather), median(windows), median(windows) * 1e3 / width,
        static_cast<long long>(sink % 2));
    if (!keep) std::filesystem::remove(file);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bench_shards: %s\n", e.what());
    return 1;
  }
  return 0;
}
