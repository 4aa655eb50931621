// Fused kernels: lmgrid's own CUDA kernels for the hot sequential parts of the memory layers,
// each an autograd function (forward and hand-derived backward) with a LibTorch composite as its
// reference. ssd_chunked and gem_memory call these with FusedImpl::automatic, so a plugin whose
// tensors are on a GPU gets the kernel and every other call the composite; nothing else changes.
//
//   ssd_state_passing  Mamba-2 SSD, the recurrence over chunks (ssd.hpp, step 3 of ssd_chunked):
//                      one thread per (sequence, state element), looping over the chunks.
//   gem_chunk          GEM memory, one full chunk of the dual form (ttt.hpp): reads and the
//                      values after the chunk, from the values before it.
// TTT-Linear and TTT-MLP have no CUDA kernel here (on the CPU ttt_inner routes whole mini-batches
// to ttt_dual_cpu, kernels/src/ttt_cpu.cpp).
//
// The kernels' per-thread bodies are __host__ __device__ code (kernels/src/cuda/*_body.cuh); a CPU
// loop over the same bodies (FusedImpl::emulation, float and double) lets the tests check their
// arithmetic and the autograd glue where there is no GPU. The kernels are compiled when LibTorch
// is a CUDA build and nvcc is found (cuda_kernels_built()); elsewhere automatic means composite.
// The kernels' backward is first-order only (not differentiable again: no create_graph through
// them); the composites have no such limit.
#pragma once

#include <string>

#include <torch/torch.h>

namespace lmgrid::kernels {

enum class FusedImpl {
  automatic,  // the CUDA kernel where *_route says it applies, else the composite
  composite,  // plain LibTorch ops, differentiable by autograd (the reference)
  emulation,  // the kernels' bodies in a CPU loop, float or double CPU tensors (tests); throws otherwise
};

// Whether a call goes to the kernel; `reason` says why not (empty when it does).
struct FusedRoute {
  bool kernel = false;
  std::string reason;
};

// True when this build has the CUDA kernels (LMGRID_KERNELS_CUDA).
bool cuda_kernels_built();

// Test hook: while one is alive (in this thread), automatic routes float and double CPU tensors to
// the emulation as if they were CUDA tensors, so ssd_chunked's and gem_memory's kernel paths run
// (and are tested) without a GPU.
// True while a ScopedFusedEmulation is alive in this thread.
bool fused_emulation_active();
class ScopedFusedEmulation {
 public:
  ScopedFusedEmulation();
  ~ScopedFusedEmulation();
  ScopedFusedEmulation(const ScopedFusedEmulation&) = delete;
  ScopedFusedEmulation& operator=(const ScopedFusedEmulation&) = delete;
};

// ---------------------------------------------------------------------------------------------
// SSD state passing. Letters: B batch, c chunks, G groups, N state dim, Hg heads per group, P head
// dim, H = G Hg (head h = g Hg + hg). u (B,c,G,N,Hg,P): what chunk k adds to the state, decayed
// to the chunk's end; a (B,c,H): chunk k's total log-decay (<= 0); h0 (B,G,N,Hg,P) or undefined
// (zeros). With D_k = exp(a_k) (exactly 0 below -60 in float and bfloat16, -600 in double):
//   h_0 = h0,  h_{k+1} = D_k h_k + u_k;   h_in[k] = h_k (B,c,G,N,Hg,P), final_state = h_c.
// The kernel takes float32, float64 and bfloat16 CUDA tensors (any strides: copied contiguous).
struct SsdPassing {
  torch::Tensor h_in, final_state;
};
SsdPassing ssd_state_passing(const torch::Tensor& u, const torch::Tensor& a, const torch::Tensor& h0,
                             FusedImpl impl = FusedImpl::automatic);
SsdPassing ssd_state_passing_composite(const torch::Tensor& u, const torch::Tensor& a, const torch::Tensor& h0);
FusedRoute ssd_state_passing_route(const torch::Tensor& u, const torch::Tensor& a, const torch::Tensor& h0);

// ---------------------------------------------------------------------------------------------
// GEM chunk. Letters: S sequences, n tokens of the chunk, M slots, D width. aq, ak (S,n,M), v
// (S,n,D), V (S,M,D) (an expanded (M,D) is fine: its gradient is summed by autograd), eta a
// one-element tensor of the same dtype and device (may require grad). mask: j <= i with
// self_write, j < i without.
//   d = A_k V - v,  r = A_q V - eta mask(A_q A_k^T) d  (S,n,D),  V' = V - eta A_k^T d  (S,M,D).
// The kernel takes float32, float64 and bfloat16 CUDA tensors.
struct GemChunk {
  torch::Tensor r, V;
};
GemChunk gem_chunk(const torch::Tensor& aq, const torch::Tensor& ak, const torch::Tensor& v, const torch::Tensor& V,
                   const torch::Tensor& eta, bool self_write, FusedImpl impl = FusedImpl::automatic);
GemChunk gem_chunk_composite(const torch::Tensor& aq, const torch::Tensor& ak, const torch::Tensor& v,
                             const torch::Tensor& V, const torch::Tensor& eta, bool self_write);
FusedRoute gem_chunk_route(const torch::Tensor& aq, const torch::Tensor& ak, const torch::Tensor& v,
                           const torch::Tensor& V, const torch::Tensor& eta);

}  // namespace lmgrid::kernels
