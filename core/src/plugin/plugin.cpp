// The out-of-line parts of the plugin contract (lmgrid/plugin.hpp): kind and split names and
// the Model base. Built into liblmgrid_plugin, which every plugin links; nothing here touches
// the store, the trainer or the network.
#include "lmgrid/plugin/plugin.hpp"

#include <set>

namespace lmgrid {

const char* kind_name(PluginKind k) {
  switch (k) {
    case PluginKind::arch: return "arch";
    case PluginKind::data: return "data";
    case PluginKind::tokenizer: return "tokenizer";
    case PluginKind::optim: return "optim";
  }
  return "?";
}

const char* split_name(Split s) {
  switch (s) {
    case Split::train: return "train";
    case Split::val: return "val";
    case Split::test: return "test";
  }
  return "?";
}

double Model::flops_per_token() const { return 6.0 * static_cast<double>(parameter_count()); }

int64_t Model::parameter_count() const {
  std::set<const void*> seen;
  int64_t n = 0;
  for (const auto& p : parameters(true))
    if (seen.insert(p.unsafeGetTensorImpl()).second) n += p.numel();
  return n;
}

int64_t Model::embedding_parameter_count() const {
  std::set<const void*> seen;
  int64_t n = 0;
  for (const auto& m : modules(/*include_self=*/false))
    if (const auto* emb = m->as<torch::nn::Embedding>())
      if (seen.insert(emb->weight.unsafeGetTensorImpl()).second) n += emb->weight.numel();
  return n;
}

}  // namespace lmgrid
