// tokenizer/sentencepiece: Google's SentencePiece through Debian's libsentencepiece. Either trains
// a unigram or BPE model on the training split (one sentence per line, as spm_train reads a
// file) or loads an existing `.model` file (`model = PATH`, e.g. Llama-2's tokenizer.model as
// BLM uses it). `add_bos` / `add_eos` wrap every encoded text as BLM's
// SentencePieceProcessor(add_bos=True, add_eos=True) does. The saved state is the serialized
// model itself (base64), so a run decodes without the file or a re-fit.
#include <lmgrid/base/errors.hpp>
#include <lmgrid/base/utf8.hpp>
#include <lmgrid/base/util.hpp>
#include <lmgrid/data/data_source.hpp>
#include <lmgrid/plugin/plugin.hpp>
#include <dlfcn.h>
#include <nlohmann/json.hpp>

#include <cstring>
#include <filesystem>
#include <stdexcept>

#include "spm_shim.hpp"

// AddressSanitizer: GCC defines __SANITIZE_ADDRESS__, clang (before 16) only __has_feature.
#if defined(__SANITIZE_ADDRESS__)
#define LMGRID_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define LMGRID_ASAN 1
#endif
#endif
#ifndef LMGRID_ASAN
#define LMGRID_ASAN 0
#endif

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

// sentencepiece_shim.so beside this plugin, opened once with RTLD_DEEPBIND (see spm_shim.hpp).
struct Shim {
  spm::LoadFn load = nullptr;
  spm::TrainFn train = nullptr;
};

// A function of this library itself: dladdr of it names the plugin's own file.
void plugin_anchor() {}

const Shim& shim() {
  static const Shim s = [] {
    Dl_info info{};
    if (!dladdr(reinterpret_cast<void*>(&plugin_anchor), &info) || !info.dli_fname)
      throw std::runtime_error("cannot find the sentencepiece plugin's own file");
    auto path = std::filesystem::path(info.dli_fname).parent_path() / "sentencepiece_shim.so";
#if LMGRID_ASAN
    // Without RTLD_DEEPBIND libsentencepiece's protobuf calls bind to LibTorch's libprotobuf and
    // crash at the first model; AddressSanitizer refuses the flag. Say so instead of crashing.
    throw std::runtime_error("the sentencepiece tokenizer cannot run in an AddressSanitizer build: " + path.string() +
                             " must be opened with RTLD_DEEPBIND, which ASan refuses (use a build without "
                             "LMGRID_SANITIZE)");
    return Shim{};
#else
    void* h = dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL | RTLD_DEEPBIND);
    if (!h) throw std::runtime_error(std::string("cannot load ") + path.string() + ": " + dlerror());
    Shim r{reinterpret_cast<spm::LoadFn>(dlsym(h, "lmgrid_spm_load")),
           reinterpret_cast<spm::TrainFn>(dlsym(h, "lmgrid_spm_train"))};
    if (!r.load || !r.train) throw std::runtime_error(path.string() + " lacks lmgrid_spm_load/lmgrid_spm_train");
    return r;  // never closed: the library outlives every model it made
#endif
  }();
  return s;
}

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
    std::vector<std::pair<std::string, std::string>> args{
        {"model_type", o_.model_type},
        {"vocab_size", std::to_string(o_.vocab_size)},
        {"character_coverage", std::to_string(o_.character_coverage)},
        {"byte_fallback", o_.byte_fallback ? "true" : "false"},
        {"normalization_rule_name", o_.normalization},
        {"hard_vocab_limit", "false"},  // vocab_size is a maximum: a small text gives a smaller model
        {"num_threads", "1"},           // one thread: the same model on every machine
        {"minloglevel", "1"},           // no progress logs on stderr
    };
    std::string proto, error;
    if (!shim().train(args, text, proto, error)) throw UserError("sentencepiece training failed: " + error);
    set_model(proto);
  }

  std::vector<int64_t> encode(const std::string& text) const override {
    if (!sp_) throw std::logic_error("sentencepiece tokenizer used before fit() (no model)");
    check_utf8(text);
    std::vector<int> ids;
    if (auto e = sp_->encode(text, ids); !e.empty()) throw std::runtime_error("sentencepiece: encode: " + e);
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
    if (auto e = sp_->decode(v, text); !e.empty()) throw std::runtime_error("sentencepiece: decode: " + e);
    return text;
  }

  int64_t vocab_size() const override { return sp_ ? sp_->size() : 0; }
  int64_t bos_id() const override { return sp_ ? sp_->bos_id() : -1; }
  int64_t eos_id() const override { return sp_ ? sp_->eos_id() : -1; }

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
    std::string error;
    std::unique_ptr<spm::Processor> sp(shim().load(proto, error));
    if (!sp) throw std::runtime_error("sentencepiece: loading the model: " + error);
    if (o_.add_bos && sp->bos_id() < 0) throw std::invalid_argument("add_bos: the model has no BOS piece");
    if (o_.add_eos && sp->eos_id() < 0) throw std::invalid_argument("add_eos: the model has no EOS piece");
    sp_ = std::move(sp);
    proto_ = proto;
  }
  Options o_;
  std::unique_ptr<spm::Processor> sp_;
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
  // Small, and exact on any UTF-8 text: bytes for what training did not see, no normalization.
  std::map<std::string, Value> tiny_config() const override {
    return {{"vocab_size", int64_t{300}}, {"byte_fallback", true}, {"normalization", std::string("identity")}};
  }
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
