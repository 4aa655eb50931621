// data/mqar: multi-query associative recall, as Zoology's generator defines it (Arora et al.
// 2023; facts in shared/reference/wave2-facts.md §1, reimplemented from them).
//
// An example of seq_len L with D key-value pairs:
//   context   k1 v1 k2 v2 ... kD vD          (2D tokens; keys from ids 1 .. V/2 - 1, values from
//                                             V/2 .. V - 1, each drawn without replacement)
//   queries   the rest of the sequence: S = (L - 2D) / 2 even slots; key i is asked once, at slot
//             g_i, the g_i drawn without replacement with P(slot j) ~ a (j+1)^(a-1), j = 0..S-1
//             (a = power_a: small a puts most queries right after the context, but leaves a long
//             tail), placed at position 2D + 2 g_i.
// The target at a query position is its key's value (the model must emit it at the key, as after
// Zoology's one-token shift); only those D positions are scored, each its own answer. Every other
// position is filler: id 0, or a uniform random id when random_non_queries (Zoology's default;
// its Figure 2 turns it off), which may collide with keys and values, as upstream.
// A dataset mixes settings ("64:4,128:8,256:16"), tagged seq_len=L num_kv_pairs=D.
#include <lmgrid/plugin/example_dataset.hpp>

namespace {

using namespace lmgrid;

struct MqarSpec {
  int64_t vocab_size;
  double power_a;
  bool random_non_queries;
};

Example mqar_example(const MqarSpec& spec, const TaskSetting& s, std::mt19937_64& rng) {
  const int64_t L = s.seq_len, D = s.size, V = spec.vocab_size, context = 2 * D, space = (L - context) / 2;
  auto keys = distinct_ids(D, 1, V / 2, rng), values = distinct_ids(D, V / 2, V, rng);
  Example e = blank_example(L);
  std::vector<bool> filler(static_cast<size_t>(L), true);
  for (int64_t i = 0; i < D; ++i) {
    e.inputs[static_cast<size_t>(2 * i)] = keys[static_cast<size_t>(i)];
    e.inputs[static_cast<size_t>(2 * i + 1)] = values[static_cast<size_t>(i)];
    filler[static_cast<size_t>(2 * i)] = filler[static_cast<size_t>(2 * i + 1)] = false;
  }
  auto slots = power_law_slots(D, space, spec.power_a, rng);
  for (int64_t i = 0; i < D; ++i) {
    size_t at = static_cast<size_t>(context + 2 * slots[static_cast<size_t>(i)]);
    e.inputs[at] = keys[static_cast<size_t>(i)];
    e.targets[at] = values[static_cast<size_t>(i)];
    e.mask[at] = 1.0f;
    e.answer_ids[at] = i;
    filler[at] = false;
  }
  if (spec.random_non_queries) {
    std::uniform_int_distribution<int64_t> any(0, V - 1);
    for (int64_t t = 0; t < L; ++t)
      if (filler[static_cast<size_t>(t)]) e.inputs[static_cast<size_t>(t)] = any(rng);
  }
  return e;
}

class MqarPlugin : public DataPlugin {
 public:
  std::string name() const override { return "mqar"; }
  std::string version() const override { return "1.0"; }
  std::string summary() const override {
    return "multi-query associative recall (Zoology): recall the value of every key asked, scored on the answers";
  }
  std::vector<ParamSpec> params() const override {
    return {
        string_param("settings", "64:4,128:8,256:16",
                     "mixture of seq_len:num_kv_pairs settings, one slice each (Zoology's Figure 2 uses these)"),
        int_param("vocab_size", 8192, "token ids 0 .. vocab_size-1: keys from the lower half, values from the upper",
                  8),
        real_param("power_a", 0.01, "power-law exponent of the query gaps: P(slot j) ~ a (j+1)^(a-1)", 1e-6, 1.0),
        bool_param("random_non_queries", true, "fill non-query positions with random ids instead of 0"),
        int_param("train_examples", 100000, "training examples per setting (Zoology: 100,000)", 1),
        int_param("test_examples", 3000, "evaluation examples per setting (Zoology: 3,000)", 1),
    };
  }
  std::map<std::string, Value> tiny_config() const override {
    return {{"settings", std::string("16:2,32:4")},
            {"vocab_size", int64_t{64}},
            {"train_examples", int64_t{64}},
            {"test_examples", int64_t{16}}};
  }
  void check(const Params& p) const override {
    const int64_t V = p.i("vocab_size");
    for (const auto& s : parse_task_settings(p.s("settings"), "[data] settings")) {
      std::string at = "[data] settings: " + std::to_string(s.seq_len) + ":" + std::to_string(s.size);
      if (s.seq_len % 2) throw UserError(at + ": seq_len must be even (queries sit on even offsets)");
      if (4 * s.size > s.seq_len)
        throw UserError(at + ": needs 4 x num_kv_pairs <= seq_len (a context of 2D tokens and >= D query slots)");
      if (s.size > V / 2 - 1)
        throw UserError(at + ": " + std::to_string(s.size) +
                        " distinct keys need vocab_size >= " + std::to_string(2 * s.size + 2));
      if (V <= s.seq_len) throw UserError(at + ": vocab_size must exceed seq_len (Zoology's check)");
    }
  }
  int64_t seq_len(const Params& p) const override {
    return max_seq_len(parse_task_settings(p.s("settings"), "[data] settings"));
  }
  std::shared_ptr<Dataset> create(const Params& p, const DataContext& ctx) const override {
    check(p);
    fit_id_tokenizer(*ctx.tokenizer, p.i("vocab_size"), name());
    MqarSpec spec{p.i("vocab_size"), p.f("power_a"), p.b("random_non_queries")};
    return std::make_shared<ExampleDataset>(
        parse_task_settings(p.s("settings"), "[data] settings"), "num_kv_pairs", p.i("train_examples"),
        p.i("test_examples"), ctx.seed,
        [spec](const TaskSetting& s, std::mt19937_64& rng) { return mqar_example(spec, s, rng); });
  }
};

}  // namespace

LMGRID_PLUGIN(MqarPlugin)
