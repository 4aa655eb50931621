// GEM memory's dual-form chunk update on the GPU: two passes forward, two backward, one thread
// per output element of each pass (gem_chunk_body.cuh has the equations and the derivation).
#include "grid.cuh"
#include "launch.hpp"

namespace lmgrid::kernels::cuda_impl {

namespace {

template <class T>
int forward(const GemFwd<void>& p, void* stream) {
  const auto q = retype<T>(p);
  if (int rc = launch<GemFwd<T>, gem_fwd1<T>>(q, gem_fwd1_size(p.s), stream)) return rc;
  return launch<GemFwd<T>, gem_fwd2<T>>(q, gem_fwd2_size(p.s), stream);
}
template <class T>
int backward(const GemBwd<void>& p, void* stream) {
  const auto q = retype<T>(p);
  if (int rc = launch<GemBwd<T>, gem_bwd1<T>>(q, gem_bwd1_size(p.s), stream)) return rc;
  return launch<GemBwd<T>, gem_bwd2<T>>(q, gem_bwd2_size(p.s), stream);
}

}  // namespace

int gem_chunk_forward(DType dt, const GemFwd<void>& p, void* stream) {
  return with_dtype(dt, [&](auto t) { return forward<decltype(t)>(p, stream); });
}

int gem_chunk_backward(DType dt, const GemBwd<void>& p, void* stream) {
  return with_dtype(dt, [&](auto t) { return backward<decltype(t)>(p, stream); });
}

}  // namespace lmgrid::kernels::cuda_impl
