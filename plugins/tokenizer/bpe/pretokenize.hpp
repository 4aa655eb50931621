// tokenizer/bpe: GPT-2's pre-tokenizer, written out as a scanner over UTF-8 (no regex engine).
// It splits text exactly as the pattern of GPT-2 and tiktoken's `gpt2` encoding does:
//
//     's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
//
// with \p{L} = general category L*, \p{N} = N*, \s = the Unicode White_Space property (the Rust
// regex crate's classes, which tiktoken uses), taken from ICU. Not a general regex: this one
// pattern only. Invalid UTF-8 is an error naming the byte offset.
#pragma once

#include <string_view>
#include <vector>

namespace lmgrid::bpe {

// Appends to `out` the pieces of `text` in order; together they are exactly `text`.
// Throws std::invalid_argument("invalid UTF-8 at byte offset N") on malformed input, N counted
// from `offset` (where `text` starts in the caller's input).
void pretokenize(std::string_view text, std::vector<std::string_view>& out, size_t offset = 0);

}  // namespace lmgrid::bpe
