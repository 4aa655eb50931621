// Initialisation helpers (see lmgrid/nn/init.hpp).
#include "lmgrid/nn/init.hpp"

#include <cmath>

namespace lmgrid::nn {

void init_gpt2(torch::nn::Module& module, double std) {
  torch::NoGradGuard ng;
  for (auto& m : module.modules(/*include_self=*/false)) {
    if (auto* lin = m->as<torch::nn::Linear>()) {
      lin->weight.normal_(0.0, std);
      if (lin->bias.defined()) lin->bias.zero_();
    } else if (auto* emb = m->as<torch::nn::Embedding>()) {
      emb->weight.normal_(0.0, std);
    }
  }
}

double gpt2_residual_std(double std, int64_t n_layer) { return std / std::sqrt(2.0 * n_layer); }

}  // namespace lmgrid::nn
