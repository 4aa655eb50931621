// Plugin loading: the test plugins, stamp mismatch refused with both versions, boundary errors.
#include <catch2/catch.hpp>

#include <lmgrid/plugin/boundary.hpp>
#include <lmgrid/base/errors.hpp>
#include <lmgrid/plugin/registry.hpp>
#include "../support.hpp"

using namespace lmgrid;

TEST_CASE("test plugins load; an ABI-mismatched one is refused naming both versions", "[unit]") {
  Registry reg({LMGRID_TEST_PLUGIN_DIR});
  REQUIRE(reg.find(PluginKind::arch, "probe"));
  CHECK_FALSE(reg.find(PluginKind::arch, "probe_badabi"));
  REQUIRE(reg.load_errors().size() == 1);
  std::string expect = "plugin ABI version " + std::to_string(kPluginAbiVersion + 41) +
                       " (plugin) != " + std::to_string(kPluginAbiVersion) + " (host)";
  CHECK_THAT(reg.load_errors()[0], Catch::Contains(expect));
  CHECK_THROWS_WITH(reg.get(PluginKind::arch, "probe_badabi"), Catch::Contains(expect));
  CHECK_THROWS_WITH(reg.get(PluginKind::arch, "prob"),
                    Catch::Contains("did you mean 'probe'") && Catch::Contains("available: probe"));
}

TEST_CASE("stamp comparison names both sides", "[unit]") {
  BuildStamp host = current_build_stamp(), plugin = host;
  CHECK(stamp_mismatch(plugin, host).empty());
  std::strcpy(plugin.torch_version, "2.3.0");
  CHECK(stamp_mismatch(plugin, host) == std::string("LibTorch 2.3.0 (plugin) != ") + TORCH_VERSION + " (host)");
  plugin = host;
  plugin.cxx11_abi = 1 - host.cxx11_abi;
  CHECK_THAT(stamp_mismatch(plugin, host), Catch::Contains("_GLIBCXX_USE_CXX11_ABI"));
}

TEST_CASE("exceptions from plugin code name the plugin", "[unit]") {
  Registry reg({LMGRID_TEST_PLUGIN_DIR});
  const auto& lp = reg.get(PluginKind::arch, "probe");
  const auto& arch = static_cast<const ArchPlugin&>(*lp.plugin);
  Params p = validate_params(arch.params(), {{"fail", std::string("throw_create")}}, "[model]");
  CHECK_THROWS_WITH(call_plugin(lp.id(),
                                [&] {
                                  return arch.create(p, {5, 4});
                                }),
                    Catch::StartsWith("plugin arch/probe: probe failure requested at create"));
  CHECK(std::string(current_plugin()).empty());
  // Objects keep their plugin (and library) alive beyond the registry.
  std::shared_ptr<Model> m;
  {
    Registry local({LMGRID_TEST_PLUGIN_DIR});
    const auto& l2 = local.get(PluginKind::arch, "probe");
    Params ok = validate_params(l2.plugin->params(), {}, "[model]");
    m = keep_alive(static_cast<const ArchPlugin&>(*l2.plugin).create(ok, {5, 4}), l2.plugin);
  }
  auto out = m->forward(torch::zeros({1, 3}, torch::kLong), nullptr);
  CHECK(out.logits.sizes() == torch::IntArrayRef({1, 3, 5}));
}
