// Plugin discovery and loading (Boost.DLL).
//
// Search order: LMGRID_PLUGIN_PATH folders (':'-separated, first wins on a name clash), then the
// build's plugin folder (<dir of the lmgrid executable>/../plugins), then the installed plugin
// folder. A file is a plugin if it is named lmgrid_<kind>_<name>.so and exports the
// `lmgrid_plugin_entry` alias. Each library's BuildStamp is checked before anything else.
#pragma once

#include <filesystem>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "lmgrid/plugin/plugin.hpp"

namespace lmgrid {

struct LoadedPlugin {
  std::shared_ptr<Plugin> plugin;  // holds a reference to its library
  std::filesystem::path file;
  std::string file_sha256;  // filled lazily by file_hash()
  std::string id() const;   // "arch/gpt"
};

// Compares a plugin's stamp with the host's. Returns "" if compatible, else a message naming
// both sides, e.g. "plugin ABI version 2 (plugin) != 1 (host)".
std::string stamp_mismatch(const BuildStamp& plugin, const BuildStamp& host);

class Registry {
 public:
  // Scans the default search path (see above).
  static Registry& instance();
  explicit Registry(std::vector<std::filesystem::path> search_path);

  // All plugins that loaded, sorted by kind then name. Libraries that failed to load (bad
  // stamp, missing symbol) are listed in load_errors() instead.
  std::vector<const LoadedPlugin*> list(std::optional<PluginKind> kind = {}) const;
  const std::vector<std::string>& load_errors() const { return load_errors_; }
  // Throws UserError listing the available plugins of that kind (and any load error of a
  // library with that name, e.g. an ABI mismatch) when `name` is unknown.
  const LoadedPlugin& get(PluginKind kind, const std::string& name) const;
  const LoadedPlugin* find(PluginKind kind, const std::string& name) const;
  // Any kind; throws UserError if unknown.
  const LoadedPlugin& get_any(const std::string& name) const;
  const std::vector<std::filesystem::path>& search_path() const { return search_path_; }

  template <class T>
  const T& as(PluginKind kind, const std::string& name) const {
    return static_cast<const T&>(*get(kind, name).plugin);
  }

  // Loads one library file; throws UserError with the reason on failure.
  static LoadedPlugin load_file(const std::filesystem::path& file);
  static std::vector<std::filesystem::path> default_search_path();

 private:
  std::vector<std::filesystem::path> search_path_;
  std::vector<LoadedPlugin> plugins_;
  std::map<std::string, std::string> errors_by_name_;  // "arch/foo" -> load error
  std::vector<std::string> load_errors_;
};

// Wraps an object made by a plugin so it keeps `owner` (the plugin and thereby its library) alive.
template <class T>
std::shared_ptr<T> keep_alive(std::shared_ptr<T> obj, std::shared_ptr<const void> owner) {
  T* raw = obj.get();
  return std::shared_ptr<T>(raw, [obj = std::move(obj), owner = std::move(owner)](T*) mutable {
    obj.reset();
    owner.reset();
  });
}

}  // namespace lmgrid
