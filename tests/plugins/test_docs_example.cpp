// The architecture of docs/plugins.md ("A new architecture on the CausalLM base") is a real
// plugin, plugins/test/minillama (built into build/example-plugins): the doc shows that file
// verbatim, and the plugin passes the conformance checks every architecture does (causal,
// decodes exactly as it trains, vocabulary padding), so the doc cannot rot.
#include <catch2/catch.hpp>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <sstream>

#include <lmgrid/base/errors.hpp>
#include <lmgrid/nn.hpp>
#include <lmgrid/plugin/registry.hpp>
#include "../support.hpp"

using namespace lmgrid;

namespace {

using lmgrid::test::source_root;

std::string read(const std::filesystem::path& p) {
  std::ifstream in(p);
  REQUIRE(in.good());
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

const ArchPlugin& example() {
  static Registry r({std::filesystem::path(LMGRID_TEST_PLUGIN_DIR).parent_path() / "example-plugins"});
  return static_cast<const ArchPlugin&>(*r.get(PluginKind::arch, "minillama").plugin);
}

}  // namespace

TEST_CASE("docs example: docs/plugins.md shows plugins/test/minillama/minillama.cpp verbatim, under 60 lines",
          "[unit]") {
  const std::string doc = read(source_root() / "docs" / "plugins.md");
  const std::string src = read(source_root() / "plugins" / "test" / "minillama" / "minillama.cpp");
  const std::string marker = "<!-- plugins/test/minillama/minillama.cpp -->\n```cpp\n";
  auto at = doc.find(marker);
  REQUIRE(at != std::string::npos);
  at += marker.size();
  auto end = doc.find("```\n", at);
  REQUIRE(end != std::string::npos);
  CHECK(doc.substr(at, end - at) == src);
  CHECK(std::count(src.begin(), src.end(), '\n') < 60);
}

TEST_CASE("docs example: the minillama plugin is causal, decodes as it trains and pads its vocabulary", "[unit]") {
  const auto& plugin = example();
  const int64_t V = 11, T = 12;
  torch::manual_seed(0);
  auto m = plugin.create(validate_params(plugin.params(), plugin.tiny_config(), "minillama"), {V, T});
  m->to(torch::kFloat64);
  m->eval();
  auto idx = torch::randint(0, V, {2, T}, torch::kLong);
  auto full = m->forward(idx, nullptr).logits;
  REQUIRE(full.sizes() == torch::IntArrayRef({2, T, V}));
  // Causal: changing the last token changes no earlier logit.
  auto idx2 = idx.clone();
  idx2.select(1, T - 1).copy_((idx.select(1, T - 1) + 1).remainder(V));
  auto other = m->forward(idx2, nullptr).logits;
  CHECK(torch::equal(other.narrow(1, 0, T - 1), full.narrow(1, 0, T - 1)));
  CHECK_FALSE(torch::allclose(other.select(1, T - 1), full.select(1, T - 1)));
  // Decoding (prefill 5, then one token at a time) equals the full forward, float64 at 1e-12.
  auto st = m->new_decode_state(2);
  REQUIRE(st);
  std::vector<torch::Tensor> parts{m->forward(idx.narrow(1, 0, 5), st.get()).logits};
  for (int64_t t = 5; t < T; ++t) parts.push_back(m->forward(idx.narrow(1, t, 1), st.get()).logits);
  CHECK(torch::allclose(torch::cat(parts, 1), full, 1e-12, 1e-12));
  // Parameters: embedding V x C, per block 2 norms + q, o (C x C) + k, v (C x C/2 with 2 of 4
  // heads) + SwiGLU 3 x C x 48, final norm, untied head C x V.
  const int64_t C = 16, per_block = 2 * C + 2 * C * C + 2 * C * (C / 2) + 3 * C * 48;
  CHECK(m->parameter_count() == V * C + 2 * per_block + C + C * V);
  // vocab_size pads embedding and head; logits keep the tokenizer's V; smaller is an error.
  auto padded = plugin.create(
      validate_params(plugin.params(), {{"d_model", int64_t{16}}, {"vocab_size", int64_t{16}}}, "m"), {V, T});
  CHECK(padded->named_parameters()["wte.weight"].size(0) == 16);
  CHECK(padded->named_parameters()["lm_head.weight"].size(0) == 16);
  CHECK(padded->forward(idx, nullptr).logits.size(-1) == V);
  CHECK_THROWS_AS(plugin.create(validate_params(plugin.params(), {{"vocab_size", int64_t{5}}}, "m"), {V, T}),
                  UserError);
  CHECK_THROWS_AS(plugin.check(validate_params(plugin.params(), {{"n_kv_head", int64_t{3}}}, "m")), UserError);
}
