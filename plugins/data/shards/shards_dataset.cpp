// data/shards: llm.c's pre-tokenized .bin shards (lmgrid/data/shards.hpp), memory-mapped.
// `train` and `val` are globs; the matching shards of each are read as one concatenated stream.
// Training windows are random offsets of seq_len + 1 tokens into the train stream (they may
// span two shards), deterministic in (seed, batch index) exactly as data/text's; evaluation
// windows are fixed and non-overlapping over the val stream. check() validates every header and
// scans every token against the vocabulary before anything runs. It is not a tokenizer: the
// run's [tokenizer] must be the one the shards were written with (README.md).
#include <algorithm>
#include <random>

#include <ATen/Parallel.h>

#include <nlohmann/json.hpp>

#include <lmgrid/base/env.hpp>
#include <lmgrid/base/errors.hpp>
#include <lmgrid/data/batch_rng.hpp>
#include <lmgrid/base/util.hpp>
#include <lmgrid/data/shards.hpp>
#include <lmgrid/plugin/plugin.hpp>

namespace {

using namespace lmgrid;

// tokenizer.json beside the first train shard (written by `lmgrid data tokenize`), or null.
nlohmann::json tokenizer_json(const std::string& train_glob) {
  auto file = expand_shard_glob(train_glob).front().parent_path() / "tokenizer.json";
  if (!std::filesystem::exists(file)) return nullptr;
  try {
    return nlohmann::json::parse(read_file(file));
  } catch (const nlohmann::json::exception& e) {
    throw UserError(file.string() + ": not valid JSON (" + e.what() + ")");
  }
}

// The ids' upper bound: vocab_size, else tokenizer.json's vocab_size.
int64_t shard_vocab(const Params& p) {
  if (p.i("vocab_size") > 0) return p.i("vocab_size");
  auto j = tokenizer_json(p.s("train"));
  if (j.is_object() && j.contains("vocab_size") && j["vocab_size"].is_number_integer())
    return j["vocab_size"].get<int64_t>();
  throw UserError("vocab_size is 0 and there is no tokenizer.json (with a vocab_size) beside " + p.s("train") +
                  ": set data.vocab_size to the vocabulary the shards were written with (GPT-2: 50257)");
}

ShardStream open_split(const Params& p, const std::string& key) {
  if (p.s(key).empty())
    throw UserError(key + " is empty: give the " + key + " shards as a glob, e.g. \"data/fineweb_" + key + "_*.bin\"");
  std::vector<std::filesystem::path> files;
  try {
    files = expand_shard_glob(p.s(key));
  } catch (const UserError& e) {
    throw UserError(key + " = \"" + p.s(key) + "\": " + e.what());
  }
  try {
    return ShardStream(files);
  } catch (const UserError& e) {
    throw UserError(key + " shard " + e.what());  // "train shard data/x.bin: header[0] ..."
  }
}

class ShardsDataset : public Dataset {
 public:
  ShardsDataset(const Params& p, const DataContext& ctx)
      : seq_len_(p.i("seq_len")), seed_(ctx.seed), train_(open_split(p, "train")), val_(open_split(p, "val")) {
    int64_t bound = shard_vocab(p);
    // A tokenizer that learns its vocabulary has none yet: shards carry no text to fit it on,
    // so it takes the fitted state `lmgrid data tokenize` saved beside them.
    if (ctx.tokenizer->vocab_size() == 0) {
      auto j = tokenizer_json(p.s("train"));
      if (j.is_object() && j.contains("state") && j["state"].is_string()) {
        try {
          ctx.tokenizer->load(j["state"].get<std::string>());
        } catch (const std::exception& e) {
          throw UserError("the tokenizer state in tokenizer.json beside " + p.s("train") + " (plugin " +
                          j.value("plugin", "?") + ") does not load into the run's tokenizer: " + e.what());
        }
      }
    }
    int64_t v = ctx.tokenizer->vocab_size();
    if (v > 0 && v < bound)
      throw UserError("vocab_size: the shards' ids go up to " + std::to_string(bound - 1) + " but the tokenizer has " +
                      std::to_string(v) +
                      " ids; configure the tokenizer the shards were written with (GPT-2 shards: "
                      "[tokenizer] plugin = \"bpe\", pretrained = \"gpt2\", specials = \"<|endoftext|>\")");
    if (train_.size() < seq_len_ + 1)
      throw UserError("train has " + std::to_string(train_.size()) + " tokens, too few for seq_len " +
                      std::to_string(seq_len_));
  }

  Batch train_batch(int64_t index, int64_t batch_size) override {
    auto rng = batch_rng(seed_, index);
    std::uniform_int_distribution<int64_t> dist(0, train_.size() - seq_len_ - 1);
    std::vector<int64_t> starts(static_cast<size_t>(batch_size));
    for (auto& s : starts) s = dist(rng);
    return windows(train_, starts);
  }

  int64_t eval_batch_count(Split split, int64_t batch_size) const override {
    if (split != Split::val) return 0;
    return (std::max<int64_t>(0, val_.size() - 1) / seq_len_) / batch_size;
  }

  // Batch i takes windows i, i+count, i+2*count ... so any prefix of batches spans the split.
  Batch eval_batch(Split split, int64_t index, int64_t batch_size) override {
    int64_t count = eval_batch_count(split, batch_size);
    if (index < 0 || index >= count) throw std::out_of_range("eval batch index out of range");
    std::vector<int64_t> starts;
    for (int64_t b = 0; b < batch_size; ++b) starts.push_back((index + b * count) * seq_len_);
    return windows(val_, starts);
  }

  int64_t train_tokens() const override { return train_.size(); }

 private:
  // Inputs are tokens [s, s + T) and targets [s + 1, s + T + 1) of each window, copied straight
  // from the mappings into the (B, T) tensors.
  Batch windows(const ShardStream& stream, const std::vector<int64_t>& starts) const {
    auto B = static_cast<int64_t>(starts.size());
    auto inputs = torch::empty({B, seq_len_}, torch::kLong), targets = torch::empty({B, seq_len_}, torch::kLong);
    int64_t *in = inputs.data_ptr<int64_t>(), *tg = targets.data_ptr<int64_t>();
    // Rows on LibTorch's intra-op threads (idle between steps); each row is independent.
    at::parallel_for(0, B, 8, [&](int64_t b0, int64_t b1) {
      for (int64_t b = b0; b < b1; ++b) {
        if (b + 1 < b1) stream.prefetch(starts[static_cast<size_t>(b + 1)], seq_len_ + 1);
        int64_t *row_in = in + b * seq_len_, *row_tg = tg + b * seq_len_;
        stream.copy(starts[static_cast<size_t>(b)], seq_len_, row_in);
        std::copy(row_in + 1, row_in + seq_len_, row_tg);  // targets: the inputs shifted by one
        stream.copy(starts[static_cast<size_t>(b)] + seq_len_, 1, row_tg + seq_len_ - 1);
      }
    });
    return {inputs, targets, {}};
  }

  int64_t seq_len_;
  uint64_t seed_;
  ShardStream train_, val_;
};

// The sweep's tiny instance: three small shards (both formats) generated once into the cache.
std::map<std::string, Value> tiny_shards() {
  auto dir = cache_dir() / "shards-tiny";
  std::filesystem::create_directories(dir);
  struct Spec {
    const char* name;
    int64_t n;
    ShardFormat format;
  };
  uint64_t x = 1;
  for (const Spec& s :
       {Spec{"tiny_val_000000.bin", 600, ShardFormat::v1}, Spec{"tiny_train_000001.bin", 1500, ShardFormat::v1},
        Spec{"tiny_train_000002.bin", 900, ShardFormat::v7}}) {
    std::vector<int64_t> ids(static_cast<size_t>(s.n));
    for (auto& id : ids) id = static_cast<int64_t>((x = splitmix64(x)) % 64);
    try {
      if (read_shard_header(dir / s.name).ntok == s.n) continue;
    } catch (const UserError&) {
    }
    write_shard(dir / s.name, ids, s.format);
  }
  return {{"train", (dir / "tiny_train_*.bin").string()},
          {"val", (dir / "tiny_val_*.bin").string()},
          {"seq_len", int64_t{16}},
          {"vocab_size", int64_t{64}}};
}

class ShardsPlugin : public DataPlugin {
 public:
  std::string name() const override { return "shards"; }
  std::string version() const override { return "1.0"; }
  std::string summary() const override {
    return "llm.c .bin token shards (uint16 v1 / uint32 v7), memory-mapped; train and val globs";
  }
  std::vector<ParamSpec> params() const override {
    return {
        string_param("train", "", "glob of the training shards, e.g. \"data/fineweb_train_*.bin\" (sorted)"),
        string_param("val", "", "glob of the validation shards, e.g. \"data/fineweb_val_*.bin\""),
        int_param("seq_len", 1024, "tokens per training window (context length)", 1),
        int_param("vocab_size", 0,
                  "upper bound of the ids (GPT-2: 50257); 0 = the vocab_size in tokenizer.json beside the "
                  "train shards",
                  0),
    };
  }
  std::map<std::string, Value> tiny_config() const override { return tiny_shards(); }
  // Every header and every token, before anything runs (a sequential pass over the mappings).
  void check(const Params& p) const override {
    ShardStream train = open_split(p, "train"), val = open_split(p, "val");
    int64_t bound = shard_vocab(p);
    for (const auto* stream : {&train, &val})
      for (const auto& shard : stream->shards()) try {
          shard.check_vocab(bound);
        } catch (const UserError& e) {
          throw UserError(std::string(stream == &train ? "train" : "val") + " shard " + e.what());
        }
    if (train.size() < p.i("seq_len") + 1)
      throw UserError("train: " + std::to_string(train.size()) + " tokens in " + p.s("train") +
                      ", too few for seq_len " + std::to_string(p.i("seq_len")));
    if (val.size() < p.i("seq_len") + 1)
      throw UserError("val: " + std::to_string(val.size()) + " tokens in " + p.s("val") +
                      ", too few for one evaluation window of seq_len " + std::to_string(p.i("seq_len")));
  }
  int64_t seq_len(const Params& p) const override { return p.i("seq_len"); }
  std::shared_ptr<Dataset> create(const Params& p, const DataContext& ctx) const override {
    return std::make_shared<ShardsDataset>(p, ctx);
  }
};

}  // namespace

LMGRID_PLUGIN(ShardsPlugin)
