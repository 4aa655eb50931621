// tokenizer/byte: one token per byte (ids 0-255, any bytes, no UTF-8 needed), then one id per
// special string of `specials` (256, 257, ... in the order given). Nothing is learned.
#include <lmgrid/base/errors.hpp>
#include <lmgrid/plugin/plugin.hpp>
#include <lmgrid/plugin/tokenizer_specials.hpp>
#include <nlohmann/json.hpp>

#include <stdexcept>

namespace {

using namespace lmgrid;

std::vector<std::string> split_specials(const std::string& s) {
  std::vector<std::string> out;
  for (size_t start = 0; start < s.size();) {
    size_t comma = s.find(',', start);
    if (comma == std::string::npos) comma = s.size();
    if (comma > start) out.push_back(s.substr(start, comma - start));
    start = comma + 1;
  }
  return out;
}

class ByteTokenizer : public Tokenizer {
 public:
  explicit ByteTokenizer(std::vector<std::string> specials) : specials_(std::move(specials)) {}
  std::vector<int64_t> encode(const std::string& text) const override {
    std::vector<int64_t> out;
    out.reserve(text.size());
    for (size_t i = 0; i < text.size();) {
      int64_t special = special_at(text, i);
      if (special >= 0) {
        out.push_back(256 + special);
        i += specials_[static_cast<size_t>(special)].size();
      } else {
        out.push_back(static_cast<unsigned char>(text[i++]));
      }
    }
    return out;
  }
  std::string decode(const std::vector<int64_t>& ids) const override {
    std::string out;
    out.reserve(ids.size());
    for (int64_t id : ids) {
      if (id >= 0 && id < 256)
        out += static_cast<char>(id);
      else if (id >= 256 && id < vocab_size())
        out += specials_[static_cast<size_t>(id - 256)];
      else
        throw std::out_of_range("token id " + std::to_string(id) + " is outside the vocabulary (0.." +
                                std::to_string(vocab_size() - 1) + ")");
    }
    return out;
  }
  int64_t vocab_size() const override { return 256 + static_cast<int64_t>(specials_.size()); }
  int64_t bos_id() const override { return marker(true); }
  int64_t eos_id() const override { return marker(false); }
  std::string save() const override {
    return nlohmann::json{{"format", "lmgrid-byte"}, {"version", 1}, {"specials", specials_}}.dump();
  }
  void load(const std::string& state) override {
    auto j = nlohmann::json::parse(state);
    if (j.value("format", "") != "lmgrid-byte") throw std::runtime_error("not a saved lmgrid-byte tokenizer state");
    auto specials = j.at("specials").get<std::vector<std::string>>();
    check_special_strings(specials, "saved lmgrid-byte tokenizer state");
    specials_ = std::move(specials);
  }

 private:
  // Index of the longest special that starts at text[i], or -1.
  int64_t special_at(const std::string& text, size_t i) const {
    int64_t best = -1;
    for (size_t k = 0; k < specials_.size(); ++k)
      if (text.compare(i, specials_[k].size(), specials_[k]) == 0 &&
          (best < 0 || specials_[k].size() > specials_[static_cast<size_t>(best)].size()))
        best = static_cast<int64_t>(k);
    return best;
  }
  int64_t marker(bool bos) const {
    int64_t k = document_marker_index(specials_, bos);
    return k < 0 ? -1 : 256 + k;
  }
  std::vector<std::string> specials_;
};

class BytePlugin : public TokenizerPlugin {
 public:
  std::string name() const override { return "byte"; }
  std::string version() const override { return "1.0"; }
  std::string summary() const override { return "one token per byte (256 ids), plus optional special strings"; }
  std::vector<ParamSpec> params() const override {
    return {string_param("specials", "", "comma-separated strings encoded as one id each (ids 256, 257, ...)")};
  }
  std::shared_ptr<Tokenizer> create(const Params& p) const override {
    return std::make_shared<ByteTokenizer>(split_specials(p.s("specials")));
  }
};

}  // namespace

LMGRID_PLUGIN(BytePlugin)
