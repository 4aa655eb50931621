// The conformance check (lmgrid/check/conformance.hpp) on models whose answer is known: the
// test plugin arch/leaky sees the future by value, by gradient only, or not at all.
#include <catch2/catch.hpp>

#include <filesystem>

#include <lmgrid/check/conformance.hpp>
#include <lmgrid/plugin/registry.hpp>
#include "../support.hpp"

using namespace lmgrid;

namespace {

const ArchPlugin& leaky() {
  static Registry r({std::filesystem::path(LMGRID_TEST_PLUGIN_DIR).parent_path() / "leaky-plugins"});
  return static_cast<const ArchPlugin&>(*r.get(PluginKind::arch, "leaky").plugin);
}

std::map<std::string, CheckResult> check_leak(const std::string& leak) {
  const auto& p = leaky();
  std::map<std::string, CheckResult> out;
  for (auto& r : check_arch(p, validate_params(p.params(), {{"leak", leak}}, "leaky"))) out[r.name] = r;
  return out;
}

const char* kValue = "causal: changing token j moves no logit before j";
const char* kGrad = "causal: d(logits before j)/d(embeddings from j on) = 0";

}  // namespace

TEST_CASE("conformance: a model that sees later tokens fails both causality checks, with the leak's size",
          "[unit][conformance]") {
  auto r = check_leak("value");
  REQUIRE(r.count(kValue) == 1);
  CHECK(r[kValue].status == CheckStatus::fail);
  CHECK(r[kValue].error > 1e-4);
  CHECK(r[kValue].detail.find("leak at j") != std::string::npos);
  CHECK(r[kGrad].status == CheckStatus::fail);
  CHECK_FALSE(all_passed(check_arch(leaky(), validate_params(leaky().params(), {}, "leaky"))));
}

TEST_CASE("conformance: a leak in the gradient only is caught by the gradient check alone", "[unit][conformance]") {
  auto r = check_leak("gradient");
  CHECK(r[kValue].status == CheckStatus::pass);
  CHECK(r[kGrad].status == CheckStatus::fail);
  CHECK(r[kGrad].error > 1e-4);
}

TEST_CASE("conformance: the causal variant passes; what it lacks is not applicable", "[unit][conformance]") {
  auto r = check_leak("none");
  std::vector<CheckResult> all;
  for (auto& [k, v] : r) all.push_back(v);
  CHECK(all_passed(all));
  CHECK(r[kValue].status == CheckStatus::pass);
  CHECK(r[kGrad].status == CheckStatus::pass);
  CHECK(r["decode: token by token = full forward"].status == CheckStatus::not_applicable);
  CHECK(r["params: declared count = the module's"].status == CheckStatus::not_applicable);
  CHECK(r["checkpoint: save, load into another build = same logits"].status == CheckStatus::pass);
}
