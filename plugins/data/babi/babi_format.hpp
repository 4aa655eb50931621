// data/babi: the bAbI task files (Weston et al. 2015, tasks 1-20 v1.2) and the BABILong-style
// composition of a long context, without LibTorch or a tokenizer, so the tests can check them
// on the real files (tests/plugins/test_babi.cpp).
//
// File format, one entry per line:
//   ID text                                         a statement
//   ID question?<TAB>answer<TAB>supporting fact IDs  a question
// IDs count from 1 within a story; an ID of 1 starts a new story. Supporting fact IDs name
// statement lines of the current story. Answers are a word, or a comma-separated list of words
// (qa8 "milk,football", qa19 "n,w").
#pragma once

#include <cstdint>
#include <map>
#include <random>
#include <set>
#include <string>
#include <vector>

namespace lmgrid::babi {

struct Story {
  std::vector<std::string> statements;  // in order, without their IDs
};

// One question: the statements of its story before it (a prefix of the story), the question,
// the answer as written in the file, and its supporting facts as indices into the statements.
struct Example {
  int task = 0;
  size_t story = 0;                               // index into TaskFile::stories
  size_t statements = 0;                          // the story's first `statements` statements come before the question
  std::string question;                           // "Where is Mary?"
  std::string answer;                             // "bathroom", "milk,football", "n,w"
  std::vector<size_t> supporting;                 // statement indices, as listed in the file
  std::vector<std::string> answer_words() const;  // the answer split at commas
};

struct TaskFile {
  int task = 0;
  std::vector<Story> stories;
  std::vector<Example> examples;  // in file order
};

// Parses one task file. Throws lmgrid::UserError naming `origin` and the line for a malformed
// line, an ID that does not continue its story, or a supporting fact that is not a statement.
TaskFile parse_task_file(const std::string& text, int task, const std::string& origin);

// "1-20", "1,2,3", "1-2,4-20" -> the task numbers (each 1..20). Throws UserError.
std::set<int> parse_tasks(const std::string& spec);
// "0,1024,2048" (also "[0, 1024]") -> the lengths, in the order given, duplicates dropped.
// Throws UserError for anything but non-negative integers.
std::vector<int64_t> parse_lengths(const std::string& spec);

// The task files of a source: its train and test texts by task number.
struct TaskTexts {
  std::string name;         // "qa1_single-supporting-fact"
  std::string train, test;  // file contents ("" when missing)
  bool has_train = false, has_test = false;
  std::string train_origin, test_origin;  // for messages
};

// What a source holds: a folder of task files, or an archive (any format libarchive reads:
// .tar.xz, .tar.gz, .zip) whose members are task files. In an archive the files of one folder are
// taken: the folder named after '#' in the source ("tasks_1-20_v1-2.tar.gz#en"), else the only
// folder holding task files, else the one named "en-10k", else "en". A named source
// (babi_en, babi_en10k) is resolved through the data search path first.
struct SourceListing {
  std::string where;                           // the folder, or "archive (folder inside)"
  std::map<int, std::pair<bool, bool>> files;  // task -> (train present, test present)
  std::map<int, std::string> names;            // task -> "qa1_single-supporting-fact"
};
SourceListing list_source(const std::string& source);
// Reads the train and test files of `tasks`; a missing file stays empty (has_* false).
std::map<int, TaskTexts> read_source(const std::string& source, const std::set<int>& tasks);

// Filler text (BABILong's background) cut into sentences: whitespace runs become one space, and a
// sentence ends after '.', '!' or '?' (and any closing quotes or brackets right after) followed by
// whitespace. Empty sentences are dropped.
std::vector<std::string> split_sentences(const std::string& text);

// The token counts of the filler sentences of one split, with their running sums.
struct FillerLengths {
  std::vector<int64_t> tokens;  // per sentence
  std::vector<int64_t> before;  // before[i] = tokens of sentences 0..i-1 (size n + 1)
  explicit FillerLengths(std::vector<int64_t> t = {});
  int64_t total() const { return before.back(); }
};

// BABILong's composition of one context, in token counts. `facts` are the token counts of the
// example's statements. With target 0, or facts that already fill the target, the context is the
// facts alone. Otherwise a contiguous stretch of filler sentences starting at a random sentence
// is taken (uniform over the starts that leave enough filler after them), its last sentence cut so
// that facts + filler come to exactly `target` tokens, and each fact is put at a random boundary
// between those sentences (before the first, between two, or after the last: positions drawn
// independently and sorted, so the facts keep their order; several may share a boundary).
struct Piece {
  bool fact;       // a statement of the story, else a filler sentence
  size_t index;    // into facts or the filler sentences
  int64_t tokens;  // tokens of it used (a cut filler sentence: its first `tokens` tokens)
};
// Throws UserError when the filler holds fewer tokens than the target needs.
std::vector<Piece> compose(const std::vector<int64_t>& facts, const FillerLengths& filler, int64_t target,
                           std::mt19937_64& rng);

}  // namespace lmgrid::babi
