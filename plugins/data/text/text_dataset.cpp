// data/text: one text (a named source or a file), split by fraction into train and val
// (nanoGPT: first 90% of the characters train, last 10% val). Training windows are random
// offsets (sampling = "random", nanoGPT) or non-overlapping windows shuffled every epoch
// (sampling = "epoch", GEM). Evaluation windows are fixed and non-overlapping.
// Deterministic in (seed, batch index): batch i draws from its own RNG stream.
#include <algorithm>
#include <cmath>
#include <numeric>
#include <random>

#include <lmgrid/data/data_source.hpp>
#include <lmgrid/base/errors.hpp>
#include <lmgrid/plugin/plugin.hpp>
#include <lmgrid/base/util.hpp>

namespace {

using namespace lmgrid;

uint64_t splitmix64(uint64_t x) {
  x += 0x9E3779B97F4A7C15ull;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}

class TextDataset : public Dataset {
 public:
  TextDataset(const Params& p, const DataContext& ctx)
      : seq_len_(p.i("seq_len")), seed_(ctx.seed), epoch_mode_(p.s("sampling") == "epoch") {
    std::string text = read_file(resolve_source(p.s("source")));
    // train | val | test, in text order: train is the first 1 - val_fraction - test_fraction
    // (nanoGPT: int(0.9 n)), test the last round(test_fraction n) characters (HF's tiny_shakespeare
    // splits: 1,003,854 / 55,770 / 55,770 with 0.05 / 0.05).
    const double n = static_cast<double>(text.size());
    auto utf8_boundary = [&](size_t cut) {
      while (cut < text.size() && (static_cast<unsigned char>(text[cut]) & 0xC0) == 0x80) ++cut;
      return cut;
    };
    size_t cut = utf8_boundary(static_cast<size_t>(n * (1.0 - p.f("val_fraction") - p.f("test_fraction"))));
    size_t test_cut =
        utf8_boundary(std::max(cut, text.size() - static_cast<size_t>(std::llround(n * p.f("test_fraction")))));
    std::string train_text = text.substr(0, cut), val_text = text.substr(cut, test_cut - cut);
    ctx.tokenizer->fit(train_text);
    train_ = to_tensor(ctx.tokenizer->encode(train_text));
    val_ = to_tensor(ctx.tokenizer->encode(val_text));
    test_ = to_tensor(ctx.tokenizer->encode(text.substr(test_cut)));
    if (train_.numel() < seq_len_ + 1)
      throw UserError("source '" + p.s("source") + "' has too few training tokens (" + std::to_string(train_.numel()) +
                      ") for seq_len " + std::to_string(seq_len_));
  }

  Batch train_batch(int64_t index, int64_t batch_size) override {
    std::vector<int64_t> starts(static_cast<size_t>(batch_size));
    if (epoch_mode_) {
      // Non-overlapping windows of seq_len+1 tokens, a fresh permutation every epoch.
      int64_t n_windows = train_.numel() / (seq_len_ + 1);
      for (int64_t b = 0; b < batch_size; ++b) {
        int64_t global = index * batch_size + b, epoch = global / n_windows, pos = global % n_windows;
        starts[static_cast<size_t>(b)] = permutation(epoch, n_windows)[static_cast<size_t>(pos)] * (seq_len_ + 1);
      }
    } else {
      std::mt19937_64 rng(splitmix64(seed_ * 0x100000001B3ull + static_cast<uint64_t>(index)));
      std::uniform_int_distribution<int64_t> dist(0, train_.numel() - seq_len_ - 1);
      for (auto& s : starts) s = dist(rng);
    }
    return windows(train_, starts);
  }

  int64_t eval_batch_count(Split split, int64_t batch_size) const override {
    const auto& t = split_tensor(split);
    return (std::max<int64_t>(0, t.numel() - 1) / seq_len_) / batch_size;
  }

  // Batch i takes windows i, i+count, i+2*count ... so any prefix of batches spans the split.
  Batch eval_batch(Split split, int64_t index, int64_t batch_size) override {
    const auto& t = split_tensor(split);
    int64_t count = eval_batch_count(split, batch_size);
    if (index < 0 || index >= count) throw std::out_of_range("eval batch index out of range");
    std::vector<int64_t> starts;
    for (int64_t b = 0; b < batch_size; ++b) starts.push_back((index + b * count) * seq_len_);
    return windows(t, starts);
  }

  int64_t train_tokens() const override { return train_.numel(); }

 private:
  const torch::Tensor& split_tensor(Split s) const {
    return s == Split::train ? train_ : s == Split::val ? val_ : test_;
  }
  static torch::Tensor to_tensor(const std::vector<int64_t>& ids) {
    return torch::tensor(torch::ArrayRef<int64_t>(ids), torch::kLong);
  }
  Batch windows(const torch::Tensor& t, const std::vector<int64_t>& starts) const {
    auto idx = torch::tensor(torch::ArrayRef<int64_t>(starts), torch::kLong).unsqueeze(1) +
               torch::arange(seq_len_ + 1, torch::kLong).unsqueeze(0);  // (B, T+1)
    auto w = t.index_select(0, idx.flatten()).view({static_cast<int64_t>(starts.size()), seq_len_ + 1});
    return {w.narrow(1, 0, seq_len_).contiguous(), w.narrow(1, 1, seq_len_).contiguous(), {}};
  }
  const std::vector<int64_t>& permutation(int64_t epoch, int64_t n) {
    if (epoch != perm_epoch_) {
      perm_.resize(static_cast<size_t>(n));
      std::iota(perm_.begin(), perm_.end(), 0);
      std::mt19937_64 rng(splitmix64(seed_ * 0x9E3779B1ull + static_cast<uint64_t>(epoch) + 1));
      std::shuffle(perm_.begin(), perm_.end(), rng);
      perm_epoch_ = epoch;
    }
    return perm_;
  }

  int64_t seq_len_;
  uint64_t seed_;
  bool epoch_mode_;
  torch::Tensor train_, val_, test_;
  std::vector<int64_t> perm_;
  int64_t perm_epoch_ = -1;
};

class TextPlugin : public DataPlugin {
 public:
  std::string name() const override { return "text"; }
  std::string version() const override { return "1.0"; }
  std::string summary() const override {
    return "a text file or named source, split by fraction; random or epoch windows";
  }
  std::vector<ParamSpec> params() const override {
    return {
        string_param("source", "tiny_shakespeare", "named source (see `lmgrid data`) or a file path"),
        int_param("seq_len", 64, "tokens per training window (context length)", 1),
        real_param("val_fraction", 0.1, "fraction of the text held out for validation (after train)", 0.0, 0.9),
        real_param("test_fraction", 0.0, "fraction at the very end held out as a test split, never scored in training",
                   0.0, 0.9),
        string_param("sampling", "random",
                     "random offsets (nanoGPT) or shuffled non-overlapping windows per epoch (GEM)",
                     {"random", "epoch"}),
    };
  }
  std::map<std::string, Value> tiny_config() const override { return {{"seq_len", int64_t{16}}}; }
  void check(const Params& p) const override {
    // The trainer scores every run on the val split: without one every val/loss would be NaN.
    if (p.f("val_fraction") <= 0.0)
      throw UserError("val_fraction must be above 0: the trainer evaluates every run on the val split");
    if (p.f("val_fraction") + p.f("test_fraction") >= 1.0)
      throw UserError("val_fraction + test_fraction must be below 1 (got " + std::to_string(p.f("val_fraction")) +
                      " + " + std::to_string(p.f("test_fraction")) + ")");
    resolve_source(p.s("source"));
  }
  int64_t seq_len(const Params& p) const override { return p.i("seq_len"); }
  std::shared_ptr<Dataset> create(const Params& p, const DataContext& ctx) const override {
    return std::make_shared<TextDataset>(p, ctx);
  }
};

}  // namespace

LMGRID_PLUGIN(TextPlugin)
