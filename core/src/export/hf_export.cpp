// `lmgrid export` (see lmgrid/export/hf_export.hpp). Letters: V vocabulary, Vp padded, C width,
// H heads, Hkv key/value heads, D head dim, F hidden width.
#include "lmgrid/export/hf_export.hpp"

#include <unistd.h>

#include <map>
#include <random>
#include <set>

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <nlohmann/json.hpp>
#include <torch/torch.h>

#include "lmgrid/base/errors.hpp"
#include "lmgrid/base/util.hpp"
#include "lmgrid/config/run_config.hpp"
#include "lmgrid/data/data_source.hpp"
#include "lmgrid/store/safetensors.hpp"
#include "lmgrid/store/store.hpp"
#include "lmgrid/train/checkpoint.hpp"
#include "lmgrid/train/trainer.hpp"

namespace lmgrid {

namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;
using Named = std::vector<std::pair<std::string, torch::Tensor>>;

// The model's tensors by name; take() hands each out once and finish() refuses leftovers, so a
// mapping never silently drops or invents a tensor.
class Tensors {
 public:
  Tensors(torch::nn::Module& m, std::string arch) : arch_(std::move(arch)) {
    for (const auto& p : m.named_parameters(true)) map_[p.key()] = p.value().detach();
    for (const auto& b : m.named_buffers(true)) map_[b.key()] = b.value().detach();
  }
  bool has(const std::string& name) const { return map_.count(name) > 0; }
  torch::Tensor take(const std::string& name, const std::vector<int64_t>& shape) {
    auto it = map_.find(name);
    if (it == map_.end()) throw unknown(fmt::format("has no tensor '{}'", name));
    torch::Tensor t = it->second;
    if (t.sizes().vec() != shape)
      throw unknown(fmt::format("tensor '{}' has shape ({}), the mapping expects ({})", name,
                                fmt::join(t.sizes().vec(), ", "), fmt::join(shape, ", ")));
    map_.erase(it);
    return t;
  }
  void finish() const {
    if (map_.empty()) return;
    std::string names;
    for (const auto& [k, v] : map_) names += (names.empty() ? "" : ", ") + k;
    throw unknown("has tensors the mapping does not know: " + names);
  }

 private:
  UserError unknown(const std::string& what) const {
    return UserError(
        fmt::format("the hf export of arch/{}: the model {} (a newer plugin?); --format raw exports "
                    "its tensors as they are",
                    arch_, what));
  }
  std::string arch_;
  std::map<std::string, torch::Tensor> map_;
};

// Refuses a model config with keys the mapping was not written for.
void check_known_keys(const std::string& arch, const RunConfig& cfg, const std::set<std::string>& known) {
  for (const auto& [key, value] : cfg.section("model"))
    if (!known.count(key))
      throw UserError(
          fmt::format("the hf export of arch/{} does not know the model key '{}' (a newer plugin?); "
                      "--format raw exports the tensors as they are",
                      arch, key));
}

json model_params_json(const RunConfig& cfg) {
  json all = json::parse(cfg.canonical_json()), out = json::object();
  for (auto& [k, v] : all.items())
    if (k.rfind("model.", 0) == 0 && k != "model.plugin") out[k.substr(6)] = v;
  return out;
}

// (rows, C) -> the first V rows: padded vocabulary rows are never scored (CausalLM cuts them).
torch::Tensor vocab_rows(const torch::Tensor& t, int64_t V) { return t.narrow(0, 0, V); }

struct Mapped {
  Named tensors;
  json config;
  std::vector<std::string> notes;
};

Mapped map_gpt(const RunConfig& cfg, Model& model, int64_t V) {
  check_known_keys("gpt", cfg, {"n_layer", "n_head", "d_model", "dropout", "bias", "mlp", "block_size", "vocab_size"});
  Params p = cfg.section_params("model");
  if (!p.b("mlp"))
    throw UserError(
        "the hf export of arch/gpt: mlp = false (attention-only blocks) has no GPT-2 equivalent; "
        "--format raw exports the tensors as they are");
  const int64_t L = p.i("n_layer"), H = p.i("n_head"), C = p.i("d_model"), T = model.max_context();
  const bool bias = p.b("bias");
  Tensors t(model, "gpt");
  const int64_t Vp = p.i("vocab_size") > 0 ? p.i("vocab_size") : V;
  Mapped m;
  auto& out = m.tensors;
  // HF's GPT-2 always has biases: a bias = false run's are zeros.
  auto bias_of = [&](const std::string& name, int64_t n) {
    return bias ? t.take(name, {n}) : torch::zeros({n}, model.parameters().front().options());
  };
  auto conv1d = [&](const std::string& lm, const std::string& hf, int64_t in, int64_t outd) {
    out.emplace_back(hf + ".weight", t.take(lm + ".weight", {outd, in}).t().contiguous());  // Conv1D: (in, out)
    out.emplace_back(hf + ".bias", bias_of(lm + ".bias", outd));
  };
  auto norm = [&](const std::string& lm, const std::string& hf) {
    out.emplace_back(hf + ".weight", t.take(lm + ".weight", {C}));
    out.emplace_back(hf + ".bias", bias_of(lm + ".bias", C));
  };
  out.emplace_back("transformer.wte.weight", vocab_rows(t.take("wte.weight", {Vp, C}), V));
  out.emplace_back("transformer.wpe.weight", t.take("wpe.weight", {T, C}));
  for (int64_t i = 0; i < L; ++i) {
    const std::string lm = fmt::format("h.{}.", i), hf = fmt::format("transformer.h.{}.", i);
    norm(lm + "ln_1", hf + "ln_1");
    conv1d(lm + "attn.c_attn", hf + "attn.c_attn", C, 3 * C);  // rows q|k|v, HF splits its columns the same way
    conv1d(lm + "attn.c_proj", hf + "attn.c_proj", C, C);
    norm(lm + "ln_2", hf + "ln_2");
    conv1d(lm + "mlp.c_fc", hf + "mlp.c_fc", C, 4 * C);
    conv1d(lm + "mlp.c_proj", hf + "mlp.c_proj", 4 * C, C);
  }
  norm("ln_f", "transformer.ln_f");
  t.finish();
  const double drop = p.f("dropout");
  m.config = {{"architectures", {"GPT2LMHeadModel"}},
              {"model_type", "gpt2"},
              {"vocab_size", V},
              {"n_positions", T},
              {"n_ctx", T},
              {"n_embd", C},
              {"n_layer", L},
              {"n_head", H},
              {"n_inner", nullptr},
              {"activation_function", "gelu"},  // torch's exact (erf) GELU, as lmgrid_nn's MLP
              {"layer_norm_epsilon", 1e-5},
              {"resid_pdrop", drop},
              {"embd_pdrop", drop},
              {"attn_pdrop", drop},
              {"initializer_range", 0.02},
              {"scale_attn_weights", true},  // softmax(q k^T / sqrt(D)), as lmgrid
              {"scale_attn_by_inverse_layer_idx", false},
              {"reorder_and_upcast_attn", false},
              {"tie_word_embeddings", true},
              {"use_cache", true}};
  if (!bias) m.notes.push_back("bias = false: the exported biases are zeros (GPT-2 always has them)");
  return m;
}

Mapped map_llama(const RunConfig& cfg, Model& model, int64_t V) {
  check_known_keys("llama", cfg,
                   {"n_layer", "d_model", "n_head", "n_kv_head", "mlp_hidden", "rope_base", "norm_eps", "tied_head",
                    "shared_norm", "init_std", "embedding_dropout", "attention_dropout", "residual_dropout",
                    "mlp_dropout", "mlp", "block_size", "vocab_size"});
  Params p = cfg.section_params("model");
  if (!p.b("mlp"))
    throw UserError(
        "the hf export of arch/llama: mlp = false (attention-only blocks) has no Llama equivalent; "
        "--format raw exports the tensors as they are");
  const int64_t L = p.i("n_layer"), C = p.i("d_model"), H = p.i("n_head");
  const int64_t Hkv = p.i("n_kv_head") ? p.i("n_kv_head") : H, D = C / H, T = model.max_context();
  const bool tied = p.b("tied_head"), shared = p.b("shared_norm");
  const int64_t Vp = p.i("vocab_size") > 0 ? p.i("vocab_size") : V;
  Tensors t(model, "llama");
  // The hidden width is the tensor's (mlp_hidden = 0 means the plugin's rounding rule).
  const std::string w1 = "h.0.mlp.w1.weight";
  if (!t.has(w1)) throw UserError("the hf export of arch/llama: the model has no tensor '" + w1 + "'");
  int64_t F = 0;
  for (const auto& np : model.named_parameters(true))
    if (np.key() == w1) F = np.value().size(0);
  // lmgrid rotates adjacent pairs (2i, 2i+1) of each head; transformers' rotate_half rotates
  // (i, i + D/2) with the same frequency. Reordering each head's rows to 0, 2, 4, ..., 1, 3, 5, ...
  // makes one into the other; q and k get the same order, so q.k is unchanged.
  auto rope_rows = [&](const torch::Tensor& w, int64_t heads) {
    return w.reshape({heads, D / 2, 2, C}).transpose(1, 2).reshape({heads * D, C}).contiguous();
  };
  Mapped m;
  auto& out = m.tensors;
  out.emplace_back("model.embed_tokens.weight", vocab_rows(t.take("wte.weight", {Vp, C}), V));
  for (int64_t i = 0; i < L; ++i) {
    const std::string lm = fmt::format("h.{}.", i), hf = fmt::format("model.layers.{}.", i);
    if (shared) {
      torch::Tensor g = t.take(lm + "norm.weight", {C});
      out.emplace_back(hf + "input_layernorm.weight", g);
      out.emplace_back(hf + "post_attention_layernorm.weight", g.clone());
    } else {
      out.emplace_back(hf + "input_layernorm.weight", t.take(lm + "attn_norm.weight", {C}));
      out.emplace_back(hf + "post_attention_layernorm.weight", t.take(lm + "mlp_norm.weight", {C}));
    }
    out.emplace_back(hf + "self_attn.q_proj.weight", rope_rows(t.take(lm + "attn.q_proj.weight", {C, C}), H));
    out.emplace_back(hf + "self_attn.k_proj.weight", rope_rows(t.take(lm + "attn.k_proj.weight", {Hkv * D, C}), Hkv));
    out.emplace_back(hf + "self_attn.v_proj.weight", t.take(lm + "attn.v_proj.weight", {Hkv * D, C}));
    out.emplace_back(hf + "self_attn.o_proj.weight", t.take(lm + "attn.o_proj.weight", {C, C}));
    out.emplace_back(hf + "mlp.gate_proj.weight", t.take(lm + "mlp.w1.weight", {F, C}));  // silu(w1 x) * w3 x
    out.emplace_back(hf + "mlp.up_proj.weight", t.take(lm + "mlp.w3.weight", {F, C}));
    out.emplace_back(hf + "mlp.down_proj.weight", t.take(lm + "mlp.w2.weight", {C, F}));
  }
  out.emplace_back("model.norm.weight", t.take("ln_f.weight", {C}));
  if (!tied) out.emplace_back("lm_head.weight", vocab_rows(t.take("lm_head.weight", {Vp, C}), V));
  t.finish();
  const double rope = p.f("rope_base");
  m.config = {{"architectures", {"LlamaForCausalLM"}},
              {"model_type", "llama"},
              {"vocab_size", V},
              {"hidden_size", C},
              {"intermediate_size", F},
              {"num_hidden_layers", L},
              {"num_attention_heads", H},
              {"num_key_value_heads", Hkv},
              {"head_dim", D},
              {"hidden_act", "silu"},
              {"max_position_embeddings", T},
              {"rms_norm_eps", p.f("norm_eps")},
              {"rope_theta", rope},  // transformers 4.x; 5.x reads rope_parameters
              {"rope_parameters", {{"rope_type", "default"}, {"rope_theta", rope}}},
              {"rope_scaling", nullptr},
              {"attention_bias", false},
              {"mlp_bias", false},
              {"attention_dropout", p.f("attention_dropout")},
              {"initializer_range", p.f("init_std")},
              {"pretraining_tp", 1},
              {"tie_word_embeddings", tied},
              {"use_cache", true}};
  for (const char* k : {"embedding_dropout", "residual_dropout", "mlp_dropout"})
    if (p.f(k) > 0)
      m.notes.push_back(
          fmt::format("{} = {} is training-only and LlamaForCausalLM has no such dropout: evaluation "
                      "is unchanged, fine-tuning in transformers would not drop there",
                      k, p.f(k)));
  return m;
}

Mapped map_raw(Model& model) {
  Mapped m;
  for (const auto& p : model.named_parameters(true)) m.tensors.emplace_back(p.key(), p.value().detach());
  for (const auto& b : model.named_buffers(true)) m.tensors.emplace_back(b.key(), b.value().detach());
  return m;
}

safetensors::DType st_dtype(const torch::Tensor& t) {
  switch (t.scalar_type()) {
    case torch::kFloat32: return safetensors::DType::F32;
    case torch::kFloat64: return safetensors::DType::F64;
    case torch::kFloat16: return safetensors::DType::F16;
    case torch::kBFloat16: return safetensors::DType::BF16;
    case torch::kInt64: return safetensors::DType::I64;
    case torch::kInt32: return safetensors::DType::I32;
    case torch::kInt16: return safetensors::DType::I16;
    case torch::kInt8: return safetensors::DType::I8;
    case torch::kUInt8: return safetensors::DType::U8;
    case torch::kBool: return safetensors::DType::BOOL;
    default:
      throw std::runtime_error(std::string("export: no safetensors dtype for ") + c10::toString(t.scalar_type()));
  }
}

// Writes named tensors (contiguous CPU copies) as one safetensors file.
void write_tensors(const fs::path& file, const Named& named, const std::map<std::string, std::string>& metadata) {
  std::vector<torch::Tensor> keep;
  std::vector<safetensors::TensorRef> refs;
  for (const auto& [name, t0] : named) {
    torch::Tensor t = t0.to(torch::kCPU).contiguous();
    keep.push_back(t);
    refs.push_back({name, st_dtype(t), t.sizes().vec(), t.data_ptr(), static_cast<size_t>(t.nbytes())});
  }
  safetensors::write(file, refs, metadata);
}

json tensor_table(const Named& named) {
  json j = json::object();
  for (const auto& [name, t] : named)
    j[name] = {{"dtype", safetensors::dtype_name(st_dtype(t))}, {"shape", t.sizes().vec()}};
  return j;
}

// GPT-2's byte -> code point map (printable Latin-1 as itself, the other 68 bytes from U+0100 on),
// as UTF-8 strings: vocab.json and merges.txt spell byte-level tokens in this alphabet.
const std::vector<std::string>& byte_alphabet() {
  static const std::vector<std::string> map = [] {
    std::vector<std::string> m(256);
    int extra = 0;
    for (int b = 0; b < 256; ++b) {
      bool printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
      uint32_t cp = printable ? static_cast<uint32_t>(b) : static_cast<uint32_t>(256 + extra++);
      std::string s;
      if (cp < 0x80) {
        s += static_cast<char>(cp);
      } else {
        s += static_cast<char>(0xC0 | (cp >> 6));
        s += static_cast<char>(0x80 | (cp & 0x3F));
      }
      m[b] = s;
    }
    return m;
  }();
  return map;
}
std::string to_alphabet(const std::string& bytes) {
  std::string s;
  for (unsigned char c : bytes) s += byte_alphabet()[c];
  return s;
}

std::string unbase64(const std::string& in) {
  auto value = [](char c) -> int {
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    if (c == '+') return 62;
    if (c == '/') return 63;
    return -1;
  };
  std::string out;
  uint32_t acc = 0;
  int bits = 0;
  for (char c : in) {
    int v = value(c);
    if (v < 0) continue;  // '=' padding, line breaks
    acc = acc << 6 | static_cast<uint32_t>(v);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out += static_cast<char>((acc >> bits) & 0xFF);
    }
  }
  return out;
}

json added_token(const std::string& content) {
  return {{"content", content},  {"lstrip", false},      {"rstrip", false},
          {"normalized", false}, {"single_word", false}, {"special", true}};
}

// The document markers (bos, eos; -1 for none): the tokenizer's own, or, where it reports none,
// the convention plugin.hpp sets for string specials (document_marker_index) applied to a bpe
// state's specials.
std::pair<int64_t, int64_t> markers(const RunConfig& cfg, const Tokenizer& tok, const std::string& state) {
  int64_t bos = tok.bos_id(), eos = tok.eos_id();
  if (bos < 0 && eos < 0 && cfg.plugin("tokenizer") == "bpe") {
    auto specials = json::parse(state).at("specials").get<std::vector<std::string>>();
    auto id_of = [&](int64_t k) -> int64_t {
      if (k < 0) return -1;
      auto ids = tok.encode(specials[static_cast<size_t>(k)]);
      return ids.size() == 1 ? ids[0] : -1;
    };
    bos = id_of(document_marker_index(specials, true)), eos = id_of(document_marker_index(specials, false));
  }
  return {bos, eos};
}

struct TokenizerFiles {
  std::map<std::string, std::string> files;  // name -> contents
  std::vector<std::string> notes;
};

// Tokenizer files for bpe and sentencepiece runs; nothing for the others.
TokenizerFiles tokenizer_files(const RunConfig& cfg, Tokenizer& tok, const std::string& state, int64_t max_len) {
  TokenizerFiles r;
  const std::string plugin = cfg.plugin("tokenizer");
  const int64_t V = tok.vocab_size();
  auto marker = [&](int64_t id) -> json { return id >= 0 ? json(tok.decode({id})) : json(nullptr); };
  const auto [bos, eos] = markers(cfg, tok, state);
  if (plugin == "bpe") {
    json s = json::parse(state);
    auto specials = s.at("specials").get<std::vector<std::string>>();
    std::map<int64_t, std::string> special_ids;
    for (const auto& sp : specials) {
      auto ids = tok.encode(sp);
      if (ids.size() == 1) special_ids[ids[0]] = sp;
    }
    json cfgj = {{"tokenizer_class", "GPT2Tokenizer"},
                 {"add_prefix_space", false},
                 {"add_bos_token", false},
                 {"errors", "replace"},
                 {"model_max_length", max_len},
                 {"unk_token", nullptr},
                 {"bos_token", marker(bos)},
                 {"eos_token", marker(eos)},
                 {"pad_token", nullptr}};
    json added = json::object();
    for (const auto& [id, sp] : special_ids) added[std::to_string(id)] = added_token(sp);
    cfgj["added_tokens_decoder"] = added;
    if (s.at("pretrained").get<std::string>() == "gpt2") {
      // The published files themselves (what the plugin read and verified).
      r.files["vocab.json"] = read_file(resolve_source("gpt2_encoder"));
      r.files["merges.txt"] = read_file(resolve_source("gpt2_vocab"));
      for (const auto& [id, sp] : special_ids)
        if (id >= 50257)
          r.notes.push_back(fmt::format("special '{}' (id {}) is in tokenizer_config.json only", sp, id));
    } else {
      json vocab = json::object();
      std::map<std::string, int64_t> seen;
      for (int64_t id = 0; id < V; ++id) {
        std::string text = special_ids.count(id) ? special_ids[id] : to_alphabet(tok.decode({id}));
        if (!seen.emplace(text, id).second) {
          r.notes.push_back(
              fmt::format("no tokenizer files: ids {} and {} are the same bytes ('{}'), which "
                          "vocab.json cannot hold",
                          seen[text], id, text));
          r.files.clear();
          return r;
        }
        vocab[text] = id;
      }
      std::string merges = "#version: 0.2\n";
      for (const auto& mg : s.at("merges"))
        merges += to_alphabet(tok.decode({mg.at(0).get<int64_t>()})) + " " +
                  to_alphabet(tok.decode({mg.at(1).get<int64_t>()})) + "\n";
      r.files["vocab.json"] = vocab.dump(0) + "\n";
      r.files["merges.txt"] = merges;
    }
    r.files["tokenizer_config.json"] = cfgj.dump(2) + "\n";
  } else if (plugin == "sentencepiece") {
    json s = json::parse(state);
    r.files["tokenizer.model"] = unbase64(s.at("model").get<std::string>());
    Params tp = cfg.section_params("tokenizer");
    json cfgj = {{"tokenizer_class", "LlamaTokenizer"},
                 {"add_bos_token", tp.b("add_bos")},
                 {"add_eos_token", tp.b("add_eos")},
                 {"bos_token", "<s>"},  // SentencePiece's control pieces (lmgrid's trained models: ids 1, 2, 0)
                 {"eos_token", "</s>"},
                 {"unk_token", "<unk>"},
                 {"pad_token", nullptr},
                 {"legacy", true},  // encode the text as SentencePiece itself does
                 {"model_max_length", max_len}};
    r.files["tokenizer_config.json"] = cfgj.dump(2) + "\n";
  }
  return r;
}

std::string unique_suffix() {
  std::random_device rd;
  return fmt::format("{}-{:08x}", static_cast<long>(::getpid()), rd());
}

// Moves the finished temp folder to `out`, replacing what was there (checked by the caller).
void commit_folder(const fs::path& tmp, const fs::path& out) {
  if (!fs::exists(out)) {
    fs::rename(tmp, out);
    return;
  }
  fs::path old = out.parent_path() / ("." + out.filename().string() + ".old-" + unique_suffix());
  fs::rename(out, old);
  try {
    fs::rename(tmp, out);
  } catch (...) {
    fs::rename(old, out);
    throw;
  }
  fs::remove_all(old);
}

}  // namespace

ExportResult export_run(const ExportOptions& opt, const Registry& registry) {
  if (opt.format != "hf" && opt.format != "raw")
    throw UserError(fmt::format("unknown export format '{}' (known: hf, raw)", opt.format));
  if (opt.out.empty()) throw UserError("export: --out FOLDER is required");
  const fs::path out = fs::absolute(opt.out).lexically_normal();
  if (fs::exists(out)) {
    if (!fs::is_directory(out)) throw UserError(fmt::format("--out {} exists and is not a folder", out.string()));
    if (!fs::is_empty(out) && !opt.force)
      throw UserError(fmt::format("--out {} is not empty: pass --force to replace it", out.string()));
  }
  Store store(opt.db, true);
  auto row = store.run(opt.run_id);
  if (!row) throw UserError(fmt::format("no run with id {} in {}", opt.run_id, store.path().string()));
  auto cks = store.checkpoints(opt.run_id);
  if (cks.empty())
    throw UserError(fmt::format("run {} in {} has no checkpoint yet (status {})", opt.run_id, store.path().string(),
                                status_name(row->status)));
  const fs::path ck = cks.front().path;
  if (!fs::exists(ck))
    throw UserError(fmt::format("run {}: its newest checkpoint {} is missing on disk", opt.run_id, ck.string()));
  CheckpointMeta meta = read_checkpoint_meta(ck);
  RunConfig cfg = RunConfig::from_json(meta.config_json);
  // On the CPU, in float32 (float64 runs stay float64): what transformers loads by default.
  cfg.values["train.device"] = std::string("cpu");
  const bool f64 = cfg.values["train.dtype"] == Value(std::string("float64"));
  if (!f64) cfg.values["train.dtype"] = std::string("float32");
  RunObjects o = build_run(cfg, registry, false, meta.tokenizer_state);
  load_checkpoint(ck, *o.model, nullptr, false);
  o.model->eval();
  torch::NoGradGuard ng;

  const std::string arch = cfg.plugin("model");
  const int64_t V = o.tokenizer->vocab_size();
  ExportResult res;
  res.step = meta.step;
  Mapped m;
  if (opt.format == "hf" && arch == "gpt") {
    m = map_gpt(cfg, *o.model, V), res.layout = "GPT2LMHeadModel";
  } else if (opt.format == "hf" && arch == "llama") {
    m = map_llama(cfg, *o.model, V), res.layout = "LlamaForCausalLM";
  } else {
    m = map_raw(*o.model), res.layout = "raw";
    if (opt.format == "hf")
      res.notes.push_back(fmt::format("arch/{} has no transformers class: raw tensors and lmgrid_config.json", arch));
  }
  res.notes.insert(res.notes.end(), m.notes.begin(), m.notes.end());
  std::string arch_version, tok_version;
  for (const auto& p : o.plugins) {
    if (p.kind == "arch") arch_version = p.version;
    if (p.kind == "tokenizer") tok_version = p.version;
  }
  const json provenance = {{"run_id", opt.run_id},
                           {"step", meta.step},
                           {"arch", arch},
                           {"arch_version", arch_version},
                           {"config_hash", row->config_hash}};
  const auto [bos, eos] = markers(cfg, *o.tokenizer, meta.tokenizer_state);
  TokenizerFiles tf = tokenizer_files(cfg, *o.tokenizer, meta.tokenizer_state, o.model->max_context());
  res.notes.insert(res.notes.end(), tf.notes.begin(), tf.notes.end());

  const fs::path tmp = out.parent_path() / ("." + out.filename().string() + ".tmp-" + unique_suffix());
  fs::create_directories(out.parent_path());
  fs::create_directory(tmp);
  try {
    auto put = [&](const std::string& name, const std::string& text) {
      write_file_atomic(tmp / name, text);
      res.files.push_back(name);
    };
    write_tensors(
        tmp / "model.safetensors", m.tensors,
        {{"format", "pt"}, {"lmgrid_run", std::to_string(opt.run_id)}, {"lmgrid_step", std::to_string(meta.step)}});
    res.files.push_back("model.safetensors");
    if (res.layout == "raw") {
      json desc = {{"format", "lmgrid-raw"},
                   {"version", 1},
                   {"arch", arch},
                   {"arch_version", arch_version},
                   {"params", model_params_json(cfg)},
                   {"vocab_size", V},
                   {"max_context", o.model->max_context()},
                   {"dtype", f64 ? "float64" : "float32"},
                   {"tokenizer",
                    {{"plugin", cfg.plugin("tokenizer")},
                     {"version", tok_version},
                     {"state", meta.tokenizer_state},
                     {"bos_id", bos},
                     {"eos_id", eos}}},
                   {"run", provenance},
                   {"config", json::parse(cfg.canonical_json())},
                   {"tensors", tensor_table(m.tensors)}};
      put("lmgrid_config.json", desc.dump(2) + "\n");
    } else {
      json c = m.config;
      c["torch_dtype"] = f64 ? "float64" : "float32";
      c["bos_token_id"] = bos >= 0 ? json(bos) : json(nullptr);
      c["eos_token_id"] = eos >= 0 ? json(eos) : json(nullptr);
      c["lmgrid"] = provenance;
      put("config.json", c.dump(2) + "\n");
    }
    for (const auto& [name, text] : tf.files) put(name, text);
    if (opt.reference_text) {
      std::vector<int64_t> ids = o.tokenizer->encode(*opt.reference_text);
      const int64_t ctx = o.model->max_context();
      if (ids.empty()) throw UserError("--reference: the text encodes to no tokens");
      if (ctx > 0 && static_cast<int64_t>(ids.size()) > ctx)
        throw UserError(
            fmt::format("--reference: the text is {} tokens, more than the model's context of {}", ids.size(), ctx));
      auto input = torch::tensor(ids, torch::kLong).unsqueeze(0);                 // (1,T)
      auto logits = o.model->forward(input, nullptr).logits.to(torch::kFloat32);  // (1,T,V)
      write_tensors(tmp / "lmgrid_reference.safetensors", {{"input_ids", input}, {"logits", logits}},
                    {{"text", *opt.reference_text},
                     {"lmgrid_run", std::to_string(opt.run_id)},
                     {"lmgrid_step", std::to_string(meta.step)}});
      res.files.push_back("lmgrid_reference.safetensors");
    }
    commit_folder(tmp, out);
  } catch (...) {
    std::error_code ec;
    fs::remove_all(tmp, ec);
    throw;
  }
  return res;
}

}  // namespace lmgrid
