// What lmgrid's CPU kernels (attention.cpp, ssd_cpu.cpp, conv_cpu.cpp) share: function
// multiversioning for the inner loops, and a small task pool on LibTorch's intra-op thread count.
// Internal to liblmgrid_kernels (not installed).
#pragma once

#include <ATen/Parallel.h>  // at::get_num_threads

#include <algorithm>
#include <cmath>
#include <cstring>
#include <atomic>
#include <cstdint>
#include <exception>
#include <thread>
#include <vector>

// Inner loops compiled for AVX-512 and AVX2+FMA machines as well as baseline x86-64, chosen when
// the library loads (GCC's ifunc resolver); other compilers and CPUs get one generic version.
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__)
#define LMGRID_MULTIVERSION __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define LMGRID_MULTIVERSION
#endif
#define LMGRID_INLINE inline __attribute__((always_inline))

namespace lmgrid::kernels::cpu {

// exp(x) for x <= 0 (as every call here passes, up to rounding): 2^n exp(r) with n = round(x /
// ln 2), r = x - n ln 2 in [-ln2 / 2, ln2 / 2] (Cody-Waite, two-part ln 2), exp(r) by its Taylor
// polynomial of degree 7 (truncation below 1e-8 relative); 0 below -87 (where exp is below
// float's normal range). No branches or calls, so loops over it vectorise.
LMGRID_INLINE float exp_neg(float x) {
  const float xc = x < -87.0f ? -87.0f : (x > 0.0f ? 0.0f : x);
  const float t = xc * 1.44269504088896341f;
  const float n = (t + 12582912.0f) - 12582912.0f;  // round to nearest (1.5 * 2^23 trick)
  const float r = (xc - n * 0.693359375f) - n * -2.12194440e-4f;
  float p = 1.0f / 5040.0f;
  p = p * r + 1.0f / 720.0f;
  p = p * r + 1.0f / 120.0f;
  p = p * r + 1.0f / 24.0f;
  p = p * r + 1.0f / 6.0f;
  p = p * r + 0.5f;
  p = p * r + 1.0f;
  p = p * r + 1.0f;
  const int32_t bits = (static_cast<int32_t>(n) + 127) << 23;
  float two_n;
  std::memcpy(&two_n, &bits, sizeof two_n);
  return x < -87.0f ? 0.0f : p * two_n;
}
LMGRID_INLINE double exp_neg(double x) { return std::exp(x); }

// sum_i x[i] y[i] with 16 partial sums, so the loop vectorises (and does not wait on one
// accumulator's latency) without reassociation flags; the order is fixed, so the result is too.
template <class T>
LMGRID_INLINE T dot(int64_t n, const T* __restrict x, const T* __restrict y) {
  constexpr int K = 16;
  T acc[K] = {};
  int64_t i = 0;
  for (; i + K <= n; i += K)
    for (int k = 0; k < K; ++k) acc[k] += x[i + k] * y[i + k];
  T s = 0;
  for (; i < n; ++i) s += x[i] * y[i];
  for (int k = 0; k < K; ++k) s += acc[k];
  return s;
}

// Runs task(t) for t in [0, n) on up to at::get_num_threads() threads (LibTorch's intra-op
// count, which LMGRID_THREADS sets), handing out tasks one at a time (tasks may differ in cost).
// Plain threads rather than at::parallel_for: that one is OpenMP code inlined from LibTorch's
// headers, which would need this library built with -fopenmp and linked to an OpenMP runtime that
// may not be the one LibTorch carries (the torch wheel bundles its own libgomp). `work` (about
// the multiply-adds in all) keeps small calls on the calling thread: a thread costs tens of
// microseconds to start, and at 2e6 per thread the nanoGPT recipe's attention calls (T = 64) on 2
// threads took 4x the one-thread time; at 5e7 a second thread starts only for calls of a
// millisecond or more.
template <class F>
void parallel_tasks(int64_t n, double work, const F& task) {
  const int64_t threads =
      std::min<int64_t>({static_cast<int64_t>(at::get_num_threads()), n, static_cast<int64_t>(work / 5e7) + 1});
  if (threads <= 1) {
    for (int64_t t = 0; t < n; ++t) task(t);
    return;
  }
  std::atomic<int64_t> next{0};
  std::exception_ptr error;
  std::atomic_flag failed = ATOMIC_FLAG_INIT;
  auto worker = [&] {
    try {
      for (int64_t t; (t = next.fetch_add(1)) < n;) task(t);
    } catch (...) {
      if (!failed.test_and_set()) error = std::current_exception();
      next = n;
    }
  };
  std::vector<std::thread> pool;
  for (int64_t i = 1; i < threads; ++i) pool.emplace_back(worker);
  worker();
  for (auto& th : pool) th.join();
  if (error) std::rethrow_exception(error);
}

}  // namespace lmgrid::kernels::cpu
