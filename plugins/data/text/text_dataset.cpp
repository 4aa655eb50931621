// data/text: text from a named source, a file or a folder, split into train | val (| test).
//
// join = "text" (the default, nanoGPT): the source's text as it is, encoded as one stream and
// split by fraction (first 90% of the characters train, last 10% val). join = "eos" or "none":
// the source is read as documents (lmgrid/data/documents.hpp: TinyStories stories, novels,
// chapters, articles), each encoded alone and followed by the tokenizer's EOS ("eos") or by
// nothing ("none"); the split is by whole documents. val_source takes the val split from a
// second source instead (TinyStories: train sample for training, validation sample for val).
//
// Training windows are random offsets (sampling = "random", nanoGPT) or non-overlapping windows
// shuffled every epoch (sampling = "epoch", GEM); evaluation windows are fixed and
// non-overlapping. windows = "document" keeps every window inside one document: a document
// shorter than a window is padded, and the padding is masked out of the loss.
// Deterministic in (seed, batch index): batch i draws from its own RNG stream.
#include <algorithm>
#include <cmath>
#include <numeric>
#include <random>

#include <lmgrid/base/errors.hpp>
#include <lmgrid/data/batch_rng.hpp>
#include <lmgrid/base/util.hpp>
#include <lmgrid/data/data_source.hpp>
#include <lmgrid/data/documents.hpp>
#include <lmgrid/plugin/plugin.hpp>

namespace {

using namespace lmgrid;

// One split: its tokens and where each document starts in them (one document for join = text).
struct SplitTokens {
  torch::Tensor tokens;  // int64 (n)
  std::vector<int64_t> doc_starts{0};
  int64_t size() const { return tokens.defined() ? tokens.numel() : 0; }
  int64_t doc_end(size_t d) const { return d + 1 < doc_starts.size() ? doc_starts[d + 1] : size(); }
};

// A window: tokens [start, start + targets] are read, `targets` of its seq_len targets scored.
struct Window {
  int64_t start, targets;
};

class TextDataset : public Dataset {
 public:
  TextDataset(const Params& p, const DataContext& ctx)
      : seq_len_(p.i("seq_len")),
        seed_(ctx.seed),
        epoch_mode_(p.s("sampling") == "epoch"),
        in_documents_(p.s("windows") == "document") {
    const std::string join = p.s("join"), val_source = p.s("val_source");
    const double val_fraction = val_source.empty() ? p.f("val_fraction") : 0.0, test_fraction = p.f("test_fraction");
    Tokenizer& tok = *ctx.tokenizer;
    if (join == "text") {
      std::string text = load_text(p.s("source"));
      // train | val | test, in text order: train is the first 1 - val_fraction - test_fraction
      // (nanoGPT: int(0.9 n)), test the last round(test_fraction n) characters (HF's tiny_shakespeare
      // splits: 1,003,854 / 55,770 / 55,770 with 0.05 / 0.05).
      const double n = static_cast<double>(text.size());
      auto utf8_boundary = [&](size_t cut) {
        while (cut < text.size() && (static_cast<unsigned char>(text[cut]) & 0xC0) == 0x80) ++cut;
        return cut;
      };
      size_t cut = utf8_boundary(static_cast<size_t>(n * (1.0 - val_fraction - test_fraction)));
      size_t test_cut =
          utf8_boundary(std::max(cut, text.size() - static_cast<size_t>(std::llround(n * test_fraction))));
      std::string train_text = text.substr(0, cut);
      tok.fit(train_text);
      train_.tokens = to_tensor(tok.encode(train_text));
      val_.tokens = to_tensor(tok.encode(text.substr(cut, test_cut - cut)));
      test_.tokens = to_tensor(tok.encode(text.substr(test_cut)));
      if (!val_source.empty()) val_.tokens = to_tensor(tok.encode(load_text(val_source)));
    } else {
      auto docs = load_documents(p.s("source"));
      // Whole documents, in order: train until its share of the bytes is reached, test the
      // last test_fraction of the bytes, val between.
      double total = 0;
      for (const auto& d : docs) total += static_cast<double>(d.text.size());
      size_t cut = 0, test_cut = docs.size();
      for (double seen = 0; cut < docs.size() && seen < total * (1.0 - val_fraction - test_fraction); ++cut)
        seen += static_cast<double>(docs[cut].text.size());
      for (double seen = 0;
           test_cut > cut && seen + static_cast<double>(docs[test_cut - 1].text.size()) <= total * test_fraction + 0.5;
           --test_cut)
        seen += static_cast<double>(docs[test_cut - 1].text.size());
      if (test_fraction > 0 && test_cut == docs.size() && test_cut > cut) --test_cut;  // at least one
      std::string train_text;
      for (size_t i = 0; i < cut; ++i) train_text += (i ? "\n\n" : "") + docs[i].text;
      tok.fit(train_text);
      const int64_t sep = join == "eos" ? tok.eos_id() : -1;
      if (join == "eos" && sep < 0)
        throw UserError(
            "[data] join = \"eos\" needs a tokenizer with an end-of-sequence token; this one has none "
            "(byte/bpe: add specials = \"<|endoftext|>\"; sentencepiece has </s>)");
      auto encode_docs = [&](const std::vector<Document>& all, size_t begin, size_t end) {
        SplitTokens s;
        s.doc_starts.clear();
        std::vector<int64_t> ids;
        for (size_t i = begin; i < end; ++i) {
          s.doc_starts.push_back(static_cast<int64_t>(ids.size()));
          auto piece = tok.encode(all[i].text);
          ids.insert(ids.end(), piece.begin(), piece.end());
          if (sep >= 0) ids.push_back(sep);
        }
        if (s.doc_starts.empty()) s.doc_starts.push_back(0);
        s.tokens = to_tensor(ids);
        return s;
      };
      train_ = encode_docs(docs, 0, cut);
      val_ = encode_docs(docs, cut, test_cut);
      test_ = encode_docs(docs, test_cut, docs.size());
      if (!val_source.empty()) {
        auto vdocs = load_documents(val_source);
        val_ = encode_docs(vdocs, 0, vdocs.size());
      }
      pad_ = std::max<int64_t>(sep, 0);
    }
    if (train_.size() < (in_documents_ ? 2 : seq_len_ + 1))
      throw UserError("source '" + p.s("source") + "' has too few training tokens (" + std::to_string(train_.size()) +
                      ") for seq_len " + std::to_string(seq_len_));
    if (in_documents_) {
      for (size_t d = 0; d < train_.doc_starts.size(); ++d) {
        int64_t len = train_.doc_end(d) - train_.doc_starts[d];
        if (len < 2) continue;  // nothing to predict
        train_docs_.push_back(static_cast<int64_t>(d));
        train_cum_.push_back((train_cum_.empty() ? 0 : train_cum_.back()) + std::max<int64_t>(1, len - seq_len_));
      }
      epoch_windows_ = tile(train_, seq_len_ + 1);
      if (train_cum_.empty())
        throw UserError("source '" + p.s("source") + "' has no training document of 2 or more tokens");
    }
    for (Split s : {Split::val, Split::test}) eval_windows_[static_cast<int>(s)] = eval_tiling(split_tokens(s));
  }

  Batch train_batch(int64_t index, int64_t batch_size) override {
    std::vector<Window> w(static_cast<size_t>(batch_size));
    if (epoch_mode_) {
      // Non-overlapping windows of seq_len+1 tokens, a fresh permutation every epoch.
      int64_t n_windows = in_documents_ ? static_cast<int64_t>(epoch_windows_.size()) : train_.size() / (seq_len_ + 1);
      for (int64_t b = 0; b < batch_size; ++b) {
        int64_t global = index * batch_size + b, epoch = global / n_windows, pos = global % n_windows;
        int64_t k = permutation(epoch, n_windows)[static_cast<size_t>(pos)];
        w[static_cast<size_t>(b)] =
            in_documents_ ? epoch_windows_[static_cast<size_t>(k)] : Window{k * (seq_len_ + 1), seq_len_};
      }
    } else if (in_documents_) {
      // Uniform over every window that fits in a document (a short document counts once).
      auto rng = batch_rng(seed_, index);
      std::uniform_int_distribution<int64_t> dist(0, train_cum_.back() - 1);
      for (auto& x : w) {
        int64_t u = dist(rng);
        size_t i = static_cast<size_t>(std::upper_bound(train_cum_.begin(), train_cum_.end(), u) - train_cum_.begin());
        size_t d = static_cast<size_t>(train_docs_[i]);
        int64_t offset = u - (i ? train_cum_[i - 1] : 0), begin = train_.doc_starts[d];
        x = {begin + offset, std::min(seq_len_, train_.doc_end(d) - begin - offset - 1)};
      }
    } else {
      auto rng = batch_rng(seed_, index);
      std::uniform_int_distribution<int64_t> dist(0, train_.size() - seq_len_ - 1);
      for (auto& x : w) x = {dist(rng), seq_len_};
    }
    return windows(train_, w);
  }

  int64_t eval_batch_count(Split split, int64_t batch_size) const override {
    return static_cast<int64_t>(eval_windows_[static_cast<int>(split)].size()) / batch_size;
  }

  // Batch i takes windows i, i+count, i+2*count ... so any prefix of batches spans the split.
  Batch eval_batch(Split split, int64_t index, int64_t batch_size) override {
    int64_t count = eval_batch_count(split, batch_size);
    if (index < 0 || index >= count) throw std::out_of_range("eval batch index out of range");
    const auto& all = eval_windows_[static_cast<int>(split)];
    std::vector<Window> w;
    for (int64_t b = 0; b < batch_size; ++b) w.push_back(all[static_cast<size_t>(index + b * count)]);
    return windows(split_tokens(split), w);
  }

  int64_t train_tokens() const override { return train_.size(); }

 private:
  const SplitTokens& split_tokens(Split s) const { return s == Split::train ? train_ : s == Split::val ? val_ : test_; }
  static torch::Tensor to_tensor(const std::vector<int64_t>& ids) {
    return torch::tensor(torch::ArrayRef<int64_t>(ids), torch::kLong);
  }
  // Windows of `span` tokens stepping by `span`; inside documents, each document's tail (2+
  // tokens) is one more, shorter window.
  std::vector<Window> tile(const SplitTokens& s, int64_t span) const {
    std::vector<Window> out;
    for (size_t d = 0; d < s.doc_starts.size(); ++d) {
      int64_t begin = s.doc_starts[d], end = s.doc_end(d);
      for (int64_t at = begin; at + 1 < end; at += span) out.push_back({at, std::min(seq_len_, end - at - 1)});
    }
    return out;
  }
  // Evaluation windows: seq_len targets each, stepping by seq_len (nanoGPT-style fixed windows).
  std::vector<Window> eval_tiling(const SplitTokens& s) const {
    if (in_documents_) return tile(s, seq_len_);
    std::vector<Window> out;
    int64_t n = std::max<int64_t>(0, s.size() - 1) / seq_len_;
    for (int64_t k = 0; k < n; ++k) out.push_back({k * seq_len_, seq_len_});
    return out;
  }
  Batch windows(const SplitTokens& s, const std::vector<Window>& w) const {
    const int64_t B = static_cast<int64_t>(w.size()), T = seq_len_;
    bool padded = false;
    std::vector<int64_t> starts;
    for (const auto& x : w) starts.push_back(x.start), padded |= x.targets < T;
    if (!padded) {
      auto idx = torch::tensor(torch::ArrayRef<int64_t>(starts), torch::kLong).unsqueeze(1) +
                 torch::arange(T + 1, torch::kLong).unsqueeze(0);  // (B, T+1)
      auto t = s.tokens.index_select(0, idx.flatten()).view({B, T + 1});
      return {t.narrow(1, 0, T).contiguous(), t.narrow(1, 1, T).contiguous(), {}};
    }
    auto t = torch::full({B, T + 1}, pad_, torch::kLong);
    auto mask = torch::zeros({B, T}, torch::kFloat32);
    for (int64_t b = 0; b < B; ++b) {
      const auto& x = w[static_cast<size_t>(b)];
      t[b].narrow(0, 0, x.targets + 1).copy_(s.tokens.narrow(0, x.start, x.targets + 1));
      mask[b].narrow(0, 0, x.targets).fill_(1.0f);
    }
    return {t.narrow(1, 0, T).contiguous(), t.narrow(1, 1, T).contiguous(), mask};
  }
  const std::vector<int64_t>& permutation(int64_t epoch, int64_t n) {
    if (epoch != perm_epoch_) {
      perm_.resize(static_cast<size_t>(n));
      std::iota(perm_.begin(), perm_.end(), 0);
      auto rng = epoch_rng(seed_, epoch);
      std::shuffle(perm_.begin(), perm_.end(), rng);
      perm_epoch_ = epoch;
    }
    return perm_;
  }

  int64_t seq_len_;
  uint64_t seed_;
  bool epoch_mode_, in_documents_;
  int64_t pad_ = 0;  // token under the masked padding of short documents
  SplitTokens train_, val_, test_;
  std::vector<int64_t> train_docs_, train_cum_;  // documents with a target; cumulative window counts
  std::vector<Window> epoch_windows_;
  std::vector<Window> eval_windows_[3];
  std::vector<int64_t> perm_;
  int64_t perm_epoch_ = -1;
};

class TextPlugin : public DataPlugin {
 public:
  std::string name() const override { return "text"; }
  std::string version() const override { return "1.1"; }
  std::string summary() const override {
    return "text of a named source, file or folder; as one stream or as documents; random or epoch windows";
  }
  std::vector<ParamSpec> params() const override {
    return {
        string_param("source", "tiny_shakespeare", "named source (see `lmgrid data list`), a file or a folder"),
        int_param("seq_len", 64, "tokens per training window (context length)", 1),
        real_param("val_fraction", 0.1, "fraction held out for validation (after train); unused with val_source", 0.0,
                   0.9),
        real_param("test_fraction", 0.0, "fraction at the very end held out as a test split, never scored in training",
                   0.0, 0.9),
        string_param("val_source", "", "a second source that is the val split (\"\": split it off by val_fraction)"),
        string_param("join", "text",
                     "text: the source's text as it is; eos / none: its documents, each followed by the "
                     "tokenizer's EOS / by nothing (splits then fall between documents)",
                     {"text", "eos", "none"}),
        string_param("windows", "any",
                     "any: windows anywhere; document: never across a document boundary (short documents padded "
                     "and masked); needs join = eos or none",
                     {"any", "document"}),
        string_param("sampling", "random",
                     "random offsets (nanoGPT) or shuffled non-overlapping windows per epoch (GEM)",
                     {"random", "epoch"}),
    };
  }
  std::map<std::string, Value> tiny_config() const override { return {{"seq_len", int64_t{16}}}; }
  void check(const Params& p) const override {
    // The trainer scores every run on the val split: without one every val/loss would be NaN.
    if (p.s("val_source").empty() && p.f("val_fraction") <= 0.0)
      throw UserError(
          "val_fraction must be above 0 (or set val_source): the trainer evaluates every run on the "
          "val split");
    if (p.s("val_source").empty() && p.f("val_fraction") + p.f("test_fraction") >= 1.0)
      throw UserError("val_fraction + test_fraction must be below 1 (got " + std::to_string(p.f("val_fraction")) +
                      " + " + std::to_string(p.f("test_fraction")) + ")");
    if (p.s("windows") == "document" && p.s("join") == "text")
      throw UserError("windows = \"document\" needs documents: set join = \"eos\" or \"none\"");
    resolve_source_files(p.s("source"));
    if (!p.s("val_source").empty()) resolve_source_files(p.s("val_source"));
  }
  int64_t seq_len(const Params& p) const override { return p.i("seq_len"); }
  std::shared_ptr<Dataset> create(const Params& p, const DataContext& ctx) const override {
    return std::make_shared<TextDataset>(p, ctx);
  }
};

}  // namespace

LMGRID_PLUGIN(TextPlugin)
