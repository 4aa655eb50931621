// data/selective_copy: the Selective Copying task (Gu & Dao 2023, Mamba §3.1; also in Zoology and
// fla's synthetic suites): K data tokens scattered among blanks must be reproduced, in order,
// after a run of markers. Content-aware recall: which positions matter is known only from the
// tokens themselves, so a time-invariant recurrence cannot solve it.
//
// An example of seq_len L with K tokens to copy (ids: 0 blank, 1 marker, data tokens 2 .. V-1,
// drawn uniformly, repeats allowed):
//   context   C = L - K positions: K data tokens at distinct random positions (kept in order),
//             blanks elsewhere
//   answer    K markers; the target at the j-th marker is the j-th data token
// Only the K marker positions are scored, each its own answer (token accuracy, as the papers
// report). A dataset mixes settings ("64:8,256:16"), tagged seq_len=L num_tokens=K.
#include <lmgrid/plugin/example_dataset.hpp>

namespace {

using namespace lmgrid;

constexpr int64_t kBlank = 0, kMarker = 1, kFirstData = 2;

Example selective_copy_example(int64_t vocab_size, const TaskSetting& s, std::mt19937_64& rng) {
  const int64_t L = s.seq_len, K = s.size, C = L - K;
  Example e = blank_example(L);  // inputs kBlank (0)
  // K distinct positions of [0, C), in increasing order: a random subset (selection sampling).
  std::vector<int64_t> where;
  for (int64_t t = 0, need = K; t < C && need > 0; ++t) {
    std::uniform_int_distribution<int64_t> u(0, C - t - 1);
    if (u(rng) < need) where.push_back(t), --need;
  }
  std::uniform_int_distribution<int64_t> token(kFirstData, vocab_size - 1);
  for (int64_t j = 0; j < K; ++j) {
    int64_t x = token(rng);
    e.inputs[static_cast<size_t>(where[static_cast<size_t>(j)])] = x;
    size_t at = static_cast<size_t>(C + j);
    e.inputs[at] = kMarker;
    e.targets[at] = x;
    e.mask[at] = 1.0f;
    e.answer_ids[at] = j;
  }
  return e;
}

class SelectiveCopyPlugin : public DataPlugin {
 public:
  std::string name() const override { return "selective_copy"; }
  std::string version() const override { return "1.0"; }
  std::string summary() const override {
    return "selective copying (Mamba): reproduce the data tokens scattered among blanks, in order";
  }
  std::vector<ParamSpec> params() const override {
    return {
        string_param("settings", "64:8,128:16,256:16", "mixture of seq_len:num_tokens settings, one slice each"),
        int_param("vocab_size", 16, "ids: 0 blank, 1 marker, data tokens 2 .. vocab_size-1 (Mamba: 16)", 3),
        int_param("train_examples", 100000, "training examples per setting", 1),
        int_param("test_examples", 1000, "evaluation examples per setting", 1),
    };
  }
  std::map<std::string, Value> tiny_config() const override {
    return {{"settings", std::string("16:4,32:4")}, {"train_examples", int64_t{64}}, {"test_examples", int64_t{16}}};
  }
  void check(const Params& p) const override {
    for (const auto& s : parse_task_settings(p.s("settings"), "[data] settings"))
      if (2 * s.size >= s.seq_len)
        throw UserError("[data] settings: " + std::to_string(s.seq_len) + ":" + std::to_string(s.size) +
                        ": needs seq_len > 2 x num_tokens (the tokens, at least one blank, and the markers)");
  }
  int64_t seq_len(const Params& p) const override {
    return max_seq_len(parse_task_settings(p.s("settings"), "[data] settings"));
  }
  std::shared_ptr<Dataset> create(const Params& p, const DataContext& ctx) const override {
    check(p);
    const int64_t V = p.i("vocab_size");
    fit_id_tokenizer(*ctx.tokenizer, V, name());
    return std::make_shared<ExampleDataset>(
        parse_task_settings(p.s("settings"), "[data] settings"), "num_tokens", p.i("train_examples"),
        p.i("test_examples"), ctx.seed,
        [V](const TaskSetting& s, std::mt19937_64& rng) { return selective_copy_example(V, s, rng); });
  }
};

}  // namespace

LMGRID_PLUGIN(SelectiveCopyPlugin)
