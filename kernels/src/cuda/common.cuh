// What the CUDA kernels and their CPU emulation share: LMGRID_HD (host + device under nvcc,
// nothing under a plain C++ compiler), the accumulation type of each storage type, and the few
// math functions the kernel bodies call, overloaded so one body serves float, double and bf16.
// Plain C++ outside the `#ifdef __CUDACC__` parts: g++ compiles this for the emulation.
#pragma once

#include <cmath>
#include <cstdint>

#ifdef __CUDACC__
#include <cuda_bf16.h>
#define LMGRID_HD __host__ __device__
#else
#define LMGRID_HD
#endif

namespace lmgrid::kernels::cuda_impl {

// Storage type -> accumulation type: float for float and bf16, double for double.
template <class T>
struct AccOf {
  using type = float;
};
template <>
struct AccOf<double> {
  using type = double;
};
template <>
struct AccOf<void> {  // the type-erased argument structs (launch.hpp)
  using type = void;
};
template <class T>
using acc_t = typename AccOf<T>::type;

LMGRID_HD inline float to_acc(float x) { return x; }
LMGRID_HD inline double to_acc(double x) { return x; }
LMGRID_HD inline float hd_exp(float x) { return expf(x); }
LMGRID_HD inline double hd_exp(double x) { return exp(x); }
template <class T>
LMGRID_HD inline T from_acc(acc_t<T> x) {
  return static_cast<T>(x);
}
#ifdef __CUDACC__
LMGRID_HD inline float to_acc(__nv_bfloat16 x) { return __bfloat162float(x); }
template <>
LMGRID_HD inline __nv_bfloat16 from_acc<__nv_bfloat16>(float x) {
  return __float2bfloat16(x);
}
#endif

// exp(t) for a log-decay t <= 0, exactly 0 below -cutoff: the composite's exp_nonpos (ssd.cpp),
// e^-60 in float (and bf16, accumulated in float), e^-600 in double.
LMGRID_HD inline float decay_of(float t) { return t < -60.0f ? 0.0f : expf(t); }
LMGRID_HD inline double decay_of(double t) { return t < -600.0 ? 0.0 : exp(t); }

}  // namespace lmgrid::kernels::cuda_impl
