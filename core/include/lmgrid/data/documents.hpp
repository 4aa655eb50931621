// A source as documents: what `text` (join = "eos", windows = "document") and
// `lmgrid data tokenize` read.
//
// A source is a named source (`lmgrid data list`), a file, or a folder. Each named source knows
// where its documents end (DataSource::documents):
//   tinystories_train_sample   stories separated by lines holding "<|endoftext|>"
//   tinystories_val_sample     stories separated by blank lines
//   wikitext2_valid/_test      articles: a line " = Title = " starts one
//   kjv                        chapters: a heading line ("Genesis 1") starts one
//   austen                     the six novels, one document each (a group of six files)
//   tiny_shakespeare           one document
// A file that is not a named source is one document; a folder is one document per regular file
// (sorted by name, hidden files skipped). Documents keep their text exactly, except that the
// separators themselves (the "<|endoftext|>" lines, the blank lines between stories) and the
// whitespace around them are dropped; empty documents are skipped.
#pragma once

#include <filesystem>
#include <string>
#include <vector>

namespace lmgrid {

struct Document {
  std::string text;
  std::string origin;  // file the document came from (for messages)
};

// How a text is cut into documents: "whole" (one), "endoftext" (lines holding "<|endoftext|>"),
// "blank_lines" (runs of 2+ newlines), "wikitext" (" = Title = " lines), "kjv" (chapter
// headings). Throws std::invalid_argument for an unknown rule.
std::vector<std::string> split_documents(const std::string& text, const std::string& rule);

// The files a source resolves to, in order (one for a file or a named file source, several for
// a group source or a folder). Throws UserError as resolve_source does.
std::vector<std::filesystem::path> resolve_source_files(const std::string& source);

// Every document of the source, in order. Throws UserError for a missing or empty source.
std::vector<Document> load_documents(const std::string& source);

// The source's whole text as the `text` plugin has always read it (files concatenated as they
// are; a folder's files in name order).
std::string load_text(const std::string& source);

}  // namespace lmgrid
