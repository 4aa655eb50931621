// Weight initialisation helpers. Each draws from the global generator in module order, so a
// model built with the same seed gets the same weights.
#pragma once

#include <torch/torch.h>

namespace lmgrid::nn {

// GPT-2 initialisation: every Linear and Embedding weight below `module` ~ N(0, std), Linear
// biases zero. Other modules (norms, convs) keep their own init.
void init_gpt2(torch::nn::Module& module, double std = 0.02);

// GPT-2's std for residual output projections: std / sqrt(2 n_layer) (two per block).
double gpt2_residual_std(double std, int64_t n_layer);

}  // namespace lmgrid::nn
