// bench_gem_hfval: the val loss of a finished run measured the way GEM's README measured it, on
// HF karpathy/tiny_shakespeare's splits: train = the first 1,003,854 characters, validation = the
// next 55,770, test = the last 55,770, each cut into non-overlapping 65-character pieces
// (64 inputs + shifted targets) starting at 0, 65, ... < len - 65 (GEM: 857 validation pieces).
// The platform's own val split is validation + test (the last 10%), so `val/loss` in the
// database mixes both; this prints the three numbers for one run's newest checkpoint.
//   build/bin/bench_gem_hfval DB RUN_ID [path/to/input.txt]
#include <cstdio>
#include <cstdlib>
#include <filesystem>

#include <lmgrid/train/checkpoint.hpp>
#include <lmgrid/plugin/registry.hpp>
#include <lmgrid/store/store.hpp>
#include <lmgrid/train/trainer.hpp>
#include <lmgrid/base/util.hpp>

using namespace lmgrid;

int main(int argc, char** argv) {
  if (argc < 3) {
    std::fprintf(stderr, "usage: bench_gem_hfval DB RUN_ID [input.txt]\n");
    return 2;
  }
  // The text as tools/setup.sh resolves data: the argument, else the first LMGRID_DATA_PATH entry.
  std::string text_path;
  if (argc > 3) {
    text_path = argv[3];
  } else if (const char* dp = std::getenv("LMGRID_DATA_PATH"); dp && *dp) {
    std::string first(dp);
    text_path = first.substr(0, first.find(':')) + "/tinyshakespeare/input.txt";
  } else {
    std::fprintf(stderr, "bench_gem_hfval: give input.txt or set LMGRID_DATA_PATH\n");
    return 2;
  }
  Store store(argv[1], true);
  auto cks = store.checkpoints(static_cast<int64_t>(std::atoll(argv[2])));
  if (cks.empty()) {
    std::fprintf(stderr, "no checkpoint for run %s\n", argv[2]);
    return 1;
  }
  std::filesystem::path path = cks.front().path;
  CheckpointMeta meta = read_checkpoint_meta(path);
  RunConfig cfg = RunConfig::from_json(meta.config_json);
  RunObjects o = build_run(cfg, Registry::instance(), false, meta.tokenizer_state);
  load_checkpoint(path, *o.model, nullptr, false);
  o.model->eval();
  torch::NoGradGuard ng;
  std::string text = read_file(text_path);
  const int64_t n_train = 1003854, n_val = 55770;
  auto eval = [&](const std::string& part) {
    auto ids = o.tokenizer->encode(part);
    auto t = torch::tensor(torch::ArrayRef<int64_t>(ids), torch::kLong);
    std::vector<torch::Tensor> xs, ys;
    for (int64_t s = 0; s < t.numel() - 65; s += 65)
      xs.push_back(t.narrow(0, s, 64)), ys.push_back(t.narrow(0, s + 1, 64));
    double sum = 0;
    int64_t n = static_cast<int64_t>(xs.size());
    for (int64_t i = 0; i < n; i += 64) {
      int64_t m = std::min<int64_t>(64, n - i);
      auto x = torch::stack(std::vector<torch::Tensor>(xs.begin() + i, xs.begin() + i + m));
      auto y = torch::stack(std::vector<torch::Tensor>(ys.begin() + i, ys.begin() + i + m));
      sum += lm_loss(o.model->forward(x, nullptr).logits, y, {}).item<double>() * static_cast<double>(m);
    }
    return std::make_pair(sum / static_cast<double>(n), n);
  };
  auto v = eval(text.substr(n_train, n_val)), te = eval(text.substr(n_train + n_val));
  std::printf("run %s step %lld: HF validation %.4f (%lld pieces), HF test %.4f (%lld pieces)\n", argv[2],
              static_cast<long long>(meta.step), v.first, static_cast<long long>(v.second), te.first,
              static_cast<long long>(te.second));
}
