// tokenizer/char: one token per Unicode code point, vocabulary = the sorted distinct code points
// of the training text (nanoGPT's shakespeare_char: 65 tokens). Characters never seen in
// training are skipped when encoding (unknown = "skip") or rejected (unknown = "error").
#include <algorithm>
#include <map>
#include <set>
#include <stdexcept>

#include <lmgrid/base/errors.hpp>
#include <lmgrid/plugin/plugin.hpp>

namespace {

using namespace lmgrid;

// UTF-8 <-> code points; invalid bytes are taken as Latin-1 code points.
std::vector<uint32_t> decode_utf8(const std::string& s) {
  std::vector<uint32_t> out;
  out.reserve(s.size());
  for (size_t i = 0; i < s.size();) {
    unsigned char c = static_cast<unsigned char>(s[i]);
    int len = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 0;
    if (len == 0 || i + len > s.size()) {
      out.push_back(c);
      ++i;
      continue;
    }
    uint32_t cp = len == 1 ? c : len == 2 ? (c & 0x1F) : len == 3 ? (c & 0x0F) : (c & 0x07);
    bool ok = true;
    for (int k = 1; k < len; ++k) {
      unsigned char cc = static_cast<unsigned char>(s[i + k]);
      if ((cc >> 6) != 2) ok = false;
      cp = (cp << 6) | (cc & 0x3F);
    }
    if (!ok) {
      out.push_back(c);
      ++i;
      continue;
    }
    out.push_back(cp);
    i += len;
  }
  return out;
}

void append_utf8(std::string& out, uint32_t cp) {
  if (cp < 0x80) {
    out += static_cast<char>(cp);
  } else if (cp < 0x800) {
    out += static_cast<char>(0xC0 | (cp >> 6));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else if (cp < 0x10000) {
    out += static_cast<char>(0xE0 | (cp >> 12));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else {
    out += static_cast<char>(0xF0 | (cp >> 18));
    out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  }
}

class CharTokenizer : public Tokenizer {
 public:
  explicit CharTokenizer(bool error_on_unknown) : error_on_unknown_(error_on_unknown) {}
  void fit(const std::string& text) override {
    auto cps = decode_utf8(text);
    std::set<uint32_t> distinct(cps.begin(), cps.end());
    set_vocab({distinct.begin(), distinct.end()});
  }
  std::vector<int64_t> encode(const std::string& text) const override {
    std::vector<int64_t> out;
    auto cps = decode_utf8(text);
    out.reserve(cps.size());
    for (uint32_t cp : cps) {
      auto it = index_.find(cp);
      if (it != index_.end()) {
        out.push_back(it->second);
      } else if (error_on_unknown_) {
        std::string ch;
        append_utf8(ch, cp);
        throw std::invalid_argument("character '" + ch + "' (U+" + std::to_string(cp) + ") is not in the vocabulary");
      }
    }
    return out;
  }
  std::string decode(const std::vector<int64_t>& ids) const override {
    std::string out;
    for (int64_t id : ids) {
      if (id < 0 || id >= static_cast<int64_t>(vocab_.size()))
        throw std::out_of_range("token id " + std::to_string(id) + " outside vocabulary of " +
                                std::to_string(vocab_.size()));
      append_utf8(out, vocab_[static_cast<size_t>(id)]);
    }
    return out;
  }
  int64_t vocab_size() const override { return static_cast<int64_t>(vocab_.size()); }
  std::string save() const override {
    std::string out;
    for (uint32_t cp : vocab_) append_utf8(out, cp);
    return out;
  }
  void load(const std::string& state) override { set_vocab(decode_utf8(state)); }

 private:
  void set_vocab(std::vector<uint32_t> v) {
    vocab_ = std::move(v);
    index_.clear();
    for (size_t i = 0; i < vocab_.size(); ++i) index_[vocab_[i]] = static_cast<int64_t>(i);
  }
  bool error_on_unknown_;
  std::vector<uint32_t> vocab_;
  std::map<uint32_t, int64_t> index_;
};

class CharPlugin : public TokenizerPlugin {
 public:
  std::string name() const override { return "char"; }
  std::string version() const override { return "1.0"; }
  std::string summary() const override { return "one token per character; vocabulary learned from the training text"; }
  std::vector<ParamSpec> params() const override {
    return {string_param("unknown", "skip", "characters not seen in training: skip them or raise an error",
                         {"skip", "error"})};
  }
  std::shared_ptr<Tokenizer> create(const Params& p) const override {
    return std::make_shared<CharTokenizer>(p.s("unknown") == "error");
  }
};

}  // namespace

LMGRID_PLUGIN(CharPlugin)
