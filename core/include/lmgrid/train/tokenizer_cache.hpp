// Trained tokenizers, cached across runs and processes.
//
// A tokenizer that learns its vocabulary (char, bpe without `pretrained`, sentencepiece) is fitted
// once per (plugin, plugin version, resolved params, sha256 of the training text). The state
// (Tokenizer::save()) is kept in <cache>/tokenizers/<plugin>-<key16>.state, where <cache> is
// cache_dir() (LMGRID_CACHE); any later fit() with the same key loads it instead of fitting.
// A tokenizer restored from a run's saved state (a resumed run, `lmgrid sample`) never fits.
// Both cases are logged on stderr ("fitted ... cached at", "reusing the fit cached at").
#pragma once

#include <filesystem>
#include <memory>
#include <string>

#include "lmgrid/base/params.hpp"
#include "lmgrid/plugin/plugin.hpp"

namespace lmgrid {

// Where the fit of `plugin_id` (e.g. "tokenizer/bpe") with `params` on text of sha256
// `text_sha256` is cached.
std::filesystem::path tokenizer_cache_file(const std::string& plugin_id, const std::string& plugin_version,
                                           const Params& params, const std::string& text_sha256);

// Wraps `inner` (a plugin's tokenizer) so that fit() goes through the cache. `restored`: the
// tokenizer was loaded from a saved state, so fit() does nothing.
std::shared_ptr<Tokenizer> cached_tokenizer(std::shared_ptr<Tokenizer> inner, const std::string& plugin_id,
                                            const std::string& plugin_version, const Params& params, bool restored);

}  // namespace lmgrid
