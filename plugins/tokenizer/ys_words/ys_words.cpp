// tokenizer/ys_words: YS-71M's ("Why Snakes", erikhyrkas/snakes at 19c67af) word tokenizer as
// seed-architectures.md §3.2 describes it: fixed pieces (specials, printable ASCII, accented
// Latin-1 letters, ¿ ¡ € £), then every new word of the training text in the order first seen.
// Whitespace runs are <space> (<newline> when they hold "\n"), a capitalised word is <upper> +
// the word in lower case, an ALL-CAPS word <shout> + the word in lower case (upstream's quirk,
// fixed here: see README.md; `shout = false` keeps upstream's letter-by-letter behaviour).
// Unknown words fall back to characters; characters outside the vocabulary are dropped.
#include <lmgrid/base/errors.hpp>
#include <lmgrid/base/utf8.hpp>
#include <lmgrid/plugin/plugin.hpp>
#include <nlohmann/json.hpp>

#include <stdexcept>
#include <unordered_map>

namespace {

using namespace lmgrid;

const std::vector<std::string> kSpecials{"<upper>", "<shout>", "<start>", "<end>", "<space>", "<newline>"};
enum : int64_t { kUpper, kShout, kStart, kEnd, kSpace, kNewline };

bool is_space(char32_t c) {
  return c == ' ' || (c >= 0x09 && c <= 0x0D) || (c >= 0x1C && c <= 0x1F) || c == 0x85 || c == 0xA0 || c == 0x1680 ||
         (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 || c == 0x202F || c == 0x205F || c == 0x3000;
}
bool is_cap(char32_t c) { return c >= 'A' && c <= 'Z'; }                                // [A-Z]
bool is_low(char32_t c) { return (c >= 'a' && c <= 'z') || (c >= 0xE0 && c <= 0xFF); }  // [a-zà-ÿ]
bool is_up(char32_t c) { return is_cap(c) || (c >= 0xC0 && c <= 0xDF); }                // [A-ZÀ-ß]
bool is_digit(char32_t c) { return c >= '0' && c <= '9'; }
char32_t lower(char32_t c) { return is_cap(c) || (c >= 0xC0 && c <= 0xDE && c != 0xD7) ? c + 0x20 : c; }

// One piece of the split: a word/number/tag/symbol (text, lower-cased for words) and its marker.
struct Piece {
  int64_t marker;  // -1, kUpper, kShout, kSpace or kNewline (then text is empty)
  std::string text;
};

// YS's split: whitespace | <tag> | [A-Z][A-ZÀ-ß]+ (with shout) | [A-Z][a-zà-ÿ]* | [a-zà-ÿ]+ | \d+ | one symbol.
std::vector<Piece> split(const std::string& s, bool shout) {
  auto cps = utf8_code_points(s);
  std::vector<Piece> out;
  auto text = [&](size_t a, size_t b, bool low) {
    std::string t;
    for (size_t k = a; k < b; ++k) append_utf8(t, low ? lower(cps[k]) : cps[k]);
    return t;
  };
  for (size_t i = 0; i < cps.size();) {
    size_t j = i + 1;
    char32_t c = cps[i];
    if (is_space(c)) {
      bool nl = false;
      for (j = i; j < cps.size() && is_space(cps[j]); ++j) nl |= cps[j] == '\n';
      out.push_back({nl ? kNewline : kSpace, ""});
    } else if (c == '<' && (j = i + 1) < cps.size() && cps[j] >= 'a' && cps[j] <= 'z') {
      while (j < cps.size() && cps[j] >= 'a' && cps[j] <= 'z') ++j;
      if (j < cps.size() && cps[j] == '>') {
        out.push_back({-1, text(i, j + 1, false)});
        ++j;
      } else {
        out.push_back({-1, "<"}), j = i + 1;
      }
    } else if (is_cap(c) && shout && i + 1 < cps.size() && is_up(cps[i + 1])) {
      while (j < cps.size() && is_up(cps[j])) ++j;
      out.push_back({kShout, text(i, j, true)});
    } else if (is_cap(c)) {
      while (j < cps.size() && is_low(cps[j])) ++j;
      out.push_back({kUpper, text(i, j, true)});
    } else if (is_low(c)) {
      while (j < cps.size() && is_low(cps[j])) ++j;
      out.push_back({-1, text(i, j, false)});
    } else if (is_digit(c)) {
      while (j < cps.size() && is_digit(cps[j])) ++j;
      out.push_back({-1, text(i, j, false)});
    } else {
      out.push_back({-1, text(i, j, false)});
    }
    i = j;
  }
  return out;
}

// The fixed pieces, in YS's order (duplicates kept once).
std::vector<std::string> base_vocab() {
  std::vector<std::string> v = kSpecials;
  v.push_back("_");
  for (char c = 32; c <= 126; ++c)
    if (c != '_') v.emplace_back(1, c);
  for (char32_t c = 0xE0; c <= 0xFF; ++c) {  // à..ÿ and their upper-case forms
    if (c == 0xF7) continue;                 // ÷ is not a letter
    std::string lo;
    append_utf8(lo, c);
    v.push_back(lo);
    if (c != 0xFF) {
      std::string up;
      append_utf8(up, c - 0x20);
      v.push_back(up);
    }
  }
  for (char32_t c : {U'¿', U'¡', U'€', U'£'}) {
    std::string t;
    append_utf8(t, c);
    v.push_back(t);
  }
  return v;
}

class YsWordsTokenizer : public Tokenizer {
 public:
  explicit YsWordsTokenizer(bool shout) : shout_(shout) { set_words({}); }

  void fit(const std::string& text) override {
    std::vector<std::string> words;
    std::unordered_map<std::string, bool> seen;
    for (const auto& v : base_vocab()) seen[v] = true;
    for (const auto& p : split(text, shout_))
      if (!p.text.empty() && !seen[p.text]) seen[p.text] = true, words.push_back(p.text);
    set_words(std::move(words));
  }

  std::vector<int64_t> encode(const std::string& text) const override {
    std::vector<int64_t> out;
    for (const auto& p : split(text, shout_)) {
      if (p.marker >= 0) out.push_back(p.marker);
      if (p.text.empty()) continue;
      auto it = index_.find(p.text);
      if (it != index_.end()) {
        out.push_back(it->second);
        continue;
      }
      for (char32_t c : utf8_code_points(p.text)) {  // unknown word: its characters; unknown characters dropped
        std::string ch;
        append_utf8(ch, c);
        auto ct = index_.find(ch);
        if (ct != index_.end()) out.push_back(ct->second);
      }
    }
    return out;
  }

  std::string decode(const std::vector<int64_t>& ids) const override {
    std::string out;
    int64_t pending = -1;  // <upper> or <shout> waiting for its word
    for (int64_t id : ids) {
      if (id < 0 || id >= vocab_size())
        throw std::out_of_range("token id " + std::to_string(id) + " is outside the vocabulary (0.." +
                                std::to_string(vocab_size() - 1) + ")");
      if (id == kUpper || id == kShout) {
        pending = id;
      } else if (id == kSpace || id == kNewline) {
        out += id == kSpace ? " " : "\n";
      } else if (id != kStart && id != kEnd) {
        auto cps = utf8_code_points(vocab_[static_cast<size_t>(id)]);
        for (size_t k = 0; k < cps.size(); ++k) {
          char32_t c = cps[k];
          bool up = pending == kShout || (pending == kUpper && k == 0);
          if (up && ((c >= 'a' && c <= 'z') || (c >= 0xE0 && c <= 0xFE && c != 0xF7))) c -= 0x20;
          append_utf8(out, c);
        }
        pending = -1;
      }
    }
    return out;
  }

  int64_t vocab_size() const override { return static_cast<int64_t>(vocab_.size()); }
  // YS's <start> and <end> pieces (ids 2 and 3: the fixed pieces come first).
  int64_t bos_id() const override { return vocab_.empty() ? -1 : 2; }
  int64_t eos_id() const override { return vocab_.empty() ? -1 : 3; }
  std::string save() const override {
    return nlohmann::json{{"format", "lmgrid-ys_words"}, {"version", 1}, {"words", words_}}.dump();
  }
  void load(const std::string& state) override {
    auto j = nlohmann::json::parse(state);
    if (j.value("format", "") != "lmgrid-ys_words") throw std::runtime_error("not a saved lmgrid-ys_words state");
    set_words(j.at("words").get<std::vector<std::string>>());
  }

 private:
  void set_words(std::vector<std::string> words) {
    words_ = std::move(words);
    vocab_ = base_vocab();
    vocab_.insert(vocab_.end(), words_.begin(), words_.end());
    index_.clear();
    for (size_t i = 0; i < vocab_.size(); ++i) index_.emplace(vocab_[i], static_cast<int64_t>(i));
  }
  bool shout_;
  std::vector<std::string> words_, vocab_;  // learned words; the whole vocabulary
  std::unordered_map<std::string, int64_t> index_;
};

class YsWordsPlugin : public TokenizerPlugin {
 public:
  std::string name() const override { return "ys_words"; }
  std::string version() const override { return "1.0"; }
  std::string summary() const override {
    return "YS-71M's word tokenizer: <upper>/<shout>/<space>/<newline> markers, words in the order first seen";
  }
  std::vector<ParamSpec> params() const override {
    return {
        bool_param("shout", true, "ALL-CAPS words as <shout> + word (the fix); false: upstream's <upper> per letter")};
  }
  std::shared_ptr<Tokenizer> create(const Params& p) const override {
    return std::make_shared<YsWordsTokenizer>(p.b("shout"));
  }
};

}  // namespace

LMGRID_PLUGIN(YsWordsPlugin)
