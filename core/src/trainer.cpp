// The generic trainer (see trainer.hpp). The host never branches on plugin names here.
#include "lmgrid/trainer.hpp"

#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <fstream>
#include <set>

#include <fmt/format.h>

#include "lmgrid/boundary.hpp"
#include "lmgrid/checkpoint.hpp"
#include "lmgrid/errors.hpp"
#include "lmgrid/util.hpp"

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

const std::vector<ParamSpec>& trainer_params() {
  static const std::vector<ParamSpec> specs{
      // Upper bounds keep a typo from passing validation and failing (or allocating) later.
      int_param("steps", 1000, "optimizer steps to train", 1, 1e12),
      int_param("batch_size", 12, "sequences per micro-batch", 1, 1 << 20),
      int_param("grad_accum", 1, "micro-batches accumulated per optimizer step", 1, 1 << 20),
      real_param("clip", 1.0, "clip the global gradient norm to this (0 = off)", 0.0),
      string_param("schedule", "cosine", "learning-rate schedule", {"constant", "cosine", "linear"}),
      int_param("warmup", 0, "linear warm-up steps", 0, 1e12),
      real_param("lr_min", 0.0, "learning rate at the end of the decay (absolute)", 0.0),
      int_param("decay_steps", 0, "step at which decay reaches lr_min (0 = steps)", 0, 1e12),
      int_param("eval_every", 200, "evaluate on the val split every N steps (and at the end)", 1, 1e12),
      int_param("eval_batches", 20, "fixed val batches per evaluation", 1, 1 << 20),
      int_param("checkpoint_every", 200, "write a checkpoint every N steps (and at the end)", 1, 1e12),
      int_param("keep_checkpoints", 2, "checkpoints kept per run", 1, 1 << 20),
      int_param("early_stop_patience", 0, "stop after N evaluations without improvement (0 = off)", 0, 1e12),
      real_param("early_stop_min_delta", 0.0, "improvement smaller than this does not count", 0.0),
      int_param("log_every", 10, "record train metrics every N steps", 1, 1e12),
      string_param("device", "auto", "where to train", {"auto", "cpu", "cuda"}),
      string_param("dtype", "float32", "parameter dtype", {"float32", "float64", "bfloat16"}),
  };
  return specs;
}

double scheduled_lr(const std::string& schedule, int64_t step, double lr, double lr_min, int64_t warmup,
                    int64_t decay_steps) {
  // nanoGPT's get_lr for every schedule: warm-up lr * (step + 1) / (warmup + 1).
  if (warmup > 0 && step < warmup) return lr * static_cast<double>(step + 1) / static_cast<double>(warmup + 1);
  if (schedule == "constant") return lr;
  if (step > decay_steps) return lr_min;
  double ratio = decay_steps > warmup ? static_cast<double>(step - warmup) / static_cast<double>(decay_steps - warmup) : 1.0;
  ratio = std::clamp(ratio, 0.0, 1.0);
  double coeff = schedule == "cosine" ? 0.5 * (1.0 + std::cos(M_PI * ratio)) : 1.0 - ratio;
  return lr_min + coeff * (lr - lr_min);
}

torch::Tensor lm_loss(const torch::Tensor& logits, const torch::Tensor& targets, const torch::Tensor& mask) {
  auto V = logits.size(-1);
  auto flat = logits.reshape({-1, V}).to(torch::kFloat32);
  if (logits.scalar_type() == torch::kFloat64) flat = logits.reshape({-1, V});
  if (!mask.defined()) return torch::nn::functional::cross_entropy(flat, targets.reshape({-1}));
  auto l = torch::nn::functional::cross_entropy(flat, targets.reshape({-1}),
                                                torch::nn::functional::CrossEntropyFuncOptions().reduction(torch::kNone));
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

double Model::flops_per_token() const { return 6.0 * static_cast<double>(parameter_count()); }

int64_t Model::parameter_count() const {
  std::set<const void*> seen;
  int64_t n = 0;
  for (const auto& p : parameters(true))
    if (seen.insert(p.unsafeGetTensorImpl()).second) n += p.numel();
  return n;
}

static torch::Device pick_device(const std::string& d) {
  if (d == "cuda" || (d == "auto" && torch::cuda::is_available())) {
    if (!torch::cuda::is_available()) throw UserError("[train] device = \"cuda\" but no CUDA device is available");
    return torch::Device(torch::kCUDA);
  }
  return torch::Device(torch::kCPU);
}

RunObjects build_run(const RunConfig& cfg, const Registry& registry, bool with_data, const std::string& tokenizer_state) {
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
    return t;
  });
  const auto& data_plugin = static_cast<const DataPlugin&>(*data_lp.plugin);
  Params data_params = cfg.section_params("data");
  if (with_data) {
    DataContext dctx{o.tokenizer, static_cast<uint64_t>(cfg.seed)};
    o.dataset = call_plugin(data_lp.id(), [&] { return keep_alive(data_plugin.create(data_params, dctx), data_lp.plugin); });
  }
  ModelContext mctx;
  mctx.vocab_size = call_plugin(tok_lp.id(), [&] { return o.tokenizer->vocab_size(); });
  mctx.seq_len = call_plugin(data_lp.id(), [&] { return data_plugin.seq_len(data_params); });
  if (mctx.vocab_size <= 0)
    throw UserError("tokenizer " + tok_lp.id() + " has an empty vocabulary (was it fitted on the data?)");
  const auto& arch_plugin = static_cast<const ArchPlugin&>(*arch_lp.plugin);
  o.model = call_plugin(arch_lp.id(), [&] {
    return keep_alive(arch_plugin.create(cfg.section_params("model"), mctx), arch_lp.plugin);
  });
  Params tp = cfg.section_params("train");
  torch::Device device = pick_device(tp.s("device"));
  const std::string& dtype = tp.s("dtype");
  o.model->to(device, dtype == "float64" ? torch::kFloat64 : dtype == "bfloat16" ? torch::kBFloat16 : torch::kFloat32);
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
  double accuracy = NAN;  // only when the dataset scores a subset (loss mask)
};

EvalResult evaluate(RunObjects& o, const std::string& arch_id, const std::string& data_id, int64_t batches,
                    int64_t batch_size, torch::Device device) {
  torch::NoGradGuard ng;
  o.model->eval();
  int64_t n = std::min(batches, call_plugin(data_id, [&] { return o.dataset->eval_batch_count(Split::val, batch_size); }));
  double total = 0, weight = 0, correct = 0, scored = 0;
  bool masked = false;
  for (int64_t i = 0; i < n; ++i) {
    Batch b = call_plugin(data_id, [&] { return o.dataset->eval_batch(Split::val, i, batch_size); });
    auto logits = call_plugin(arch_id, [&] { return o.model->forward(b.inputs.to(device), nullptr).logits; });
    auto targets = b.targets.to(device);
    torch::Tensor mask = b.loss_mask.defined() ? b.loss_mask.to(device) : torch::Tensor();
    double w = mask.defined() ? mask.sum().item<double>() : static_cast<double>(targets.numel());
    total += lm_loss(logits, targets, mask).item<double>() * w;
    weight += w;
    if (mask.defined()) {
      masked = true;
      auto hit = (logits.argmax(-1) == targets).to(torch::kFloat32) * mask.to(torch::kFloat32);
      correct += hit.sum().item<double>();
      scored += mask.sum().item<double>();
    }
  }
  o.model->train();
  EvalResult r;
  if (weight > 0) r.loss = total / weight;
  if (masked && scored > 0) r.accuracy = correct / scored;
  return r;
}

}  // namespace

RunOutcome train_run(Store& store, int64_t run_id, const Registry& registry, const TrainHooks& hooks) {
  auto row = store.run(run_id);
  if (!row) throw std::runtime_error(fmt::format("run {} not found", run_id));
  RunConfig cfg = RunConfig::from_json(row->config);
  Params tp = cfg.section_params("train");
  const int64_t steps = tp.i("steps"), batch_size = tp.i("batch_size"), accum = tp.i("grad_accum");
  const int64_t eval_every = tp.i("eval_every"), ckpt_every = tp.i("checkpoint_every"), log_every = tp.i("log_every");
  const int64_t decay_steps = tp.i("decay_steps") > 0 ? tp.i("decay_steps") : steps;
  const double clip = tp.f("clip");
  // Run files live beside the database (not where the command was started).
  fs::path run_dir = store.run_dir(row->config_hash);
  fs::create_directories(run_dir);

  // Newest checkpoint that verifies; corrupt ones are reported, moved aside and skipped.
  std::optional<fs::path> resume_from;
  std::optional<CheckpointMeta> resume_meta;
  for (const auto& ck : store.checkpoints(run_id)) {
    try {
      if (!fs::exists(ck.path)) throw CheckpointError("checkpoint file missing: " + ck.path.string());
      resume_meta = read_checkpoint_meta(ck.path);
      resume_from = ck.path;
      break;
    } catch (const CheckpointError& e) {
      std::fprintf(stderr, "lmgrid: run %lld: WARNING: %s; not loading it\n", static_cast<long long>(run_id), e.what());
      std::error_code ec;
      if (fs::exists(ck.path)) fs::rename(ck.path, ck.path.string() + ".corrupt", ec);
      store.delete_checkpoint(run_id, ck.step);
    }
  }

  RunObjects o = build_run(cfg, registry, true, resume_meta ? resume_meta->tokenizer_state : "");
  std::string arch_id = o.plugin_ids[2], data_id = o.plugin_ids[1], optim_id = o.plugin_ids[3];
  torch::Device device = o.model->parameters().empty() ? torch::Device(torch::kCPU) : o.model->parameters()[0].device();

  int64_t step = 0, tokens = 0, cursor = 0, evals_since_best = 0;
  double elapsed_before = 0, best_val = NAN, train_time_before = 0;
  double last_loss = NAN, last_val = NAN;
  if (resume_from) {
    // load_checkpoint verifies the payload checksum before anything is loaded.
    try {
      auto meta = load_checkpoint(*resume_from, *o.model, o.optimizer.get(), true);
      step = meta.step, tokens = meta.tokens, cursor = meta.data_cursor, elapsed_before = meta.elapsed_s;
      best_val = meta.best_val, evals_since_best = meta.evals_since_best;
      train_time_before = meta.train_time_s, last_loss = meta.last_train_loss, last_val = meta.last_val;
      std::fprintf(stderr, "lmgrid: run %lld: resuming from step %lld (%s)\n", static_cast<long long>(run_id),
                   static_cast<long long>(step), resume_from->c_str());
    } catch (const CheckpointError& e) {
      std::fprintf(stderr, "lmgrid: run %lld: WARNING: %s; starting from scratch\n", static_cast<long long>(run_id), e.what());
      std::error_code ec;
      fs::rename(*resume_from, resume_from->string() + ".corrupt", ec);
      store.delete_checkpoints(run_id);
      o = build_run(cfg, registry, true);
    }
  }
  // Anything logged after the resume point is repeated from here: drop it.
  store.delete_metrics_after(run_id, step);
  store.delete_checkpoint_rows_after(run_id, step);
  store.mark_started(run_id, o.model->parameter_count(), device.str());
  store.set_plugins(run_id, o.plugins);
  write_file_atomic(run_dir / "tokenizer.txt", o.tokenizer->save());
  if (call_plugin(data_id, [&] { return o.dataset->eval_batch_count(Split::val, batch_size); }) <= 0)
    throw std::runtime_error(fmt::format("dataset {} has no validation batch of {} sequences (val split too small)",
                                         data_id, batch_size));

  MetricWriter metrics(store, run_id);
  Progress progress{hooks.progress_bar, hooks.label.empty() ? fmt::format("run {}", run_id) : hooks.label, steps};
  const double t_start = monotonic_seconds();
  auto elapsed = [&] { return elapsed_before + (monotonic_seconds() - t_start); };
  double train_time = 0;  // excludes evaluation and checkpoints (for tokens/s)
  double flops_per_token = o.model->flops_per_token();
  std::vector<torch::Tensor> params;
  for (const auto& p : named_parameters_for_optim(*o.model)) params.push_back(p.tensor);

  auto checkpoint = [&](int64_t at_step) {
    metrics.flush();
    CheckpointMeta meta;
    meta.step = at_step, meta.tokens = tokens, meta.elapsed_s = elapsed(), meta.data_cursor = cursor;
    meta.best_val = best_val, meta.evals_since_best = evals_since_best;
    meta.config_json = row->config;
    meta.tokenizer_state = o.tokenizer->save();
    for (const auto& p : o.plugins) meta.extra["plugins"][p.kind] = p.name + " " + p.version;
    meta.train_time_s = train_time_before + train_time, meta.last_train_loss = last_loss, meta.last_val = last_val;
    fs::path file = run_dir / fmt::format("ckpt-{:08d}.lmck", at_step);
    std::string sha = save_checkpoint(file, meta, *o.model, o.optimizer.get());
    store.add_checkpoint(run_id, at_step, file, sha);
    store.set_step(run_id, at_step);
    // Keep the newest keep_checkpoints files.
    auto cks = store.checkpoints(run_id);
    for (size_t i = static_cast<size_t>(tp.i("keep_checkpoints")); i < cks.size(); ++i) {
      std::error_code ec;
      fs::remove(cks[i].path, ec);
      store.delete_checkpoint(run_id, cks[i].step);
    }
  };

  double interval_loss = 0, interval_time = 0;
  int64_t interval_steps = 0, interval_tokens = 0;
  std::vector<double> tok_rates;
  o.model->train();

  while (step < steps) {
    if (hooks.stop && hooks.stop->load()) {
      checkpoint(step);
      store.set_status(run_id, RunStatus::interrupted, fmt::format("interrupted at step {}", step));
      if (hooks.progress_bar) std::fprintf(stderr, "\n");
      return RunOutcome::interrupted;
    }
    double t0 = monotonic_seconds();
    double lr = scheduled_lr(tp.s("schedule"), step, o.optimizer->base_lr(), tp.f("lr_min"), tp.i("warmup"), decay_steps);
    call_plugin(optim_id, [&] {
      o.optimizer->set_lr(lr);
      o.optimizer->zero_grad();
    });
    double step_loss = 0;
    int64_t step_tokens = 0;
    for (int64_t m = 0; m < accum; ++m) {
      Batch b = call_plugin(data_id, [&] { return o.dataset->train_batch(cursor, batch_size); });
      ++cursor;
      auto inputs = b.inputs.to(device), targets = b.targets.to(device);
      auto loss = call_plugin(arch_id, [&] {
        ModelOutput out = o.model->forward(inputs, nullptr);
        auto l = lm_loss(out.logits, targets, b.loss_mask.defined() ? b.loss_mask.to(device) : torch::Tensor());
        if (out.aux_loss.defined()) l = l + out.aux_loss;
        (l / static_cast<double>(accum)).backward();
        return l;
      });
      step_loss += loss.item<double>() / static_cast<double>(accum);
      step_tokens += inputs.numel();
    }
    if (!std::isfinite(step_loss)) {
      metrics.add(step + 1, tokens + step_tokens, elapsed(), "train/loss", step_loss);
      metrics.flush();
      std::string msg = fmt::format("loss became {} at step {}", std::isnan(step_loss) ? "NaN" : "Inf", step + 1);
      store.set_step(run_id, step + 1);
      store.set_status(run_id, RunStatus::diverged, msg);
      std::fprintf(stderr, "%s%s: diverged: %s\n", hooks.progress_bar ? "\n" : "", progress.label.c_str(), msg.c_str());
      return RunOutcome::diverged;
    }
    double grad_norm = clip > 0 ? torch::nn::utils::clip_grad_norm_(params, clip)
                                : torch::nn::utils::clip_grad_norm_(params, std::numeric_limits<double>::infinity());
    call_plugin(optim_id, [&] { o.optimizer->step(); });
    ++step;
    tokens += step_tokens;
    double dt = monotonic_seconds() - t0;
    train_time += dt;
    interval_loss += step_loss, interval_time += dt, interval_tokens += step_tokens, ++interval_steps;
    last_loss = step_loss;

    if (step % log_every == 0 || step == steps) {
      double tok_s = interval_time > 0 ? interval_tokens / interval_time : 0;
      tok_rates.push_back(tok_s);
      metrics.add(step, tokens, elapsed(), "train/loss", interval_loss / interval_steps);
      metrics.add(step, tokens, elapsed(), "train/lr", lr);
      metrics.add(step, tokens, elapsed(), "train/grad_norm", grad_norm);
      metrics.add(step, tokens, elapsed(), "perf/tokens_per_s", tok_s);
      if (hooks.peak_flops > 0) metrics.add(step, tokens, elapsed(), "perf/mfu", flops_per_token * tok_s / hooks.peak_flops);
      progress.update(step, interval_loss / interval_steps, tok_s, last_val, false);
      interval_loss = interval_time = 0, interval_tokens = interval_steps = 0;
    }
    bool stop_early = false;
    if (step % eval_every == 0 || step == steps) {
      EvalResult ev = evaluate(o, arch_id, data_id, tp.i("eval_batches"), batch_size, device);
      last_val = ev.loss;
      metrics.add(step, tokens, elapsed(), "val/loss", ev.loss);
      if (std::isfinite(ev.accuracy)) metrics.add(step, tokens, elapsed(), "val/accuracy", ev.accuracy);
      if (!std::isfinite(best_val) || ev.loss < best_val - tp.f("early_stop_min_delta")) {
        best_val = std::isfinite(best_val) ? std::min(best_val, ev.loss) : ev.loss;
        evals_since_best = 0;
      } else {
        best_val = std::min(best_val, ev.loss);
        ++evals_since_best;
        if (tp.i("early_stop_patience") > 0 && evals_since_best >= tp.i("early_stop_patience")) stop_early = true;
      }
      metrics.flush();
      progress.update(step, last_loss, tok_rates.empty() ? 0 : tok_rates.back(), ev.loss, true);
    }
    if (step % ckpt_every == 0 || step == steps || stop_early) checkpoint(step);
    if (stop_early) {
      std::fprintf(stderr, "%s%s: early stop at step %lld (no val improvement in %lld evals)\n",
                   hooks.progress_bar ? "\n" : "", progress.label.c_str(), static_cast<long long>(step),
                   static_cast<long long>(evals_since_best));
      break;
    }
  }
  metrics.flush();
  store.set_step(run_id, step);
  // Training throughput over every session of the run (evaluation and checkpoints excluded).
  // A run resumed from a checkpoint written before train_time_s existed falls back to the mean
  // of its logged rates.
  double total_train_time = train_time_before + train_time;
  double total_tok_s = total_train_time > 0 ? static_cast<double>(tokens) / total_train_time : NAN;
  if (!(total_tok_s > 0)) {
    auto rates = store.metric_stats(run_id, "perf/tokens_per_s");
    total_tok_s = rates ? rates->mean : NAN;
  }
  store.set_summary(run_id, "best_val_loss", best_val);
  store.set_summary(run_id, "final_val_loss", last_val);
  store.set_summary(run_id, "final_train_loss", last_loss);
  store.set_summary(run_id, "tokens", static_cast<double>(tokens));
  store.set_summary(run_id, "wall_time_s", elapsed());
  store.set_summary(run_id, "tokens_per_s", total_tok_s);
  if (hooks.peak_flops > 0) {
    store.set_summary(run_id, "mfu", flops_per_token * total_tok_s / hooks.peak_flops);
    store.set_summary(run_id, "peak_gflops", hooks.peak_flops / 1e9);  // MFU's denominator
  }
  store.set_summary(run_id, "peak_rss_bytes", static_cast<double>(peak_rss_bytes()));
  // Accuracy only exists for datasets that score a subset (loss mask); read it back from the
  // metrics so that a resumed run counts the evaluations of every session.
  if (auto acc = store.metric_stats(run_id, "val/accuracy")) {
    store.set_summary(run_id, "best_val_accuracy", acc->max);
    store.set_summary(run_id, "final_val_accuracy", acc->last);
  }
  store.set_summary(run_id, "n_params", static_cast<double>(o.model->parameter_count()));
  store.set_status(run_id, RunStatus::done);
  return RunOutcome::done;
}

}  // namespace lmgrid
