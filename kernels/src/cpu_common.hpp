// What lmgrid's CPU kernels (attention.cpp and src/*_cpu.cpp) share: function multiversioning for
// the inner loops, a small task pool on LibTorch's intra-op thread count, vectorisable exp, tanh,
// sigmoid and GELU, dot products and sums, the register-blocked product and the tiled transpose.
// Internal to liblmgrid_kernels (not installed).
#pragma once

#include <ATen/Parallel.h>  // at::get_num_threads
#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <atomic>
#include <cstdint>
#include <exception>
#include <memory>
#include <thread>
#include <utility>
#include <vector>
#if defined(__x86_64__)
#include <immintrin.h>  // _mm_stream_si128, _mm_sfence (SSE2: every x86-64 clone)
#endif

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

template <class T>
LMGRID_INLINE void axpy(int64_t n, T a, const T* __restrict x, T* __restrict y) {
  for (int64_t i = 0; i < n; ++i) y[i] += a * x[i];
}

// dst[0, n) = src[0, n) with non-temporal (streaming) stores where dst is 16-byte aligned: for
// arrays written now and read back much later (the TTT dual form's weights at each mini-batch
// start, 6.3 MB a TTT-MLP layer), which an ordinary copy first reads into the cache and then
// evicts. A copy of 192 x 33 KB into a 6.3 MB array out of the cache took 0.28 ms against 0.71 ms
// with memcpy on the AMD EPYC. The caller orders the stores with stream_fence() before another
// thread may read them.
template <class T>
LMGRID_INLINE void stream_copy(int64_t n, const T* __restrict src, T* __restrict dst) {
#if defined(__x86_64__)
  int64_t i = 0;
  for (; i < n && (reinterpret_cast<uintptr_t>(dst + i) & 15) != 0; ++i) dst[i] = src[i];
  constexpr int64_t per = 16 / sizeof(T);
  for (; i + per <= n; i += per)
    _mm_stream_si128(reinterpret_cast<__m128i*>(dst + i), _mm_loadu_si128(reinterpret_cast<const __m128i*>(src + i)));
  for (; i < n; ++i) dst[i] = src[i];
#else
  std::copy(src, src + n, dst);
#endif
}
inline void stream_fence() {
#if defined(__x86_64__)
  _mm_sfence();
#endif
}

// 1 / (1 + exp(-v)) from e = exp(-|v|) <= 1, branch-free (loops over it vectorise in float,
// where exp_neg is a polynomial).
template <class T>
LMGRID_INLINE T sigmoid(T v) {
  const T e = exp_neg(v < T(0) ? v : -v);
  const T r = T(1) / (T(1) + e);
  return v >= T(0) ? r : e * r;
}

// tanh(u) = sign(u) (1 - e) / (1 + e) with e = exp(-2 |u|) from exp_neg, so loops over it
// vectorise (absolute error at float's rounding; exact to rounding in double).
template <class T>
LMGRID_INLINE T tanh_v(T u) {
  const T e = exp_neg(T(-2) * (u < T(0) ? -u : u));
  const T r = (T(1) - e) / (T(1) + e);
  return u < T(0) ? -r : r;
}

// GELU with the tanh approximation and its first two derivatives, from x and th = th(x) (kept
// by callers that need several of them): k = sqrt(2/pi), q = 0.044715, v' = k (1 + 3 q x^2),
//   gelu = x (1 + th) / 2,  gelu' = (1 + th) / 2 + x (1 - th^2) v' / 2,
//   gelu'' = (1 - th^2) (v' + 3 k q x^2 - x th v'^2).
template <class T>
struct GeluTanh {
  static constexpr T k = T(0.7978845608028654), q = T(0.044715);
  static LMGRID_INLINE T th(T x) { return tanh_v(k * (x + q * x * x * x)); }
  static LMGRID_INLINE T f(T x, T t) { return T(0.5) * x * (T(1) + t); }
  static LMGRID_INLINE T d1(T x, T t) {
    const T vp = k * (T(1) + T(3) * q * x * x);
    return T(0.5) * (T(1) + t) + T(0.5) * x * (T(1) - t * t) * vp;
  }
  static LMGRID_INLINE T d2(T x, T t) {
    const T vp = k * (T(1) + T(3) * q * x * x);
    return (T(1) - t * t) * (vp + T(3) * k * q * x * x - x * t * vp * vp);
  }
};

// For a kernel's backward made of its own loops: its result could not be differentiated again,
// so a backward under create_graph is refused rather than silently wrong.
inline void require_first_order(const char* kernel) {
  TORCH_CHECK(!torch::GradMode::is_enabled(), kernel,
              ": its backward is first order only (create_graph); set LMGRID_CPU_KERNELS=composite for higher "
              "derivatives");
}

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

// sum_i x[i] with 16 partial sums (as dot).
template <class T>
LMGRID_INLINE T sum(int64_t n, const T* __restrict x) {
  constexpr int K = 16;
  T acc[K] = {};
  int64_t i = 0;
  for (; i + K <= n; i += K)
    for (int k = 0; k < K; ++k) acc[k] += x[i + k];
  T s = 0;
  for (; i < n; ++i) s += x[i];
  for (int k = 0; k < K; ++k) s += acc[k];
  return s;
}

// A kernel's scratch array, left uninitialised and recycled: std::vector<T>(n) zeroes every
// element, and malloc hands a task's dozen 16-64 KB buffers back to the system when they are freed
// (glibc trims the heap top), so the next task took page faults on them again; for the SSD
// backward that cost more than its products. Freed arrays go to a small per-thread cache and the
// next Scratch of the same size on that thread takes one from it.
template <class T>
class Scratch {
 public:
  explicit Scratch(int64_t n) : n_(n) {
    auto& c = cache();
    for (size_t i = 0; i < c.size(); ++i)
      if (c[i].first == n) {
        p_ = std::move(c[i].second);
        c.erase(c.begin() + static_cast<std::ptrdiff_t>(i));
        return;
      }
    p_.reset(new T[static_cast<size_t>(n)]);
  }
  Scratch(int64_t n, T fill) : Scratch(n) { std::fill(begin(), end(), fill); }
  ~Scratch() {
    auto& c = cache();
    if (p_ && c.size() < kCached) c.emplace_back(n_, std::move(p_));
  }
  Scratch(const Scratch&) = delete;
  Scratch& operator=(const Scratch&) = delete;
  T* data() { return p_.get(); }
  const T* data() const { return p_.get(); }
  T* begin() { return p_.get(); }
  T* end() { return p_.get() + n_; }
  T& operator[](int64_t i) { return p_[i]; }
  const T& operator[](int64_t i) const { return p_[i]; }
  void swap(Scratch& o) {
    std::swap(p_, o.p_);
    std::swap(n_, o.n_);
  }

 private:
  static constexpr size_t kCached = 48;
  static std::vector<std::pair<int64_t, std::unique_ptr<T[]>>>& cache() {
    thread_local std::vector<std::pair<int64_t, std::unique_ptr<T[]>>> c;
    return c;
  }
  std::unique_ptr<T[]> p_;
  int64_t n_;
};

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

// Which part of a product is needed: A lower-triangular (A(i, kk) = 0 for kk > i), A upper-
// triangular (0 for kk < i), or only C's lower triangle (j <= i). The kernel skips whole
// multiply-adds of zeros and unneeded blocks, not single entries: zeros inside a block still count.
enum class Part { full, a_lower, a_upper, c_lower };

// Rows [k0, k1) of A's columns that row block [i0, i1) needs under `part`.
LMGRID_INLINE std::pair<int64_t, int64_t> gemm_k_range(Part part, int64_t k, int64_t i0, int64_t i1) {
  if (part == Part::a_lower) return {0, std::min(k, i1)};
  if (part == Part::a_upper) return {std::min(k, i0), k};
  return {0, k};
}

// gemm_acc's columns [j0, j0 + J) for every row: register blocks of 8 rows, then single rows.
template <class T, int64_t J>
LMGRID_INLINE void gemm_cols(int64_t m, int64_t k, int64_t j0, const T* A, int64_t ars, int64_t acs, const T* B,
                             int64_t ldb, T* C, int64_t ldc, Part part, T alpha) {
  constexpr int64_t R = 8;
  int64_t i = 0;
  for (; i + R <= m; i += R) {
    if (part == Part::c_lower && j0 > i + R - 1) continue;
    const auto [k0, k1] = gemm_k_range(part, k, i, i + R);
    T acc[R][J] = {};
    for (int64_t kk = k0; kk < k1; ++kk) {
      const T* __restrict b = B + kk * ldb + j0;
      for (int64_t r = 0; r < R; ++r) {
        const T a = A[(i + r) * ars + kk * acs];
        for (int64_t j = 0; j < J; ++j) acc[r][j] += a * b[j];
      }
    }
    for (int64_t r = 0; r < R; ++r)
      for (int64_t j = 0; j < J; ++j) C[(i + r) * ldc + j0 + j] += alpha * acc[r][j];
  }
  for (; i < m; ++i) {
    if (part == Part::c_lower && j0 > i) continue;
    const auto [k0, k1] = gemm_k_range(part, k, i, i + 1);
    T acc[J] = {};
    for (int64_t kk = k0; kk < k1; ++kk) {
      const T a = A[i * ars + kk * acs];
      const T* __restrict b = B + kk * ldb + j0;
      for (int64_t j = 0; j < J; ++j) acc[j] += a * b[j];
    }
    for (int64_t j = 0; j < J; ++j) C[i * ldc + j0 + j] += alpha * acc[j];
  }
}

// C[i][j] += alpha sum_kk A(i, kk) B[kk][j] for i < m, j < n, with A(i, kk) = A[i ars + kk acs] (any
// strides, so transposes and row-strided inputs need no copy), B's rows at B + kk ldb and C's at
// C + i ldc, both contiguous along j. Register blocks of 8 rows x 128 bytes (16 AVX-512
// accumulators: per step of kk two loads of B and eight broadcasts of A feed 16 multiply-adds),
// then one of 8 rows x 64 bytes where that many columns remain (products 16 wide, as the TTT
// dual form's 16 x 16 scores); the last columns take plain loops. The blocks sum the products
// from zero and add alpha times the sum to C once (alpha inside the loop cost a multiply and a
// shuffle per broadcast: 10% of a 16 x 128 x 32 product).
template <class T>
LMGRID_INLINE void gemm_acc(int64_t m, int64_t n, int64_t k, const T* A, int64_t ars, int64_t acs, const T* B,
                            int64_t ldb, T* C, int64_t ldc, Part part = Part::full, T alpha = T(1)) {
  constexpr int64_t J = 128 / sizeof(T);
  int64_t j0 = 0;
  for (; j0 + J <= n; j0 += J) gemm_cols<T, J>(m, k, j0, A, ars, acs, B, ldb, C, ldc, part, alpha);
  if (j0 + J / 2 <= n) {
    gemm_cols<T, J / 2>(m, k, j0, A, ars, acs, B, ldb, C, ldc, part, alpha);
    j0 += J / 2;
  }
  if (j0 < n)
    for (int64_t i = 0; i < m; ++i) {
      const auto [k0, k1] = gemm_k_range(part, k, i, i + 1);
      for (int64_t kk = k0; kk < k1; ++kk)
        axpy(n - j0, alpha * A[i * ars + kk * acs], B + kk * ldb + j0, C + i * ldc + j0);
    }
}

// out (cols x rows, leading dimension ld) = in (rows x cols, contiguous) transposed, in tiles of
// 16 x 16 (a row-by-row transpose writes every element to another cache line: it took as long
// as a 64^3 product). A whole tile goes through a local array, read and written along rows: at
// 128 x 32 floats that took 0.9 us against 1.9 us element by element.
template <class T>
LMGRID_INLINE void transpose(int64_t rows, int64_t cols, const T* in, T* out, int64_t ld) {
  constexpr int64_t K = 16;
  for (int64_t r0 = 0; r0 < rows; r0 += K)
    for (int64_t c0 = 0; c0 < cols; c0 += K) {
      const int64_t r1 = std::min(rows, r0 + K), c1 = std::min(cols, c0 + K);
      if (r1 - r0 == K && c1 - c0 == K) {
        T t[K][K];
        for (int64_t r = 0; r < K; ++r)
          for (int64_t c = 0; c < K; ++c) t[c][r] = in[(r0 + r) * cols + c0 + c];
        for (int64_t c = 0; c < K; ++c)
          for (int64_t r = 0; r < K; ++r) out[(c0 + c) * ld + r0 + r] = t[c][r];
        continue;
      }
      for (int64_t c = c0; c < c1; ++c)
        for (int64_t r = r0; r < r1; ++r) out[c * ld + r] = in[r * cols + c];
    }
}

}  // namespace lmgrid::kernels::cpu
