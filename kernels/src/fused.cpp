// The fused kernels' glue (fused.hpp): routes, autograd functions, and the CPU emulation that
// runs the CUDA kernels' bodies (cuda/*_body.cuh) in plain loops. The kernels themselves are in
// cuda/*.cu, reached through cuda/launch.hpp with raw pointers of contiguous tensors; this file
// is compiled in every build (without LMGRID_KERNELS_CUDA the launchers are never referenced).
#include "lmgrid/kernels/fused.hpp"

#include <limits>
#include <optional>
#include <stdexcept>
#include <utility>
#include <vector>

#include "cuda/launch.hpp"

#ifdef LMGRID_KERNELS_CUDA
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#endif

namespace lmgrid::kernels {

namespace {

using torch::Tensor;
using torch::autograd::AutogradContext;
using torch::autograd::variable_list;
namespace ci = cuda_impl;

thread_local int g_emulate_cpu = 0;

bool kernel_dtype(torch::ScalarType t) { return t == torch::kFloat32 || t == torch::kFloat64 || t == torch::kBFloat16; }

torch::ScalarType acc_dtype(const Tensor& t) {
  return t.scalar_type() == torch::kFloat64 ? torch::kFloat64 : torch::kFloat32;
}

// The dtype the kernel computes in: the promoted dtype of floating inputs (under autocast they
// arrive mixed: matmul outputs in bfloat16, decays and softmaxes in float32, and the composite's
// elementwise ops would promote too); nullopt if any input is not floating.
std::optional<torch::ScalarType> common_dtype(const std::vector<Tensor>& ts) {
  std::optional<torch::ScalarType> common;
  for (const auto& t : ts) {
    if (!t.defined()) continue;
    if (!torch::isFloatingType(t.scalar_type())) return std::nullopt;
    common = common ? torch::promote_types(*common, t.scalar_type()) : t.scalar_type();
  }
  return common;
}

// Common checks: one dtype the kernel takes (after promotion), one device, and the device (CUDA
// with the kernels built, or CPU float/double under ScopedFusedEmulation).
FusedRoute route_common(const std::vector<Tensor>& ts) {
  const auto& t0 = ts.front();
  const auto common = common_dtype(ts);
  if (!common || !kernel_dtype(*common)) {
    auto shown = t0.scalar_type();  // the promoted dtype, or the first non-floating one
    for (const auto& t : ts)
      if (t.defined() && !torch::isFloatingType(t.scalar_type())) {
        shown = t.scalar_type();
        break;
      }
    if (common) shown = *common;
    return {false, std::string("dtype ") + c10::toString(shown) + " (the kernel takes float32, float64, bfloat16)"};
  }
  for (const auto& t : ts)
    if (t.device() != t0.device()) return {false, "tensors on different devices"};
  if (t0.is_cuda()) {
    if (!cuda_kernels_built()) return {false, "lmgrid was built without its CUDA kernels"};
    return {true, ""};
  }
  if (t0.is_cpu() && g_emulate_cpu > 0 && *common != torch::kBFloat16) return {true, ""};
  return {false, "tensors are on " + t0.device().str() + ", not a CUDA device"};
}

#ifdef LMGRID_KERNELS_CUDA
ci::DType dtype_of(const Tensor& t) {
  switch (t.scalar_type()) {
    case torch::kFloat32: return ci::DType::f32;
    case torch::kFloat64: return ci::DType::f64;
    case torch::kBFloat16: return ci::DType::bf16;
    default: throw std::logic_error("fused: unsupported dtype reached a kernel");
  }
}

void* stream_for(const Tensor& t) { return c10::cuda::getCurrentCUDAStream(t.device().index()).stream(); }

void check_launch(int rc, const char* what) {
  if (rc != 0)
    throw std::runtime_error(std::string(what) + ": CUDA launch failed (cudaError_t " + std::to_string(rc) + ")");
}
#endif

// The emulation: every index of a pass, in order, on the CPU (float and double only).
template <class P, class F>
void emulate(const P& p, int64_t n, F f) {
  for (int64_t t = 0; t < n; ++t) f(p, t);
}

const void* ptr_or_null(const Tensor& t) { return t.defined() ? t.data_ptr() : nullptr; }

// ---------------------------------------------------------------------------------------------
// SSD state passing
// ---------------------------------------------------------------------------------------------
ci::SsdPassingShape ssd_shape(const Tensor& u) {
  return {u.size(0), u.size(1), u.size(2), u.size(3), u.size(4), u.size(5)};
}

void ssd_forward_run(bool emulated, const ci::SsdPassingFwd<void>& p, const Tensor& like) {
  const int64_t n = p.s.B * p.s.E();
  if (emulated) {
    if (like.scalar_type() == torch::kFloat64)
      emulate(ci::retype<double>(p), n, ci::ssd_passing_forward_thread<double>);
    else
      emulate(ci::retype<float>(p), n, ci::ssd_passing_forward_thread<float>);
    return;
  }
#ifdef LMGRID_KERNELS_CUDA
  c10::cuda::CUDAGuard guard(like.device());
  check_launch(ci::ssd_passing_forward(dtype_of(like), p, stream_for(like)), "ssd_state_passing forward");
#else
  throw std::logic_error("ssd_state_passing: no CUDA kernels in this build");
#endif
}

void ssd_backward_run(bool emulated, const ci::SsdPassingBwd<void>& p, const Tensor& like) {
  const int64_t n = p.s.B * p.s.E();
  if (emulated) {
    if (like.scalar_type() == torch::kFloat64)
      emulate(ci::retype<double>(p), n, ci::ssd_passing_backward_thread<double>);
    else
      emulate(ci::retype<float>(p), n, ci::ssd_passing_backward_thread<float>);
    return;
  }
#ifdef LMGRID_KERNELS_CUDA
  c10::cuda::CUDAGuard guard(like.device());
  check_launch(ci::ssd_passing_backward(dtype_of(like), p, stream_for(like)), "ssd_state_passing backward");
#else
  throw std::logic_error("ssd_state_passing: no CUDA kernels in this build");
#endif
}

// D_k = exp(a_k) with the kernels' cutoff (common.cuh decay_of; ssd.cpp exp_nonpos).
Tensor decay_like_kernel(const Tensor& a) {
  const double cutoff = a.scalar_type() == torch::kFloat64 ? 600.0 : 60.0;
  return a.masked_fill(a < -cutoff, -std::numeric_limits<double>::infinity()).exp();
}

struct SsdPassingFn : torch::autograd::Function<SsdPassingFn> {
  static variable_list forward(AutogradContext* ctx, const Tensor& u_in, const Tensor& a_in, const Tensor& h0_in,
                               bool emulated) {
    auto u = u_in.contiguous(), a = a_in.contiguous();
    auto h0 = h0_in.numel() > 0 ? h0_in.contiguous() : Tensor();
    auto h_in = torch::empty_like(u);
    auto fin = torch::empty({u.size(0), u.size(2), u.size(3), u.size(4), u.size(5)}, u.options());
    ci::SsdPassingFwd<void> p{ssd_shape(u),    u.data_ptr(),    a.data_ptr(),
                              ptr_or_null(h0), h_in.data_ptr(), fin.data_ptr()};
    ssd_forward_run(emulated, p, u);
    ctx->save_for_backward({a, h_in});
    ctx->saved_data["emulated"] = emulated;
    ctx->saved_data["has_h0"] = h0.defined();
    ctx->set_materialize_grads(false);
    return {h_in, fin};
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    auto saved = ctx->get_saved_variables();
    const auto& a = saved[0];
    const auto& h_in = saved[1];
    const bool emulated = ctx->saved_data["emulated"].toBool();
    auto g_hin = grads[0].defined() ? grads[0].contiguous() : Tensor();
    auto g_fin = grads[1].defined() ? grads[1].contiguous() : Tensor();
    auto gu = torch::empty_like(h_in);
    auto gh0 = torch::empty({h_in.size(0), h_in.size(2), h_in.size(3), h_in.size(4), h_in.size(5)}, h_in.options());
    ci::SsdPassingBwd<void> p{ssd_shape(h_in),    a.data_ptr(),  ptr_or_null(g_hin),
                              ptr_or_null(g_fin), gu.data_ptr(), gh0.data_ptr()};
    ssd_backward_run(emulated, p, h_in);
    // da_k = D_k sum over (N, P) of du_k h_in[k], per head (ssd_passing_body.cuh).
    const auto acc = acc_dtype(h_in);
    const int64_t B = h_in.size(0), c = h_in.size(1);
    auto ga = (gu.to(acc) * h_in.to(acc)).sum({3, 5}).reshape({B, c, -1}) * decay_like_kernel(a.to(acc));
    return {gu, ga.to(a.scalar_type()), ctx->saved_data["has_h0"].toBool() ? gh0 : Tensor(), Tensor()};
  }
};

// ---------------------------------------------------------------------------------------------
// GEM chunk
// ---------------------------------------------------------------------------------------------
void gem_forward_run(bool emulated, const ci::GemFwd<void>& p, const Tensor& like) {
  if (emulated) {
    if (like.scalar_type() == torch::kFloat64) {
      auto q = ci::retype<double>(p);
      emulate(q, ci::gem_fwd1_size(p.s), ci::gem_fwd1<double>);
      emulate(q, ci::gem_fwd2_size(p.s), ci::gem_fwd2<double>);
    } else {
      auto q = ci::retype<float>(p);
      emulate(q, ci::gem_fwd1_size(p.s), ci::gem_fwd1<float>);
      emulate(q, ci::gem_fwd2_size(p.s), ci::gem_fwd2<float>);
    }
    return;
  }
#ifdef LMGRID_KERNELS_CUDA
  c10::cuda::CUDAGuard guard(like.device());
  check_launch(ci::gem_chunk_forward(dtype_of(like), p, stream_for(like)), "gem_chunk forward");
#else
  throw std::logic_error("gem_chunk: no CUDA kernels in this build");
#endif
}

void gem_backward_run(bool emulated, const ci::GemBwd<void>& p, const Tensor& like) {
  if (emulated) {
    if (like.scalar_type() == torch::kFloat64) {
      auto q = ci::retype<double>(p);
      emulate(q, ci::gem_bwd1_size(p.s), ci::gem_bwd1<double>);
      emulate(q, ci::gem_bwd2_size(p.s), ci::gem_bwd2<double>);
    } else {
      auto q = ci::retype<float>(p);
      emulate(q, ci::gem_bwd1_size(p.s), ci::gem_bwd1<float>);
      emulate(q, ci::gem_bwd2_size(p.s), ci::gem_bwd2<float>);
    }
    return;
  }
#ifdef LMGRID_KERNELS_CUDA
  c10::cuda::CUDAGuard guard(like.device());
  check_launch(ci::gem_chunk_backward(dtype_of(like), p, stream_for(like)), "gem_chunk backward");
#else
  throw std::logic_error("gem_chunk: no CUDA kernels in this build");
#endif
}

// V as the kernel reads it: one (M, D) block shared by every sequence (batch stride 0, as
// V0.expand gives), or a contiguous (S, M, D).
std::pair<Tensor, int64_t> values_for_kernel(const Tensor& V) {
  const int64_t M = V.size(1), D = V.size(2);
  if (V.stride(0) == 0 && V.select(0, 0).is_contiguous()) return {V, 0};
  return {V.contiguous(), M * D};
}

struct GemChunkFn : torch::autograd::Function<GemChunkFn> {
  static variable_list forward(AutogradContext* ctx, const Tensor& aq_in, const Tensor& ak_in, const Tensor& v_in,
                               const Tensor& V_in, const Tensor& eta_in, bool self_write, bool emulated) {
    auto aq = aq_in.contiguous(), ak = ak_in.contiguous(), v = v_in.contiguous();
    auto eta = eta_in.reshape({1}).contiguous();
    auto [V, Vb] = values_for_kernel(V_in);
    const int64_t S = aq.size(0), n = aq.size(1), M = aq.size(2), D = v.size(2);
    const ci::GemShape s{S, n, M, D, Vb, self_write};
    auto acc = aq.options().dtype(acc_dtype(aq));
    auto d = torch::empty({S, n, D}, acc), Sc = torch::empty({S, n, n}, acc);
    auto r = torch::empty({S, n, D}, aq.options()), Vn = torch::empty({S, M, D}, aq.options());
    ci::GemFwd<void> p{s,
                       aq.data_ptr(),
                       ak.data_ptr(),
                       v.data_ptr(),
                       V.data_ptr(),
                       eta.data_ptr(),
                       d.data_ptr(),
                       Sc.data_ptr(),
                       r.data_ptr(),
                       Vn.data_ptr()};
    gem_forward_run(emulated, p, aq);
    ctx->save_for_backward({aq, ak, V, eta, d, Sc});
    ctx->saved_data["Vb"] = Vb;
    ctx->saved_data["self_write"] = self_write;
    ctx->saved_data["emulated"] = emulated;
    ctx->saved_data["eta_sizes"] = eta_in.sizes().vec();
    ctx->set_materialize_grads(false);
    return {r, Vn};
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    auto sv = ctx->get_saved_variables();
    const auto &aq = sv[0], &ak = sv[1], &V = sv[2], &eta = sv[3], &d = sv[4], &Sc = sv[5];
    const bool emulated = ctx->saved_data["emulated"].toBool();
    const int64_t S = aq.size(0), n = aq.size(1), M = aq.size(2), D = d.size(2);
    const ci::GemShape s{S, n, M, D, ctx->saved_data["Vb"].toInt(), ctx->saved_data["self_write"].toBool()};
    auto gr = grads[0].defined() ? grads[0].contiguous() : Tensor();
    auto gVn = grads[1].defined() ? grads[1].contiguous() : Tensor();
    auto acc = d.options();
    auto gd = torch::empty({S, n, D}, acc), gSc = torch::empty({S, n, n}, acc);
    auto geta_terms = torch::empty({S * n * D + S * M * D}, acc);
    auto gaq = torch::empty_like(aq), gak = torch::empty_like(ak);
    auto gv = torch::empty({S, n, D}, aq.options()), gV = torch::empty({S, M, D}, aq.options());
    ci::GemBwd<void> p{s,
                       aq.data_ptr(),
                       ak.data_ptr(),
                       V.data_ptr(),
                       eta.data_ptr(),
                       d.data_ptr(),
                       Sc.data_ptr(),
                       ptr_or_null(gr),
                       ptr_or_null(gVn),
                       gd.data_ptr(),
                       gSc.data_ptr(),
                       gaq.data_ptr(),
                       gak.data_ptr(),
                       gv.data_ptr(),
                       gV.data_ptr(),
                       geta_terms.data_ptr()};
    gem_backward_run(emulated, p, aq);
    auto geta = geta_terms.sum().to(eta.scalar_type()).reshape(ctx->saved_data["eta_sizes"].toIntVector());
    return {gaq, gak, gv, gV, geta, Tensor(), Tensor()};
  }
};

// The inputs cast to their common dtype (common_dtype); undefined tensors stay undefined.
std::vector<Tensor> promoted(std::vector<Tensor> ts) {
  const auto common = common_dtype(ts);
  if (!common) return ts;
  for (auto& t : ts)
    if (t.defined() && t.scalar_type() != *common) t = t.to(*common);
  return ts;
}

void require_emulation(const FusedRoute& r, const Tensor& t, const char* what) {
  if (!t.is_cpu() || (t.scalar_type() != torch::kFloat32 && t.scalar_type() != torch::kFloat64))
    throw std::invalid_argument(std::string(what) + ": the emulation takes float32 or float64 CPU tensors");
  if (!r.kernel && r.reason.find("not a CUDA device") == std::string::npos)
    throw std::invalid_argument(std::string(what) + ": " + r.reason);
}

}  // namespace

bool cuda_kernels_built() {
#ifdef LMGRID_KERNELS_CUDA
  return true;
#else
  return false;
#endif
}

bool fused_emulation_active() { return g_emulate_cpu > 0; }
ScopedFusedEmulation::ScopedFusedEmulation() { ++g_emulate_cpu; }
ScopedFusedEmulation::~ScopedFusedEmulation() { --g_emulate_cpu; }

FusedRoute ssd_state_passing_route(const Tensor& u, const Tensor& a, const Tensor& h0) {
  if (!u.defined() || !a.defined()) return {false, "undefined input"};
  if (u.dim() != 6 || a.dim() != 3 || a.size(0) != u.size(0) || a.size(1) != u.size(1) ||
      a.size(2) != u.size(2) * u.size(4))
    return {false, "shapes: u must be (B,c,G,N,Hg,P) and a (B,c,G*Hg)"};
  if (h0.defined() && (h0.dim() != 5 || h0.size(0) != u.size(0) || h0.size(1) != u.size(2) || h0.size(2) != u.size(3) ||
                       h0.size(3) != u.size(4) || h0.size(4) != u.size(5)))
    return {false, "shapes: h0 must be (B,G,N,Hg,P)"};
  return h0.defined() ? route_common({u, a, h0}) : route_common({u, a});
}

SsdPassing ssd_state_passing(const Tensor& u_in, const Tensor& a_in, const Tensor& h0_in, FusedImpl impl) {
  if (impl == FusedImpl::composite) return ssd_state_passing_composite(u_in, a_in, h0_in);
  const auto ts = promoted({u_in, a_in, h0_in});
  const auto &u = ts[0], &a = ts[1], &h0 = ts[2];
  auto route = ssd_state_passing_route(u, a, h0);
  if (impl == FusedImpl::emulation)
    require_emulation(route, u, "ssd_state_passing");
  else if (!route.kernel)
    return ssd_state_passing_composite(u, a, h0);
  // An empty tensor stands for "no h0": autograd functions need every tensor input defined.
  auto out = SsdPassingFn::apply(u, a, h0.defined() ? h0 : torch::empty({0}, u.options()), u.is_cpu());
  return {out[0], out[1]};
}

FusedRoute gem_chunk_route(const Tensor& aq, const Tensor& ak, const Tensor& v, const Tensor& V, const Tensor& eta) {
  if (!aq.defined() || !ak.defined() || !v.defined() || !V.defined() || !eta.defined())
    return {false, "undefined input"};
  if (aq.dim() != 3 || ak.sizes() != aq.sizes() || v.dim() != 3 || v.size(0) != aq.size(0) || v.size(1) != aq.size(1) ||
      V.dim() != 3 || V.size(0) != aq.size(0) || V.size(1) != aq.size(2) || V.size(2) != v.size(2))
    return {false, "shapes: aq, ak must be (S,n,M), v (S,n,D), V (S,M,D)"};
  if (eta.numel() != 1) return {false, "eta must have one element"};
  return route_common({aq, ak, v, V, eta});
}

GemChunk gem_chunk(const Tensor& aq_in, const Tensor& ak_in, const Tensor& v_in, const Tensor& V_in,
                   const Tensor& eta_in, bool self_write, FusedImpl impl) {
  if (impl == FusedImpl::composite) return gem_chunk_composite(aq_in, ak_in, v_in, V_in, eta_in, self_write);
  const auto ts = promoted({aq_in, ak_in, v_in, V_in, eta_in});
  const auto &aq = ts[0], &ak = ts[1], &v = ts[2], &V = ts[3], &eta = ts[4];
  auto route = gem_chunk_route(aq, ak, v, V, eta);
  if (impl == FusedImpl::emulation)
    require_emulation(route, aq, "gem_chunk");
  else if (!route.kernel)
    return gem_chunk_composite(aq, ak, v, V, eta, self_write);
  auto out = GemChunkFn::apply(aq, ak, v, V, eta, self_write, aq.is_cpu());
  return {out[0], out[1]};
}

}  // namespace lmgrid::kernels
