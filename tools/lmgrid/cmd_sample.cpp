// lmgrid sample --run ID: generate text from a run's newest checkpoint. Models with a decoding
// state (KV cache, recurrent memory) advance it one token at a time; others re-run the window
// of the last max_context() tokens. Sampling: temperature, then top-k, then top-p (nucleus).
#include <iostream>

#include <fmt/format.h>

#include <lmgrid/train/checkpoint.hpp>
#include <lmgrid/base/errors.hpp>
#include <lmgrid/plugin/registry.hpp>
#include <lmgrid/store/store.hpp>
#include <lmgrid/train/trainer.hpp>
#include <lmgrid/base/util.hpp>

#include "commands.hpp"

namespace lmgrid::cli {

namespace {

struct SampleOptions {
  std::string db, prompt = "\n";
  int64_t run_id = 0, max_tokens = 500, top_k = 0, seed = 1;
  double temperature = 0.8, top_p = 1.0;
  bool interactive = false;
};

int64_t pick(torch::Tensor logits, const SampleOptions& o, torch::Generator& gen) {
  logits = logits.to(torch::kFloat32).flatten();
  if (o.temperature <= 0) return logits.argmax().item<int64_t>();
  logits = logits / o.temperature;
  if (o.top_k > 0 && o.top_k < logits.size(0)) {
    auto kth = std::get<0>(logits.topk(o.top_k)).min();
    logits = logits.masked_fill(logits < kth, -std::numeric_limits<float>::infinity());
  }
  if (o.top_p < 1.0) {
    auto sorted = logits.sort(0, true);
    auto probs = torch::softmax(std::get<0>(sorted), 0);
    auto cum = probs.cumsum(0);
    auto remove = (cum - probs) > o.top_p;  // keep the first token that crosses p
    auto idx = std::get<1>(sorted).masked_select(remove);
    logits.index_fill_(0, idx, -std::numeric_limits<float>::infinity());
  }
  auto probs = torch::softmax(logits, 0);
  return torch::multinomial(probs, 1, false, gen).item<int64_t>();
}

class Generator {
 public:
  Generator(RunObjects& o) : o_(o) {}
  // Feeds `ids` then samples `n` tokens, streaming them to stdout.
  void run(std::vector<int64_t> ids, int64_t n, const SampleOptions& opt, torch::Generator& gen) {
    torch::NoGradGuard ng;
    Model& m = *o_.model;
    m.eval();
    int64_t ctx = m.max_context();
    auto state = m.new_decode_state(1);
    auto window = [&](const std::vector<int64_t>& all) {
      size_t start = ctx > 0 && static_cast<int64_t>(all.size()) > ctx ? all.size() - static_cast<size_t>(ctx) : 0;
      return torch::tensor(torch::ArrayRef<int64_t>(all.data() + start, all.size() - start), torch::kLong).unsqueeze(0);
    };
    torch::Tensor logits;
    int64_t fed = 0;  // tokens in the decoding state
    if (state) {
      auto w = window(ids);
      logits = m.forward(w, state.get()).logits.select(1, -1);
      fed = w.size(1);
    }
    for (int64_t i = 0; i < n; ++i) {
      if (!state) logits = m.forward(window(ids), nullptr).logits.select(1, -1);
      int64_t next = pick(logits, opt, gen);
      ids.push_back(next);
      std::fputs(o_.tokenizer->decode({next}).c_str(), stdout);
      std::fflush(stdout);
      if (state) {
        if (ctx > 0 && fed + 1 > ctx) {
          // Context full: restart the state on the last ctx-1 tokens (sliding window).
          state = m.new_decode_state(1);
          std::vector<int64_t> tail(ids.end() - (ctx - 1), ids.end() - 1);
          if (!tail.empty()) m.forward(window(tail), state.get());
          fed = static_cast<int64_t>(tail.size());
        }
        auto t = torch::tensor({next}, torch::kLong).unsqueeze(0);
        logits = m.forward(t, state.get()).logits.select(1, -1);
        ++fed;
      }
    }
    std::fputs("\n", stdout);
  }

 private:
  RunObjects& o_;
};

void sample(const SampleOptions& opt) {
  Store store(opt.db.empty() ? default_db_path() : std::filesystem::path(opt.db), true);
  auto row = store.run(opt.run_id);
  if (!row) throw UserError(fmt::format("no run with id {} in {}", opt.run_id, store.path().string()));
  auto cks = store.checkpoints(opt.run_id);
  if (cks.empty())
    throw UserError(fmt::format("run {} has no checkpoint yet (status {})", opt.run_id, status_name(row->status)));
  std::filesystem::path path = cks.front().path;
  CheckpointMeta meta = read_checkpoint_meta(path);
  RunConfig cfg = RunConfig::from_json(meta.config_json);
  // Sampling runs on the CPU in the parameters' dtype (a GPU run's float16 autocast has no CPU form).
  cfg.values["train.device"] = std::string("cpu");
  if (cfg.values["train.dtype"] != Value(std::string("float64"))) cfg.values["train.dtype"] = std::string("float32");
  RunObjects o = build_run(cfg, Registry::instance(), false, meta.tokenizer_state);
  load_checkpoint(path, *o.model, nullptr, false);
  std::fprintf(stderr, "lmgrid: run %lld (%s), checkpoint at step %lld\n", static_cast<long long>(opt.run_id),
               cfg.plugin("model").c_str(), static_cast<long long>(meta.step));
  torch::Generator gen = at::detail::createCPUGenerator(static_cast<uint64_t>(opt.seed));
  Generator g(o);
  auto encode = [&](const std::string& text) {
    auto ids = o.tokenizer->encode(text);
    if (ids.empty()) ids.push_back(0);
    return ids;
  };
  if (!opt.interactive) {
    std::fputs(opt.prompt.c_str(), stdout);
    g.run(encode(opt.prompt), opt.max_tokens, opt, gen);
    return;
  }
  std::fprintf(stderr, "interactive: type a prompt and press Enter (Ctrl-D to quit)\n");
  std::string line;
  while (std::fputs("> ", stderr), std::getline(std::cin, line)) {
    std::string prompt = line + "\n";
    g.run(encode(prompt), opt.max_tokens, opt, gen);
  }
}

}  // namespace

void add_sample(CLI::App& app) {
  auto opt = std::make_shared<SampleOptions>();
  auto* cmd = app.add_subcommand("sample", "Generate text from a trained run");
  cmd->add_option("--run", opt->run_id, "run id")->required();
  cmd->add_option("--prompt,-p", opt->prompt, "text to continue");
  cmd->add_option("--max-tokens,-n", opt->max_tokens, "tokens to generate")
      ->check(CLI::Range(int64_t{0}, int64_t{1} << 30));
  cmd->add_option("--temperature,-t", opt->temperature, "softmax temperature (0 = greedy)")
      ->check(CLI::Range(0.0, 100.0));
  cmd->add_option("--top-k", opt->top_k, "keep the k most likely tokens (0 = all)")
      ->check(CLI::Validator(
          [](std::string& s) {
            return !s.empty() && s[0] != '-' ? std::string() : "must be 0 (all tokens) or a positive integer, got " + s;
          },
          "INT>=0"));
  cmd->add_option("--top-p", opt->top_p, "keep the smallest set with probability >= p")->check(CLI::Range(0.0, 1.0));
  cmd->add_option("--seed", opt->seed, "sampling seed");
  cmd->add_flag("--interactive,-i", opt->interactive, "read prompts from standard input");
  cmd->add_option("--db", opt->db, "results database (default $LMGRID_DB or results/lmgrid.db)");
  cmd->callback([opt] { sample(*opt); });
}

}  // namespace lmgrid::cli
