// tokenizer/sentencepiece: sentencepiece_shim.so, the only object linked to libsentencepiece
// (see spm_shim.hpp for why). No LibTorch and no lmgrid library here.
#include <sentencepiece_processor.h>
#include <sentencepiece_trainer.h>

#include <memory>
#include <unordered_map>

#include "spm_shim.hpp"

namespace {

using namespace lmgrid::spm;

class LineIterator : public sentencepiece::SentenceIterator {
 public:
  explicit LineIterator(const std::string& text) : text_(text) { next(); }
  bool done() const override { return start_ > text_.size() && line_.empty(); }
  void Next() override { next(); }
  const std::string& value() const override { return line_; }
  sentencepiece::util::Status status() const override { return sentencepiece::util::Status(); }

 private:
  void next() {
    line_.clear();
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

class SpProcessor : public Processor {
 public:
  sentencepiece::SentencePieceProcessor sp;
  std::string encode(const std::string& text, std::vector<int>& ids) const override {
    auto st = sp.Encode(text, &ids);
    return st.ok() ? "" : st.ToString();
  }
  std::string decode(const std::vector<int>& ids, std::string& text) const override {
    auto st = sp.Decode(ids, &text);
    return st.ok() ? "" : st.ToString();
  }
  int size() const override { return sp.GetPieceSize(); }
  int bos_id() const override { return sp.bos_id(); }
  int eos_id() const override { return sp.eos_id(); }
};

}  // namespace

extern "C" __attribute__((visibility("default"))) Processor* lmgrid_spm_load(const std::string& model,
                                                                             std::string& error) {
  auto p = std::make_unique<SpProcessor>();
  auto st = p->sp.LoadFromSerializedProto(model);
  if (!st.ok()) {
    error = st.ToString();
    return nullptr;
  }
  return p.release();
}

extern "C" __attribute__((visibility("default"))) bool lmgrid_spm_train(
    const std::vector<std::pair<std::string, std::string>>& args, const std::string& text, std::string& model,
    std::string& error) {
  std::unordered_map<std::string, std::string> kwargs(args.begin(), args.end());
  LineIterator lines(text);
  auto st = sentencepiece::SentencePieceTrainer::Train(kwargs, &lines, &model);
  if (!st.ok()) error = st.ToString();
  return st.ok();
}
