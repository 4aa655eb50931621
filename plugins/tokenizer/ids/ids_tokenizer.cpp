// tokenizer/ids: the text is token ids already, written as decimal integers separated by
// whitespace ("12 7 4095"). For datasets that generate ids themselves (data/mqar,
// data/selective_copy, data/noisy_recall): they fit() it with their highest id, which sets the
// vocabulary to 0 .. that id (or to `vocab_size` when that is larger). decode() writes the ids
// back the same way. Anything else in the text is an error naming the word.
#include <algorithm>
#include <sstream>
#include <stdexcept>

#include <lmgrid/plugin/plugin.hpp>

namespace {

using namespace lmgrid;

std::vector<int64_t> parse_ids(const std::string& text) {
  std::vector<int64_t> out;
  std::istringstream in(text);
  for (std::string word; in >> word;) {
    size_t used = 0;
    int64_t id = -1;
    try {
      id = std::stoll(word, &used);
    } catch (const std::exception&) {
      used = 0;
    }
    if (used != word.size() || id < 0) throw std::invalid_argument("'" + word + "' is not a token id (0, 1, 2, ...)");
    out.push_back(id);
  }
  return out;
}

class IdsTokenizer : public Tokenizer {
 public:
  explicit IdsTokenizer(int64_t vocab_size) : vocab_(vocab_size) {}
  void fit(const std::string& text) override {
    for (int64_t id : parse_ids(text)) vocab_ = std::max(vocab_, id + 1);
  }
  std::vector<int64_t> encode(const std::string& text) const override {
    auto ids = parse_ids(text);
    for (int64_t id : ids)
      if (id >= vocab_)
        throw std::out_of_range("token id " + std::to_string(id) + " outside vocabulary of " + std::to_string(vocab_));
    return ids;
  }
  std::string decode(const std::vector<int64_t>& ids) const override {
    std::string out;
    for (int64_t id : ids) {
      if (id < 0 || id >= vocab_)
        throw std::out_of_range("token id " + std::to_string(id) + " outside vocabulary of " + std::to_string(vocab_));
      if (!out.empty()) out += ' ';
      out += std::to_string(id);
    }
    return out;
  }
  int64_t vocab_size() const override { return vocab_; }
  std::string save() const override { return std::to_string(vocab_); }
  void load(const std::string& state) override {
    auto v = parse_ids(state);
    if (v.size() != 1 || v[0] < 1) throw std::invalid_argument("ids tokenizer state must be one vocabulary size");
    vocab_ = v[0];
  }

 private:
  int64_t vocab_;
};

class IdsPlugin : public TokenizerPlugin {
 public:
  std::string name() const override { return "ids"; }
  std::string version() const override { return "1.0"; }
  std::string summary() const override {
    return "text is whitespace-separated token ids; for datasets that generate ids (mqar, selective_copy)";
  }
  std::vector<ParamSpec> params() const override {
    return {int_param("vocab_size", 1, "smallest vocabulary; fit() raises it to the highest id seen + 1", 1)};
  }
  std::shared_ptr<Tokenizer> create(const Params& p) const override {
    return std::make_shared<IdsTokenizer>(p.i("vocab_size"));
  }
};

}  // namespace

LMGRID_PLUGIN(IdsPlugin)
