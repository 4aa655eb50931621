// The generic trainer (see trainer.hpp). The host never branches on plugin names here.
#include "lmgrid/train/trainer.hpp"

#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <fstream>
#include <limits>
#include <optional>
#include <map>
#include <set>
#include <sstream>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <torch/csrc/autograd/profiler.h>

#include "lmgrid/dist/process_group.hpp"
#include "lmgrid/kernels/cpu_kernels.hpp"
#include "lmgrid/kernels/optim.hpp"
#include "lmgrid/plugin/boundary.hpp"
#include "lmgrid/plugin/torch_compat.hpp"
#include "lmgrid/train/answers.hpp"
#include "lmgrid/train/batch_split.hpp"
#include "lmgrid/train/checkpoint.hpp"
#include "lmgrid/train/tokenizer_cache.hpp"
#include "lmgrid/base/env.hpp"
#include "lmgrid/base/errors.hpp"
#include "lmgrid/base/util.hpp"

namespace lmgrid {

namespace fs = std::filesystem;

namespace {
char g_current_plugin[128] = {0};
}
const char* current_plugin() { return g_current_plugin; }
void set_current_plugin(const std::string& id) {
  size_t n = std::min(id.size(), sizeof(g_current_plugin) - 1);
  std::memcpy(g_current_plugin, id.data(), n);
  g_current_plugin[n] = '\0';
}

double scheduled_lr(const std::string& schedule, int64_t step, double lr, double lr_min, int64_t warmup,
                    int64_t decay_steps, double decay_fraction) {
  // nanoGPT's get_lr for every schedule: warm-up lr * (step + 1) / (warmup + 1).
  if (warmup > 0 && step < warmup) return lr * static_cast<double>(step + 1) / static_cast<double>(warmup + 1);
  if (schedule == "constant") return lr;
  // wsd: stable at lr until the decay phase (the last decay_fraction of decay_steps, not before
  // the end of the warm-up), then linear to lr_min.
  double start = static_cast<double>(warmup);
  if (schedule == "wsd") {
    start = std::max(start, static_cast<double>(decay_steps) - decay_fraction * static_cast<double>(decay_steps));
    if (static_cast<double>(step) < start) return lr;
  }
  if (step > decay_steps) return lr_min;
  double ratio = static_cast<double>(decay_steps) > start
                     ? (static_cast<double>(step) - start) / (static_cast<double>(decay_steps) - start)
                     : 1.0;
  ratio = std::clamp(ratio, 0.0, 1.0);
  double coeff = schedule == "cosine" ? 0.5 * (1.0 + std::cos(M_PI * ratio)) : 1.0 - ratio;
  return lr_min + coeff * (lr - lr_min);
}

torch::Tensor lm_loss(const torch::Tensor& logits, const torch::Tensor& targets, const torch::Tensor& mask) {
  auto V = logits.size(-1);
  auto flat = logits.reshape({-1, V}).to(torch::kFloat32);
  if (logits.scalar_type() == torch::kFloat64) flat = logits.reshape({-1, V});
  if (!mask.defined()) return torch::nn::functional::cross_entropy(flat, targets.reshape({-1}));
  auto l = torch::nn::functional::cross_entropy(
      flat, targets.reshape({-1}), torch::nn::functional::CrossEntropyFuncOptions().reduction(torch::kNone));
  auto m = mask.reshape({-1}).to(l.scalar_type());
  return (l * m).sum() / m.sum().clamp_min(1.0);
}

std::vector<NamedParameter> named_parameters_for_optim(Model& model) {
  std::vector<std::string> nd = model.no_weight_decay();
  std::set<std::string> no_decay(nd.begin(), nd.end());
  std::set<const void*> seen;
  std::vector<NamedParameter> out;
  for (const auto& item : model.named_parameters(true)) {
    if (!item.value().requires_grad()) continue;
    if (!seen.insert(item.value().unsafeGetTensorImpl()).second) continue;  // tied weights once
    bool decay = item.value().dim() >= 2 && !no_decay.count(item.key());
    out.push_back({item.key(), item.value(), decay});
  }
  return out;
}

namespace {

// A batch tensor on the training device: through pinned memory (an asynchronous copy) on a GPU.
torch::Tensor to_device(const torch::Tensor& t, const torch::Device& device) {
  if (!t.defined() || t.device() == device) return t;
  return device.is_cuda() ? t.pin_memory().to(device, /*non_blocking=*/true) : t.to(device);
}

// torch::nn::utils::clip_grad_norm_: the L2 norm of all gradients, which are scaled by
// max_norm / (norm + 1e-6) where that is below 1 (or not a number); the norm comes from one fused
// pass per gradient (lmgrid/kernels/optim.hpp) where they are all float32/float64 contiguous CPU
// tensors and LMGRID_CPU_KERNELS allows, LibTorch's per-tensor norms otherwise.
double clip_grad_norm(const std::vector<torch::Tensor>& params, double max_norm) {
  std::vector<torch::Tensor> grads;
  for (const auto& p : params)
    if (p.grad().defined()) grads.push_back(p.grad());
  if (grads.empty() || !kernels::cpu_kernels_enabled() || !kernels::sum_squares_cpu_unsupported(grads).empty())
    return torch::nn::utils::clip_grad_norm_(params, max_norm);
  const double norm = std::sqrt(kernels::sum_squares_cpu(grads));
  const double coef = max_norm / (norm + 1e-6);
  if (!(coef >= 1.0)) {
    torch::NoGradGuard no_grad;
    for (auto& g : grads) g.mul_(coef);
  }
  return norm;
}

}  // namespace

RunObjects build_run(const RunConfig& cfg, const Registry& registry, bool with_data,
                     const std::string& tokenizer_state) {
  RunObjects o;
  torch::manual_seed(static_cast<uint64_t>(cfg.seed));
  auto record = [&](const LoadedPlugin& lp) {
    o.plugins.push_back({kind_name(lp.plugin->kind()), lp.plugin->name(), lp.plugin->version(), sha256_file(lp.file)});
    o.plugin_ids.push_back(lp.id());
  };
  const auto& tok_lp = registry.get(PluginKind::tokenizer, cfg.plugin("tokenizer"));
  const auto& data_lp = registry.get(PluginKind::data, cfg.plugin("data"));
  const auto& arch_lp = registry.get(PluginKind::arch, cfg.plugin("model"));
  const auto& optim_lp = registry.get(PluginKind::optim, cfg.plugin("optim"));
  for (const auto* lp : {&tok_lp, &data_lp, &arch_lp, &optim_lp}) record(*lp);

  const auto& tok_plugin = static_cast<const TokenizerPlugin&>(*tok_lp.plugin);
  o.tokenizer = call_plugin(tok_lp.id(), [&] {
    auto t = keep_alive(tok_plugin.create(cfg.section_params("tokenizer")), tok_lp.plugin);
    if (!tokenizer_state.empty()) t->load(tokenizer_state);
    // fit() through the tokenizer cache; a tokenizer restored from a run's state never re-fits
    return cached_tokenizer(t, tok_lp.id(), tok_plugin.version(), cfg.section_params("tokenizer"),
                            !tokenizer_state.empty());
  });
  const auto& data_plugin = static_cast<const DataPlugin&>(*data_lp.plugin);
  Params data_params = cfg.section_params("data");
  if (with_data) {
    DataContext dctx{o.tokenizer, static_cast<uint64_t>(cfg.seed)};
    o.dataset =
        call_plugin(data_lp.id(), [&] { return keep_alive(data_plugin.create(data_params, dctx), data_lp.plugin); });
  }
  ModelContext mctx;
  mctx.vocab_size = call_plugin(tok_lp.id(), [&] { return o.tokenizer->vocab_size(); });
  mctx.seq_len = call_plugin(data_lp.id(), [&] { return data_plugin.seq_len(data_params); });
  if (mctx.vocab_size <= 0)
    throw UserError("tokenizer " + tok_lp.id() + " has an empty vocabulary (was it fitted on the data?)");
  const auto& arch_plugin = static_cast<const ArchPlugin&>(*arch_lp.plugin);
  o.model = call_plugin(
      arch_lp.id(), [&] { return keep_alive(arch_plugin.create(cfg.section_params("model"), mctx), arch_lp.plugin); });
  TrainSettings ts = TrainSettings::from(cfg.section_params("train"));
  o.device = resolve_device(ts.device);
  o.precision = resolve_precision(ts.dtype, o.device);
  o.model->to(o.device, o.precision.param_dtype);
  if (with_data) {
    const auto& optim_plugin = static_cast<const OptimPlugin&>(*optim_lp.plugin);
    auto params = named_parameters_for_optim(*o.model);
    o.optimizer = call_plugin(optim_lp.id(), [&] {
      return keep_alive(optim_plugin.create(cfg.section_params("optim"), params), optim_lp.plugin);
    });
  }
  return o;
}

int64_t count_parameters(const RunConfig& cfg, const Registry& registry) {
  RunObjects o = build_run(cfg, registry, true);
  return o.model->parameter_count();
}

namespace {

int64_t peak_rss_bytes() {
  std::ifstream in("/proc/self/status");
  std::string line;
  while (std::getline(in, line))
    if (line.rfind("VmHWM:", 0) == 0) return std::stoll(line.substr(6)) * 1024;
  return 0;
}

struct Progress {
  bool bar;
  std::string label;
  int64_t total;
  double start = monotonic_seconds();
  double last_plain = 0;
  void update(int64_t step, double loss, double tok_s, double val, bool force) {
    double now = monotonic_seconds();
    double eta = step > 0 ? (now - start) / step * (total - step) : NAN;
    std::string val_s = std::isfinite(val) ? fmt::format(" val {:.4f}", val) : "";
    if (bar) {
      int width = 24, filled = static_cast<int>(width * step / std::max<int64_t>(1, total));
      std::fprintf(stderr, "\r%s [%s%s] %lld/%lld loss %.4f%s %s tok/s ETA %s   ", label.c_str(),
                   std::string(filled, '#').c_str(), std::string(width - filled, '.').c_str(),
                   static_cast<long long>(step), static_cast<long long>(total), loss, val_s.c_str(),
                   human_count(static_cast<int64_t>(tok_s)).c_str(), human_duration(eta).c_str());
      if (step >= total) std::fprintf(stderr, "\n");
    } else if (force || now - last_plain >= 10.0 || step >= total) {
      std::fprintf(stderr, "%s step %lld/%lld loss %.4f%s %s tok/s ETA %s\n", label.c_str(),
                   static_cast<long long>(step), static_cast<long long>(total), loss, val_s.c_str(),
                   human_count(static_cast<int64_t>(tok_s)).c_str(), human_duration(eta).c_str());
      last_plain = now;
    }
    std::fflush(stderr);
  }
};

struct EvalResult {
  double loss = NAN;
  double accuracy = NAN;        // answers exactly right; only when the dataset scores a subset (loss mask)
  double token_accuracy = NAN;  // scored positions right; only when the dataset groups answers
  std::map<std::string, std::pair<double, double>> slices;  // tag -> (accuracy, loss)
};

// Data parallel: every rank's slice sums, summed in rank order on every rank. The slices a
// rank saw depend on its shard of the batches, so they travel as JSON through the group's
// store rather than as a tensor of agreed shape.
void reduce_slices(dist::Group& group, int64_t round, std::map<std::string, AnswerSums>& slices) {
  nlohmann::json mine = nlohmann::json::object();
  for (const auto& [tag, s] : slices) mine[tag] = {s.loss, s.weight, s.correct, s.answers};
  const std::string key = fmt::format("eval-slices/{}/", round);
  group.set(key + std::to_string(group.rank()), mine.dump());
  std::map<std::string, AnswerSums> all;
  for (int r = 0; r < group.size(); ++r) {
    auto j = r == group.rank() ? mine : nlohmann::json::parse(group.get(key + std::to_string(r)));
    for (const auto& [tag, v] : j.items())
      all[tag].add({v[0].get<double>(), v[1].get<double>(), v[2].get<double>(), v[3].get<double>()});
  }
  slices = std::move(all);
}

// Scores the first `batches` val batches. Data parallel: rank r scores batches r, r + world, ...
// and the sums are all-reduced, so every rank gets the single-process result (up to the order
// of the additions). `round` names this evaluation among the run's (for the slice exchange).
EvalResult evaluate(RunObjects& o, const std::string& arch_id, const std::string& data_id, int64_t batches,
                    int64_t batch_size, dist::Group* group, int64_t round, SplitPool* split) {
  const torch::Device device = o.device;
  torch::NoGradGuard ng;
  o.model->eval();
  int64_t n =
      std::min(batches, call_plugin(data_id, [&] { return o.dataset->eval_batch_count(Split::val, batch_size); }));
  double total = 0, weight = 0, correct = 0, scored = 0;
  AnswerSums answer_sums;
  bool masked = false, grouped = false;
  std::map<std::string, AnswerSums> slices;
  const int64_t first = group ? group->rank() : 0, stride = group ? group->size() : 1;
  for (int64_t i = first; i < n; i += stride) {
    Batch b = call_plugin(data_id, [&] { return o.dataset->eval_batch(Split::val, i, batch_size); });
    auto inputs = to_device(b.inputs, device), targets = to_device(b.targets, device);
    torch::Tensor mask = to_device(b.loss_mask, device);
    auto logits = call_plugin(arch_id, [&] {
      auto forward = [&](const torch::Tensor& rows) {
        torch::NoGradGuard no_grad;  // thread-local: the split's helpers need their own
        compat::AutocastGuard amp(device.type(), o.precision.autocast_dtype);
        return o.model->forward(rows, nullptr).logits;
      };
      return split && inputs.size(0) >= split->parts() ? split_forward(*split, inputs, forward) : forward(inputs);
    });
    double w = mask.defined() ? mask.sum().item<double>() : static_cast<double>(targets.numel());
    weight += w;
    const bool answers_in_batch = mask.defined() && (b.answer_ids.defined() || !b.tags.empty());
    if (!answers_in_batch) total += lm_loss(logits, targets, mask).item<double>() * w;
    if (mask.defined()) {
      masked = true;
      auto hit = logits.argmax(-1) == targets;
      double right = (hit.to(torch::kFloat32) * mask.to(torch::kFloat32)).sum().item<double>();
      correct += right;
      scored += w;
      if (answers_in_batch) {
        // One cross entropy per position serves the split's loss and the slices' losses.
        grouped = grouped || b.answer_ids.defined();
        auto V = logits.size(-1);
        auto position_loss = torch::nn::functional::cross_entropy(
                                 logits.reshape({-1, V}).to(torch::kFloat32), targets.reshape({-1}),
                                 torch::nn::functional::CrossEntropyFuncOptions().reduction(torch::kNone))
                                 .reshape(targets.sizes());
        total += (position_loss * mask.to(torch::kFloat32)).sum().item<double>();
        add_answers(b, hit, position_loss, answer_sums, slices);
      } else {
        answer_sums.correct += right;  // each scored position is an answer of its own
        answer_sums.answers += w;
      }
    }
  }
  o.model->train();
  double answers_right = answer_sums.correct, answers = answer_sums.answers;
  bool any_slices = !slices.empty();
  if (group) {
    auto sums = torch::tensor({total, weight, correct, scored, masked ? 1.0 : 0.0, answers_right, answers,
                               grouped ? 1.0 : 0.0, any_slices ? 1.0 : 0.0},
                              torch::kFloat64);
    group->allreduce_sum(sums);
    total = sums[0].item<double>(), weight = sums[1].item<double>(), correct = sums[2].item<double>();
    scored = sums[3].item<double>(), masked = sums[4].item<double>() > 0;
    answers_right = sums[5].item<double>(), answers = sums[6].item<double>();
    grouped = sums[7].item<double>() > 0, any_slices = sums[8].item<double>() > 0;
    if (any_slices) reduce_slices(*group, round, slices);
  }
  EvalResult r;
  if (weight > 0) r.loss = total / weight;
  if (masked && answers > 0) r.accuracy = answers_right / answers;
  if (grouped && scored > 0) r.token_accuracy = correct / scored;
  for (const auto& [tag, s] : slices)
    r.slices[tag] = {s.answers > 0 ? s.correct / s.answers : NAN, s.weight > 0 ? s.loss / s.weight : NAN};
  return r;
}

}  // namespace

namespace {

// Everything of a run's progress that a checkpoint saves and restores, as one.
struct TrainState {
  int64_t step = 0, tokens = 0, cursor = 0, evals_since_best = 0;
  double elapsed_before = 0;  // wall time of earlier sessions
  double train_time = 0;      // training time of every session (evaluation, checkpoints excluded)
  double best_val = NAN, last_loss = NAN, last_val = NAN;

  void restore(const CheckpointMeta& m) {
    step = m.step, tokens = m.tokens, cursor = m.data_cursor, elapsed_before = m.elapsed_s;
    best_val = m.best_val, evals_since_best = m.evals_since_best;
    train_time = m.train_time_s, last_loss = m.last_train_loss, last_val = m.last_val;
  }
  void save(CheckpointMeta& m, double elapsed_s) const {
    m.step = step, m.tokens = tokens, m.elapsed_s = elapsed_s, m.data_cursor = cursor;
    m.best_val = best_val, m.evals_since_best = evals_since_best;
    m.train_time_s = train_time, m.last_train_loss = last_loss, m.last_val = last_val;
  }
};

// A run's checkpoint files over the store API: the newest that verifies, new ones written
// atomically, the newest `keep` kept.
class CheckpointManager {
 public:
  CheckpointManager(Store& store, int64_t run_id, fs::path dir, int64_t keep)
      : store_(store), run_id_(run_id), dir_(std::move(dir)), keep_(keep) {}

  // Newest checkpoint whose header verifies; corrupt or missing ones are reported, moved aside
  // and forgotten.
  std::optional<std::pair<fs::path, CheckpointMeta>> newest_valid() {
    for (const auto& ck : store_.checkpoints(run_id_)) {
      try {
        if (!fs::exists(ck.path)) throw CheckpointError("checkpoint file missing: " + ck.path.string());
        return std::make_pair(ck.path, read_checkpoint_meta(ck.path));
      } catch (const CheckpointError& e) {
        warn(e.what(), "not loading it");
        move_aside(ck.path);
        store_.delete_checkpoint(run_id_, ck.step);
      }
    }
    return std::nullopt;
  }
  // A checkpoint whose payload failed to load: moved aside and its row forgotten; the caller
  // tries the one before it.
  void discard(const fs::path& bad, int64_t step, const std::string& why) {
    warn(why, "trying the checkpoint before it");
    move_aside(bad);
    store_.delete_checkpoint(run_id_, step);
  }
  void save(int64_t step, const CheckpointMeta& meta, Model& model, const Optimizer* optimizer) {
    fs::path file = dir_ / fmt::format("ckpt-{:08d}.lmck", step);
    std::string sha = save_checkpoint(file, meta, model, optimizer);
    store_.add_checkpoint(run_id_, step, file, sha);
    store_.set_step(run_id_, step);
    auto cks = store_.checkpoints(run_id_);  // newest first
    for (size_t i = static_cast<size_t>(keep_); i < cks.size(); ++i) {
      std::error_code ec;
      fs::remove(cks[i].path, ec);
      store_.delete_checkpoint(run_id_, cks[i].step);
    }
  }

 private:
  void warn(const std::string& what, const char* action) const {
    std::fprintf(stderr, "lmgrid: run %lld: WARNING: %s; %s\n", static_cast<long long>(run_id_), what.c_str(), action);
  }
  static void move_aside(const fs::path& file) {
    std::error_code ec;
    if (fs::exists(file)) fs::rename(file, file.string() + ".corrupt", ec);
  }
  Store& store_;
  int64_t run_id_;
  fs::path dir_;
  int64_t keep_;
};

// LMGRID_PROFILE=ops:PATH: LibTorch's operator profiler over 10 training steps (the 11th to the
// 20th of this session, after the warm-up of allocators and caches), written to PATH as a Chrome
// trace; tools/bench/trace_ops.py sums it per operator. A developer aid for docs/performance.md:
// the profiler itself slows the steps it records.
class OpTrace {
 public:
  explicit OpTrace(int64_t first_step) : first_(first_step) {
    const std::string v = env_or("LMGRID_PROFILE", "");
    if (v.rfind("ops:", 0) == 0) path_ = v.substr(4);
  }
  void before_step(int64_t step) {
    if (!path_.empty() && !rec_ && step == first_ + 10)
      rec_ = std::make_unique<torch::autograd::profiler::RecordProfile>(path_);
  }
  void after_step(int64_t step) {
    if (rec_ && step == first_ + 20) rec_.reset();  // writes the trace
  }

 private:
  int64_t first_;
  std::string path_;
  std::unique_ptr<torch::autograd::profiler::RecordProfile> rec_;
};

// LMGRID_PROFILE=phases: where the training loop's wall time goes, for the profiles in
// docs/performance.md. Each mark charges the time since the previous mark to a phase. Off by
// default (a mark is then one branch). On CUDA each mark first waits for the device, so that
// asynchronous kernels count in the phase that launched them; that makes the run slower.
class PhaseClock {
 public:
  enum Phase { data, forward, backward, optimizer, eval, log, checkpoint, kCount };

  void start(const torch::Device& device) {
    on_ = env_or("LMGRID_PROFILE", "") == "phases";
    cuda_ = device.is_cuda();
    begin_ = last_ = monotonic_seconds();
  }
  void mark(Phase p) {
    if (!on_) return;
    if (cuda_) compat::cuda_synchronize();
    const double t = monotonic_seconds();
    secs_[p] += t - last_;
    last_ = t;
  }
  // Charges `secs` of the time since the last mark to p (the rest goes to the next mark).
  void charge(Phase p, double secs) {
    if (!on_) return;
    secs_[p] += secs;
    last_ += secs;
  }
  bool on() const { return on_; }
  // "250 steps in 20.1 s: data 0.41 s (2.0%), forward 6.10 s (30.3%), ..., other 0.00 s (0.0%)";
  // the stop check and the learning-rate schedule count in optimizer, other is what no mark took.
  std::string summary(int64_t steps) const {
    static const char* names[kCount] = {"data", "forward", "backward", "optimizer", "eval", "log", "checkpoint"};
    const double total = last_ - begin_;
    double marked = 0;
    std::string out = fmt::format("{} steps in {:.2f} s:", steps, total);
    for (int p = 0; p < kCount; ++p) {
      marked += secs_[p];
      out += fmt::format(" {} {:.2f} s ({:.1f}%),", names[p], secs_[p], total > 0 ? 100 * secs_[p] / total : 0.0);
    }
    const double other = total - marked;
    return out + fmt::format(" other {:.2f} s ({:.1f}%)", other, total > 0 ? 100 * other / total : 0.0);
  }

 private:
  bool on_ = false, cuda_ = false;
  double begin_ = 0, last_ = 0, secs_[kCount] = {};
};

// Train/perf metrics accumulated between two log points.
struct Interval {
  double loss = 0, time = 0;
  double comm = 0;  // data parallel: time waiting for the all-reduces after backward (not overlapped)
  int64_t steps = 0, tokens = 0;
};

// One run from its stored config to its outcome: build (or resume), loop, summarise.
//
// Data parallel (hooks.group set): every rank runs this same loop in lockstep. Each global batch
// of `batch_size` rows is drawn whole on every rank and rank r trains rows [r*B/W, (r+1)*B/W);
// its loss is normalised by the whole batch's weight, so the all-reduced (summed) gradients and
// loss are those of one process on the whole batch. Rank 0 (the "writer") alone touches the
// store: metrics, checkpoints, status, summaries. Stop requests, divergence, evaluation and
// early stopping are decided on all-reduced values, so every rank leaves the loop at the same step.
class RunTrainer {
 public:
  RunTrainer(Store* store, RunRow row, const Registry& registry, const TrainHooks& hooks)
      : store_(store),
        run_id_(row.id),
        registry_(registry),
        hooks_(hooks),
        group_(hooks.group),
        row_(std::move(row)),
        cfg_(RunConfig::from_json(row_.config)),
        ts_(TrainSettings::from(cfg_.section_params("train"))),
        progress_{hooks.progress_bar, hooks.label.empty() ? fmt::format("run {}", run_id_) : hooks.label, ts_.steps} {
    if (store_) {
      ckpts_.emplace(*store_, run_id_, store_->run_dir(row_.config_hash), ts_.keep_checkpoints);
      metrics_.emplace(*store_, run_id_);
    }
    if (group_ && ts_.batch_size % group_->size() != 0)
      throw UserError(
          fmt::format("[train] batch_size = {} does not split over {} data-parallel ranks (make it a "
                      "multiple of {})",
                      ts_.batch_size, group_->size(), group_->size()));
  }

  RunOutcome run() {
    open();
    o_.model->train();
    const int64_t first_step = st_.step;
    clock_.start(o_.device);
    OpTrace op_trace(first_step);
    while (st_.step < ts_.steps) {
      if (stop_requested()) return interrupt();
      op_trace.before_step(st_.step);
      if (!train_step()) return diverge();
      op_trace.after_step(st_.step);
      if (st_.step % ts_.log_every == 0 || st_.step == ts_.steps) log_interval();
      clock_.mark(PhaseClock::log);
      bool stop_early = false;
      if (st_.step % ts_.eval_every == 0 || st_.step == ts_.steps) stop_early = evaluate_now();
      clock_.mark(PhaseClock::eval);
      if (st_.step % ts_.checkpoint_every == 0 || st_.step == ts_.steps || stop_early) checkpoint();
      clock_.mark(PhaseClock::checkpoint);
      if (stop_early) {
        if (writer())
          std::fprintf(stderr, "%s%s: early stop at step %lld (no val improvement in %lld evals)\n",
                       hooks_.progress_bar ? "\n" : "", progress_.label.c_str(), static_cast<long long>(st_.step),
                       static_cast<long long>(st_.evals_since_best));
        break;
      }
    }
    if (store_) {
      metrics_->flush();
      store_->set_step(run_id_, st_.step);
      write_summaries();
      store_->set_status(run_id_, RunStatus::done);
    }
    clock_.mark(PhaseClock::log);
    if (clock_.on() && writer())
      std::fprintf(stderr, "%s%s: profile (LMGRID_PROFILE=phases): %s\n", hooks_.progress_bar ? "\n" : "",
                   progress_.label.c_str(), clock_.summary(st_.step - first_step).c_str());
    return RunOutcome::done;
  }

 private:
  bool writer() const { return store_ != nullptr; }
  // One process: the signal flag. Data parallel: the flag as all-reduced in the last step, so
  // that a stop reaching any rank stops them all after the same step.
  bool stop_requested() const { return group_ ? collective_stop_ : hooks_.stop && hooks_.stop->load(); }
  void metric(const std::string& name, double value) {
    if (metrics_) metrics_->add(st_.step, st_.tokens, elapsed(), name, value);
  }

  // Builds the run's objects, resumes from the newest valid checkpoint, and drops whatever was
  // recorded after it (it will be repeated). Data parallel: rank 0 decides what to resume from
  // and sends the followers its tokenizer state and checkpoint bytes, then its parameters.
  void open() {
    std::optional<std::pair<fs::path, CheckpointMeta>> resume;
    if (writer()) {
      fs::path run_dir = store_->run_dir(row_.config_hash);  // beside the database, not the cwd
      fs::create_directories(run_dir);
      // The newest checkpoint that loads: one whose payload fails its checksum is moved aside
      // and the one before it tried, down to a fresh start.
      resume = ckpts_->newest_valid();
      while (true) {
        o_ = build_run(cfg_, registry_, true, resume ? resume->second.tokenizer_state : "");
        if (!resume) break;
        try {  // load_checkpoint verifies the payload checksum before anything is loaded
          CheckpointMeta meta = load_checkpoint(resume->first, *o_.model, o_.optimizer.get(), true, o_.device);
          st_.restore(meta);
          scaler_state_ = meta.extra.value("loss_scale", nlohmann::json::object());
          std::fprintf(stderr, "lmgrid: run %lld: resuming from step %lld (%s)\n", static_cast<long long>(run_id_),
                       static_cast<long long>(st_.step), resume->first.c_str());
          break;
        } catch (const CheckpointError& e) {
          ckpts_->discard(resume->first, resume->second.step, e.what());
          resume = ckpts_->newest_valid();
          st_ = TrainState{};
          scaler_state_ = nlohmann::json();
        }
      }
    }
    if (group_) sync_followers(resume ? resume->first : fs::path());
    scaler_ = LossScaler(o_.precision.loss_scaling);
    if (!scaler_state_.empty()) scaler_.restore(scaler_state_);
    arch_id_ = o_.plugin_ids[2], data_id_ = o_.plugin_ids[1], optim_id_ = o_.plugin_ids[3];
    if (o_.device.is_cuda() && hooks_.gpu_peak_flops)
      peak_flops_ = hooks_.gpu_peak_flops(
          o_.device, o_.precision.autocast() ? o_.precision.autocast_dtype : o_.precision.param_dtype);
    else if (!o_.device.is_cuda())
      peak_flops_ = hooks_.peak_flops;
    if (group_) peak_flops_ *= group_->size();  // MFU of the whole run: every rank's share of the machine(s)
    if (writer()) {
      store_->delete_metrics_after(run_id_, st_.step);
      store_->delete_checkpoint_rows_after(run_id_, st_.step);
      store_->mark_started(run_id_, o_.model->parameter_count(), o_.device.str());
      store_->set_plugins(run_id_, o_.plugins);
      write_file_atomic(store_->run_dir(row_.config_hash) / "tokenizer.txt", o_.tokenizer->save());
    }
    if (call_plugin(data_id_, [&] { return o_.dataset->eval_batch_count(Split::val, ts_.batch_size); }) <= 0)
      throw std::runtime_error(fmt::format("dataset {} has no validation batch of {} sequences (val split too small)",
                                           data_id_, ts_.batch_size));
    flops_per_token_ = o_.model->flops_per_token();
    for (const auto& p : named_parameters_for_optim(*o_.model)) params_.push_back(p.tensor);
    if (group_) reducer_.emplace(*group_, params_);
    // The split is off while operations are traced (the trace records the calling thread only).
    const bool tracing = env_or("LMGRID_PROFILE", "").rfind("ops:", 0) == 0;
    split_plan_ = plan_batch_split(torch::get_num_threads(), ts_.batch_size, o_.device.is_cpu(), group_ != nullptr);
    if (tracing && split_plan_.parts > 1) split_plan_ = SplitPlan{1, 0, "off (LMGRID_PROFILE=ops traces one thread)"};
    t_start_ = progress_.start = monotonic_seconds();
  }

  // Rank 0 -> followers: the tokenizer (fitted once, on rank 0), the checkpoint to resume from
  // (its bytes: ranks need not share a file system), then every parameter and buffer, so all
  // ranks start bit-identical. Followers draw their own dropout masks (a per-rank seed).
  void sync_followers(const fs::path& checkpoint) {
    std::string tokenizer_state = writer() ? o_.tokenizer->save() : "";
    group_->broadcast(tokenizer_state);
    std::string bytes;
    if (writer() && !checkpoint.empty()) bytes = read_file(checkpoint);
    group_->broadcast(bytes);
    if (!writer()) {
      o_ = build_run(cfg_, registry_, true, tokenizer_state);
      if (!bytes.empty()) {
        fs::path tmp = fs::temp_directory_path() / fmt::format("lmgrid-rank{}-{}.lmck", group_->rank(), getpid());
        write_file_atomic(tmp, bytes);
        try {
          CheckpointMeta meta = load_checkpoint(tmp, *o_.model, o_.optimizer.get(), false, o_.device);
          st_.restore(meta);
          scaler_state_ = meta.extra.value("loss_scale", nlohmann::json::object());
        } catch (...) {
          fs::remove(tmp);
          throw;
        }
        fs::remove(tmp);
      }
      torch::manual_seed(static_cast<uint64_t>(cfg_.seed) +
                         0x9E3779B97F4A7C15ULL * static_cast<uint64_t>(group_->rank()) +
                         static_cast<uint64_t>(st_.step));
    }
    torch::NoGradGuard ng;
    for (auto& p : o_.model->parameters(true)) {
      auto t = p.data();
      group_->broadcast(t);
    }
    for (auto& b : o_.model->buffers(true)) group_->broadcast(b);
  }

  double elapsed() const { return st_.elapsed_before + (monotonic_seconds() - t_start_); }

  // One optimizer step over grad_accum micro-batches. False when the loss is not finite.
  bool train_step() {
    double t0 = monotonic_seconds();
    lr_ = scheduled_lr(ts_.schedule, st_.step, o_.optimizer->base_lr(), ts_.lr_min, ts_.warmup, ts_.decay_end(),
                       ts_.decay_fraction);
    call_plugin(optim_id_, [&] {
      o_.optimizer->set_lr(lr_);
      o_.optimizer->zero_grad();
    });
    clock_.mark(PhaseClock::optimizer);
    double step_loss = 0;
    int64_t step_tokens = 0;
    for (int64_t m = 0; m < ts_.grad_accum; ++m) {
      Batch b = call_plugin(data_id_, [&] { return o_.dataset->train_batch(st_.cursor, ts_.batch_size); });
      ++st_.cursor;
      step_tokens += b.inputs.numel();
      double share = 1.0;  // this rank's part of the global batch's loss weight
      if (group_) share = take_rank_rows(b);
      if (group_ && m == ts_.grad_accum - 1) reducer_->arm();  // the last backward all-reduces as it goes
      auto inputs = to_device(b.inputs, o_.device), targets = to_device(b.targets, o_.device);
      auto mask = to_device(b.loss_mask, o_.device);
      clock_.mark(PhaseClock::data);
      auto loss = call_plugin(arch_id_, [&] {
        if (use_split(inputs)) return split_forward_backward(inputs, targets, mask, share);
        auto l = rows_loss(inputs, targets, mask, share, static_cast<double>(group_ ? group_->size() : 1));
        clock_.mark(PhaseClock::forward);
        loss_to_differentiate(l).backward();
        return l;
      });
      step_loss += loss.item<double>() / static_cast<double>(ts_.grad_accum);
      clock_.mark(PhaseClock::backward);
    }
    if (group_) {
      // The gradient buckets still in flight, then the loss and the stop flag in one all-reduce.
      const double c0 = monotonic_seconds();
      reducer_->finish();
      auto sums = torch::tensor({step_loss, hooks_.stop && hooks_.stop->load() ? 1.0 : 0.0}, torch::kFloat64);
      group_->allreduce_sum(sums);
      step_loss = sums[0].item<double>();
      collective_stop_ = sums[1].item<double>() > 0;
      interval_.comm += monotonic_seconds() - c0;
    }
    if (!std::isfinite(step_loss)) {
      bad_loss_ = step_loss, bad_tokens_ = step_tokens;
      return false;
    }
    // float16: gradients back to their true size; a step with inf/NaN gradients is skipped.
    const bool finite_grads = scaler_.unscale_and_update(params_);
    double max_norm = ts_.clip > 0 ? ts_.clip : std::numeric_limits<double>::infinity();
    grad_norm_ = finite_grads ? clip_grad_norm(params_, max_norm) : NAN;
    if (finite_grads) call_plugin(optim_id_, [&] { o_.optimizer->step(); });
    clock_.mark(PhaseClock::optimizer);  // with the gradient clipping and, data parallel, the last all-reduce
    ++st_.step;
    st_.tokens += step_tokens;
    double dt = monotonic_seconds() - t0;
    session_train_time_ += dt;
    interval_.loss += step_loss, interval_.time += dt, interval_.tokens += step_tokens, ++interval_.steps;
    st_.last_loss = step_loss;
    return true;
  }

  // The loss of some rows of a micro-batch: their forward pass under autocast (forward and loss
  // only), lm_loss times `weight`, plus the model's auxiliary loss divided by `aux_div` (the ranks
  // or parts whose losses are added up).
  torch::Tensor rows_loss(const torch::Tensor& inputs, const torch::Tensor& targets, const torch::Tensor& mask,
                          double weight, double aux_div) {
    compat::AutocastGuard amp(o_.device.type(), o_.precision.autocast_dtype);
    ModelOutput out = o_.model->forward(inputs, nullptr);
    auto l = lm_loss(out.logits, targets, mask) * weight;
    return out.aux_loss.defined() ? l + out.aux_loss / aux_div : l;
  }
  // What backward starts from: the loss scaled (float16) and divided over the micro-batches.
  torch::Tensor loss_to_differentiate(const torch::Tensor& l) {
    return scaler_.scale_loss(l / static_cast<double>(ts_.grad_accum));
  }

  // Whether this micro-batch is split into parts on threads (batch_split.hpp). The first call decides for
  // the run: a model whose forward draws random numbers keeps the whole batch on one thread.
  bool use_split(const torch::Tensor& inputs) {
    if (split_plan_.parts <= 1) return false;
    if (!split_pool_) {
      bool drew = false;
      {
        torch::NoGradGuard ng;
        compat::AutocastGuard amp(o_.device.type(), o_.precision.autocast_dtype);
        drew = forward_draws_random([&] { (void)o_.model->forward(inputs.narrow(0, 0, 1), nullptr); });
      }
      if (drew) split_plan_ = SplitPlan{1, 0, "off (the model draws random numbers in training, e.g. dropout)"};
      if (writer())
        std::fprintf(stderr, "lmgrid: run %lld: batch split: %s\n", static_cast<long long>(run_id_),
                     split_plan_.why.c_str());
      if (drew) return false;
      split_pool_ = std::make_unique<SplitPool>(split_plan_.parts, split_plan_.threads_each);
    }
    return inputs.size(0) >= split_plan_.parts;
  }

  // One micro-batch as parts on the pool's threads (split_forward_backward). Returns its loss.
  torch::Tensor split_forward_backward(const torch::Tensor& inputs, const torch::Tensor& targets,
                                       const torch::Tensor& mask, double share) {
    const double parts = static_cast<double>(split_pool_->parts());
    double forward_secs = 0;
    auto loss = lmgrid::split_forward_backward(
        *split_pool_, params_, inputs, targets, mask,
        [&](const torch::Tensor& in, const torch::Tensor& tg, const torch::Tensor& mk, double weight) {
          return rows_loss(in, tg, mk, share * weight, parts);
        },
        [&](const torch::Tensor& l) { return loss_to_differentiate(l); }, &forward_secs);
    clock_.charge(PhaseClock::forward, forward_secs);
    return loss;
  }

  // Keeps this rank's rows of a global batch; returns their share of its loss weight (scored
  // positions with a mask, else tokens), so that the ranks' losses sum to the whole batch's.
  double take_rank_rows(Batch& b) const {
    const int64_t rows = b.inputs.size(0) / group_->size(), first = rows * group_->rank();
    double whole = b.loss_mask.defined() ? b.loss_mask.sum().item<double>() : static_cast<double>(b.targets.numel());
    b.inputs = b.inputs.narrow(0, first, rows);
    b.targets = b.targets.narrow(0, first, rows);
    if (b.loss_mask.defined()) b.loss_mask = b.loss_mask.narrow(0, first, rows);
    double mine = b.loss_mask.defined() ? b.loss_mask.sum().item<double>() : static_cast<double>(b.targets.numel());
    return whole > 0 ? mine / whole : 0.0;
  }

  void log_interval() {
    double tok_s = interval_.time > 0 ? interval_.tokens / interval_.time : 0;
    last_tok_s_ = tok_s;
    double loss = interval_.loss / interval_.steps;
    metric("train/loss", loss);
    metric("train/lr", lr_);
    metric("train/grad_norm", grad_norm_);
    metric("perf/tokens_per_s", tok_s);
    if (scaler_.enabled()) {
      metric("train/loss_scale", scaler_.scale());
      metric("train/skipped_steps", static_cast<double>(scaler_.skipped()));
    }
    if (peak_flops_ > 0) metric("perf/mfu", flops_per_token_ * tok_s / peak_flops_);
    if (group_ && interval_.time > 0) metric("perf/comm_share", interval_.comm / interval_.time);
    if (writer()) progress_.update(st_.step, loss, tok_s, st_.last_val, false);
    interval_ = Interval{};
  }

  // Scores the val split, records it, tracks the best. True when early stopping says stop.
  bool evaluate_now() {
    EvalResult ev =
        evaluate(o_, arch_id_, data_id_, ts_.eval_batches, ts_.batch_size, group_, eval_round_++, split_pool_.get());
    st_.last_val = ev.loss;
    metric("val/loss", ev.loss);
    if (std::isfinite(ev.accuracy)) metric("val/accuracy", ev.accuracy);
    if (std::isfinite(ev.token_accuracy)) metric("val/token_accuracy", ev.token_accuracy);
    for (const auto& [tag, v] : ev.slices) {
      if (std::isfinite(v.first)) metric("val/accuracy/" + tag, v.first);
      if (std::isfinite(v.second)) metric("val/loss/" + tag, v.second);
    }
    bool stop = false;
    if (!std::isfinite(st_.best_val) || ev.loss < st_.best_val - ts_.early_stop_min_delta) {
      st_.best_val = std::isfinite(st_.best_val) ? std::min(st_.best_val, ev.loss) : ev.loss;
      st_.evals_since_best = 0;
    } else {
      st_.best_val = std::min(st_.best_val, ev.loss);
      ++st_.evals_since_best;
      stop = ts_.early_stop_patience > 0 && st_.evals_since_best >= ts_.early_stop_patience;
    }
    if (writer()) {
      metrics_->flush();
      progress_.update(st_.step, st_.last_loss, last_tok_s_, ev.loss, true);
    }
    return stop;
  }

  void checkpoint() {
    if (!writer()) return;
    metrics_->flush();
    CheckpointMeta meta;
    TrainState now = st_;
    now.train_time += session_train_time_;
    now.save(meta, elapsed());
    meta.config_json = row_.config;
    meta.tokenizer_state = o_.tokenizer->save();
    for (const auto& p : o_.plugins) meta.extra["plugins"][p.kind] = p.name + " " + p.version;
    if (scaler_.enabled()) meta.extra["loss_scale"] = scaler_.state();
    if (group_) meta.extra["world_size"] = group_->size();
    ckpts_->save(st_.step, meta, *o_.model, o_.optimizer.get());
  }

  RunOutcome interrupt() {
    checkpoint();
    if (writer()) store_->set_status(run_id_, RunStatus::interrupted, fmt::format("interrupted at step {}", st_.step));
    if (hooks_.progress_bar) std::fprintf(stderr, "\n");
    return RunOutcome::interrupted;
  }

  RunOutcome diverge() {
    std::string msg = fmt::format("loss became {} at step {}", std::isnan(bad_loss_) ? "NaN" : "Inf", st_.step + 1);
    if (!writer()) return RunOutcome::diverged;
    metrics_->add(st_.step + 1, st_.tokens + bad_tokens_, elapsed(), "train/loss", bad_loss_);
    metrics_->flush();
    store_->set_step(run_id_, st_.step + 1);
    store_->set_status(run_id_, RunStatus::diverged, msg);
    std::fprintf(stderr, "%s%s: diverged: %s\n", hooks_.progress_bar ? "\n" : "", progress_.label.c_str(), msg.c_str());
    return RunOutcome::diverged;
  }

  // Summaries of the whole run (every session), names in docs/schema.md.
  void write_summaries() {
    // A run resumed from a checkpoint written before train_time_s existed falls back to the
    // mean of its logged rates.
    double train_time = st_.train_time + session_train_time_;
    double tok_s = train_time > 0 ? static_cast<double>(st_.tokens) / train_time : NAN;
    if (!(tok_s > 0)) {
      auto rates = store_->metric_stats(run_id_, "perf/tokens_per_s");
      tok_s = rates ? rates->mean : NAN;
    }
    store_->set_summary(run_id_, "best_val_loss", st_.best_val);
    store_->set_summary(run_id_, "final_val_loss", st_.last_val);
    store_->set_summary(run_id_, "final_train_loss", st_.last_loss);
    store_->set_summary(run_id_, "tokens", static_cast<double>(st_.tokens));
    store_->set_summary(run_id_, "wall_time_s", elapsed());
    store_->set_summary(run_id_, "tokens_per_s", tok_s);
    if (peak_flops_ > 0) {
      store_->set_summary(run_id_, "mfu", flops_per_token_ * tok_s / peak_flops_);
      store_->set_summary(run_id_, "peak_gflops", peak_flops_ / 1e9);  // MFU's denominator
    }
    store_->set_summary(run_id_, "peak_rss_bytes", static_cast<double>(peak_rss_bytes()));
    if (group_) store_->set_summary(run_id_, "world_size", static_cast<double>(group_->size()));
    // Accuracy exists only for datasets that score a subset (loss mask); read back from the
    // metrics so that a resumed run counts the evaluations of every session.
    // Slices (val/accuracy/<key>=<value>, val/loss/<key>=<value>) and token accuracy likewise:
    // best_ and final_ of each, best the highest accuracy or the lowest loss.
    for (const std::string& name : store_->metric_names(run_id_)) {
      bool accuracy = name == "val/accuracy" || name == "val/token_accuracy" || name.rfind("val/accuracy/", 0) == 0;
      bool slice_loss = name.rfind("val/loss/", 0) == 0;
      if (!accuracy && !slice_loss) continue;
      auto stats = store_->metric_stats(run_id_, name);
      if (!stats) continue;
      std::string suffix = name.substr(4);  // "accuracy/num_kv_pairs=16"
      store_->set_summary(run_id_, "best_val_" + suffix, accuracy ? stats->max : stats->min);
      store_->set_summary(run_id_, "final_val_" + suffix, stats->last);
    }
    store_->set_summary(run_id_, "n_params", static_cast<double>(o_.model->parameter_count()));
  }

  Store* store_;  // rank 0 (or the one process) only; followers write nothing
  int64_t run_id_;
  const Registry& registry_;
  const TrainHooks& hooks_;
  dist::Group* group_;
  RunRow row_;
  RunConfig cfg_;
  TrainSettings ts_;
  std::optional<CheckpointManager> ckpts_;
  std::optional<MetricWriter> metrics_;
  Progress progress_;
  RunObjects o_;
  std::string arch_id_, data_id_, optim_id_;
  std::vector<torch::Tensor> params_;
  std::optional<dist::GradReducer> reducer_;
  SplitPlan split_plan_;
  std::unique_ptr<SplitPool> split_pool_;  // made at the first step that splits a batch
  TrainState st_;
  Interval interval_;
  PhaseClock clock_;
  nlohmann::json scaler_state_;
  double t_start_ = 0, session_train_time_ = 0, flops_per_token_ = 0;
  double lr_ = 0, grad_norm_ = 0, last_tok_s_ = 0, peak_flops_ = 0;
  LossScaler scaler_{false};
  bool collective_stop_ = false;
  int64_t eval_round_ = 0;  // evaluations in this session (names the data-parallel slice exchange)
  double bad_loss_ = 0;
  int64_t bad_tokens_ = 0;
};

}  // namespace

RunOutcome train_run(Store& store, int64_t run_id, const Registry& registry, const TrainHooks& hooks) {
  auto row = store.run(run_id);
  if (!row) throw std::runtime_error(fmt::format("run {} not found", run_id));
  return RunTrainer(&store, *row, registry, hooks).run();
}

RunOutcome train_follower(const RunRow& row, const Registry& registry, const TrainHooks& hooks) {
  if (!hooks.group || hooks.group->rank() == 0) throw std::logic_error("train_follower: needs a rank > 0");
  return RunTrainer(nullptr, row, registry, hooks).run();
}

}  // namespace lmgrid
