// The tokenizer cache (see tokenizer_cache.hpp): a Tokenizer that forwards to the plugin's and
// routes fit() through <cache>/tokenizers/. Files are written atomically, so concurrent workers
// that fit the same tokenizer at once both succeed and leave one complete state.
#include "lmgrid/train/tokenizer_cache.hpp"

#include <cstdio>

#include "lmgrid/base/env.hpp"
#include "lmgrid/base/util.hpp"

namespace lmgrid {

namespace fs = std::filesystem;

fs::path tokenizer_cache_file(const std::string& plugin_id, const std::string& plugin_version, const Params& params,
                              const std::string& text_sha256) {
  std::string key = plugin_id + "\n" + plugin_version + "\n";
  for (const auto& [k, v] : params.values()) key += k + "=" + to_string(v) + "\n";  // sorted keys
  key += text_sha256;
  std::string name = plugin_id.substr(plugin_id.find('/') + 1);
  return cache_dir() / "tokenizers" / (name + "-" + sha256_hex(key).substr(0, 16) + ".state");
}

namespace {

class CachedTokenizer : public Tokenizer {
 public:
  CachedTokenizer(std::shared_ptr<Tokenizer> inner, std::string id, std::string version, Params params, bool restored)
      : inner_(std::move(inner)),
        id_(std::move(id)),
        version_(std::move(version)),
        params_(std::move(params)),
        fitted_(restored) {}

  void fit(const std::string& text) override {
    if (fitted_) return;  // restored from a run's state: never re-fitted
    fitted_ = true;
    fs::path file = tokenizer_cache_file(id_, version_, params_, sha256_hex(text));
    if (fs::exists(file)) {
      try {
        inner_->load(read_file(file));
        std::fprintf(stderr, "lmgrid: tokenizer %s: reusing the fit cached at %s\n", id_.c_str(), file.c_str());
        return;
      } catch (const std::exception& e) {  // a damaged cache entry is refitted and replaced
        std::fprintf(stderr, "lmgrid: tokenizer %s: ignoring cached %s (%s)\n", id_.c_str(), file.c_str(), e.what());
      }
    }
    double t0 = monotonic_seconds();
    inner_->fit(text);
    fs::create_directories(file.parent_path());
    write_file_atomic(file, inner_->save());
    std::fprintf(stderr, "lmgrid: tokenizer %s: fitted on %s bytes in %.2f s, cached at %s\n", id_.c_str(),
                 human_count(static_cast<int64_t>(text.size())).c_str(), monotonic_seconds() - t0, file.c_str());
  }
  std::vector<int64_t> encode(const std::string& text) const override { return inner_->encode(text); }
  std::string decode(const std::vector<int64_t>& ids) const override { return inner_->decode(ids); }
  int64_t vocab_size() const override { return inner_->vocab_size(); }
  int64_t bos_id() const override { return inner_->bos_id(); }
  int64_t eos_id() const override { return inner_->eos_id(); }
  std::string save() const override { return inner_->save(); }
  void load(const std::string& state) override {
    inner_->load(state);
    fitted_ = true;
  }

 private:
  std::shared_ptr<Tokenizer> inner_;
  std::string id_, version_;
  Params params_;
  bool fitted_;
};

}  // namespace

std::shared_ptr<Tokenizer> cached_tokenizer(std::shared_ptr<Tokenizer> inner, const std::string& plugin_id,
                                            const std::string& plugin_version, const Params& params, bool restored) {
  return std::make_shared<CachedTokenizer>(std::move(inner), plugin_id, plugin_version, params, restored);
}

}  // namespace lmgrid
