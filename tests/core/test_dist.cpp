// The dist layer on one rank (the collectives are the identity there, so what is tested is
// lmgrid's own logic): launch variables, the store, broadcasts, and the gradient reducer's
// buckets, hooks and accumulation against plain backward. The 2-rank equivalence with one
// process is tests/cli/test_dist.sh.
#include <cstdlib>

#include <catch2/catch.hpp>

#include "lmgrid/base/errors.hpp"
#include "lmgrid/dist/process_group.hpp"

using namespace lmgrid;

namespace {

struct ScopedEnv {
  std::string name;
  ScopedEnv(const char* n, const char* v) : name(n) { setenv(n, v, 1); }
  ~ScopedEnv() { unsetenv(name.c_str()); }
};

dist::LaunchEnv one_rank(int port) {
  dist::LaunchEnv e;
  e.master_port = port;
  e.timeout = std::chrono::seconds(20);
  return e;
}

}  // namespace

TEST_CASE("dist: launch variables are read and checked", "[unit]") {
  {
    auto e = dist::LaunchEnv::from_environment();
    CHECK(e.world == 1);
    CHECK_FALSE(e.distributed());
  }
  {
    ScopedEnv a("WORLD_SIZE", "4"), b("RANK", "3"), c("MASTER_PORT", "29511"), d("MASTER_ADDR", "node7");
    auto e = dist::LaunchEnv::from_environment();
    CHECK(e.world == 4);
    CHECK(e.rank == 3);
    CHECK(e.local_rank == 3);  // LOCAL_RANK defaults to RANK
    CHECK(e.master_addr == "node7");
    CHECK(e.master_port == 29511);
    CHECK(e.distributed());
  }
  {
    ScopedEnv a("WORLD_SIZE", "2"), b("RANK", "2"), c("MASTER_PORT", "1");
    CHECK_THROWS_AS(dist::LaunchEnv::from_environment(), UserError);
  }
  {
    ScopedEnv a("WORLD_SIZE", "2");
    CHECK_THROWS_AS(dist::LaunchEnv::from_environment(), UserError);  // no MASTER_PORT
  }
  {
    ScopedEnv a("WORLD_SIZE", "two");
    CHECK_THROWS_AS(dist::LaunchEnv::from_environment(), UserError);
  }
  {
    ScopedEnv a("LMGRID_DIST_TIMEOUT", "7");
    CHECK(dist::timeout_from_environment() == std::chrono::milliseconds(7000));
  }
}

TEST_CASE("dist: store keys and broadcasts on one rank", "[unit]") {
  dist::StoreServer server("127.0.0.1", 0, std::chrono::seconds(20));
  REQUIRE(server.port() > 0);
  dist::Group g(one_rank(server.port()), server.store(), "t");
  g.set("k", std::string("v\0w", 3));
  CHECK(g.get("k") == std::string("v\0w", 3));
  CHECK(dist::store_has(*server.store(), "t/k"));  // the group's keys live under its prefix
  std::string bytes(100000, 'x');
  g.broadcast(bytes);
  CHECK(bytes.size() == 100000);
  auto t = torch::arange(5, torch::kFloat64);
  g.allreduce_sum(t);
  CHECK(torch::equal(t, torch::arange(5, torch::kFloat64)));
}

TEST_CASE("dist: the gradient reducer gives backward's gradients (buckets, accumulation, unused parameters)",
          "[unit]") {
  dist::StoreServer server("127.0.0.1", 0, std::chrono::seconds(20));
  dist::Group g(one_rank(server.port()), server.store(), "r");
  torch::manual_seed(3);
  auto make = [](std::vector<int64_t> shape, c10::ScalarType dt) {
    return torch::randn(shape, torch::TensorOptions().dtype(dt)).requires_grad_(true);
  };
  // float32 and float64 parameters (buckets never mix dtypes), one never used.
  std::vector<torch::Tensor> ref{make({7, 5}, torch::kFloat32), make({5}, torch::kFloat32),
                                 make({5, 3}, torch::kFloat64), make({4}, torch::kFloat32)};
  std::vector<torch::Tensor> mine;
  for (auto& p : ref) mine.push_back(p.detach().clone().requires_grad_(true));
  auto x = torch::randn({6, 7});
  auto loss_of = [&](std::vector<torch::Tensor>& p, double scale) {
    auto h = torch::tanh(x.matmul(p[0]) + p[1]);  // (6,5)
    auto y = h.to(torch::kFloat64).matmul(p[2]);  // (6,3)
    return (y * y).sum() * scale;
  };
  // 60-byte buckets: several buckets, each filled by hooks during backward.
  dist::GradReducer reducer(g, mine, 60);
  CHECK(reducer.buckets() >= 3);
  for (int step = 0; step < 2; ++step) {
    for (auto& p : ref) p.mutable_grad() = torch::Tensor();
    for (auto& p : mine) p.mutable_grad() = torch::Tensor();
    // two micro-batches: only the last one is hooked, its hooks add the first one's .grad
    loss_of(ref, 0.5).backward();
    loss_of(ref, 0.25).backward();
    loss_of(mine, 0.5).backward();
    reducer.arm();
    loss_of(mine, 0.25).backward();
    reducer.finish();
    for (size_t k = 0; k < 3; ++k) {
      REQUIRE(mine[k].grad().defined());
      CHECK(torch::allclose(mine[k].grad(), ref[k].grad(), 1e-6, 1e-7));
    }
    // the unused parameter: no gradient in backward, zeros after the reduction (as DDP)
    CHECK_FALSE(ref[3].grad().defined());
    REQUIRE(mine[3].grad().defined());
    CHECK(mine[3].grad().abs().sum().item<double>() == 0.0);
  }
}
