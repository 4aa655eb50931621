// SSD (state-space duality, Mamba-2) scan: the selective linear recurrence
//
//     h_t = exp(dt_t * A) * h_{t-1} + dt_t * (x_t ⊗ B_t)      h: (B, H, P, N)
//     y_t = h_t · C_t                                          y: (B, H, P)
//
// per head h (scalar A_h < 0, scalar dt_{t,h} > 0), with B_t and C_t shared by the H/G heads of
// each group (head h uses group h / (H/G)). The D skip (y += D x) is left to the caller.
//
// Three paths that compute the same function:
//   ssd_naive    the sequential recurrence, token by token (reference for tests).
//   ssd_step     one token of the recurrence (decoding, O(1) per token).
//   ssd_chunked  the chunked SSD algorithm (training and prefill): intra-chunk quadratic form with
//                a masked decay matrix, per-chunk states, state passing between chunks (an
//                elementwise recurrence over the chunks), then state-to-output.
// ssd_naive, ssd_step and ssd_chunked_composite are plain LibTorch ops, differentiable by autograd,
// any floating dtype, any length L (the composite zero-pads the last chunk: dt = 0 there, so
// padding neither decays nor adds state); ssd_chunked takes the fused CPU kernel (ssd_chunked_cpu,
// first-order backward) for float32 and float64 CPU tensors, the composite otherwise.
//
// Shapes (letters: B batch, L length, H heads, P head dim, G groups, N state dim):
//   x (B,L,H,P), dt (B,L,H) (already softplus'ed, > 0), A (H), Bm and Cm (B,L,G,N),
//   initial_state (B,H,P,N) or undefined (zeros). H must be a multiple of G.
#pragma once

#include <string>

#include <torch/torch.h>

#include "lmgrid/kernels/cpu_kernels.hpp"  // cpu_kernels_enabled, which ssd_chunked consults

namespace lmgrid::kernels {

struct SsdResult {
  torch::Tensor y;            // (B, L, H, P)
  torch::Tensor final_state;  // (B, H, P, N): the state after the last token
};

// Chunked SSD. chunk_size >= 1; any L >= 0 (L need not be a multiple of chunk_size). Float32 and
// float64 CPU tensors go to ssd_chunked_cpu (unless LMGRID_CPU_KERNELS=composite), everything
// else to ssd_chunked_composite.
SsdResult ssd_chunked(const torch::Tensor& x, const torch::Tensor& dt, const torch::Tensor& A, const torch::Tensor& Bm,
                      const torch::Tensor& Cm, int64_t chunk_size, const torch::Tensor& initial_state = {});

// The chunked algorithm as LibTorch ops (any device and floating dtype; the recurrence over
// chunks goes to the CUDA kernel on a GPU, fused.hpp): the reference for the fused CPU kernel.
SsdResult ssd_chunked_composite(const torch::Tensor& x, const torch::Tensor& dt, const torch::Tensor& A,
                                const torch::Tensor& Bm, const torch::Tensor& Cm, int64_t chunk_size,
                                const torch::Tensor& initial_state = {});

// The same function as one fused CPU kernel (kernels/src/ssd_cpu.cpp), forward and hand-derived
// backward (first order: no create_graph through it), parallel over batch x heads on LibTorch's
// intra-op threads, the same bits on any thread count. Float32 or float64 CPU tensors, all of one
// dtype; ssd_chunked_cpu_unsupported says why not ("" when it applies).
SsdResult ssd_chunked_cpu(const torch::Tensor& x, const torch::Tensor& dt, const torch::Tensor& A,
                          const torch::Tensor& Bm, const torch::Tensor& Cm, int64_t chunk_size,
                          const torch::Tensor& initial_state = {});
std::string ssd_chunked_cpu_unsupported(const torch::Tensor& x, const torch::Tensor& dt, const torch::Tensor& A,
                                        const torch::Tensor& Bm, const torch::Tensor& Cm,
                                        const torch::Tensor& initial_state);

// Sequential reference: the recurrence above, one token at a time.
SsdResult ssd_naive(const torch::Tensor& x, const torch::Tensor& dt, const torch::Tensor& A, const torch::Tensor& Bm,
                    const torch::Tensor& Cm, const torch::Tensor& initial_state = {});

// One token: x (B,H,P), dt (B,H), A (H), Bm and Cm (B,G,N), state (B,H,P,N) or undefined.
// Returns y (B,H,P) and the new state (B,H,P,N). Out of place (autograd-safe).
SsdResult ssd_step(const torch::Tensor& x, const torch::Tensor& dt, const torch::Tensor& A, const torch::Tensor& Bm,
                   const torch::Tensor& Cm, const torch::Tensor& state);

// Analytic FLOPs of the matrix products of ssd_chunked's forward (2 per multiply-add) for one
// sequence of length L: C·Bᵀ scores, scores·x, chunk states, state to output (the passing between chunks is
// elementwise).
double ssd_chunked_matmul_flops(int64_t L, int64_t H, int64_t P, int64_t G, int64_t N, int64_t chunk_size);

}  // namespace lmgrid::kernels
