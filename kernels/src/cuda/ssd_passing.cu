// SSD state passing between chunks on the GPU: one thread per (sequence, state element), each
// looping over the chunks (ssd_passing_body.cuh has the recurrence and its backward).
#include "grid.cuh"
#include "launch.hpp"

namespace lmgrid::kernels::cuda_impl {

namespace {

template <class T>
int forward(const SsdPassingFwd<void>& p, void* stream) {
  return launch<SsdPassingFwd<T>, ssd_passing_forward_thread<T>>(retype<T>(p), p.s.B * p.s.E(), stream);
}
template <class T>
int backward(const SsdPassingBwd<void>& p, void* stream) {
  return launch<SsdPassingBwd<T>, ssd_passing_backward_thread<T>>(retype<T>(p), p.s.B * p.s.E(), stream);
}

}  // namespace

int ssd_passing_forward(DType dt, const SsdPassingFwd<void>& p, void* stream) {
  switch (dt) {
    case DType::f32: return forward<float>(p, stream);
    case DType::f64: return forward<double>(p, stream);
    case DType::bf16: return forward<__nv_bfloat16>(p, stream);
  }
  return -1;
}

int ssd_passing_backward(DType dt, const SsdPassingBwd<void>& p, void* stream) {
  switch (dt) {
    case DType::f32: return backward<float>(p, stream);
    case DType::f64: return backward<double>(p, stream);
    case DType::bf16: return backward<__nv_bfloat16>(p, stream);
  }
  return -1;
}

}  // namespace lmgrid::kernels::cuda_impl
