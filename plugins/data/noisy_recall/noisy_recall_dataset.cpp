// data/noisy_recall: associative recall with the pairs buried in noise. MQAR's queries (every key
// asked once, power-law gaps, data/mqar) over a context in which the D key-value bigrams sit at
// random, non-overlapping places among noise tokens: the model must find the few associations
// that matter among distractors it has to ignore, the token-level analogue of BABILong's facts in
// filler text.
//
// Ids: 0 filler of the query region, keys 1 .. V/3 - 1, values V/3 .. 2V/3 - 1, noise 2V/3 .. V-1
// (disjoint, so noise never looks like a key). An example of seq_len L with D pairs:
//   context   the first C = round(context_fraction x L) positions (even): D bigrams "k v" at
//             random even offsets, noise tokens elsewhere
//   queries   the remaining L - C positions: (L - C) / 2 even slots, key i at slot g_i drawn
//             without replacement with P(slot j) ~ a (j+1)^(a-1); its target is its value
// Only the D query positions are scored, each its own answer. Settings ("128:8,256:16") are
// tagged seq_len=L num_kv_pairs=D.
#include <cmath>

#include <lmgrid/plugin/example_dataset.hpp>

namespace {

using namespace lmgrid;

struct NoisySpec {
  int64_t vocab_size;
  double power_a, context_fraction;
};

int64_t context_length(double fraction, int64_t L) {
  int64_t C = static_cast<int64_t>(std::llround(fraction * static_cast<double>(L)));
  return C - C % 2;
}

Example noisy_example(const NoisySpec& spec, const TaskSetting& s, std::mt19937_64& rng) {
  const int64_t L = s.seq_len, D = s.size, V = spec.vocab_size, third = V / 3;
  const int64_t C = context_length(spec.context_fraction, L), space = (L - C) / 2;
  auto keys = distinct_ids(D, 1, third, rng), values = distinct_ids(D, third, 2 * third, rng);
  auto pair_slots = distinct_ids(D, 0, C / 2, rng);  // bigram i at offset 2 x pair_slots[i]
  Example e = blank_example(L);
  std::uniform_int_distribution<int64_t> noise(2 * third, V - 1);
  for (int64_t t = 0; t < C; ++t) e.inputs[static_cast<size_t>(t)] = noise(rng);
  for (int64_t i = 0; i < D; ++i) {
    size_t at = static_cast<size_t>(2 * pair_slots[static_cast<size_t>(i)]);
    e.inputs[at] = keys[static_cast<size_t>(i)];
    e.inputs[at + 1] = values[static_cast<size_t>(i)];
  }
  auto slots = power_law_slots(D, space, spec.power_a, rng);
  for (int64_t i = 0; i < D; ++i) {
    int64_t j = slots[static_cast<size_t>(i)];
    size_t at = static_cast<size_t>(C + 2 * j);
    e.inputs[at] = keys[static_cast<size_t>(i)];
    e.targets[at] = values[static_cast<size_t>(i)];
    e.mask[at] = 1.0f;
    e.answer_ids[at] = i;
  }
  return e;
}

class NoisyRecallPlugin : public DataPlugin {
 public:
  std::string name() const override { return "noisy_recall"; }
  std::string version() const override { return "1.0"; }
  std::string summary() const override {
    return "associative recall with the key-value pairs scattered among noise tokens, then MQAR's queries";
  }
  std::vector<ParamSpec> params() const override {
    return {
        string_param("settings", "128:8,256:16", "mixture of seq_len:num_kv_pairs settings, one slice each"),
        int_param("vocab_size", 8192, "ids: keys from the first third, values the second, noise the last", 9),
        real_param("context_fraction", 0.5, "share of the sequence that is context (pairs + noise)", 0.05, 0.95),
        real_param("power_a", 0.01, "power-law exponent of the query gaps, as in data/mqar", 1e-6, 1.0),
        int_param("train_examples", 100000, "training examples per setting", 1),
        int_param("test_examples", 1000, "evaluation examples per setting", 1),
    };
  }
  std::map<std::string, Value> tiny_config() const override {
    return {{"settings", std::string("32:2,64:4")},
            {"vocab_size", int64_t{96}},
            {"train_examples", int64_t{64}},
            {"test_examples", int64_t{16}}};
  }
  void check(const Params& p) const override {
    const int64_t V = p.i("vocab_size");
    for (const auto& s : parse_task_settings(p.s("settings"), "[data] settings")) {
      std::string at = "[data] settings: " + std::to_string(s.seq_len) + ":" + std::to_string(s.size);
      int64_t C = context_length(p.f("context_fraction"), s.seq_len);
      if (s.seq_len % 2) throw UserError(at + ": seq_len must be even");
      if (2 * s.size > C)
        throw UserError(at + ": the context (" + std::to_string(C) + " tokens) cannot hold " + std::to_string(s.size) +
                        " pairs: raise seq_len or context_fraction");
      if (s.size > (s.seq_len - C) / 2)
        throw UserError(at + ": the query region has " + std::to_string((s.seq_len - C) / 2) + " slots for " +
                        std::to_string(s.size) + " keys: lower context_fraction");
      if (s.size > V / 3 - 1)
        throw UserError(at + ": " + std::to_string(s.size) +
                        " distinct keys need vocab_size >= " + std::to_string(3 * (s.size + 1)));
    }
  }
  int64_t seq_len(const Params& p) const override {
    return max_seq_len(parse_task_settings(p.s("settings"), "[data] settings"));
  }
  std::shared_ptr<Dataset> create(const Params& p, const DataContext& ctx) const override {
    check(p);
    fit_id_tokenizer(*ctx.tokenizer, p.i("vocab_size"), name());
    NoisySpec spec{p.i("vocab_size"), p.f("power_a"), p.f("context_fraction")};
    return std::make_shared<ExampleDataset>(
        parse_task_settings(p.s("settings"), "[data] settings"), "num_kv_pairs", p.i("train_examples"),
        p.i("test_examples"), ctx.seed,
        [spec](const TaskSetting& s, std::mt19937_64& rng) { return noisy_example(spec, s, rng); });
  }
};

}  // namespace

LMGRID_PLUGIN(NoisyRecallPlugin)
