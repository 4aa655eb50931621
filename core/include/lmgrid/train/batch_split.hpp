// Batch split: on a CPU, a run given T > 1 threads splits each micro-batch's rows into S parts
// (S = min(T, rows)) that run their forward and backward passes at the same time, one thread
// each with T / S intra-op and BLAS threads, and sums their gradients in part order. This is
// data parallelism inside one process. It exists because a step of the small models lmgrid
// trains is a chain of hundreds of operations each too small to split well over cores
// (docs/performance.md, "Batch split"): two parts on two cores do about twice the work of one
// batch on two intra-op threads.
//
// Contract: the loss and gradients are those of the whole micro-batch (each part's loss is
// weighted by its share of the scored positions), up to float rounding; the bits depend on S and
// on nothing else (the parts' gradients are summed in a fixed order, so the same S gives the
// same bits every time, on resume too). Off where a part's result could depend on the order the
// threads run in: a model that draws random numbers in training (dropout), checked once per run
// (forward_draws_random), and runs that trace their operations. Off on CUDA and in data-parallel
// runs (one thread per rank there). LMGRID_CPU_SPLIT sets S: `auto` (the default) or a count
// (1 turns parts off).
#pragma once

#include <condition_variable>
#include <cstdint>
#include <exception>
#include <functional>
#include <mutex>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include <torch/torch.h>

namespace lmgrid {

struct SplitPlan {
  int parts = 1;         // 1: the micro-batch runs whole on the calling thread
  int threads_each = 0;  // intra-op and BLAS threads of each part (when parts > 1)
  std::string why;       // one line for the run's log
};

// LMGRID_CPU_SPLIT: 0 for `auto`, else the count of parts asked for. Throws UserError for a
// value that is neither.
int batch_split_setting();

// The plan for a run with `threads` intra-op threads and micro-batches of `rows` rows.
// Throws UserError for an LMGRID_CPU_SPLIT that is neither `auto` nor a positive count.
SplitPlan plan_batch_split(int threads, int64_t rows, bool cpu, bool distributed);

// The rows of each part as (first, count): as equal as possible, the first parts one larger.
std::vector<std::pair<int64_t, int64_t>> part_rows(int64_t rows, int parts);

// True when `forward` draws from LibTorch's default CPU generator. Its state is restored
// afterwards, so the probe changes no later random number.
bool forward_draws_random(const std::function<void()>& forward);

// parts - 1 helper threads that live as long as the pool (so their thread-local caches and
// thread settings persist between steps), each set to `threads_each` intra-op threads. The
// thread that makes the pool (which runs part 0) is set to `threads_each` intra-op threads and
// OpenBLAS's pool to `threads_each` for the pool's life (whatever OPENBLAS_NUM_THREADS said), and
// gets its settings back when the pool ends. Not changed between steps, because a BLAS pool
// grown between two steps keeps its threads spinning into the next one, where they take cores
// from the parts (measured: the split then ran slower than the whole batch).
class SplitPool {
 public:
  SplitPool(int parts, int threads_each);
  ~SplitPool();
  SplitPool(const SplitPool&) = delete;
  SplitPool& operator=(const SplitPool&) = delete;

  int parts() const { return static_cast<int>(helpers_.size()) + 1; }
  // Calls job(s) for every part s: s = 0 on the calling thread, the others on the helpers, and
  // returns when all are done. An exception is rethrown here: the lowest part's, after all end.
  void run(const std::function<void(int)>& job);

 private:
  void helper_loop(int part);

  int threads_each_, own_threads_ = 0, own_blas_ = -1;
  std::mutex m_;
  std::condition_variable start_, done_;
  const std::function<void(int)>* job_ = nullptr;
  uint64_t generation_ = 0;
  int pending_ = 0;
  bool stop_ = false;
  std::vector<std::exception_ptr> errors_;
  std::vector<std::thread> helpers_;
};

// One micro-batch's forward and backward as parts on the pool's threads. part_loss(inputs,
// targets, mask, weight) runs the forward pass of a part's rows and returns its loss times
// `weight`, the part's share of the micro-batch's scored positions (mask entries, or tokens
// without a mask), so that the parts' losses sum to the whole batch's; to_grad(loss) is what is
// differentiated (a loss scale, a 1 / grad_accum). Each part's gradients come from
// autograd::grad (nothing accumulates concurrently) and are summed in part order into the
// parameters' .grad (added to what is there). Returns the sum of the parts' losses, detached;
// *first_part_secs (when given) gets the time part 0 spent in part_loss.
using PartLoss = std::function<torch::Tensor(const torch::Tensor&, const torch::Tensor&, const torch::Tensor&, double)>;
torch::Tensor split_forward_backward(SplitPool& pool, const std::vector<torch::Tensor>& params,
                                     const torch::Tensor& inputs, const torch::Tensor& targets,
                                     const torch::Tensor& mask, const PartLoss& part_loss,
                                     const std::function<torch::Tensor(const torch::Tensor&)>& to_grad,
                                     double* first_part_secs = nullptr);

// A forward pass without gradients as parts on the pool: forward(rows) returns the output of
// those rows (batch first); the outputs are joined in part order.
torch::Tensor split_forward(SplitPool& pool, const torch::Tensor& inputs,
                            const std::function<torch::Tensor(const torch::Tensor&)>& forward);

}  // namespace lmgrid
