// UTF-8 for tokenizers: strict decoding (shortest form only, no surrogates, at most U+10FFFF) and
// encoding of one code point.
#pragma once

#include <string>
#include <vector>

namespace lmgrid {

// The code points of `s`. Throws std::invalid_argument("invalid UTF-8 at byte offset N") at the
// first byte that does not start a valid sequence (a tokenizer turns it into bad input, exit 2).
std::vector<char32_t> utf8_code_points(const std::string& s);
// Throws as utf8_code_points does, without building the vector.
void check_utf8(const std::string& s);
// Appends the UTF-8 bytes of `cp` (a valid code point) to `out`.
void append_utf8(std::string& out, char32_t cp);

}  // namespace lmgrid
