// Data-parallel process groups over c10d (see process_group.hpp).
#include "lmgrid/dist/process_group.hpp"

#include <algorithm>
#include <cstdlib>
#include <thread>

#include <fmt/format.h>
#include <torch/csrc/distributed/c10d/PrefixStore.hpp>
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>
// A CUDA LibTorch with NCCL (the torch wheel): CUDA tensors go through NCCL. core/CMakeLists.txt
// defines LMGRID_DIST_NCCL there; the wheel's nccl.h and CUDA's are the same NCCL (2.28.9 today).
#if defined(LMGRID_DIST_NCCL) && defined(USE_C10D_NCCL)
#include <torch/csrc/distributed/c10d/ProcessGroupNCCL.hpp>
#define LMGRID_HAVE_NCCL 1
#endif

#include "lmgrid/base/env.hpp"
#include "lmgrid/base/errors.hpp"

namespace lmgrid::dist {

namespace {

int int_variable(const char* name, int fallback, int lo, int hi) {
  std::string v = env_or(name, "");
  if (v.empty()) return fallback;
  char* end = nullptr;
  long x = std::strtol(v.c_str(), &end, 10);
  if (*end != '\0' || x < lo || x > hi)
    throw UserError(fmt::format("environment variable {}={}: expected an integer in [{}, {}]", name, v, lo, hi));
  return static_cast<int>(x);
}

// Runs a c10d call; its failure (a peer gone, a timeout) becomes DistError naming what was done.
template <typename F>
auto guarded(const char* what, F&& f) -> decltype(f()) {
  try {
    return f();
  } catch (const DistError&) {
    throw;
  } catch (const std::exception& e) {
    std::string msg = e.what();
    auto nl = msg.find('\n');  // c10::Error appends a C++ backtrace after the first line
    if (nl != std::string::npos) msg.resize(nl);
    throw DistError(fmt::format("data parallel: {} failed: {}", what, msg));
  }
}

}  // namespace

std::chrono::milliseconds timeout_from_environment() {
  int s = int_variable("LMGRID_DIST_TIMEOUT", 300, 1, 7 * 24 * 3600);
  return std::chrono::milliseconds(static_cast<int64_t>(s) * 1000);
}

LaunchEnv LaunchEnv::from_environment() {
  LaunchEnv e;
  e.world = int_variable("WORLD_SIZE", 1, 1, 1 << 20);
  e.rank = int_variable("RANK", 0, 0, 1 << 20);
  e.local_rank = int_variable("LOCAL_RANK", e.rank, 0, 1 << 20);
  e.master_addr = env_or("MASTER_ADDR", "127.0.0.1");
  e.master_port = int_variable("MASTER_PORT", 0, 0, 65535);
  e.timeout = timeout_from_environment();
  if (e.rank >= e.world)
    throw UserError(fmt::format("environment: RANK={} but WORLD_SIZE={} (ranks are 0..WORLD_SIZE-1)", e.rank, e.world));
  if (e.world > 1 && e.master_port == 0)
    throw UserError(
        fmt::format("environment: WORLD_SIZE={} needs MASTER_PORT (and MASTER_ADDR, rank 0's host)", e.world));
  return e;
}

StoreServer::StoreServer(const std::string& host, int port, std::chrono::milliseconds timeout) {
  c10d::TCPStoreOptions o;
  o.port = static_cast<uint16_t>(port);
  o.isServer = true;
  o.waitWorkers = false;
  o.timeout = timeout;
  auto s = guarded("starting the TCP store", [&] { return c10::make_intrusive<c10d::TCPStore>(host, o); });
  port_ = static_cast<int>(s->getPort());
  store_ = s;
}

StoreServer::~StoreServer() = default;

c10::intrusive_ptr<c10d::Store> StoreServer::store() const { return store_; }

c10::intrusive_ptr<c10d::Store> connect_store(const LaunchEnv& env) {
  c10d::TCPStoreOptions o;
  o.port = static_cast<uint16_t>(env.master_port);
  o.isServer = false;
  o.waitWorkers = false;
  o.timeout = env.timeout;
  return guarded(
      fmt::format("connecting to rank 0's store at {}:{}", env.master_addr, env.master_port).c_str(),
      [&]() -> c10::intrusive_ptr<c10d::Store> { return c10::make_intrusive<c10d::TCPStore>(env.master_addr, o); });
}

void store_set(c10d::Store& store, const std::string& key, const std::string& value) {
  guarded("a store write", [&] { store.set(key, std::vector<uint8_t>(value.begin(), value.end())); });
}

std::string store_get(c10d::Store& store, const std::string& key) {
  auto v = guarded(fmt::format("waiting for '{}' in the store", key).c_str(), [&] { return store.get(key); });
  return std::string(v.begin(), v.end());
}

bool store_has(c10d::Store& store, const std::string& key) {
  return guarded("a store read", [&] { return store.check({key}); });
}

bool nccl_built() {
#ifdef LMGRID_HAVE_NCCL
  return true;
#else
  return false;
#endif
}

// Gloo for CPU tensors (and everything when NCCL is not built or LMGRID_DIST_BACKEND=gloo);
// NCCL for CUDA tensors, its communicator made at the first CUDA collective (every rank reaches
// it at the same point of the same program, as a rendezvous needs).
struct Group::Impl {
  c10::intrusive_ptr<c10d::Store> store;
  c10::intrusive_ptr<c10d::ProcessGroupGloo> pg;
  std::vector<c10::intrusive_ptr<c10d::Work>> pending;  // started, not yet waited for
  int rank = 0, size = 1;
  std::chrono::milliseconds timeout{0};
  bool use_nccl = false;
#ifdef LMGRID_HAVE_NCCL
  c10::intrusive_ptr<c10d::ProcessGroupNCCL> nccl;
  c10d::ProcessGroupNCCL& nccl_group() {
    if (!nccl) {
      auto o = c10d::ProcessGroupNCCL::Options::create();
      o->timeout = timeout;
      nccl = c10::make_intrusive<c10d::ProcessGroupNCCL>(c10::make_intrusive<c10d::PrefixStore>("nccl", store), rank,
                                                         size, o);
    }
    return *nccl;
  }
#endif
  c10::intrusive_ptr<c10d::Work> allreduce(torch::Tensor& t) {
    std::vector<at::Tensor> one{t};
#ifdef LMGRID_HAVE_NCCL
    if (use_nccl && t.is_cuda()) return nccl_group().allreduce(one);
#endif
    return pg->allreduce(one);
  }
  c10::intrusive_ptr<c10d::Work> broadcast(torch::Tensor& t) {
    std::vector<at::Tensor> one{t};
    c10d::BroadcastOptions o;
    o.rootRank = 0;
#ifdef LMGRID_HAVE_NCCL
    if (use_nccl && t.is_cuda()) return nccl_group().broadcast(one, o);
#endif
    return pg->broadcast(one, o);
  }
};

Group::Group(const LaunchEnv& env, c10::intrusive_ptr<c10d::Store> store, const std::string& prefix)
    : impl_(std::make_unique<Impl>()), rank_(env.rank), size_(env.world) {
  impl_->store = c10::make_intrusive<c10d::PrefixStore>(prefix, std::move(store));
  impl_->rank = rank_, impl_->size = size_, impl_->timeout = env.timeout;
  std::string backend = env_or("LMGRID_DIST_BACKEND", "auto");
  if (backend != "auto" && backend != "gloo" && backend != "nccl")
    throw UserError("environment variable LMGRID_DIST_BACKEND=" + backend + ": expected auto, gloo or nccl");
  if (backend == "nccl" && !nccl_built())
    throw UserError("LMGRID_DIST_BACKEND=nccl but this LibTorch build has no NCCL (use the CUDA torch wheel)");
  impl_->use_nccl = backend != "gloo" && nccl_built();
  auto opts = c10d::ProcessGroupGloo::Options::create(env.timeout);
  // The network interface GLOO_SOCKET_IFNAME names (as in PyTorch); else loopback for one
  // machine, and the address of this host's name (or loopback) otherwise.
  bool local = env.master_addr == "127.0.0.1" || env.master_addr == "localhost";
  std::string ifname = env_or("GLOO_SOCKET_IFNAME", "");
  opts->devices.push_back(guarded("creating the Gloo device", [&] {
    if (!ifname.empty()) return c10d::ProcessGroupGloo::createDeviceForInterface(ifname);
    return local ? c10d::ProcessGroupGloo::createDeviceForHostname("127.0.0.1")
                 : c10d::ProcessGroupGloo::createDefaultDevice();
  }));
  opts->threads = 1;  // one run's collectives are issued in order: one Gloo thread keeps that order cheaply
  impl_->pg = guarded(fmt::format("joining the {} ranks of the run (rank {})", size_, rank_).c_str(),
                      [&] { return c10::make_intrusive<c10d::ProcessGroupGloo>(impl_->store, rank_, size_, opts); });
}

Group::~Group() = default;

void Group::allreduce_sum(std::vector<torch::Tensor>& tensors) {
  std::vector<c10::intrusive_ptr<c10d::Work>> works;
  guarded("an all-reduce", [&] {
    for (auto& t : tensors) works.push_back(impl_->allreduce(t));
    for (auto& w : works) w->wait();
  });
}

void Group::start_allreduce_sum(torch::Tensor& tensor) {
  guarded("starting an all-reduce", [&] { impl_->pending.push_back(impl_->allreduce(tensor)); });
}

void Group::wait_all() {
  auto pending = std::move(impl_->pending);
  impl_->pending.clear();
  guarded("an all-reduce", [&] {
    for (auto& w : pending) w->wait();
  });
}

void Group::allreduce_sum(torch::Tensor& tensor) {
  std::vector<torch::Tensor> v{tensor};
  allreduce_sum(v);
}

void Group::broadcast(torch::Tensor& tensor) {
  guarded("a broadcast", [&] { impl_->broadcast(tensor)->wait(); });
}

void Group::broadcast(std::string& bytes) {
  auto n = torch::tensor({static_cast<int64_t>(bytes.size())}, torch::kInt64);
  broadcast(n);
  int64_t size = n.item<int64_t>();
  auto buf = torch::empty({size}, torch::kUInt8);
  if (rank_ == 0 && size > 0) std::memcpy(buf.data_ptr(), bytes.data(), static_cast<size_t>(size));
  if (size > 0) broadcast(buf);
  if (rank_ != 0) bytes.assign(static_cast<const char*>(buf.data_ptr()), static_cast<size_t>(size));
}

void Group::set(const std::string& key, const std::string& value) { store_set(*impl_->store, key, value); }
std::string Group::get(const std::string& key) { return store_get(*impl_->store, key); }

GradReducer::GradReducer(Group& group, std::vector<torch::Tensor> params, int64_t bucket_bytes)
    : group_(group), params_(std::move(params)) {
  bucket_of_.assign(params_.size(), 0);
  offset_of_.assign(params_.size(), 0);
  filled_.assign(params_.size(), 0);
  int64_t bytes = 0, numel = 0;
  auto close = [&] {
    if (buckets_.empty() || buckets_.back().params.empty()) return;
    const auto& p0 = params_[buckets_.back().params.front()];
    buckets_.back().flat = torch::zeros({numel}, p0.options().requires_grad(false));
  };
  for (size_t k = params_.size(); k-- > 0;) {
    const auto& p = params_[k];
    bool fresh = buckets_.empty() || bytes >= bucket_bytes;
    if (!fresh) {
      const auto& q = params_[buckets_.back().params.front()];
      fresh = q.scalar_type() != p.scalar_type() || q.device() != p.device();
    }
    if (fresh) {
      close();
      buckets_.emplace_back();
      bytes = 0, numel = 0;
    }
    bucket_of_[k] = buckets_.size() - 1;
    offset_of_[k] = numel;
    buckets_.back().params.push_back(k);
    numel += p.numel();
    bytes += p.numel() * static_cast<int64_t>(p.element_size());
  }
  close();
  for (size_t k = 0; k < params_.size(); ++k)
    hooks_.push_back(params_[k].register_hook([this, k](const torch::Tensor& g) { on_grad(k, g); }));
}

GradReducer::~GradReducer() {
  for (size_t k = 0; k < hooks_.size(); ++k) params_[k].remove_hook(hooks_[k]);
}

void GradReducer::arm() {
  armed_ = true;
  next_start_ = 0;
  error_.clear();
  std::fill(filled_.begin(), filled_.end(), 0);
  for (auto& b : buckets_) b.ready = 0, b.started = false;
}

// Runs inside backward, before the gradient is accumulated into .grad.
void GradReducer::on_grad(size_t k, const torch::Tensor& grad) {
  if (!armed_ || filled_[k]) return;
  try {
    torch::NoGradGuard ng;
    const auto& p = params_[k];
    Bucket& b = buckets_[bucket_of_[k]];
    auto slot = b.flat.narrow(0, offset_of_[k], p.numel());
    auto g = grad.reshape({-1});
    if (p.grad().defined())
      torch::add_out(slot, p.grad().reshape({-1}), g);
    else
      slot.copy_(g);
    filled_[k] = 1;
    ++b.ready;
    start_ready_buckets();
  } catch (const std::exception& e) {
    if (error_.empty()) error_ = e.what();
  }
}

void GradReducer::start_ready_buckets() {
  while (next_start_ < buckets_.size() && buckets_[next_start_].ready == buckets_[next_start_].params.size()) {
    Bucket& b = buckets_[next_start_++];
    b.started = true;
    group_.start_allreduce_sum(b.flat);
  }
}

void GradReducer::finish() {
  torch::NoGradGuard ng;
  if (!armed_) arm();  // nothing was hooked: every gradient is in .grad already
  armed_ = false;
  for (size_t k = 0; k < params_.size(); ++k) {
    if (filled_[k]) continue;
    const auto& p = params_[k];
    Bucket& b = buckets_[bucket_of_[k]];
    auto slot = b.flat.narrow(0, offset_of_[k], p.numel());
    if (p.grad().defined())
      slot.copy_(p.grad().reshape({-1}));
    else
      slot.zero_();
    filled_[k] = 1;
    ++b.ready;
  }
  if (!error_.empty()) throw DistError("data parallel: a gradient all-reduce failed: " + error_);
  start_ready_buckets();
  group_.wait_all();
  for (size_t k = 0; k < params_.size(); ++k) {
    auto& p = params_[k];
    auto part = buckets_[bucket_of_[k]].flat.narrow(0, offset_of_[k], p.numel()).view(p.sizes());
    if (p.grad().defined())
      p.mutable_grad().copy_(part);
    else
      p.mutable_grad() = part.clone();
  }
}

}  // namespace lmgrid::dist
