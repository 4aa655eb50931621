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
  switch (dt) {
    case DType::f32: return forward<float>(p, stream);
    case DType::f64: return forward<double>(p, stream);
    case DType::bf16: return forward<__nv_bfloat16>(p, stream);
  }
  return -1;
}

int gem_chunk_backward(DType dt, const GemBwd<void>& p, void* stream) {
  switch (dt) {
    case DType::f32: return backward<float>(p, stream);
    case DType::f64: return backward<double>(p, stream);
    case DType::bf16: return backward<__nv_bfloat16>(p, stream);
  }
  return -1;
}

}  // namespace lmgrid::kernels::cuda_impl
