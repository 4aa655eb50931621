// The dist layer: data-parallel training of one run over torch c10d (Gloo on CPU tensors; the
// same collectives carry CUDA tensors, NCCL where the LibTorch build has it).
//
// Launch conventions are torchrun's: RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT.
// `lmgrid run --nproc N` sets them for its own workers on one machine; under srun or torchrun
// they come from the launcher. Rank 0 owns the TCP store every rank rendezvouses through, the
// database, metrics and checkpoints; the other ranks ("followers") only compute.
//
// Every collective is bounded by a timeout: a rank that dies or stops answering ends the run on
// every other rank with DistError instead of a hang.
#pragma once

#include <chrono>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include <torch/csrc/distributed/c10d/Store.hpp>
#include <torch/torch.h>

namespace lmgrid::dist {

// A collective or rendezvous failed: a peer died, hung past the timeout, or was never started.
class DistError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// Where this process sits in a data-parallel job, from the torchrun variables.
struct LaunchEnv {
  int rank = 0, world = 1, local_rank = 0;
  std::string master_addr = "127.0.0.1";
  int master_port = 0;
  std::chrono::milliseconds timeout{std::chrono::seconds(300)};  // LMGRID_DIST_TIMEOUT (seconds)

  bool distributed() const { return world > 1; }
  // Reads the variables; UserError (exit 2) naming the variable when one is malformed or they
  // contradict each other (RANK >= WORLD_SIZE, WORLD_SIZE > 1 without MASTER_PORT).
  static LaunchEnv from_environment();
};

// The seconds of LMGRID_DIST_TIMEOUT (default 300), validated.
std::chrono::milliseconds timeout_from_environment();

// A TCP store server (the rendezvous point of every run of a grid), owned by `lmgrid run`
// (--nproc) or by the rank-0 host of a launcher job. port 0 picks a free port.
class StoreServer {
 public:
  StoreServer(const std::string& host, int port, std::chrono::milliseconds timeout);
  ~StoreServer();
  int port() const { return port_; }
  // A client-side handle to the same store, e.g. for the grid's run announcements.
  c10::intrusive_ptr<c10d::Store> store() const;

 private:
  c10::intrusive_ptr<c10d::Store> store_;
  int port_ = 0;
};

// A client connection to rank 0's store (retries until the timeout).
c10::intrusive_ptr<c10d::Store> connect_store(const LaunchEnv& env);

// Keys of the store as strings.
void store_set(c10d::Store& store, const std::string& key, const std::string& value);
std::string store_get(c10d::Store& store, const std::string& key);  // waits up to the store's timeout
bool store_has(c10d::Store& store, const std::string& key);

// The process group of one data-parallel run: every rank of it, under its own key prefix of
// the store (so the runs of one grid never mix).
class Group {
 public:
  Group(const LaunchEnv& env, c10::intrusive_ptr<c10d::Store> store, const std::string& prefix);
  ~Group();
  int rank() const { return rank_; }
  int size() const { return size_; }

  // In-place sums over the ranks, blocking; tensors on one device, contiguous.
  void allreduce_sum(std::vector<torch::Tensor>& tensors);
  void allreduce_sum(torch::Tensor& tensor);
  // Starts an in-place sum without waiting; wait_all() waits for every started one.
  void start_allreduce_sum(torch::Tensor& tensor);
  void wait_all();
  // Rank 0's tensor / string on every rank.
  void broadcast(torch::Tensor& tensor);
  void broadcast(std::string& bytes);
  // The run's own keys (config, tokenizer state), prefixed.
  void set(const std::string& key, const std::string& value);
  std::string get(const std::string& key);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
  int rank_ = 0, size_ = 1;
};

// Sums the gradients of `params` over the ranks in buckets of about `bucket_bytes`, overlapped
// with backward: after arm(), each parameter's gradient hook copies (earlier micro-batches'
// .grad + this gradient) into its bucket's flat buffer, and a bucket whose gradients are all
// there starts its all-reduce while backward goes on (buckets start in one fixed order on every
// rank, as collectives must). finish() starts what is left (a parameter without a gradient adds
// zeros), waits, and writes the sums into .grad. Buckets follow the parameters in reverse
// (backward's order) and never mix dtypes or devices.
class GradReducer {
 public:
  GradReducer(Group& group, std::vector<torch::Tensor> params, int64_t bucket_bytes = 4 << 20);
  ~GradReducer();
  GradReducer(const GradReducer&) = delete;
  GradReducer& operator=(const GradReducer&) = delete;

  void arm();     // before the backward of the step's last micro-batch
  void finish();  // after it: every gradient summed over the ranks
  int64_t buckets() const { return static_cast<int64_t>(buckets_.size()); }

 private:
  struct Bucket {
    std::vector<size_t> params;  // indices into params_
    torch::Tensor flat;
    size_t ready = 0;
    bool started = false;
  };
  void on_grad(size_t k, const torch::Tensor& grad);
  void start_ready_buckets();

  Group& group_;
  std::vector<torch::Tensor> params_;
  std::vector<Bucket> buckets_;
  std::vector<size_t> bucket_of_;   // per parameter
  std::vector<int64_t> offset_of_;  // per parameter, in its bucket's flat buffer
  std::vector<char> filled_;        // per parameter, this step
  std::vector<unsigned> hooks_;
  size_t next_start_ = 0;
  bool armed_ = false;
  std::string error_;  // a failure inside a hook, rethrown by finish()
};

}  // namespace lmgrid::dist
