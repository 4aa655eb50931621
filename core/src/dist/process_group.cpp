// Data-parallel process groups over c10d (see process_group.hpp).
#include "lmgrid/dist/process_group.hpp"

#include <algorithm>
#include <cstdlib>
#include <thread>

#include <fmt/format.h>
#include <torch/csrc/distributed/c10d/PrefixStore.hpp>
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>

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

struct Group::Impl {
  c10::intrusive_ptr<c10d::Store> store;
  c10::intrusive_ptr<c10d::ProcessGroupGloo> pg;
};

Group::Group(const LaunchEnv& env, c10::intrusive_ptr<c10d::Store> store, const std::string& prefix)
    : impl_(std::make_unique<Impl>()), rank_(env.rank), size_(env.world) {
  impl_->store = c10::make_intrusive<c10d::PrefixStore>(prefix, std::move(store));
  auto opts = c10d::ProcessGroupGloo::Options::create(env.timeout);
  // Loopback for one machine; the address of this host's name (or loopback) otherwise.
  bool local = env.master_addr == "127.0.0.1" || env.master_addr == "localhost";
  opts->devices.push_back(guarded("creating the Gloo device", [&] {
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
    for (auto& t : tensors) {
      std::vector<at::Tensor> one{t};
      works.push_back(impl_->pg->allreduce(one));
    }
    for (auto& w : works) w->wait();
  });
}

void Group::allreduce_sum(torch::Tensor& tensor) {
  std::vector<torch::Tensor> v{tensor};
  allreduce_sum(v);
}

void Group::broadcast(torch::Tensor& tensor) {
  guarded("a broadcast", [&] {
    std::vector<at::Tensor> one{tensor};
    c10d::BroadcastOptions o;
    o.rootRank = 0;
    impl_->pg->broadcast(one, o)->wait();
  });
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
  // Reverse order: the last layers' gradients are ready first in backward; buckets never mix
  // dtypes or devices (one flat buffer each).
  std::vector<size_t> cur;
  int64_t bytes = 0;
  for (size_t k = params_.size(); k-- > 0;) {
    const auto& p = params_[k];
    if (!cur.empty()) {
      const auto& q = params_[cur.front()];
      if (q.scalar_type() != p.scalar_type() || q.device() != p.device() || bytes >= bucket_bytes) {
        buckets_.push_back(cur);
        cur.clear();
        bytes = 0;
      }
    }
    cur.push_back(k);
    bytes += p.numel() * static_cast<int64_t>(p.element_size());
  }
  if (!cur.empty()) buckets_.push_back(cur);
}

void GradReducer::reduce() {
  torch::NoGradGuard ng;
  std::vector<torch::Tensor> flats;
  flats.reserve(buckets_.size());
  for (const auto& b : buckets_) {
    std::vector<torch::Tensor> parts;
    parts.reserve(b.size());
    for (size_t k : b) {
      auto& p = params_[k];
      parts.push_back(p.grad().defined() ? p.grad().reshape({-1}) : torch::zeros({p.numel()}, p.options()));
    }
    flats.push_back(torch::cat(parts));
  }
  group_.allreduce_sum(flats);  // every bucket in flight at once
  for (size_t i = 0; i < buckets_.size(); ++i) {
    int64_t off = 0;
    for (size_t k : buckets_[i]) {
      auto& p = params_[k];
      auto part = flats[i].narrow(0, off, p.numel()).view(p.sizes());
      if (p.grad().defined())
        p.mutable_grad().copy_(part);
      else
        p.mutable_grad() = part.clone();
      off += p.numel();
    }
  }
}

}  // namespace lmgrid::dist
