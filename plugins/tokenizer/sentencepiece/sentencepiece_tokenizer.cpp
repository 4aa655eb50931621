// tokenizer/sentencepiece: Google's SentencePiece through Debian's libsentencepiece. Either trains
// a unigram or BPE model on the training split (one sentence per line, as spm_train reads a
// file) or loads an existing `.model` file (`model = PATH`, e.g. Llama-2's tokenizer.model as
// BLM uses it). `add_bos` / `add_eos` wrap every encoded text as BLM's
// SentencePieceProcessor(add_bos=True, add_eos=True) does. The saved state is the serialized
// model itself (base64), so a run decodes without the file or a re-fit.
#include <lmgrid/base/errors.hpp>
#include <lmgrid/base/util.hpp>
#include <lmgrid/data/data_source.hpp>
#include <lmgrid/plugin/plugin.hpp>
#include <nlohmann/json.hpp>
#include <sentencepiece_processor.h>
#include <sentencepiece_trainer.h>

#include <cstring>
#include <stdexcept>

namespace {

using namespace lmgrid;

const char kB64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

std::string base64(const std::string& in) {
  std::string out;
  for (size_t i = 0; i < in.size(); i += 3) {
    uint32_t v = static_cast<unsigned char>(in[i]) << 16;
    if (i + 1 < in.size()) v |= static_cast<unsigned char>(in[i + 1]) << 8;
    if (i + 2 < in.size()) v |= static_cast<unsigned char>(in[i + 2]);
    out += kB64[v >> 18 & 63], out += kB64[v >> 12 & 63];
    out += i + 1 < in.size() ? kB64[v >> 6 & 63] : '=';
    out += i + 2 < in.size() ? kB64[v & 63] : '=';
  }
  return out;
}

std::string unbase64(const std::string& in) {
  std::string out;
  uint32_t v = 0;
  int bits = 0;
  for (char c : in) {
    const char* p = c == '=' ? nullptr : std::strchr(kB64, c);
    if (!p || !*p) continue;
    v = v << 6 | static_cast<uint32_t>(p - kB64), bits += 6;
    if (bits >= 8) bits -= 8, out += static_cast<char>(v >> bits & 0xFF);
  }
  return out;
}

// Throws std::invalid_argument naming the first byte offset that is not valid UTF-8.
void check_utf8(const std::string& s) {
  for (size_t i = 0; i < s.size();) {
    unsigned char c = static_cast<unsigned char>(s[i]);
    size_t n = c < 0x80 ? 1 : c >= 0xC2 && c <= 0xDF ? 2 : c >= 0xE0 && c <= 0xEF ? 3 : c >= 0xF0 && c <= 0xF4 ? 4 : 0;
    bool ok = n > 0 && i + n <= s.size();
    uint32_t cp = n == 1 ? c : c & (0x7F >> n);
    for (size_t k = 1; ok && k < n; ++k) {
      unsigned char cc = static_cast<unsigned char>(s[i + k]);
      ok = (cc & 0xC0) == 0x80;
      cp = cp << 6 | (cc & 0x3F);
    }
    if (ok &&
        ((n == 3 && (cp < 0x800 || (cp >= 0xD800 && cp <= 0xDFFF))) || (n == 4 && (cp < 0x10000 || cp > 0x10FFFF))))
      ok = false;
    if (!ok) throw std::invalid_argument("invalid UTF-8 at byte offset " + std::to_string(i));
    i += n;
  }
}

void ok_or_throw(const sentencepiece::util::Status& st, const std::string& what) {
  if (!st.ok()) throw std::runtime_error("sentencepiece: " + what + ": " + st.ToString());
}

// The training text, one sentence per line (empty lines skipped), as spm_train reads a file.
class LineIterator : public sentencepiece::SentenceIterator {
 public:
  explicit LineIterator(const std::string& text) : text_(text) { next(); }
  bool done() const override { return start_ > text_.size(); }
  void Next() override { next(); }
  const std::string& value() const override { return line_; }
  sentencepiece::util::Status status() const override { return sentencepiece::util::Status(); }

 private:
  void next() {
    while (start_ <= text_.size()) {
      size_t end = text_.find('\n', start_);
      if (end == std::string::npos) end = text_.size();
      line_ = text_.substr(start_, end - start_);
      start_ = end + 1;
      if (!line_.empty()) return;
    }
  }
  const std::string& text_;
  size_t start_ = 0;
  std::string line_;
};

struct Options {
  std::string model, model_type, normalization;
  int64_t vocab_size;
  double character_coverage;
  bool add_bos, add_eos, byte_fallback;
};

class SentencePieceTokenizer : public Tokenizer {
 public:
  explicit SentencePieceTokenizer(Options o) : o_(std::move(o)) {
    if (!o_.model.empty()) set_model(read_file(resolve_source(o_.model)));
  }

  void fit(const std::string& text) override {
    if (!o_.model.empty()) return;  // a given model is not re-trained
    std::unordered_map<std::string, std::string> args{
        {"model_type", o_.model_type},
        {"vocab_size", std::to_string(o_.vocab_size)},
        {"character_coverage", std::to_string(o_.character_coverage)},
        {"byte_fallback", o_.byte_fallback ? "true" : "false"},
        {"normalization_rule_name", o_.normalization},
        {"num_threads", "1"},  // one thread: the same model on every machine
        {"minloglevel", "1"},  // no progress logs on stderr
    };
    LineIterator lines(text);
    std::string proto;
    auto st = sentencepiece::SentencePieceTrainer::Train(args, &lines, &proto);
    if (!st.ok()) throw std::invalid_argument("sentencepiece training failed: " + st.ToString());
    set_model(proto);
  }

  std::vector<int64_t> encode(const std::string& text) const override {
    if (!sp_) throw std::logic_error("sentencepiece tokenizer used before fit() (no model)");
    check_utf8(text);
    std::vector<int> ids;
    ok_or_throw(sp_->Encode(text, &ids), "encode");
    std::vector<int64_t> out;
    out.reserve(ids.size() + 2);
    if (o_.add_bos) out.push_back(sp_->bos_id());
    out.insert(out.end(), ids.begin(), ids.end());
    if (o_.add_eos) out.push_back(sp_->eos_id());
    return out;
  }

  std::string decode(const std::vector<int64_t>& ids) const override {
    if (!sp_) throw std::logic_error("sentencepiece tokenizer used before fit() (no model)");
    std::vector<int> v;
    for (int64_t id : ids) {
      if (id < 0 || id >= vocab_size())
        throw std::out_of_range("token id " + std::to_string(id) + " is outside the vocabulary (0.." +
                                std::to_string(vocab_size() - 1) + ")");
      v.push_back(static_cast<int>(id));
    }
    std::string text;
    ok_or_throw(sp_->Decode(v, &text), "decode");
    return text;
  }

  int64_t vocab_size() const override { return sp_ ? sp_->GetPieceSize() : 0; }

  std::string save() const override {
    return nlohmann::json{{"format", "lmgrid-sentencepiece"}, {"version", 1}, {"model", base64(proto_)}}.dump();
  }
  void load(const std::string& state) override {
    auto j = nlohmann::json::parse(state);
    if (j.value("format", "") != "lmgrid-sentencepiece" || j.value("version", 0) != 1)
      throw std::runtime_error("not a saved lmgrid-sentencepiece tokenizer state");
    set_model(unbase64(j.at("model").get<std::string>()));
  }

 private:
  void set_model(const std::string& proto) {
    auto sp = std::make_unique<sentencepiece::SentencePieceProcessor>();
    ok_or_throw(sp->LoadFromSerializedProto(proto), "loading the model");
    if (o_.add_bos && sp->bos_id() < 0) throw std::invalid_argument("add_bos: the model has no BOS piece");
    if (o_.add_eos && sp->eos_id() < 0) throw std::invalid_argument("add_eos: the model has no EOS piece");
    sp_ = std::move(sp);
    proto_ = proto;
  }
  Options o_;
  std::unique_ptr<sentencepiece::SentencePieceProcessor> sp_;
  std::string proto_;  // the serialized ModelProto (what a .model file holds)
};

class SentencePiecePlugin : public TokenizerPlugin {
 public:
  std::string name() const override { return "sentencepiece"; }
  std::string version() const override { return "1.0"; }
  std::string summary() const override {
    return "SentencePiece (libsentencepiece): unigram or BPE trained on the training split, or a .model file";
  }
  std::vector<ParamSpec> params() const override {
    return {string_param("model", "", "path of an existing .model file; \"\": train on the training split"),
            string_param("model_type", "unigram", "trained model: unigram or bpe", {"unigram", "bpe"}),
            int_param("vocab_size", 1000, "pieces when trained (with <unk>, <s>, </s>)", 8, 1 << 20),
            real_param("character_coverage", 0.9995, "share of characters the trained model covers", 0.5, 1.0),
            bool_param("byte_fallback", false, "unknown characters as <0xNN> byte pieces (Llama-2, BLM)"),
            string_param("normalization", "nmt_nfkc", "normalization rule of a trained model",
                         {"nmt_nfkc", "nfkc", "nmt_nfkc_cf", "nfkc_cf", "identity"}),
            bool_param("add_bos", false, "start every encoded text with <s> (BLM: true)"),
            bool_param("add_eos", false, "end every encoded text with </s> (BLM: true)")};
  }
  std::map<std::string, Value> tiny_config() const override { return {{"vocab_size", int64_t{100}}}; }
  void check(const Params& p) const override {
    if (!p.s("model").empty()) resolve_source(p.s("model"));
  }
  std::shared_ptr<Tokenizer> create(const Params& p) const override {
    return std::make_shared<SentencePieceTokenizer>(Options{p.s("model"), p.s("model_type"), p.s("normalization"),
                                                            p.i("vocab_size"), p.f("character_coverage"),
                                                            p.b("add_bos"), p.b("add_eos"), p.b("byte_fallback")});
  }
};

}  // namespace

LMGRID_PLUGIN(SentencePiecePlugin)
