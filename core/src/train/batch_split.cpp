// Batch split (see batch_split.hpp): the plan, the rows of each part, the random-number probe
// and the pool of helper threads.
#include "lmgrid/train/batch_split.hpp"

#include <algorithm>
#include <cstdlib>

#include <fmt/format.h>
#include <ATen/CPUGeneratorImpl.h>
#include <ATen/Parallel.h>

#include "lmgrid/base/env.hpp"
#include "lmgrid/base/errors.hpp"
#include "lmgrid/base/util.hpp"
#include "lmgrid/sys/cpu.hpp"

namespace lmgrid {

int batch_split_setting() {
  const std::string v = env_or("LMGRID_CPU_SPLIT", "auto");
  if (v == "auto") return 0;
  char* end = nullptr;
  const long n = std::strtol(v.c_str(), &end, 10);
  if (v.empty() || !end || *end != '\0' || n < 1 || n > 4096)
    throw UserError("LMGRID_CPU_SPLIT='" + v + "' is neither `auto` nor a count of parts (1 turns them off)");
  return static_cast<int>(n);
}

SplitPlan plan_batch_split(int threads, int64_t rows, bool cpu, bool distributed) {
  const int asked = batch_split_setting();
  const std::string v = asked > 0 ? std::to_string(asked) : "auto";
  SplitPlan p;
  threads = std::max(1, threads);
  if (!cpu) return p.why = "off (not a CPU run)", p;
  if (distributed) return p.why = "off (a data-parallel rank)", p;
  const int want = asked > 0 ? asked : threads;
  p.parts = static_cast<int>(std::min<int64_t>(want, std::max<int64_t>(rows, 1)));
  if (p.parts <= 1) {
    p.parts = 1;
    p.why = asked == 1 ? "off (LMGRID_CPU_SPLIT=1)" : threads == 1 ? "off (one thread)" : "off (one row a micro-batch)";
    return p;
  }
  p.threads_each = std::max(1, threads / p.parts);
  const int64_t each = rows / p.parts;
  const std::string sizes = rows % p.parts == 0 ? std::to_string(each) : fmt::format("{}-{}", each, each + 1);
  p.why = fmt::format("{} parts of {} rows at once, {} thread{} each ({} threads, LMGRID_CPU_SPLIT={})", p.parts, sizes,
                      p.threads_each, p.threads_each == 1 ? "" : "s", threads, v);
  return p;
}

std::vector<std::pair<int64_t, int64_t>> part_rows(int64_t rows, int parts) {
  std::vector<std::pair<int64_t, int64_t>> out;
  parts = std::max(1, parts);
  int64_t first = 0;
  for (int s = 0; s < parts; ++s) {
    const int64_t n = rows / parts + (s < rows % parts ? 1 : 0);
    out.emplace_back(first, n);
    first += n;
  }
  return out;
}

bool forward_draws_random(const std::function<void()>& forward) {
  auto gen = at::detail::getDefaultCPUGenerator();
  torch::Tensor before;
  {
    std::lock_guard<std::mutex> lock(gen.mutex());
    before = gen.get_state();
  }
  forward();
  std::lock_guard<std::mutex> lock(gen.mutex());
  const bool drew = !torch::equal(before, gen.get_state());
  gen.set_state(before);
  return drew;
}

namespace {
// at::set_num_threads sizes the calling thread's OpenMP team (and MKL's, on the wheel) and
// records the count for threads that start later; the BLAS pool (OpenBLAS) is process-wide.
void set_intra_op_threads(int n) {
  if (at::get_num_threads() != n) at::set_num_threads(n);
}
}  // namespace

SplitPool::SplitPool(int parts, int threads_each) : threads_each_(std::max(1, threads_each)) {
  own_threads_ = at::get_num_threads();
  own_blas_ = blas_threads();
  set_intra_op_threads(threads_each_);
  if (own_blas_ > 0) set_blas_threads(threads_each_);
  errors_.resize(static_cast<size_t>(std::max(1, parts)));
  for (int s = 1; s < parts; ++s) helpers_.emplace_back([this, s] { helper_loop(s); });
}

SplitPool::~SplitPool() {
  {
    std::lock_guard<std::mutex> lock(m_);
    stop_ = true;
  }
  start_.notify_all();
  for (auto& t : helpers_) t.join();
  set_intra_op_threads(own_threads_);
  if (own_blas_ > 0) set_blas_threads(own_blas_);
}

void SplitPool::helper_loop(int part) {
  {
    // One helper at a time: at::set_num_threads also resizes pools shared by the process.
    static std::mutex setup;
    std::lock_guard<std::mutex> lock(setup);
    set_intra_op_threads(threads_each_);
  }
  uint64_t seen = 0;
  while (true) {
    const std::function<void(int)>* job = nullptr;
    {
      std::unique_lock<std::mutex> lock(m_);
      start_.wait(lock, [&] { return stop_ || generation_ != seen; });
      if (stop_) return;
      seen = generation_;
      job = job_;
    }
    std::exception_ptr error;
    try {
      (*job)(part);
    } catch (...) {
      error = std::current_exception();
    }
    {
      std::lock_guard<std::mutex> lock(m_);
      errors_[static_cast<size_t>(part)] = error;
      if (--pending_ == 0) done_.notify_one();
    }
  }
}

void SplitPool::run(const std::function<void(int)>& job) {
  {
    std::lock_guard<std::mutex> lock(m_);
    std::fill(errors_.begin(), errors_.end(), nullptr);
    job_ = &job;
    pending_ = static_cast<int>(helpers_.size());
    ++generation_;
  }
  start_.notify_all();
  try {
    job(0);
  } catch (...) {
    errors_[0] = std::current_exception();
  }
  {
    std::unique_lock<std::mutex> lock(m_);
    done_.wait(lock, [&] { return pending_ == 0; });
    job_ = nullptr;
  }
  for (auto& e : errors_)
    if (e) std::rethrow_exception(e);
}

torch::Tensor split_forward_backward(SplitPool& pool, const std::vector<torch::Tensor>& params,
                                     const torch::Tensor& inputs, const torch::Tensor& targets,
                                     const torch::Tensor& mask, const PartLoss& part_loss,
                                     const std::function<torch::Tensor(const torch::Tensor&)>& to_grad,
                                     double* first_part_secs) {
  const int S = pool.parts();
  const auto rows = part_rows(inputs.size(0), S);
  const double whole = mask.defined() ? mask.sum().item<double>() : static_cast<double>(targets.numel());
  std::vector<torch::Tensor> losses(static_cast<size_t>(S));
  std::vector<std::vector<torch::Tensor>> grads(static_cast<size_t>(S));
  double forward_secs = 0;
  pool.run([&](int s) {
    const auto i = static_cast<size_t>(s);
    const double t0 = monotonic_seconds();
    const auto [first, n] = rows[i];
    auto in = inputs.narrow(0, first, n), tg = targets.narrow(0, first, n);
    auto mk = mask.defined() ? mask.narrow(0, first, n) : torch::Tensor();
    const double part = mk.defined() ? mk.sum().item<double>() : static_cast<double>(tg.numel());
    torch::Tensor l = part_loss(in, tg, mk, whole > 0 ? part / whole : 0.0);
    if (s == 0) forward_secs = monotonic_seconds() - t0;
    grads[i] = torch::autograd::grad({to_grad(l)}, params, {}, /*retain_graph=*/false, /*create_graph=*/false,
                                     /*allow_unused=*/true);
    losses[i] = l.detach();
  });
  if (first_part_secs) *first_part_secs = forward_secs;
  torch::NoGradGuard ng;
  for (size_t p = 0; p < params.size(); ++p) {
    torch::Tensor g;
    for (const auto& part : grads)
      if (part[p].defined()) g = g.defined() ? g + part[p] : part[p];
    if (!g.defined()) continue;
    auto& pg = params[p].mutable_grad();
    if (pg.defined())
      pg += g;
    else
      pg = g;
  }
  torch::Tensor loss = losses[0];
  for (size_t s = 1; s < losses.size(); ++s) loss = loss + losses[s];
  return loss;
}

torch::Tensor split_forward(SplitPool& pool, const torch::Tensor& inputs,
                            const std::function<torch::Tensor(const torch::Tensor&)>& forward) {
  const auto rows = part_rows(inputs.size(0), pool.parts());
  std::vector<torch::Tensor> outs(rows.size());
  pool.run([&](int s) {
    const auto [first, n] = rows[static_cast<size_t>(s)];
    outs[static_cast<size_t>(s)] = forward(inputs.narrow(0, first, n));
  });
  return torch::cat(outs, 0);
}

}  // namespace lmgrid
