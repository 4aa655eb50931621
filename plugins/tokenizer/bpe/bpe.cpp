// tokenizer/bpe: byte-level BPE. `pretrained = "gpt2"` loads OpenAI's published encoder.json +
// vocab.bpe through the data path and encodes exactly as tiktoken's `gpt2` encoding; otherwise
// `fit` trains merges on the training split up to `vocab_size`. `specials` (comma-separated)
// are strings that encode as one id each. Not a general tokenizer library: one pre-tokenizer
// (GPT-2's), no normalisation, no dropout.
#include <lmgrid/base/errors.hpp>
#include <lmgrid/base/util.hpp>
#include <lmgrid/data/data_source.hpp>
#include <lmgrid/plugin/plugin.hpp>
#include <lmgrid/plugin/tokenizer_specials.hpp>
#include <nlohmann/json.hpp>

#include <optional>
#include <stdexcept>
#include <unordered_map>

#include "bpe_model.hpp"
#include "pretokenize.hpp"

namespace {

using namespace lmgrid;
using json = nlohmann::json;

std::vector<std::string> split_specials(const std::string& s) {
  std::vector<std::string> out;
  size_t start = 0;
  while (start <= s.size() && !s.empty()) {
    size_t comma = s.find(',', start);
    if (comma == std::string::npos) comma = s.size();
    if (comma > start) out.push_back(s.substr(start, comma - start));
    start = comma + 1;
  }
  return out;
}

// GPT-2's files, found through LMGRID_DATA_PATH / the cache / a verified download.
bpe::Model load_gpt2() {
  return bpe::Model::from_gpt2(read_file(resolve_source("gpt2_encoder")), read_file(resolve_source("gpt2_vocab")));
}

class BpeTokenizer : public Tokenizer {
 public:
  BpeTokenizer(std::string pretrained, int64_t vocab_size, std::vector<std::string> specials)
      : pretrained_(std::move(pretrained)), vocab_size_(vocab_size), specials_(std::move(specials)) {
    if (!pretrained_.empty()) set_model(load_gpt2());
  }

  void fit(const std::string& text) override {
    if (!pretrained_.empty()) return;  // a published vocabulary is not re-learned
    set_model(bpe::Model::train(text, vocab_size_ - static_cast<int64_t>(specials_.size())));
  }

  std::vector<int64_t> encode(const std::string& text) const override {
    if (!model_) throw std::logic_error("bpe tokenizer used before fit() (no vocabulary)");
    std::vector<int64_t> out;
    out.reserve(text.size() / 3);
    size_t pos = 0;
    while (pos < text.size()) {
      auto [at, special] = next_special(text, pos);
      encode_ordinary(std::string_view(text).substr(pos, at - pos), pos, out);
      if (special < 0) break;
      out.push_back(special_ids_[static_cast<size_t>(special)]);
      pos = at + specials_[static_cast<size_t>(special)].size();
    }
    return out;
  }

  std::string decode(const std::vector<int64_t>& ids) const override {
    std::string out;
    for (int64_t id : ids) {
      if (model_ && id >= 0 && id < model_->size()) {
        out += model_->bytes(id);
      } else if (model_ && id >= model_->size() && id < vocab_size()) {
        out += extra_specials_[static_cast<size_t>(id - model_->size())];
      } else {
        throw std::out_of_range("token id " + std::to_string(id) + " is outside the vocabulary (0.." +
                                std::to_string(vocab_size() - 1) + ")");
      }
    }
    return out;
  }

  int64_t bos_id() const override { return marker(true); }
  int64_t eos_id() const override { return marker(false); }
  int64_t vocab_size() const override {
    return model_ ? model_->size() + static_cast<int64_t>(extra_specials_.size()) : 0;
  }

  // {"format":"lmgrid-bpe","version":1,"pretrained":"gpt2"} or {..., "merges":[[a,b],...]}, and
  // the specials. The published files are re-read (and checked) on load, not copied in.
  std::string save() const override {
    json j{{"format", "lmgrid-bpe"}, {"version", 1}, {"pretrained", pretrained_}, {"specials", specials_}};
    if (pretrained_.empty() && model_) j["merges"] = model_->merges();
    return j.dump();
  }

  void load(const std::string& state) override {
    json j = json::parse(state);
    // json's comparison, not value<int>(): a version of 1e30 must not be converted to an int.
    if (!j.is_object() || j.value("format", "") != "lmgrid-bpe" || !j.contains("version") || j["version"] != 1)
      throw std::runtime_error("not a saved lmgrid-bpe tokenizer state (format/version)");
    pretrained_ = j.at("pretrained").get<std::string>();
    specials_ = j.at("specials").get<std::vector<std::string>>();
    check_special_strings(specials_, "saved lmgrid-bpe tokenizer state");
    if (!pretrained_.empty())
      set_model(load_gpt2());
    else
      set_model(bpe::Model::from_merges(merges_of(j.at("merges"))));
  }

 private:
  // [[a, b], ...] with integer token ids, checked before any conversion (json's get<int32_t> of
  // 5e25 or of a float is undefined behaviour, found by tests/fuzz/fuzz_tokenizer_state).
  static std::vector<std::pair<int32_t, int32_t>> merges_of(const json& ms) {
    if (!ms.is_array()) throw std::runtime_error("lmgrid-bpe state: merges is not an array");
    std::vector<std::pair<int32_t, int32_t>> out;
    out.reserve(ms.size());
    for (size_t i = 0; i < ms.size(); ++i) {
      const json& m = ms[i];
      auto id = [&](const json& v) {
        if (!v.is_number_integer() || v.get<int64_t>() < 0 || v.get<int64_t>() > INT32_MAX)
          throw std::runtime_error("lmgrid-bpe state: merge " + std::to_string(i + 1) +
                                   " is not a pair of token ids: " + m.dump());
        return static_cast<int32_t>(v.get<int64_t>());
      };
      if (!m.is_array() || m.size() != 2)
        throw std::runtime_error("lmgrid-bpe state: merge " + std::to_string(i + 1) +
                                 " is not a pair of token ids: " + m.dump());
      out.emplace_back(id(m[0]), id(m[1]));
    }
    return out;
  }

  void set_model(bpe::Model m) {
    model_ = std::move(m);
    special_ids_.clear(), extra_specials_.clear();
    for (const auto& s : specials_) {
      int64_t id = model_->find(s);  // GPT-2's <|endoftext|> is in its vocabulary (50256)
      if (id < 0 || s.rfind("<|", 0) != 0) {
        id = model_->size() + static_cast<int64_t>(extra_specials_.size());
        extra_specials_.push_back(s);
      }
      special_ids_.push_back(id);
    }
  }
  int64_t marker(bool bos) const {
    int64_t k = document_marker_index(specials_, bos);
    return k < 0 || !model_ ? -1 : special_ids_[static_cast<size_t>(k)];
  }
  // The first special at or after pos (the longest when several start there): {offset, index}.
  std::pair<size_t, int64_t> next_special(const std::string& text, size_t pos) const {
    size_t best_at = text.size();
    int64_t best = -1;
    for (size_t k = 0; k < specials_.size(); ++k) {
      size_t at = text.find(specials_[k], pos);
      if (at == std::string::npos) continue;
      if (at < best_at || (at == best_at && specials_[k].size() > specials_[static_cast<size_t>(best)].size()))
        best_at = at, best = static_cast<int64_t>(k);
    }
    return {best_at, best};
  }
  // Pre-tokenizes and encodes text without specials; a piece seen before in this call is copied.
  void encode_ordinary(std::string_view text, size_t offset, std::vector<int64_t>& out) const {
    std::vector<std::string_view> pieces;
    bpe::pretokenize(text, pieces, offset);
    std::unordered_map<std::string_view, std::pair<size_t, size_t>> seen;  // piece -> ids in out
    for (auto piece : pieces) {
      auto [it, fresh] = seen.try_emplace(piece, out.size(), 0);
      if (!fresh) {
        for (size_t k = 0; k < it->second.second; ++k) out.push_back(out[it->second.first + k]);
        continue;
      }
      model_->encode_piece(piece, out);
      it->second.second = out.size() - it->second.first;
    }
  }

  std::string pretrained_;
  int64_t vocab_size_;
  std::vector<std::string> specials_;
  std::optional<bpe::Model> model_;
  std::vector<int64_t> special_ids_;         // per specials_ entry
  std::vector<std::string> extra_specials_;  // specials beyond the model's ids, in id order
};

class BpePlugin : public TokenizerPlugin {
 public:
  std::string name() const override { return "bpe"; }
  std::string version() const override { return "1.0"; }
  std::string summary() const override {
    return "byte-level BPE: GPT-2's published vocabulary (pretrained = \"gpt2\") or trained on the training split";
  }
  std::vector<ParamSpec> params() const override {
    return {string_param("pretrained", "", "\"gpt2\": OpenAI's encoder.json + vocab.bpe (data path); \"\": train",
                         {"", "gpt2"}),
            int_param("vocab_size", 1024, "tokens when trained (256 bytes + merges + specials); unused with pretrained",
                      257, 1 << 20),
            string_param("specials", "", "comma-separated strings encoded as one id each, e.g. \"<|endoftext|>\"")};
  }
  std::map<std::string, Value> tiny_config() const override { return {{"vocab_size", int64_t{300}}}; }
  void check(const Params& p) const override {
    if (!p.s("pretrained").empty()) {
      resolve_source("gpt2_encoder");
      resolve_source("gpt2_vocab");
    } else if (p.i("vocab_size") <= 256 + static_cast<int64_t>(split_specials(p.s("specials")).size())) {
      throw UserError("vocab_size " + std::to_string(p.i("vocab_size")) + " leaves no room for merges beyond the " +
                      "256 bytes and the specials");
    }
  }
  std::shared_ptr<Tokenizer> create(const Params& p) const override {
    check(p);
    return std::make_shared<BpeTokenizer>(p.s("pretrained"), p.i("vocab_size"), split_specials(p.s("specials")));
  }
};

}  // namespace

LMGRID_PLUGIN(BpePlugin)
