// data/babi: parsing the task files, reading a folder or an archive of them (libarchive), filler
// sentences and the BABILong composition. See babi_format.hpp.
#include "babi_format.hpp"

#include <algorithm>
#include <filesystem>
#include <memory>

#if LMGRID_BABI_ARCHIVES
#include <archive.h>
#include <archive_entry.h>
#endif
#include <fmt/format.h>
#include <fmt/ranges.h>

#include <lmgrid/base/errors.hpp>
#include <lmgrid/base/util.hpp>
#include <lmgrid/data/data_source.hpp>

namespace lmgrid::babi {

namespace fs = std::filesystem;

namespace {

std::string trim(const std::string& s) {
  size_t b = 0, e = s.size();
  while (b < e && (s[b] == ' ' || s[b] == '\t' || s[b] == '\r')) ++b;
  while (e > b && (s[e - 1] == ' ' || s[e - 1] == '\t' || s[e - 1] == '\r')) --e;
  return s.substr(b, e - b);
}

bool all_digits(const std::string& s) {
  return !s.empty() && std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; });
}

// "qa12_conjunction_train.txt" -> task 12, name "qa12_conjunction", train; false for other names.
bool task_file_name(const std::string& file, int& task, std::string& name, bool& train) {
  const std::string tr = "_train.txt", te = "_test.txt";
  auto ends = [&](const std::string& suf) {
    return file.size() > suf.size() && file.compare(file.size() - suf.size(), suf.size(), suf) == 0;
  };
  if (file.rfind("qa", 0) != 0) return false;
  if (ends(tr))
    train = true, name = file.substr(0, file.size() - tr.size());
  else if (ends(te))
    train = false, name = file.substr(0, file.size() - te.size());
  else
    return false;
  size_t us = name.find('_');
  std::string num = name.substr(2, us == std::string::npos ? std::string::npos : us - 2);
  if (!all_digits(num) || num.size() > 2) return false;
  task = std::stoi(num);
  return task >= 1 && task <= 20;
}

// A source as a place: a folder or an archive file, and the folder asked for after '#'.
struct Place {
  fs::path path;
  std::string inner;
  bool archive = false;
};

Place resolve_place(const std::string& source) {
  Place pl;
  if (find_source(source)) {
    pl.path = resolve_source(source);
  } else if (fs::exists(source)) {
    pl.path = source;
  } else if (size_t h = source.rfind('#'); h != std::string::npos && fs::exists(source.substr(0, h))) {
    pl.path = source.substr(0, h);
    pl.inner = source.substr(h + 1);
  } else {
    throw UserError(fmt::format(
        "babi source '{}' is neither a named source (babi_en, babi_en10k) nor an existing folder or archive "
        "(an archive's folder may follow '#': tasks_1-20_v1-2.tar.gz#en)",
        source));
  }
  pl.archive = fs::is_regular_file(pl.path);
  return pl;
}

// Every regular file of the archive, in archive order: fn(path inside, reader) where reader()
// returns the member's bytes (call it at most once, or not at all to skip the member).
template <class Fn>
void each_archive_member(const fs::path& file, Fn&& fn) {
#if !LMGRID_BABI_ARCHIVES
  (void)fn;
  throw UserError(fmt::format(
      "cannot read the archive {}: this lmgrid was built without libarchive (install libarchive-dev and rebuild), "
      "or unpack it and give data/babi the folder",
      file.string()));
#else
  std::unique_ptr<archive, int (*)(archive*)> a(archive_read_new(), archive_read_free);
  archive_read_support_filter_all(a.get());
  archive_read_support_format_all(a.get());
  if (archive_read_open_filename(a.get(), file.c_str(), 1 << 16) != ARCHIVE_OK)
    throw UserError(fmt::format("cannot read the archive {}: {}", file.string(), archive_error_string(a.get())));
  archive_entry* entry = nullptr;
  for (;;) {
    int rc = archive_read_next_header(a.get(), &entry);
    if (rc == ARCHIVE_EOF) break;
    if (rc != ARCHIVE_OK && rc != ARCHIVE_WARN)
      throw UserError(fmt::format("cannot read the archive {}: {}", file.string(), archive_error_string(a.get())));
    if (archive_entry_filetype(entry) != AE_IFREG) continue;
    std::string name = archive_entry_pathname(entry);
    while (name.rfind("./", 0) == 0) name = name.substr(2);
    auto reader = [&] {
      std::string out;
      char buf[1 << 16];
      for (;;) {
        la_ssize_t n = archive_read_data(a.get(), buf, sizeof buf);
        if (n < 0)
          throw UserError(
              fmt::format("cannot read {} in the archive {}: {}", name, file.string(), archive_error_string(a.get())));
        if (n == 0) break;
        out.append(buf, static_cast<size_t>(n));
      }
      return out;
    };
    fn(name, reader);
  }
#endif
}

// The task files of a place, as paths relative to it ('/'-separated).
std::vector<std::string> task_files(const Place& pl) {
  std::vector<std::string> out;
  int task;
  std::string name;
  bool train;
  auto keep = [&](const std::string& rel) {
    std::string base = rel.substr(rel.rfind('/') == std::string::npos ? 0 : rel.rfind('/') + 1);
    if (task_file_name(base, task, name, train)) out.push_back(rel);
  };
  if (pl.archive) {
    each_archive_member(pl.path, [&](const std::string& rel, auto&) { keep(rel); });
  } else {
    for (const auto& e : fs::recursive_directory_iterator(pl.path))
      if (e.is_regular_file()) keep(fs::relative(e.path(), pl.path).generic_string());
  }
  std::sort(out.begin(), out.end());
  return out;
}

std::string parent(const std::string& rel) {
  size_t s = rel.rfind('/');
  return s == std::string::npos ? "" : rel.substr(0, s);
}
std::string last_component(const std::string& dir) {
  size_t s = dir.rfind('/');
  return s == std::string::npos ? dir : dir.substr(s + 1);
}

// The folder (relative, "" = the top) whose task files are used; see babi_format.hpp.
std::string choose_folder(const Place& pl, const std::vector<std::string>& files) {
  std::vector<std::string> dirs;
  for (const auto& f : files)
    if (std::find(dirs.begin(), dirs.end(), parent(f)) == dirs.end()) dirs.push_back(parent(f));
  auto listed = [&] {
    std::vector<std::string> shown;
    for (const auto& d : dirs) shown.push_back(d.empty() ? "(top)" : d);
    return fmt::format("{}", fmt::join(shown, ", "));
  };
  if (dirs.empty()) throw UserError(fmt::format("{} holds no bAbI task files (qaN_*_train.txt)", pl.path.string()));
  if (!pl.inner.empty()) {
    for (const auto& d : dirs)
      if (d == pl.inner || last_component(d) == pl.inner) return d;
    throw UserError(
        fmt::format("{} has no folder '{}' of task files; it has: {}", pl.path.string(), pl.inner, listed()));
  }
  if (dirs.size() == 1) return dirs[0];
  for (const char* pref : {"en-10k", "en"})
    for (const auto& d : dirs)
      if (last_component(d) == pref) return d;
  throw UserError(fmt::format("{} holds task files in several folders ({}); name one after '#' ({}#en)",
                              pl.path.string(), listed(), pl.path.string()));
}

}  // namespace

std::vector<std::string> Example::answer_words() const { return split(answer, ','); }

TaskFile parse_task_file(const std::string& text, int task, const std::string& origin) {
  TaskFile tf;
  tf.task = task;
  std::vector<long> line_stmt;  // line ID -> statement index in the current story, -1 for a question
  long prev_id = 0, line_no = 0;
  size_t pos = 0;
  while (pos < text.size()) {
    size_t nl = text.find('\n', pos);
    std::string line = text.substr(pos, nl == std::string::npos ? std::string::npos : nl - pos);
    pos = nl == std::string::npos ? text.size() : nl + 1;
    ++line_no;
    line = trim(line);
    if (line.empty()) continue;
    auto bad = [&](const std::string& why) {
      return UserError(fmt::format("{}:{}: {} (line '{}')", origin, line_no, why, line));
    };
    size_t sp = line.find(' ');
    std::string id_text = line.substr(0, sp);
    if (sp == std::string::npos || !all_digits(id_text) || id_text.size() > 9) throw bad("expected 'ID text'");
    long id = std::stol(id_text);
    if (id == 1) {
      tf.stories.emplace_back();
      line_stmt.assign(1, -1);
    } else if (tf.stories.empty() || id != prev_id + 1) {
      throw bad(fmt::format("line ID {} does not continue the story (previous ID {})", id, prev_id));
    }
    prev_id = id;
    std::string rest = line.substr(sp + 1);
    Story& story = tf.stories.back();
    size_t tab = rest.find('\t');
    if (tab == std::string::npos) {
      line_stmt.push_back(static_cast<long>(story.statements.size()));
      story.statements.push_back(trim(rest));
      continue;
    }
    auto fields = split(rest, '\t');
    if (fields.size() < 2) throw bad("a question needs 'question<TAB>answer<TAB>supporting fact IDs'");
    Example ex;
    ex.task = task;
    ex.story = tf.stories.size() - 1;
    ex.statements = story.statements.size();
    ex.question = trim(fields[0]);
    ex.answer = trim(fields[1]);
    if (ex.question.empty() || ex.answer.empty()) throw bad("empty question or answer");
    if (fields.size() > 2)
      for (const auto& f : split(trim(fields[2]), ' ')) {
        if (f.empty()) continue;
        if (!all_digits(f) || f.size() > 9) throw bad("supporting fact ID '" + f + "' is not a number");
        long ref = std::stol(f);
        if (ref < 1 || ref >= id || line_stmt[static_cast<size_t>(ref)] < 0)
          throw bad(fmt::format("supporting fact {} is not a statement before the question", ref));
        ex.supporting.push_back(static_cast<size_t>(line_stmt[static_cast<size_t>(ref)]));
      }
    line_stmt.push_back(-1);
    tf.examples.push_back(std::move(ex));
  }
  return tf;
}

// "a,b,,c" -> {"a", "b", "", "c"} (empty items kept, for the callers' messages).
static std::vector<std::string> split_commas(const std::string& text) {
  std::vector<std::string> parts{""};
  for (char c : text) {
    if (c == ',')
      parts.emplace_back();
    else
      parts.back().push_back(c);
  }
  return parts;
}

std::set<int> parse_tasks(const std::string& spec) {
  std::set<int> out;
  auto bad = [&](const std::string& why) {
    return UserError(fmt::format("tasks = \"{}\": {} (write e.g. \"1-20\", \"1,2,3\" or \"1-2,4-20\")", spec, why));
  };
  std::vector<std::string> parts = split_commas(spec);
  for (std::string part : parts) {
    part = trim(part);
    if (part.empty()) throw bad("an empty item");
    size_t dash = part.find('-');
    std::string a = trim(part.substr(0, dash)), b = dash == std::string::npos ? a : trim(part.substr(dash + 1));
    if (!all_digits(a) || !all_digits(b) || a.size() > 2 || b.size() > 2) throw bad("'" + part + "' is not N or N-M");
    int lo = std::stoi(a), hi = std::stoi(b);
    if (lo < 1 || hi > 20 || lo > hi) throw bad("'" + part + "' is outside the tasks 1-20");
    for (int t = lo; t <= hi; ++t) out.insert(t);
  }
  return out;
}

std::vector<int64_t> parse_lengths(const std::string& spec) {
  std::string s = trim(spec);
  if (!s.empty() && s.front() == '[' && s.back() == ']') s = s.substr(1, s.size() - 2);
  std::vector<int64_t> out;
  std::vector<std::string> parts = split_commas(s);
  for (std::string part : parts) {
    part = trim(part);
    if (!all_digits(part) || part.size() > 12)
      throw UserError(
          fmt::format("lengths = \"{}\": '{}' is not a non-negative integer (write the context lengths in tokens, e.g. "
                      "\"0,1024,2048\")",
                      spec, part));
    int64_t v = std::stoll(part);
    if (std::find(out.begin(), out.end(), v) == out.end()) out.push_back(v);
  }
  return out;
}

SourceListing list_source(const std::string& source) {
  Place pl = resolve_place(source);
  auto files = task_files(pl);
  std::string dir = choose_folder(pl, files);
  SourceListing l;
  l.where = pl.archive ? fmt::format("{} ({})", pl.path.string(), dir.empty() ? "top" : dir)
                       : (dir.empty() ? pl.path : pl.path / dir).string();
  for (const auto& f : files) {
    if (parent(f) != dir) continue;
    int task;
    std::string name;
    bool train;
    task_file_name(last_component(f), task, name, train);
    auto& slot = l.files[task];
    (train ? slot.first : slot.second) = true;
    l.names[task] = name;
  }
  return l;
}

std::map<int, TaskTexts> read_source(const std::string& source, const std::set<int>& tasks) {
  Place pl = resolve_place(source);
  auto files = task_files(pl);
  std::string dir = choose_folder(pl, files);
  std::map<int, TaskTexts> out;
  for (int t : tasks) out[t];
  auto take = [&](const std::string& rel, const std::string& origin, auto&& read) {
    int task;
    std::string name;
    bool train;
    if (parent(rel) != dir || !task_file_name(last_component(rel), task, name, train) || !tasks.count(task)) return;
    TaskTexts& tt = out[task];
    tt.name = name;
    (train ? tt.train : tt.test) = read();
    (train ? tt.has_train : tt.has_test) = true;
    (train ? tt.train_origin : tt.test_origin) = origin;
  };
  if (pl.archive) {
    each_archive_member(pl.path,
                        [&](const std::string& rel, auto& reader) { take(rel, pl.path.string() + ":" + rel, reader); });
  } else {
    for (const auto& rel : files) {
      fs::path p = pl.path / rel;
      take(rel, p.string(), [&] { return read_file(p); });
    }
  }
  return out;
}

std::vector<std::string> split_sentences(const std::string& text) {
  std::vector<std::string> out;
  std::string cur;
  auto is_space = [](char c) { return c == ' ' || c == '\n' || c == '\t' || c == '\r' || c == '\f' || c == '\v'; };
  auto is_close = [](char c) { return c == '"' || c == '\'' || c == ')' || c == ']'; };
  // A period after these titles ends no sentence ("Mr. Darcy").
  auto title = [&] {
    size_t b = cur.size() - 1;  // the '.'
    while (b > 0 && cur[b - 1] != ' ') --b;
    std::string w = cur.substr(b, cur.size() - 1 - b);
    return w == "Mr" || w == "Mrs" || w == "Dr" || w == "St" || w == "Ms";
  };
  for (size_t i = 0; i < text.size(); ++i) {
    char c = text[i];
    if (is_space(c)) {
      if (!cur.empty() && cur.back() != ' ') cur += ' ';
      continue;
    }
    cur += c;
    if (c == '.' || c == '!' || c == '?') {
      if (c == '.' && title()) continue;
      size_t j = i + 1;
      while (j < text.size() && is_close(text[j])) cur += text[j++];
      if (j == text.size() || is_space(text[j])) {
        out.push_back(cur);
        cur.clear();
      }
      i = j - 1;
    }
  }
  while (!cur.empty() && cur.back() == ' ') cur.pop_back();
  if (!cur.empty()) out.push_back(cur);
  return out;
}

FillerLengths::FillerLengths(std::vector<int64_t> t) : tokens(std::move(t)), before(tokens.size() + 1, 0) {
  for (size_t i = 0; i < tokens.size(); ++i) before[i + 1] = before[i] + tokens[i];
}

std::vector<Piece> compose(const std::vector<int64_t>& facts, const FillerLengths& filler, int64_t target,
                           std::mt19937_64& rng) {
  std::vector<Piece> out;
  int64_t fact_tokens = 0;
  for (auto f : facts) fact_tokens += f;
  const int64_t need = target - fact_tokens;
  if (target <= 0 || need <= 0) {
    for (size_t i = 0; i < facts.size(); ++i) out.push_back({true, i, facts[i]});
    return out;
  }
  const size_t n = filler.tokens.size();
  if (filler.total() < need)
    throw UserError(fmt::format("the filler holds {} tokens, fewer than the {} a context of {} tokens needs",
                                filler.total(), need, target));
  // The last start that leaves `need` tokens after it.
  size_t last_start = static_cast<size_t>(
      std::upper_bound(filler.before.begin(), filler.before.end(), filler.total() - need) - filler.before.begin() - 1);
  last_start = std::min(last_start, n - 1);
  size_t start = std::uniform_int_distribution<size_t>(0, last_start)(rng);
  // The stretch start..end-1: the first end whose sentences hold >= need tokens.
  size_t end =
      static_cast<size_t>(std::lower_bound(filler.before.begin(), filler.before.end(), filler.before[start] + need) -
                          filler.before.begin());
  const size_t m = end - start;
  std::vector<size_t> at(facts.size());
  std::uniform_int_distribution<size_t> boundary(0, m);
  for (auto& x : at) x = boundary(rng);
  std::sort(at.begin(), at.end());
  size_t k = 0;
  int64_t used = 0;
  for (size_t b = 0; b <= m; ++b) {
    for (; k < at.size() && at[k] == b; ++k) out.push_back({true, k, facts[k]});
    if (b < m) {
      int64_t take = std::min(filler.tokens[start + b], need - used);
      out.push_back({false, start + b, take});
      used += take;
    }
  }
  return out;
}

}  // namespace lmgrid::babi
