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
  return with_dtype(dt, [&](auto t) { return forward<decltype(t)>(p, stream); });
}

int ssd_passing_backward(DType dt, const SsdPassingBwd<void>& p, void* stream) {
  return with_dtype(dt, [&](auto t) { return backward<decltype(t)>(p, stream); });
}

}  // namespace lmgrid::kernels::cuda_impl
