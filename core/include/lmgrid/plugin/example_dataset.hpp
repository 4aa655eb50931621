// A Dataset over generated examples: what the synthetic memory tasks (data/mqar,
// data/selective_copy, data/noisy_recall) share. Header-only, for dataset plugins.
//
// A task is a generator: (setting, random stream) -> one Example of that setting's length. The
// dataset is a mixture of settings ("64:4,128:8,256:16": seq_len:task-size pairs), each with a
// fixed set of `train_examples` training and `test_examples` evaluation examples; example k of a
// (split, setting) is generated from its own stream, seeded from (split, setting, k) and, for
// training, the run's seed. So every batch is a pure function of (seed, index), as the Dataset
// contract asks, and nothing is held in memory.
//
// Batches hold one setting each (no padding waste): training batch i is setting i mod S, batch
// i / S of that setting's epoch-shuffled examples; evaluation batch i is setting i mod S too, so
// any prefix of the evaluation batches spans every setting. Rows carry the setting's tag
// ("seq_len=256 num_kv_pairs=16"), the loss mask (answer positions only) and answer ids.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <functional>
#include <numeric>
#include <random>
#include <sstream>
#include <string>
#include <unordered_set>
#include <vector>

#include "lmgrid/base/errors.hpp"
#include "lmgrid/plugin/plugin.hpp"

namespace lmgrid {

// One generated sequence: inputs[t] is fed, targets[t] scored where mask[t] is 1; positions with
// the same answer id >= 0 form one answer.
struct Example {
  std::vector<int64_t> inputs, targets, answer_ids;
  std::vector<float> mask;
};

// An example of L positions: inputs and targets 0, nothing scored, no answers.
inline Example blank_example(int64_t L) {
  Example e;
  e.inputs.assign(static_cast<size_t>(L), 0);
  e.targets.assign(static_cast<size_t>(L), 0);
  e.mask.assign(static_cast<size_t>(L), 0.0f);
  e.answer_ids.assign(static_cast<size_t>(L), -1);
  return e;
}

// `n` distinct ids uniformly from [lo, hi).
inline std::vector<int64_t> distinct_ids(int64_t n, int64_t lo, int64_t hi, std::mt19937_64& rng) {
  std::uniform_int_distribution<int64_t> pick(lo, hi - 1);
  std::unordered_set<int64_t> seen;
  std::vector<int64_t> out;
  while (static_cast<int64_t>(out.size()) < n)
    if (int64_t x = pick(rng); seen.insert(x).second) out.push_back(x);
  return out;
}

// `n` distinct slots of [0, space) with P(j) ~ a (j+1)^(a-1), drawn one after another without
// replacement (what numpy's choice(replace=False, p=...) does): MQAR's query gaps.
inline std::vector<int64_t> power_law_slots(int64_t n, int64_t space, double a, std::mt19937_64& rng) {
  std::vector<double> w(static_cast<size_t>(space));
  for (int64_t j = 0; j < space; ++j) w[static_cast<size_t>(j)] = a * std::pow(static_cast<double>(j + 1), a - 1.0);
  std::vector<int64_t> out;
  for (int64_t i = 0; i < n; ++i) {
    std::discrete_distribution<int64_t> pick(w.begin(), w.end());
    int64_t j = pick(rng);
    out.push_back(j);
    w[static_cast<size_t>(j)] = 0;
  }
  return out;
}

// One (seq_len, size) setting of a task mixture; `size` is the task's own count (key-value pairs,
// tokens to copy).
struct TaskSetting {
  int64_t seq_len = 0, size = 0;
};

// Parses "64:4,128:8" (spaces allowed). Throws UserError naming `where` and the bad piece.
inline std::vector<TaskSetting> parse_task_settings(const std::string& text, const std::string& where) {
  std::vector<TaskSetting> out;
  std::stringstream all(text);
  for (std::string piece; std::getline(all, piece, ',');) {
    piece.erase(std::remove(piece.begin(), piece.end(), ' '), piece.end());
    auto colon = piece.find(':');
    TaskSetting s;
    try {
      if (colon == std::string::npos) throw std::invalid_argument("no colon");
      size_t used = 0;
      s.seq_len = std::stoll(piece.substr(0, colon), &used);
      if (used != colon) throw std::invalid_argument("seq_len");
      std::string rest = piece.substr(colon + 1);
      s.size = std::stoll(rest, &used);
      if (used != rest.size()) throw std::invalid_argument("size");
    } catch (const std::exception&) {
      throw UserError(where + ": '" + piece + "' is not seq_len:size (e.g. \"64:4,256:16\")");
    }
    if (s.seq_len < 2 || s.size < 1) throw UserError(where + ": '" + piece + "' needs seq_len >= 2 and size >= 1");
    out.push_back(s);
  }
  if (out.empty()) throw UserError(where + ": no setting given (e.g. \"64:4,256:16\")");
  return out;
}

// The longest seq_len of a mixture (the dataset's DataPlugin::seq_len).
inline int64_t max_seq_len(const std::vector<TaskSetting>& settings) {
  int64_t L = 0;
  for (const auto& s : settings) L = std::max(L, s.seq_len);
  return L;
}

// A stream for example k of (split, setting) under `seed` (the run's seed for training, a fixed
// one for evaluation, so that every run is scored on the same examples).
inline std::mt19937_64 example_rng(uint64_t seed, int split, size_t setting, int64_t k) {
  uint64_t x = seed * 0x9E3779B97F4A7C15ull + (static_cast<uint64_t>(split) << 56) +
               (static_cast<uint64_t>(setting) << 40) + static_cast<uint64_t>(k);
  x += 0x9E3779B97F4A7C15ull;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return std::mt19937_64(x ^ (x >> 31));
}

class ExampleDataset : public Dataset {
 public:
  using Generator = std::function<Example(const TaskSetting&, std::mt19937_64&)>;

  // `size_key` names the setting's size in tags ("num_kv_pairs").
  ExampleDataset(std::vector<TaskSetting> settings, std::string size_key, int64_t train_examples, int64_t test_examples,
                 uint64_t seed, Generator generate)
      : settings_(std::move(settings)),
        size_key_(std::move(size_key)),
        train_examples_(train_examples),
        test_examples_(test_examples),
        seed_(seed),
        generate_(std::move(generate)) {}

  Batch train_batch(int64_t index, int64_t batch_size) override {
    const size_t s = static_cast<size_t>(index % n_settings());
    const int64_t local = index / n_settings();
    std::vector<int64_t> ks;
    for (int64_t b = 0; b < batch_size; ++b) {
      int64_t global = local * batch_size + b, epoch = global / train_examples_, pos = global % train_examples_;
      ks.push_back(permutation(s, epoch)[static_cast<size_t>(pos)]);
    }
    return assemble(s, ks, 0, seed_, false);
  }

  int64_t eval_batch_count(Split split, int64_t batch_size) const override {
    if (split == Split::train || batch_size <= 0) return 0;
    return (test_examples_ / batch_size) * n_settings();
  }

  Batch eval_batch(Split split, int64_t index, int64_t batch_size) override {
    if (index < 0 || index >= eval_batch_count(split, batch_size))
      throw std::out_of_range("eval batch index out of range");
    const size_t s = static_cast<size_t>(index % n_settings());
    const int64_t local = index / n_settings();
    std::vector<int64_t> ks;
    for (int64_t b = 0; b < batch_size; ++b) ks.push_back(local * batch_size + b);
    // val and test are different examples; neither depends on the run's seed.
    return assemble(s, ks, split == Split::val ? 1 : 2, 0x5EEDull, true);
  }

  int64_t train_tokens() const override {
    int64_t n = 0;
    for (const auto& s : settings_) n += s.seq_len * train_examples_;
    return n;
  }

 private:
  int64_t n_settings() const { return static_cast<int64_t>(settings_.size()); }

  Batch assemble(size_t s, const std::vector<int64_t>& ks, int split, uint64_t seed, bool eval) {
    const TaskSetting& set = settings_[s];
    const int64_t B = static_cast<int64_t>(ks.size()), T = set.seq_len;
    std::vector<int64_t> in, tg, ids;
    std::vector<float> mask;
    in.reserve(static_cast<size_t>(B * T)), tg.reserve(static_cast<size_t>(B * T));
    for (int64_t k : ks) {
      auto rng = example_rng(seed, split, s, k);
      Example e = generate_(set, rng);
      if (static_cast<int64_t>(e.inputs.size()) != T || e.targets.size() != e.inputs.size() ||
          e.mask.size() != e.inputs.size() || e.answer_ids.size() != e.inputs.size())
        throw std::logic_error("synthetic task: an example does not have seq_len positions");
      in.insert(in.end(), e.inputs.begin(), e.inputs.end());
      tg.insert(tg.end(), e.targets.begin(), e.targets.end());
      mask.insert(mask.end(), e.mask.begin(), e.mask.end());
      ids.insert(ids.end(), e.answer_ids.begin(), e.answer_ids.end());
    }
    Batch b;
    b.inputs = torch::tensor(torch::ArrayRef<int64_t>(in), torch::kLong).view({B, T});
    b.targets = torch::tensor(torch::ArrayRef<int64_t>(tg), torch::kLong).view({B, T});
    b.loss_mask = torch::tensor(torch::ArrayRef<float>(mask), torch::kFloat32).view({B, T});
    if (eval) {
      b.answer_ids = torch::tensor(torch::ArrayRef<int64_t>(ids), torch::kLong).view({B, T});
      std::string tag = "seq_len=" + std::to_string(set.seq_len) + " " + size_key_ + "=" + std::to_string(set.size);
      b.tags.assign(static_cast<size_t>(B), tag);
    }
    return b;
  }

  const std::vector<int64_t>& permutation(size_t s, int64_t epoch) {
    if (perm_.size() != settings_.size()) perm_.assign(settings_.size(), {}), perm_epoch_.assign(settings_.size(), -1);
    if (perm_epoch_[s] != epoch) {
      auto& p = perm_[s];
      p.resize(static_cast<size_t>(train_examples_));
      std::iota(p.begin(), p.end(), 0);
      auto rng = example_rng(seed_, 3, s, epoch);
      std::shuffle(p.begin(), p.end(), rng);
      perm_epoch_[s] = epoch;
    }
    return perm_[s];
  }

  std::vector<TaskSetting> settings_;
  std::string size_key_;
  int64_t train_examples_, test_examples_;
  uint64_t seed_;
  Generator generate_;
  std::vector<std::vector<int64_t>> perm_;
  std::vector<int64_t> perm_epoch_;
};

// Synthetic tasks name their own token ids: the tokenizer must be `ids` (or any tokenizer with at
// least `vocab_size` tokens after fit). Fits it with the highest id and checks the result.
inline void fit_id_tokenizer(Tokenizer& tok, int64_t vocab_size, const std::string& dataset) {
  tok.fit(std::to_string(vocab_size - 1));
  if (tok.vocab_size() < vocab_size)
    throw UserError("[data] plugin = \"" + dataset + "\" generates token ids up to " + std::to_string(vocab_size - 1) +
                    " but the tokenizer has " + std::to_string(tok.vocab_size()) +
                    " tokens: set [tokenizer] plugin = \"ids\"");
}

}  // namespace lmgrid
