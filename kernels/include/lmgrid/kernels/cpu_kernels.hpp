// The switch for lmgrid's fused CPU kernels (the SSD scan, the causal convolution, RMSNorm, the
// batched products, split_last, the TTT dual form, RoPE, the gated activations, AdamW and the
// gradient norm; kernels/src/*_cpu.cpp).
#pragma once

namespace lmgrid::kernels {

// LMGRID_CPU_KERNELS (read at every call, so a test can switch it): auto (the default) lets
// float32 and float64 CPU tensors take the fused kernels; composite keeps the LibTorch composites.
// Any other value throws std::invalid_argument naming it.
bool cpu_kernels_enabled();

}  // namespace lmgrid::kernels
