// The batch split (lmgrid/train/batch_split.hpp): the plan and LMGRID_CPU_SPLIT, the rows of each
// part, the random-number probe, the pool (threads, settings, errors), and the split forward and
// backward against the whole batch's, on a real model (gpt) with and without a loss mask:
// float64 to 1e-12 relative, float32 to 1e-5, the same bits on every repeat.
#include <catch2/catch.hpp>

#include <set>
#include <thread>

#include <ATen/Parallel.h>

#include <lmgrid/base/errors.hpp>
#include <lmgrid/sys/cpu.hpp>
#include <lmgrid/train/batch_split.hpp>
#include <lmgrid/train/trainer.hpp>

#include "../support.hpp"

using namespace lmgrid;

TEST_CASE("batch split: the plan follows threads, rows, device and LMGRID_CPU_SPLIT", "[unit][split]") {
  {
    test::ScopedEnv env("LMGRID_CPU_SPLIT", "auto");
    auto p = plan_batch_split(2, 12, true, false);
    CHECK(p.parts == 2);
    CHECK(p.threads_each == 1);
    CHECK(p.why.find("2 parts of 6 rows") != std::string::npos);
    p = plan_batch_split(4, 12, true, false);
    CHECK(p.parts == 4);
    CHECK(p.threads_each == 1);
    p = plan_batch_split(8, 3, true, false);  // fewer rows than threads: one part a row
    CHECK(p.parts == 3);
    CHECK(p.threads_each == 2);
    CHECK(plan_batch_split(1, 12, true, false).parts == 1);
    CHECK(plan_batch_split(1, 12, true, false).why == "off (one thread)");
    CHECK(plan_batch_split(2, 1, true, false).parts == 1);
    CHECK(plan_batch_split(2, 12, false, false).parts == 1);
    CHECK(plan_batch_split(2, 12, false, false).why == "off (not a CPU run)");
    CHECK(plan_batch_split(2, 12, true, true).parts == 1);
  }
  {
    test::ScopedEnv env("LMGRID_CPU_SPLIT", "3");
    auto p = plan_batch_split(2, 10, true, false);
    CHECK(p.parts == 3);
    CHECK(p.threads_each == 1);
    CHECK(p.why.find("3 parts of 3-4 rows") != std::string::npos);
  }
  {
    test::ScopedEnv env("LMGRID_CPU_SPLIT", "1");
    CHECK(plan_batch_split(2, 12, true, false).parts == 1);
    CHECK(plan_batch_split(2, 12, true, false).why == "off (LMGRID_CPU_SPLIT=1)");
  }
  for (const char* bad : {"0", "-2", "two", "2x", "99999"}) {
    test::ScopedEnv env("LMGRID_CPU_SPLIT", bad);
    CHECK_THROWS_WITH(plan_batch_split(2, 12, true, false),
                      Catch::Contains("LMGRID_CPU_SPLIT='" + std::string(bad) + "'") &&
                          Catch::Contains("neither `auto` nor a count"));
  }
}

TEST_CASE("batch split: parts cover the rows once, as equal as possible", "[unit][split]") {
  for (int64_t rows : {1, 2, 5, 12, 13}) {
    for (int parts : {1, 2, 3, 4}) {
      auto r = part_rows(rows, parts);
      REQUIRE(r.size() == static_cast<size_t>(parts));
      int64_t next = 0, lo = rows, hi = 0;
      for (auto [first, n] : r) {
        CHECK(first == next);
        next += n;
        lo = std::min(lo, n), hi = std::max(hi, n);
      }
      CHECK(next == rows);
      CHECK(hi - lo <= 1);
    }
  }
}

TEST_CASE("batch split: the probe sees dropout and leaves the generator as it was", "[unit][split]") {
  torch::manual_seed(7);
  auto x = torch::ones({4, 8});
  CHECK_FALSE(forward_draws_random([&] { (void)torch::relu(x).sum(); }));
  auto gen = at::detail::getDefaultCPUGenerator();
  torch::Tensor state;
  {
    std::lock_guard<std::mutex> lock(gen.mutex());
    state = gen.get_state();
  }
  CHECK(forward_draws_random([&] { (void)torch::dropout(x, 0.5, true); }));
  auto after_probe = torch::rand({16});
  {
    std::lock_guard<std::mutex> lock(gen.mutex());
    gen.set_state(state);
  }
  auto without_probe = torch::rand({16});
  CHECK(torch::equal(after_probe, without_probe));
}

TEST_CASE("batch split: the pool runs every part on its own thread with its thread settings", "[unit][split]") {
  const int before = at::get_num_threads();
  at::set_num_threads(2);
  {
    SplitPool pool(3, 1);
    CHECK(pool.parts() == 3);
    CHECK(at::get_num_threads() == 1);  // the calling thread runs part 0 with threads_each
    if (blas_threads() > 0) CHECK(blas_threads() == 1);
    for (int round = 0; round < 3; ++round) {
      std::vector<std::thread::id> ids(3);
      std::vector<int> threads(3, 0);
      pool.run([&](int s) {
        ids[static_cast<size_t>(s)] = std::this_thread::get_id();
        threads[static_cast<size_t>(s)] = at::get_num_threads();
      });
      CHECK(ids[0] == std::this_thread::get_id());
      CHECK(std::set<std::thread::id>(ids.begin(), ids.end()).size() == 3);
      CHECK(threads == std::vector<int>{1, 1, 1});
    }
    // An error in a helper reaches the caller after every part has ended; the pool goes on.
    std::atomic<int> ran{0};
    CHECK_THROWS_WITH(pool.run([&](int s) {
      ++ran;
      if (s == 2) throw std::runtime_error("part 2 failed");
    }),
                      "part 2 failed");
    CHECK(ran == 3);
    CHECK_THROWS_WITH(pool.run([&](int s) {
      if (s >= 1) throw std::runtime_error("part " + std::to_string(s));
    }),
                      "part 1");  // the lowest part's error
    ran = 0;
    pool.run([&](int) { ++ran; });
    CHECK(ran == 3);
  }
  CHECK(at::get_num_threads() == 2);  // the pool gave the settings back
  at::set_num_threads(before);
}

namespace {

// gpt at a small size in `dtype`, its parameters, and a batch of 6 rows.
struct SplitCase {
  std::shared_ptr<Model> model;
  std::vector<torch::Tensor> params;
  torch::Tensor inputs, targets;
};

SplitCase split_case(torch::ScalarType dtype) {
  torch::manual_seed(3);
  const int64_t V = 40, T = 16;
  auto p = test::arch_params("gpt", {{"n_layer", int64_t{2}}, {"n_head", int64_t{2}}, {"d_model", int64_t{32}}});
  SplitCase c;
  c.model = test::arch_plugin("gpt").create(p, {V, T});
  c.model->to(dtype);
  c.model->train();
  for (auto& t : c.model->parameters()) c.params.push_back(t);
  c.inputs = torch::randint(V, {6, T}, torch::kLong);
  c.targets = torch::randint(V, {6, T}, torch::kLong);
  return c;
}

// The loss of the whole batch and the gradients it leaves in .grad.
std::pair<double, std::vector<torch::Tensor>> whole_batch(SplitCase& c, const torch::Tensor& mask) {
  for (auto& t : c.params) t.mutable_grad() = torch::Tensor();
  auto loss = lm_loss(c.model->forward(c.inputs, nullptr).logits, c.targets, mask);
  loss.backward();
  std::vector<torch::Tensor> g;
  for (auto& t : c.params) g.push_back(t.grad().clone());
  return {loss.item<double>(), g};
}

std::pair<double, std::vector<torch::Tensor>> split_batch(SplitCase& c, SplitPool& pool, const torch::Tensor& mask) {
  for (auto& t : c.params) t.mutable_grad() = torch::Tensor();
  auto loss = split_forward_backward(
      pool, c.params, c.inputs, c.targets, mask,
      [&](const torch::Tensor& in, const torch::Tensor& tg, const torch::Tensor& mk, double weight) {
        return lm_loss(c.model->forward(in, nullptr).logits, tg, mk) * weight;
      },
      [](const torch::Tensor& l) { return l; });
  std::vector<torch::Tensor> g;
  for (auto& t : c.params) g.push_back(t.grad().clone());
  return {loss.item<double>(), g};
}

}  // namespace

TEST_CASE("batch split: loss and gradients are the whole batch's", "[unit][split]") {
  for (auto [dtype, tol] : {std::pair{torch::kFloat64, 1e-12}, std::pair{torch::kFloat32, 1e-5}}) {
    for (int parts : {2, 3, 4}) {
      for (bool masked : {false, true}) {
        INFO("dtype " << c10::toString(dtype) << ", " << parts << " parts, mask " << masked);
        SplitCase c = split_case(dtype);
        torch::Tensor mask;
        if (masked) {  // uneven weights; the first two rows score nothing at all
          mask = (torch::rand({6, 16}) < 0.3).to(torch::kFloat32);
          mask.narrow(0, 0, 2).zero_();
        }
        auto [whole_loss, whole_grads] = whole_batch(c, mask);
        SplitPool pool(parts, 1);
        auto [loss, grads] = split_batch(c, pool, mask);
        CHECK(std::abs(loss - whole_loss) <= tol * std::abs(whole_loss));
        REQUIRE(grads.size() == whole_grads.size());
        double worst = 0;
        for (size_t i = 0; i < grads.size(); ++i) worst = std::max(worst, test::rel_err(grads[i], whole_grads[i]));
        CHECK(worst <= tol);
        // The same bits on a repeat: the parts' gradients are summed in a fixed order.
        auto [loss2, grads2] = split_batch(c, pool, mask);
        CHECK(loss2 == loss);
        for (size_t i = 0; i < grads.size(); ++i) CHECK(torch::equal(grads2[i], grads[i]));
      }
    }
  }
}

TEST_CASE("batch split: gradients add to those already there (gradient accumulation)", "[unit][split]") {
  SplitCase c = split_case(torch::kFloat64);
  auto [l1, g1] = whole_batch(c, {});
  SplitPool pool(2, 1);
  for (size_t i = 0; i < c.params.size(); ++i) c.params[i].mutable_grad() = g1[i].clone();
  (void)split_forward_backward(
      pool, c.params, c.inputs, c.targets, {},
      [&](const torch::Tensor& in, const torch::Tensor& tg, const torch::Tensor& mk, double weight) {
        return lm_loss(c.model->forward(in, nullptr).logits, tg, mk) * weight;
      },
      [](const torch::Tensor& l) { return l * 0.5; });
  for (size_t i = 0; i < c.params.size(); ++i) CHECK(test::rel_err(c.params[i].grad(), g1[i] * 1.5) <= 1e-12);
}

TEST_CASE("batch split: the split forward joins the parts' outputs", "[unit][split]") {
  SplitCase c = split_case(torch::kFloat64);
  torch::NoGradGuard ng;
  c.model->eval();
  auto whole = c.model->forward(c.inputs, nullptr).logits;
  SplitPool pool(4, 1);
  auto parts = split_forward(pool, c.inputs, [&](const torch::Tensor& rows) {
    torch::NoGradGuard no_grad;
    return c.model->forward(rows, nullptr).logits;
  });
  REQUIRE(parts.sizes() == whole.sizes());
  CHECK(test::rel_err(parts, whole) <= 1e-12);
}
