// data/babi: the bAbI QA tasks 1-20 (Weston et al. 2015), jointly over the chosen tasks, one
// question per row, and a BABILong-style long-context mode (Kuratov et al. 2024) that scatters a
// story's statements through filler text. See README.md.
//
// A row is: the story's statements before the question (statements only: earlier questions and
// answers of the story are left out, as MemN2N and BABILong do), the question, the answer's
// tokens and a terminator (the tokenizer's EOS, else its encoding of "\n"), then padding. Each
// sentence, the question and the answer are encoded on their own, with a leading space (" Mary
// moved to the bathroom."), so the answer's tokens are exactly those of the answer. When a row
// does not fit seq_len + 1 tokens, whole statements are dropped from the front.
//
// Only the answer and the terminator are scored. Their positions (loss_mask) are one answer
// (answer_ids = the row's index), and the trainer counts it correct when the argmax is right at
// every one of them. That is exactly greedy decoding's exact match: greedy decoding after the
// question emits the argmax given the tokens before it; while every scored argmax is right, the
// tokens greedy has emitted equal the true ones, so by induction it writes the whole answer and
// then the terminator (and stops); at the first wrong argmax it writes a different token than the
// answer there. Scoring the terminator is what makes an answer that goes on ("milk" where "milk,
// football" follows) count as wrong, as it does when decoding.
//
// Deterministic: training rows are drawn from batch_rng(seed, batch index); evaluation rows are
// fixed (their filler from a stream of their own, independent of the seed).
#include <algorithm>
#include <cstdio>
#include <numeric>
#include <random>
#include <unordered_map>

#include <fmt/format.h>

#include <lmgrid/base/errors.hpp>
#include <lmgrid/data/batch_rng.hpp>
#include <lmgrid/data/documents.hpp>
#include <lmgrid/plugin/plugin.hpp>

#include "babi_format.hpp"

namespace {

using namespace lmgrid;
namespace bb = lmgrid::babi;

constexpr uint64_t kEvalSeed = 0xBAB1;  // the evaluation rows' filler streams
constexpr int64_t kMinRoom = 8;         // check(): tokens left after max(lengths) for question + answer
constexpr int64_t kPadTo = 64;          // batches are cut to a multiple of this (whole chunks, segments)

struct Settings {
  std::set<int> tasks;
  std::vector<int64_t> lengths;  // {0} in plain mode
  bool babilong = false;
};

Settings settings(const Params& p) {
  Settings s;
  s.tasks = bb::parse_tasks(p.s("tasks"));
  s.lengths = bb::parse_lengths(p.s("lengths"));
  s.babilong = !p.s("filler").empty();
  const int64_t longest = *std::max_element(s.lengths.begin(), s.lengths.end());
  if (!s.babilong && longest > 0)
    throw UserError(fmt::format(
        "lengths = \"{}\" asks for filler text, but filler is \"\": name a filler source (filler = \"austen\") or "
        "set lengths = \"0\"",
        p.s("lengths")));
  if (s.babilong && longest == 0)
    throw UserError(
        fmt::format("filler = \"{}\" is set but lengths = \"{}\" adds none of it: give target context "
                    "lengths in tokens (lengths = \"0,1024,2048\")",
                    p.s("filler"), p.s("lengths")));
  if (p.i("seq_len") < longest + kMinRoom)
    throw UserError(fmt::format(
        "seq_len = {} is too short for lengths = \"{}\": the question and answer come after a context of up to {} "
        "tokens, so seq_len must be at least {} + {} = {}",
        p.i("seq_len"), p.s("lengths"), longest, longest, kMinRoom, longest + kMinRoom));
  return s;
}

// The message for a task file the source lacks.
std::string missing_file(const std::string& source, int task, const bb::TaskTexts& tt) {
  std::string which = !tt.has_train ? "train" : "test";
  std::string file = (tt.name.empty() ? "qa" + std::to_string(task) + "_*" : tt.name) + "_" + which + ".txt";
  return fmt::format(
      "babi source '{}' has no {} file for task {} ({}){}; choose tasks without it (tasks = \"{}\") or another "
      "source",
      source, which, task, file,
      source == "babi_en10k" ? " (this copy of en-10k lacks qa3's training file: use source = \"babi_en\" for "
                               "the 1k tasks, or the official tasks_1-20_v1-2.tar.gz as a path)"
                             : "",
      task == 1    ? "2-20"
      : task == 20 ? "1-19"
                   : fmt::format("1-{},{}-20", task - 1, task + 1));
}

// Token ids, encoded once per distinct text.
class Encoder {
 public:
  explicit Encoder(const Tokenizer& tok) : tok_(tok) {}
  const std::vector<int64_t>& operator()(const std::string& text) {
    auto it = memo_.find(text);
    if (it == memo_.end()) it = memo_.emplace(text, tok_.encode(" " + text)).first;
    return it->second;
  }

 private:
  const Tokenizer& tok_;
  std::unordered_map<std::string, std::vector<int64_t>> memo_;
};

// Sentences as token runs: sentence k is tokens[start[k], start[k+1]).
struct Runs {
  std::vector<int64_t> tokens;
  std::vector<int64_t> start{0};
  void add(const std::vector<int64_t>& ids) {
    tokens.insert(tokens.end(), ids.begin(), ids.end());
    start.push_back(static_cast<int64_t>(tokens.size()));
  }
  size_t size() const { return start.size() - 1; }
  int64_t length(size_t k) const { return start[k + 1] - start[k]; }
  std::vector<int64_t> lengths() const {
    std::vector<int64_t> out(size());
    for (size_t k = 0; k < size(); ++k) out[k] = length(k);
    return out;
  }
};

struct Item {  // one question
  int task;
  uint32_t story;       // index into stories_
  uint32_t statements;  // the story's first `statements` statements are its facts
  uint32_t qa;          // index into qa_ (question, then answer)
};

struct Row {
  std::vector<int64_t> tokens;  // context, question, answer, terminator
  int64_t answer_begin;         // index of the answer's first token
  bool truncated;
};

class BabiDataset : public Dataset {
 public:
  BabiDataset(const Params& p, const DataContext& ctx) : seq_len_(p.i("seq_len")), seed_(ctx.seed) {
    Settings st = settings(p);
    lengths_ = st.lengths;
    babilong_ = st.babilong;
    Tokenizer& tok = *ctx.tokenizer;
    const bool held_out = p.s("val") == "train";

    // Parse: per task the train file (its last 10% of stories held out when val = "train") and the test file.
    auto texts = bb::read_source(p.s("source"), st.tasks);
    struct Parsed {
      bb::TaskFile train, test;
      size_t train_stories;  // stories [0, train_stories) train, the rest val (val = "train")
    };
    std::map<int, Parsed> parsed;
    for (auto& [task, tt] : texts) {
      if (!tt.has_train || !tt.has_test) throw UserError(missing_file(p.s("source"), task, tt));
      Parsed& pr = parsed[task];
      pr.train = bb::parse_task_file(tt.train, task, tt.train_origin);
      pr.test = bb::parse_task_file(tt.test, task, tt.test_origin);
      pr.train_stories = pr.train.stories.size() - (held_out ? std::max<size_t>(1, pr.train.stories.size() / 10) : 0);
      tt.train.clear(), tt.test.clear();
    }

    // Filler: its sentences, the first 90% for training rows, the last 10% for evaluation rows.
    std::vector<std::string> filler;
    size_t filler_cut = 0;
    if (babilong_) {
      filler = bb::split_sentences(load_text(p.s("filler")));
      filler_cut = filler.size() - filler.size() / 10;
      if (filler.size() < 10)
        throw UserError(fmt::format("filler source '{}' has only {} sentences", p.s("filler"), filler.size()));
    }

    // Fit the tokenizer on the training text: each training story (statements, then its
    // questions and answers), then the training filler.
    std::string fit_text;
    for (const auto& [task, pr] : parsed) {
      size_t e = 0;
      for (size_t s = 0; s < pr.train_stories; ++s) {
        for (const auto& st_text : pr.train.stories[s].statements) fit_text += " " + st_text;
        for (; e < pr.train.examples.size() && pr.train.examples[e].story == s; ++e)
          fit_text += " " + pr.train.examples[e].question + " " + pr.train.examples[e].answer;
        fit_text += "\n";
      }
    }
    for (size_t k = 0; k < filler_cut; ++k) fit_text += (k ? " " : "") + filler[k];
    if (babilong_) fit_text += "\n";
    tok.fit(fit_text);
    fit_text.clear();

    // The terminator after every answer.
    if (tok.eos_id() >= 0)
      term_ = {tok.eos_id()};
    else
      term_ = tok.encode("\n");
    if (term_.empty())
      throw UserError(
          "the tokenizer has no end-of-sequence token and encodes \"\\n\" as nothing: data/babi ends "
          "every answer with one of them");

    // Encode: stories (statements), questions and answers, filler sentences.
    Encoder enc(tok);
    auto add_story = [&](const bb::Story& s) {
      Runs r;
      for (const auto& x : s.statements) r.add(enc(x));
      stories_.push_back(std::move(r));
      return static_cast<uint32_t>(stories_.size() - 1);
    };
    auto add_items = [&](const bb::TaskFile& tf, size_t from, size_t to, std::vector<Item>& out) {
      std::vector<uint32_t> ids;
      for (size_t s = from; s < to; ++s) ids.push_back(add_story(tf.stories[s]));
      for (const auto& ex : tf.examples) {
        if (ex.story < from || ex.story >= to) continue;
        qa_.add(enc(ex.question));
        qa_.add(enc(ex.answer));
        out.push_back({tf.task, ids[ex.story - from], static_cast<uint32_t>(ex.statements),
                       static_cast<uint32_t>(qa_.size() - 2)});
      }
    };
    for (const auto& [task, pr] : parsed) {
      add_items(pr.train, 0, pr.train_stories, train_);
      if (held_out) add_items(pr.train, pr.train_stories, pr.train.stories.size(), val_);
      add_items(pr.test, 0, pr.test.stories.size(), test_);
    }
    if (!held_out) val_ = test_;
    for (size_t k = 0; k < filler.size(); ++k) (k < filler_cut ? filler_train_ : filler_eval_).add(enc(filler[k]));
    filler_train_len_ = bb::FillerLengths(filler_train_.lengths());
    filler_eval_len_ = bb::FillerLengths(filler_eval_.lengths());

    // The question, answer and terminator must fit after the longest context.
    const int64_t longest = *std::max_element(lengths_.begin(), lengths_.end());
    int64_t room = 0;
    for (const auto* split : {&train_, &val_, &test_})
      for (const auto& it : *split) room = std::max(room, qa_tokens(it));
    if (longest + room > seq_len_ + 1)
      throw UserError(
          fmt::format("seq_len = {} is too short: the longest question, answer and terminator take {} tokens with this "
                      "tokenizer, so a context of {} tokens needs seq_len >= {}",
                      seq_len_, room, longest, longest + room - 1));
    for (const auto* f : {&filler_train_len_, &filler_eval_len_})
      if (babilong_ && f->total() < longest)
        throw UserError(fmt::format("filler '{}' has {} tokens in its {} part, fewer than lengths' {}", p.s("filler"),
                                    f->total(), f == &filler_train_len_ ? "training" : "evaluation", longest));

    // Evaluation order: the tasks in turn (each task's k-th question, then the (k+1)-th, ...), so
    // that any prefix of the evaluation batches holds every task about equally (eval_batch).
    for (int s = 0; s < 3; ++s) {
      const auto& all = items(static_cast<Split>(s));
      std::map<int, std::vector<uint32_t>> by_task;
      for (size_t i = 0; i < all.size(); ++i) by_task[all[i].task].push_back(static_cast<uint32_t>(i));
      for (size_t k = 0; eval_order_[s].size() < all.size(); ++k)
        for (const auto& [task, ids] : by_task)
          if (k < ids.size()) eval_order_[s].push_back(ids[k]);
    }

    // Rows that lose statements to seq_len (the same at every length: filler only fills the room
    // that the statements leave), reported once.
    int64_t cut_train = 0, cut_val = 0;
    for (const auto& it : train_) {
      const int64_t n = fact_tokens(it) + qa_tokens(it);
      cut_train += n > seq_len_ + 1;
      train_tokens_ += std::min(n, seq_len_ + 1) - 1;  // targets of the row at length 0
    }
    for (const auto& it : val_) cut_val += fact_tokens(it) + qa_tokens(it) > seq_len_ + 1;
    if (cut_train || cut_val)
      std::fprintf(stderr,
                   "babi: %lld of %zu training and %lld of %zu val questions have more statements than seq_len = %lld "
                   "holds; they keep the newest statements that fit\n",
                   static_cast<long long>(cut_train), train_.size(), static_cast<long long>(cut_val), val_.size(),
                   static_cast<long long>(seq_len_));
  }

  Batch train_batch(int64_t index, int64_t batch_size) override {
    auto rng = batch_rng(seed_, index);
    std::uniform_int_distribution<size_t> pick(0, train_.size() - 1), length(0, lengths_.size() - 1);
    // One length per batch (as mqar draws one setting per batch): the batch is then cut to that
    // length's rows instead of padding every row to the longest length (assemble).
    const int64_t L = lengths_[length(rng)];
    std::vector<Row> rows;
    for (int64_t b = 0; b < batch_size; ++b) {
      const Item& it = train_[pick(rng)];
      rows.push_back(build(it, L, filler_train_, filler_train_len_, rng));
    }
    return assemble(rows, {}, false);
  }

  // Blocks of batch_size questions, each block once at every length: one batch per block and length.
  int64_t eval_batch_count(Split split, int64_t batch_size) const override {
    const auto n = static_cast<int64_t>(eval_order_[static_cast<int>(split)].size());
    return n / batch_size * static_cast<int64_t>(lengths_.size());
  }

  // Batch i holds questions [b * batch_size, (b + 1) * batch_size) of the task-interleaved order,
  // b = i / L, at length i % L (L lengths): one length per batch (cut to its rows, as in
  // training), and the same questions at every length in consecutive batches. So a prefix of
  // batches (the trainer's eval_batches) is balanced over tasks and, taken in multiples of L,
  // paired across lengths: the per-length slices differ in length only. A row's filler depends on
  // its question and length alone (not the batch size or the run's seed).
  Batch eval_batch(Split split, int64_t index, int64_t batch_size) override {
    const int64_t count = eval_batch_count(split, batch_size);
    if (index < 0 || index >= count) throw std::out_of_range("eval batch index out of range");
    const auto L = static_cast<int64_t>(lengths_.size());
    const int64_t block = index / L;
    const size_t l = static_cast<size_t>(index % L);
    const auto& order = eval_order_[static_cast<int>(split)];
    std::vector<Row> rows;
    std::vector<std::string> tags;
    for (int64_t b = 0; b < batch_size; ++b) {
      const uint32_t i = order[static_cast<size_t>(block * batch_size + b)];
      const Item& it = items(split)[i];
      auto rng =
          batch_rng(kEvalSeed, static_cast<int64_t>(i) * L + static_cast<int64_t>(l));  // val = test: the same rows
      rows.push_back(build(it, lengths_[l], filler_eval_, filler_eval_len_, rng));
      tags.push_back(babilong_ ? fmt::format("task=qa{} length={}", it.task, lengths_[l])
                               : fmt::format("task=qa{}", it.task));
    }
    return assemble(rows, std::move(tags), true);
  }

  int64_t train_tokens() const override { return train_tokens_; }

 private:
  const std::vector<Item>& items(Split s) const { return s == Split::train ? train_ : s == Split::val ? val_ : test_; }
  int64_t fact_tokens(const Item& it) const { return stories_[it.story].start[it.statements]; }
  int64_t qa_tokens(const Item& it) const {
    return qa_.length(it.qa) + qa_.length(it.qa + 1) + static_cast<int64_t>(term_.size());
  }

  Row build(const Item& it, int64_t L, const Runs& filler, const bb::FillerLengths& filler_len,
            std::mt19937_64& rng) const {
    const Runs& story = stories_[it.story];
    std::vector<int64_t> facts(it.statements);
    for (size_t k = 0; k < facts.size(); ++k) facts[k] = story.length(k);
    std::vector<bb::Piece> pieces;
    if (babilong_ && L > 0)
      pieces = bb::compose(facts, filler_len, L, rng);
    else
      for (size_t k = 0; k < facts.size(); ++k) pieces.push_back({true, k, facts[k]});
    // Keep the newest pieces that fit before the question, answer and terminator.
    const int64_t budget = seq_len_ + 1 - qa_tokens(it);
    int64_t total = 0;
    size_t first = pieces.size();
    while (first > 0 && total + pieces[first - 1].tokens <= budget) total += pieces[--first].tokens;
    Row r;
    r.truncated = first > 0;
    r.tokens.reserve(static_cast<size_t>(total + qa_tokens(it)));
    for (size_t k = first; k < pieces.size(); ++k) {
      const auto& pc = pieces[k];
      const Runs& src = pc.fact ? story : filler;
      auto b = src.tokens.begin() + src.start[pc.index];
      r.tokens.insert(r.tokens.end(), b, b + pc.tokens);
    }
    auto append = [&](size_t k) {
      r.tokens.insert(r.tokens.end(), qa_.tokens.begin() + qa_.start[k], qa_.tokens.begin() + qa_.start[k + 1]);
    };
    append(it.qa);
    r.answer_begin = static_cast<int64_t>(r.tokens.size());
    append(it.qa + 1);
    r.tokens.insert(r.tokens.end(), term_.begin(), term_.end());
    return r;
  }

  // inputs/targets (B, T), padded with 0 (never scored); the answer and terminator scored. T is the
  // longest row's target count rounded up to a multiple of kPadTo, at most seq_len: the padding
  // comes after every scored position, so for causal models the cut changes no scored logit and
  // saves the work of padding (bAbI rows are mostly far shorter than seq_len).
  Batch assemble(const std::vector<Row>& rows, std::vector<std::string> tags, bool answers) const {
    int64_t longest = 1;
    for (const Row& r : rows) longest = std::max<int64_t>(longest, static_cast<int64_t>(r.tokens.size()) - 1);
    const int64_t B = static_cast<int64_t>(rows.size());
    const int64_t T = std::min(seq_len_, (longest + kPadTo - 1) / kPadTo * kPadTo);
    auto seq = torch::zeros({B, T + 1}, torch::kLong);
    auto mask = torch::zeros({B, T}, torch::kFloat32);
    auto ids = torch::full({B, T}, -1, torch::kLong);
    auto s = seq.accessor<int64_t, 2>();
    auto m = mask.accessor<float, 2>();
    auto a = ids.accessor<int64_t, 2>();
    for (int64_t b = 0; b < B; ++b) {
      const Row& r = rows[static_cast<size_t>(b)];
      const int64_t n = static_cast<int64_t>(r.tokens.size());
      for (int64_t t = 0; t < n; ++t) s[b][t] = r.tokens[static_cast<size_t>(t)];
      // Target t is token t + 1: the answer's tokens and the terminator are targets answer_begin-1 .. n-2.
      for (int64_t t = std::max<int64_t>(0, r.answer_begin - 1); t <= n - 2; ++t) m[b][t] = 1.0f, a[b][t] = b;
    }
    Batch out;
    out.inputs = seq.narrow(1, 0, T).contiguous();
    out.targets = seq.narrow(1, 1, T).contiguous();
    out.loss_mask = mask;
    if (answers) {
      out.answer_ids = ids;
      out.tags = std::move(tags);
    }
    return out;
  }

  int64_t seq_len_;
  uint64_t seed_;
  std::vector<int64_t> lengths_;
  bool babilong_ = false;
  std::vector<int64_t> term_;
  std::vector<Runs> stories_;
  Runs qa_, filler_train_, filler_eval_;
  bb::FillerLengths filler_train_len_, filler_eval_len_;
  std::vector<Item> train_, val_, test_;
  std::vector<uint32_t> eval_order_[3];  // per split: its items, the tasks in turn
  int64_t train_tokens_ = 0;
};

class BabiPlugin : public DataPlugin {
 public:
  std::string name() const override { return "babi"; }
  std::string version() const override { return "1.0"; }
  std::string summary() const override {
    return "bAbI QA tasks 1-20, jointly, answer-only loss and exact match; BABILong-style filler for long contexts";
  }
  std::vector<ParamSpec> params() const override {
    return {
        string_param("source", "babi_en10k",
                     "babi_en10k (10k training questions per task), babi_en (1k), or a folder or archive of task "
                     "files (the official tasks_1-20_v1-2.tar.gz; '#en' after it picks its 1k folder)"),
        string_param("tasks", "1-20", "the tasks trained and evaluated jointly: \"1-20\", \"1,2,3\", \"1-2,4-20\""),
        int_param("seq_len", 256,
                  "tokens per row: statements (newest kept), question, answer, terminator; the model's context", 8),
        string_param("val", "test",
                     "the val split: bAbI's test files (what papers report), or the last 10% of each task's "
                     "training stories (held out of training)",
                     {"test", "train"}),
        string_param("filler", "",
                     "BABILong mode: a text source whose sentences surround the statements (austen, kjv, "
                     "tinystories_train_sample, a file or folder); \"\": plain bAbI"),
        string_param("lengths", "0",
                     "BABILong mode: context lengths in tokens, comma-separated (\"0,1024,2048\"; 0 = no filler); "
                     "training draws one per row, evaluation has every question at each"),
    };
  }
  std::map<std::string, Value> tiny_config() const override {
    return {{"source", std::string("babi_en")}, {"tasks", std::string("1")}, {"seq_len", int64_t{96}}};
  }
  void check(const Params& p) const override {
    Settings st = settings(p);
    auto listing = bb::list_source(p.s("source"));
    for (int t : st.tasks) {
      auto it = listing.files.find(t);
      bb::TaskTexts tt;
      if (it != listing.files.end()) tt.has_train = it->second.first, tt.has_test = it->second.second;
      if (listing.names.count(t)) tt.name = listing.names.at(t);
      if (!tt.has_train || !tt.has_test) throw UserError(missing_file(p.s("source"), t, tt));
    }
    if (st.babilong) resolve_source_files(p.s("filler"));
  }
  int64_t seq_len(const Params& p) const override { return p.i("seq_len"); }
  std::shared_ptr<Dataset> create(const Params& p, const DataContext& ctx) const override {
    return std::make_shared<BabiDataset>(p, ctx);
  }
};

}  // namespace

LMGRID_PLUGIN(BabiPlugin)
