// Named data sources: resolved through LMGRID_DATA_PATH, then the cache, then downloaded.
//
// A source name ("tiny_shakespeare") maps to a relative file ("tinyshakespeare/input.txt"), a
// canonical URL, a size and a sha256. Resolution order:
//   1. every folder of LMGRID_DATA_PATH (':'-separated), in order;
//   2. the cache folder ($LMGRID_CACHE, else $XDG_CACHE_HOME/lmgrid, else ~/.cache/lmgrid);
//   3. download with libcurl from the canonical URL into the cache, verified by sha256
//      (skipped when LMGRID_OFFLINE=1).
// A group source (austen) names member sources and has no file of its own. Anything else is
// taken as a file path. A missing file is a UserError that says which file
// to put where.
#pragma once

#include "lmgrid/base/env.hpp"  // cache_dir()

#include <filesystem>
#include <optional>
#include <string>
#include <vector>

namespace lmgrid {

struct DataSource {
  std::string name;
  std::string relative_path;
  std::string url;     // "" when there is no canonical download address
  int64_t size = 0;    // bytes, 0 = unknown
  std::string sha256;  // "" = not verified
  std::string doc;
  std::string documents = "whole";   // how its text splits into documents (see documents.hpp)
  std::vector<std::string> members;  // a group source: these named sources, in order (no file)
};

const std::vector<DataSource>& known_sources();
std::optional<DataSource> find_source(const std::string& name);
// Resolves a source name or a path to an existing file (see above). Throws UserError, also for
// a group source (resolve_source_files in documents.hpp takes those).
std::filesystem::path resolve_source(const std::string& name_or_path);

}  // namespace lmgrid
