// Sources as documents (see documents.hpp).
#include "lmgrid/data/documents.hpp"

#include <algorithm>
#include <stdexcept>

#include <fmt/format.h>

#include "lmgrid/base/errors.hpp"
#include "lmgrid/base/util.hpp"
#include "lmgrid/data/data_source.hpp"

namespace lmgrid {

namespace fs = std::filesystem;

namespace {

bool is_space(char c) { return c == ' ' || c == '\n' || c == '\r' || c == '\t' || c == '\f' || c == '\v'; }

// Appends text[begin, end) without its surrounding whitespace, unless nothing is left.
void add_trimmed(std::vector<std::string>& out, const std::string& text, size_t begin, size_t end) {
  while (begin < end && is_space(text[begin])) ++begin;
  while (end > begin && is_space(text[end - 1])) --end;
  if (end > begin) out.push_back(text.substr(begin, end - begin));
}

// Calls line(begin, end) for every line (end excludes the '\n').
template <class F>
void for_each_line(const std::string& text, F line) {
  size_t pos = 0;
  while (pos < text.size()) {
    size_t nl = text.find('\n', pos);
    size_t end = nl == std::string::npos ? text.size() : nl;
    line(pos, end);
    pos = end + 1;
  }
}

// Cuts before every line for which starts(begin, end) holds.
template <class F>
std::vector<std::string> split_at_lines(const std::string& text, F starts) {
  std::vector<std::string> out;
  size_t doc = 0;
  for_each_line(text, [&](size_t b, size_t e) {
    if (b > doc && starts(b, e)) {
      add_trimmed(out, text, doc, b);
      doc = b;
    }
  });
  add_trimmed(out, text, doc, text.size());
  return out;
}

}  // namespace

std::vector<std::string> split_documents(const std::string& text, const std::string& rule) {
  std::vector<std::string> out;
  if (rule == "whole") {
    add_trimmed(out, text, 0, text.size());
  } else if (rule == "endoftext") {
    const std::string sep = "<|endoftext|>";
    size_t pos = 0;
    for (size_t at; (at = text.find(sep, pos)) != std::string::npos; pos = at + sep.size())
      add_trimmed(out, text, pos, at);
    add_trimmed(out, text, pos, text.size());
  } else if (rule == "blank_lines") {
    // A run of two or more newlines (blank lines may hold spaces or '\r') ends a document.
    size_t doc = 0, i = 0;
    while (i < text.size()) {
      if (text[i] != '\n') {
        ++i;
        continue;
      }
      size_t j = i + 1, newlines = 1;
      while (j < text.size() && is_space(text[j])) newlines += text[j++] == '\n';
      if (newlines >= 2) {
        add_trimmed(out, text, doc, i);
        doc = j;
      }
      i = j;
    }
    add_trimmed(out, text, doc, text.size());
  } else if (rule == "wikitext") {
    // Articles start at a top-level heading " = Title = " (sections are " = = Title = = ").
    out = split_at_lines(text, [&](size_t b, size_t e) {
      while (e > b && (text[e - 1] == ' ' || text[e - 1] == '\r')) --e;
      return e - b >= 5 && text.compare(b, 3, " = ") == 0 && text[b + 3] != '=' && text.compare(e - 2, 2, " =") == 0 &&
             text[e - 3] != '=';
    });
  } else if (rule == "kjv") {
    // A chapter starts at its heading ("Genesis 1"): a non-empty line that is not indented.
    out = split_at_lines(text, [&](size_t b, size_t e) { return e > b && !is_space(text[b]); });
  } else {
    throw std::invalid_argument("unknown document rule '" + rule + "'");
  }
  return out;
}

std::vector<fs::path> resolve_source_files(const std::string& source) {
  if (auto src = find_source(source); src && !src->members.empty()) {
    std::vector<fs::path> files;
    for (const auto& m : src->members) files.push_back(resolve_source(m));
    return files;
  }
  if (!find_source(source) && fs::is_directory(source)) {
    std::vector<fs::path> files;
    for (const auto& e : fs::directory_iterator(source))
      if (e.is_regular_file() && e.path().filename().string()[0] != '.') files.push_back(e.path());
    std::sort(files.begin(), files.end());
    if (files.empty()) throw UserError(fmt::format("data source folder '{}' holds no files", source));
    return files;
  }
  return {resolve_source(source)};
}

std::vector<Document> load_documents(const std::string& source) {
  std::vector<Document> docs;
  auto src = find_source(source);
  std::vector<std::string> rules;
  if (src && !src->members.empty())
    for (const auto& m : src->members) rules.push_back(find_source(m)->documents);
  auto files = resolve_source_files(source);
  for (size_t i = 0; i < files.size(); ++i) {
    std::string rule = !rules.empty() ? rules[i] : src ? src->documents : "whole";
    for (auto& d : split_documents(read_file(files[i]), rule)) docs.push_back({std::move(d), files[i].string()});
  }
  if (docs.empty()) throw UserError(fmt::format("data source '{}' holds no text", source));
  return docs;
}

std::string load_text(const std::string& source) {
  std::string text;
  for (const auto& f : resolve_source_files(source)) text += read_file(f);
  return text;
}

}  // namespace lmgrid
