// Plugin discovery and loading with Boost.DLL; stamp check before anything else.
#include "lmgrid/plugin/registry.hpp"

#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <mutex>

#include <boost/dll/shared_library.hpp>
#include <fmt/format.h>

#include "lmgrid/base/errors.hpp"
#include "lmgrid/base/util.hpp"
#include "lmgrid/base/env.hpp"

#ifndef LMGRID_INSTALL_LIBDIR
#define LMGRID_INSTALL_LIBDIR "lib"
#endif
#ifndef LMGRID_INSTALL_PLUGIN_DIR
#define LMGRID_INSTALL_PLUGIN_DIR "/usr/local/lib/lmgrid/plugins"
#endif

namespace lmgrid {

namespace fs = std::filesystem;

std::string LoadedPlugin::id() const { return std::string(kind_name(plugin->kind())) + "/" + plugin->name(); }

std::string stamp_mismatch(const BuildStamp& p, const BuildStamp& h) {
  if (p.struct_size != h.struct_size || p.abi_version != h.abi_version)
    return fmt::format("plugin ABI version {} (plugin) != {} (host)", p.abi_version, h.abi_version);
  std::string pt(p.torch_version, strnlen(p.torch_version, sizeof(p.torch_version)));
  std::string ht(h.torch_version, strnlen(h.torch_version, sizeof(h.torch_version)));
  if (pt != ht) return fmt::format("LibTorch {} (plugin) != {} (host)", pt, ht);
  if (p.cxx11_abi != h.cxx11_abi)
    return fmt::format("_GLIBCXX_USE_CXX11_ABI={} (plugin) != {} (host)", p.cxx11_abi, h.cxx11_abi);
  return "";
}

namespace {
// Libraries are never unloaded: this list lives until the process exits (and is leaked then).
std::vector<std::shared_ptr<boost::dll::shared_library>>& loaded_libraries() {
  static auto* libs = new std::vector<std::shared_ptr<boost::dll::shared_library>>();
  return *libs;
}
std::mutex& load_mutex() {
  static std::mutex m;
  return m;
}
bool plugin_file_name(const fs::path& p) {
  std::string n = p.filename().string();
  return n.rfind("lmgrid_", 0) == 0 && p.extension() == ".so";
}
}  // namespace

LoadedPlugin Registry::load_file(const fs::path& file) {
  std::lock_guard<std::mutex> lock(load_mutex());
  auto lib = std::make_shared<boost::dll::shared_library>();
  boost::dll::fs::error_code ec;
  lib->load(boost::dll::fs::path(file.string()), boost::dll::load_mode::rtld_lazy, ec);
  if (ec) throw UserError(fmt::format("cannot load plugin {}: {}", file.string(), ec.message()));
  if (!lib->has("lmgrid_plugin_entry"))
    throw UserError(fmt::format("{} is not an lmgrid plugin (no lmgrid_plugin_entry symbol)", file.string()));
  auto& entry_fn = lib->get_alias<const PluginEntry*()>("lmgrid_plugin_entry");
  const PluginEntry* entry = entry_fn();
  std::string bad = stamp_mismatch(entry->stamp, current_build_stamp());
  if (!bad.empty()) throw UserError(fmt::format("plugin {} was built for another host: {}", file.string(), bad));
  Plugin* raw = nullptr;
  try {
    raw = entry->create();
  } catch (const std::exception& e) {
    throw PluginError(file.filename().string(), e.what());
  }
  loaded_libraries().push_back(lib);
  LoadedPlugin out;
  out.plugin = std::shared_ptr<Plugin>(raw, [lib](Plugin* p) { delete p; });
  out.file = fs::absolute(file);
  return out;
}

std::vector<fs::path> Registry::default_search_path() {
  std::vector<fs::path> out;
  for (const auto& p : split(env_or("LMGRID_PLUGIN_PATH", ""), ':')) out.emplace_back(p);
  if (fs::path prefix = executable_prefix(); !prefix.empty()) {
    // Beside the executable: build/bin/lmgrid -> build/plugins; an installed <prefix>/bin/lmgrid
    // -> <prefix>/lib/lmgrid/plugins, wherever the prefix was installed or moved to.
    out.push_back(prefix / "plugins");
    out.push_back(prefix / LMGRID_INSTALL_LIBDIR / "lmgrid" / "plugins");
  }
  out.emplace_back(LMGRID_INSTALL_PLUGIN_DIR);
  return out;
}

Registry& Registry::instance() {
  static auto* r = new Registry(default_search_path());
  return *r;
}

Registry::Registry(std::vector<fs::path> search_path) : search_path_(std::move(search_path)) {
  for (const auto& dir : search_path_) {
    std::error_code ec;
    if (!fs::is_directory(dir, ec)) continue;
    std::vector<fs::path> files;
    for (const auto& e : fs::directory_iterator(dir, ec))
      if (e.is_regular_file() && plugin_file_name(e.path())) files.push_back(e.path());
    std::sort(files.begin(), files.end());
    for (const auto& f : files) {
      // lmgrid_<kind>_<name>.so: remember load errors under "<kind>/<name>" for get().
      std::string stem = f.stem().string().substr(7);
      auto us = stem.find('_');
      std::string key = us == std::string::npos ? stem : stem.substr(0, us) + "/" + stem.substr(us + 1);
      try {
        LoadedPlugin lp = load_file(f);
        if (find(lp.plugin->kind(), lp.plugin->name())) continue;  // earlier folder wins
        plugins_.push_back(std::move(lp));
      } catch (const std::exception& e) {
        if (!errors_by_name_.count(key)) errors_by_name_[key] = e.what();
        load_errors_.push_back(e.what());
      }
    }
  }
  std::sort(plugins_.begin(), plugins_.end(), [](const LoadedPlugin& a, const LoadedPlugin& b) {
    return std::make_pair(static_cast<int>(a.plugin->kind()), a.plugin->name()) <
           std::make_pair(static_cast<int>(b.plugin->kind()), b.plugin->name());
  });
}

std::vector<const LoadedPlugin*> Registry::list(std::optional<PluginKind> kind) const {
  std::vector<const LoadedPlugin*> out;
  for (const auto& p : plugins_)
    if (!kind || p.plugin->kind() == *kind) out.push_back(&p);
  return out;
}

const LoadedPlugin* Registry::find(PluginKind kind, const std::string& name) const {
  for (const auto& p : plugins_)
    if (p.plugin->kind() == kind && p.plugin->name() == name) return &p;
  return nullptr;
}

const LoadedPlugin& Registry::get(PluginKind kind, const std::string& name) const {
  if (const auto* p = find(kind, name)) return *p;
  std::string key = std::string(kind_name(kind)) + "/" + name;
  auto err = errors_by_name_.find(key);
  if (err != errors_by_name_.end())
    throw UserError(fmt::format("{} plugin '{}' failed to load: {}", kind_name(kind), name, err->second));
  std::vector<std::string> names;
  std::string avail;
  for (const auto* p : list(kind)) {
    names.push_back(p->plugin->name());
    avail += (avail.empty() ? "" : ", ") + p->plugin->name();
  }
  std::string hint = nearest(name, names);
  throw UserError(fmt::format("unknown {} plugin '{}'{}; available: {}", kind_name(kind), name,
                              hint.empty() ? "" : " (did you mean '" + hint + "'?)", avail.empty() ? "(none)" : avail));
}

const LoadedPlugin& Registry::get_any(const std::string& name) const {
  for (const auto& p : plugins_)
    if (p.plugin->name() == name || p.id() == name) return p;
  std::vector<std::string> names;
  for (const auto& p : plugins_) names.push_back(p.plugin->name());
  std::string hint = nearest(name, names);
  throw UserError(fmt::format("unknown plugin '{}'{}", name, hint.empty() ? "" : " (did you mean '" + hint + "'?)"));
}

}  // namespace lmgrid
