// tokenizer/words: a word-level tokenizer for bAbI-like text (data/babi). The text is lower-cased
// (ASCII letters; lowercase = false keeps it as it is) and split into words, single punctuation
// marks and newlines; every other whitespace only separates. A word is a run of ASCII letters and
// digits and of non-ASCII bytes (UTF-8 letters stay whole), with an apostrophe or hyphen inside it
// ("don't", "well-known"). The vocabulary is learned by fit(): the specials <pad>, <unk>, <eos>
// (ids 0, 1, 2) first, then every piece of the training text by descending count, ties in byte
// order, those seen fewer than min_count times dropped, at most max_vocab entries in all. A piece
// outside the vocabulary encodes as <unk>; the three specials written in a text encode as
// themselves. decode joins the pieces with single spaces, none before a punctuation mark and none
// around a newline, so decode(encode(s)) == s for text written that way (bAbI's lines).
#include <algorithm>
#include <map>
#include <stdexcept>
#include <unordered_map>

#include <lmgrid/base/errors.hpp>
#include <lmgrid/base/utf8.hpp>
#include <lmgrid/plugin/plugin.hpp>
#include <nlohmann/json.hpp>

namespace {

using namespace lmgrid;

const std::vector<std::string> kSpecials{"<pad>", "<unk>", "<eos>"};
constexpr int64_t kUnk = 1, kEos = 2;
constexpr const char* kFormat = "lmgrid-words-1";

bool word_byte(unsigned char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c >= 0x80;
}
bool space_byte(char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\f' || c == '\v'; }
// A piece that gets no space before it in decode: one ASCII mark that is not a letter or digit.
bool is_mark(const std::string& p) {
  return p.size() == 1 && !word_byte(static_cast<unsigned char>(p[0])) && p[0] != '\n' && !space_byte(p[0]);
}

// The pieces of `text`, in order (words lower-cased when asked).
std::vector<std::string> pieces(const std::string& text, bool lowercase) {
  std::vector<std::string> out;
  const size_t n = text.size();
  for (size_t i = 0; i < n;) {
    const auto c = static_cast<unsigned char>(text[i]);
    if (space_byte(text[i])) {
      ++i;
    } else if (c == '\n') {
      out.emplace_back("\n");
      ++i;
    } else if (word_byte(c)) {
      size_t j = i;
      for (;;) {
        while (j < n && word_byte(static_cast<unsigned char>(text[j]))) ++j;
        // An apostrophe or hyphen between two word bytes joins them.
        if (j + 1 < n && (text[j] == '\'' || text[j] == '-') && word_byte(static_cast<unsigned char>(text[j + 1])))
          ++j;
        else
          break;
      }
      std::string w = text.substr(i, j - i);
      if (lowercase)
        for (auto& ch : w)
          if (ch >= 'A' && ch <= 'Z') ch = static_cast<char>(ch - 'A' + 'a');
      out.push_back(std::move(w));
      i = j;
    } else {
      bool special = false;
      if (c == '<')
        for (const auto& s : kSpecials)
          if (text.compare(i, s.size(), s) == 0) {
            out.push_back(s);
            i += s.size();
            special = true;
            break;
          }
      if (!special) out.emplace_back(1, text[i++]);
    }
  }
  return out;
}

class WordsTokenizer : public Tokenizer {
 public:
  WordsTokenizer(int64_t max_vocab, int64_t min_count, bool lowercase)
      : max_vocab_(max_vocab), min_count_(min_count), lowercase_(lowercase) {
    set_vocab(kSpecials);
  }
  void fit(const std::string& text) override {
    check_utf8(text);  // the vocabulary goes into JSON: std::invalid_argument naming the byte offset
    std::unordered_map<std::string, int64_t> count;
    for (auto& p : pieces(text, lowercase_)) ++count[p];
    std::vector<std::pair<std::string, int64_t>> ranked;
    for (auto& [w, k] : count)
      if (k >= min_count_ && std::find(kSpecials.begin(), kSpecials.end(), w) == kSpecials.end())
        ranked.emplace_back(w, k);
    std::sort(ranked.begin(), ranked.end(), [](const auto& a, const auto& b) {
      return a.second != b.second ? a.second > b.second : a.first < b.first;
    });
    std::vector<std::string> vocab = kSpecials;
    for (auto& [w, k] : ranked) {
      if (max_vocab_ > 0 && static_cast<int64_t>(vocab.size()) >= max_vocab_) break;
      vocab.push_back(w);
    }
    set_vocab(std::move(vocab));
  }
  std::vector<int64_t> encode(const std::string& text) const override {
    std::vector<int64_t> out;
    for (const auto& p : pieces(text, lowercase_)) {
      auto it = index_.find(p);
      out.push_back(it == index_.end() ? kUnk : it->second);
    }
    return out;
  }
  std::string decode(const std::vector<int64_t>& ids) const override {
    std::string out;
    const std::string* prev = nullptr;
    for (int64_t id : ids) {
      if (id < 0 || id >= vocab_size())
        throw std::out_of_range("token id " + std::to_string(id) + " outside vocabulary of " +
                                std::to_string(vocab_size()));
      const std::string& p = vocab_[static_cast<size_t>(id)];
      if (prev && *prev != "\n" && p != "\n" && !is_mark(p)) out += ' ';
      out += p;
      prev = &p;
    }
    return out;
  }
  int64_t vocab_size() const override { return static_cast<int64_t>(vocab_.size()); }
  int64_t eos_id() const override { return kEos; }
  std::string save() const override {
    nlohmann::json j = {{"format", kFormat}, {"lowercase", lowercase_}, {"vocab", vocab_}};
    return j.dump();
  }
  void load(const std::string& state) override {
    nlohmann::json j;
    try {
      j = nlohmann::json::parse(state);
    } catch (const nlohmann::json::exception& e) {
      throw std::invalid_argument(std::string("words tokenizer state is not JSON: ") + e.what());
    }
    if (!j.is_object() || j.value("format", "") != kFormat || !j.contains("vocab") || !j["vocab"].is_array() ||
        !j.contains("lowercase") || !j["lowercase"].is_boolean())
      throw std::invalid_argument(std::string("words tokenizer state: expected {\"format\": \"") + kFormat +
                                  "\", \"lowercase\": bool, \"vocab\": [...]}");
    std::vector<std::string> vocab;
    for (const auto& w : j["vocab"]) {
      if (!w.is_string()) throw std::invalid_argument("words tokenizer state: a vocabulary entry is not a string");
      vocab.push_back(w.get<std::string>());
    }
    if (vocab.size() < kSpecials.size() || !std::equal(kSpecials.begin(), kSpecials.end(), vocab.begin()))
      throw std::invalid_argument("words tokenizer state: the vocabulary must start with <pad>, <unk>, <eos>");
    lowercase_ = j["lowercase"].get<bool>();
    set_vocab(std::move(vocab));
  }

 private:
  void set_vocab(std::vector<std::string> v) {
    vocab_ = std::move(v);
    index_.clear();
    for (size_t i = 0; i < vocab_.size(); ++i)
      if (!index_.emplace(vocab_[i], static_cast<int64_t>(i)).second)
        throw std::invalid_argument("words tokenizer state: '" + vocab_[i] + "' appears twice");
  }
  int64_t max_vocab_, min_count_;
  bool lowercase_;
  std::vector<std::string> vocab_;
  std::unordered_map<std::string, int64_t> index_;
};

class WordsPlugin : public TokenizerPlugin {
 public:
  std::string name() const override { return "words"; }
  std::string version() const override { return "1.0"; }
  std::string summary() const override {
    return "lower-cased words, punctuation marks and newlines; vocabulary by count from the training text (bAbI)";
  }
  std::vector<ParamSpec> params() const override {
    return {
        int_param("max_vocab", 0, "largest vocabulary, the 3 specials included (0: every piece seen)", 0),
        int_param("min_count", 1, "pieces seen fewer times in the training text are <unk>", 1),
        bool_param("lowercase", true, "lower-case ASCII letters before splitting"),
    };
  }
  // The sweep checks decode(encode(s)) == s on mixed-case text.
  std::map<std::string, Value> tiny_config() const override { return {{"lowercase", false}}; }
  void check(const Params& p) const override {
    if (p.i("max_vocab") > 0 && p.i("max_vocab") <= static_cast<int64_t>(kSpecials.size()))
      throw UserError("max_vocab = " + std::to_string(p.i("max_vocab")) +
                      " leaves no room for words: the 3 specials <pad>, <unk>, <eos> come first (0 = no limit)");
  }
  std::shared_ptr<Tokenizer> create(const Params& p) const override {
    check(p);
    return std::make_shared<WordsTokenizer>(p.i("max_vocab"), p.i("min_count"), p.b("lowercase"));
  }
};

}  // namespace

LMGRID_PLUGIN(WordsPlugin)
