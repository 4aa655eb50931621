// The all-plugins sweep: every plugin found in build/plugins, driven by its own tiny config.
//   arch:      forward shape, finite gradients, an optimizer step lowers the loss, save/reload
//              gives identical logits, incremental decoding equals the full forward; and the
//              conformance check of `lmgrid plugins check` (lmgrid/check/conformance.hpp) passes.
//   tokenizer: encode/decode round trip, save/load.
//   data:      shapes, determinism in (seed, index), fixed eval batches.
//   optim:     minimises a quadratic; save/load continues identically.
#include <catch2/catch.hpp>

#include <lmgrid/base/errors.hpp>

#include <filesystem>

#include <lmgrid/check/conformance.hpp>
#include <lmgrid/train/checkpoint.hpp>
#include <lmgrid/plugin/registry.hpp>
#include <lmgrid/train/trainer.hpp>

#include "../support.hpp"

using namespace lmgrid;

static const Registry& reg() { return test::built_plugins(); }

static Params tiny(const Plugin& p) { return validate_params(p.params(), p.tiny_config(), p.name()); }

static std::shared_ptr<Optimizer> adamw(Model& m, double lr) {
  const auto& op = static_cast<const OptimPlugin&>(*reg().get(PluginKind::optim, "adamw").plugin);
  return op.create(validate_params(op.params(), {{"lr", lr}}, "adamw"), named_parameters_for_optim(m));
}

TEST_CASE("sweep: every arch plugin", "[sweep]") {
  auto archs = reg().list(PluginKind::arch);
  REQUIRE(!archs.empty());
  for (const auto* lp : archs) {
    const auto& plugin = static_cast<const ArchPlugin&>(*lp->plugin);
    DYNAMIC_SECTION("arch/" << plugin.name()) {
      const int64_t V = 11, T = 16, B = 2;
      torch::manual_seed(0);
      auto model = plugin.create(tiny(plugin), {V, T});
      auto idx = torch::randint(0, V, {B, T}, torch::kLong);
      auto tgt = torch::randint(0, V, {B, T}, torch::kLong);
      auto out = model->forward(idx, nullptr);
      REQUIRE(out.logits.sizes() == torch::IntArrayRef({B, T, V}));
      CHECK(model->parameter_count() > 0);
      CHECK(model->flops_per_token() > 0);

      auto opt = adamw(*model, 1e-2);
      double first = 0, last = 0;
      for (int i = 0; i < 8; ++i) {
        opt->zero_grad();
        auto o = model->forward(idx, nullptr);
        auto loss = lm_loss(o.logits, tgt, {});
        if (o.aux_loss.defined()) loss = loss + o.aux_loss;
        loss.backward();
        for (const auto& p : model->parameters())
          if (p.grad().defined()) REQUIRE(torch::isfinite(p.grad()).all().item<bool>());
        opt->step();
        (i == 0 ? first : last) = loss.item<double>();
      }
      CHECK(last < first);

      model->eval();
      auto file = std::filesystem::temp_directory_path() / ("lmgrid-sweep-" + plugin.name() + ".lmck");
      CheckpointMeta meta;
      meta.config_json = "{}";
      save_checkpoint(file, meta, *model, opt.get());
      torch::manual_seed(123);
      auto reloaded = plugin.create(tiny(plugin), {V, T});
      auto opt2 = adamw(*reloaded, 1e-2);
      load_checkpoint(file, *reloaded, opt2.get(), false);
      reloaded->eval();
      {
        torch::NoGradGuard ng;
        CHECK(torch::equal(model->forward(idx, nullptr).logits, reloaded->forward(idx, nullptr).logits));
      }
      std::filesystem::remove(file);

      // Incremental decoding (optional capability) equals the full forward, in float64.
      model->to(torch::kFloat64);
      if (auto state = model->new_decode_state(B)) {
        torch::NoGradGuard ng;
        auto full = model->forward(idx, nullptr).logits;
        std::vector<torch::Tensor> steps{model->forward(idx.narrow(1, 0, 5), state.get()).logits};
        for (int64_t t = 5; t < T; ++t) steps.push_back(model->forward(idx.narrow(1, t, 1), state.get()).logits);
        CHECK(torch::allclose(torch::cat(steps, 1), full, 1e-9, 1e-9));
      }
    }
  }
}

TEST_CASE("sweep: every arch plugin passes the conformance check", "[sweep]") {
  for (const auto* lp : reg().list(PluginKind::arch)) {
    const auto& plugin = static_cast<const ArchPlugin&>(*lp->plugin);
    DYNAMIC_SECTION("arch/" << plugin.name()) {
      for (const auto& r : check_arch(plugin, tiny(plugin))) {
        INFO(r.name << ": " << check_status_name(r.status) << ", error " << r.error << " (tolerance " << r.tolerance
                    << ") " << r.detail);
        CHECK(r.status != CheckStatus::fail);
      }
    }
  }
}

TEST_CASE("sweep: every tokenizer plugin", "[sweep]") {
  for (const auto* lp : reg().list(PluginKind::tokenizer)) {
    const auto& plugin = static_cast<const TokenizerPlugin&>(*lp->plugin);
    // Refuses to load under AddressSanitizer (tests/support.hpp); checked unsanitized in CI.
    if (lmgrid::test::kAsanBuild && plugin.name() == "sentencepiece") continue;
    DYNAMIC_SECTION("tokenizer/" << plugin.name()) {
      auto tok = plugin.create(tiny(plugin));
      // tokenizer/ids reads token ids written as numbers (the synthetic tasks' text), nothing else.
      std::string text = plugin.name() == "ids"
                             ? "12 7 4095 0 12 3"
                             : "First Citizen:\nBefore we proceed any further, hear me speak. caf\xc3\xa9";
      tok->fit(text);
      auto ids = tok->encode(text);
      REQUIRE(!ids.empty());
      for (auto id : ids) REQUIRE((id >= 0 && id < tok->vocab_size()));
      CHECK(tok->decode(ids) == text);
      auto other = plugin.create(tiny(plugin));
      other->load(tok->save());
      CHECK(other->encode(text) == ids);
      CHECK(other->vocab_size() == tok->vocab_size());
    }
  }
}

TEST_CASE("sweep: every data plugin", "[sweep]") {
  for (const auto* lp : reg().list(PluginKind::data)) {
    const auto& plugin = static_cast<const DataPlugin&>(*lp->plugin);
    DYNAMIC_SECTION("data/" << plugin.name()) {
      Params p = tiny(plugin);
      // Text datasets take the char tokenizer; the synthetic tasks generate ids and refuse it,
      // asking for tokenizer/ids instead (a UserError naming it).
      std::string tokenizer = "char";
      try {
        const auto& c = static_cast<const TokenizerPlugin&>(*reg().get(PluginKind::tokenizer, "char").plugin);
        plugin.create(p, {c.create(validate_params(c.params(), {}, "char")), 1});
      } catch (const UserError& e) {
        INFO(e.what());
        REQUIRE(std::string(e.what()).find("[tokenizer] plugin = \"ids\"") != std::string::npos);
        tokenizer = "ids";
      }
      const auto& tp = static_cast<const TokenizerPlugin&>(*reg().get(PluginKind::tokenizer, tokenizer).plugin);
      auto make = [&](uint64_t seed) {
        return plugin.create(p, {tp.create(validate_params(tp.params(), {}, tokenizer)), seed});
      };
      auto a = make(1), b = make(1), c = make(2);
      int64_t T = plugin.seq_len(p);
      Batch x = a->train_batch(7, 3);
      REQUIRE(x.inputs.sizes() == torch::IntArrayRef({3, T}));
      REQUIRE(x.targets.sizes() == torch::IntArrayRef({3, T}));
      CHECK(torch::equal(x.inputs, b->train_batch(7, 3).inputs));
      CHECK_FALSE(torch::equal(x.inputs, c->train_batch(7, 3).inputs));
      CHECK_FALSE(torch::equal(x.inputs, a->train_batch(8, 3).inputs));
      REQUIRE(a->eval_batch_count(Split::val, 3) > 0);
      CHECK(torch::equal(a->eval_batch(Split::val, 0, 3).inputs, c->eval_batch(Split::val, 0, 3).inputs));
    }
  }
}

TEST_CASE("sweep: every optim plugin", "[sweep]") {
  for (const auto* lp : reg().list(PluginKind::optim)) {
    const auto& plugin = static_cast<const OptimPlugin&>(*lp->plugin);
    DYNAMIC_SECTION("optim/" << plugin.name()) {
      auto run = [&](int steps, torch::Tensor w, std::shared_ptr<Optimizer> opt) {
        for (int i = 0; i < steps; ++i) {
          opt->zero_grad();
          auto loss = (w - 1.0).pow(2).sum();
          loss.backward();
          opt->step();
        }
        return (w - 1.0).pow(2).sum().item<double>();
      };
      auto w = torch::zeros({3, 3}, torch::requires_grad());
      auto opt = plugin.create(tiny(plugin), {{"w", w, false}});
      opt->set_lr(0.05);
      double before = (w - 1.0).pow(2).sum().item<double>();
      CHECK(run(50, w, opt) < before);
      // save/load: a copy continues exactly like the original.
      torch::serialize::OutputArchive ar;
      opt->save(ar);
      std::stringstream ss;
      ar.save_to(ss);
      auto w2 = w.detach().clone().requires_grad_(true);
      auto opt2 = plugin.create(tiny(plugin), {{"w", w2, false}});
      torch::serialize::InputArchive in;
      in.load_from(ss);
      opt2->load(in);
      opt2->set_lr(0.05);
      run(5, w, opt);
      run(5, w2, opt2);
      CHECK(torch::equal(w, w2));
    }
  }
}
