// tokenizer/bpe: GPT-2's pre-tokenizer as a hand-written scanner (see pretokenize.hpp). ASCII is
// classified from a table; other code points through ICU's general category and White_Space.
#include "pretokenize.hpp"

#include <array>
#include <stdexcept>
#include <string>

#include <unicode/uchar.h>

namespace lmgrid::bpe {

namespace {

enum Cls : unsigned char { kLetter, kNumber, kSpace, kOther };

constexpr std::array<unsigned char, 128> ascii_classes() {
  std::array<unsigned char, 128> t{};
  for (int c = 0; c < 128; ++c) {
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'))
      t[c] = kLetter;
    else if (c >= '0' && c <= '9')
      t[c] = kNumber;
    else if (c == ' ' || (c >= 0x09 && c <= 0x0D))  // White_Space in ASCII (not 0x1C-0x1F)
      t[c] = kSpace;
    else
      t[c] = kOther;
  }
  return t;
}
constexpr auto kAscii = ascii_classes();

[[noreturn]] void bad_utf8(size_t offset) {
  throw std::invalid_argument("invalid UTF-8 at byte offset " + std::to_string(offset));
}

// Decodes the code point at text[i]; sets len. Rejects overlongs, surrogates and > U+10FFFF.
char32_t decode_at(std::string_view text, size_t i, size_t& len, size_t base) {
  const auto b = [&](size_t k) { return static_cast<unsigned char>(text[i + k]); };
  unsigned char c = b(0);
  if (c < 0x80) return len = 1, c;
  size_t n = c >= 0xC2 && c <= 0xDF ? 2 : c >= 0xE0 && c <= 0xEF ? 3 : c >= 0xF0 && c <= 0xF4 ? 4 : 0;
  if (n == 0 || i + n > text.size()) bad_utf8(base + i);
  char32_t cp = c & (0x7F >> n);
  for (size_t k = 1; k < n; ++k) {
    if ((b(k) & 0xC0) != 0x80) bad_utf8(base + i);
    cp = (cp << 6) | (b(k) & 0x3F);
  }
  if ((n == 3 && (cp < 0x800 || (cp >= 0xD800 && cp <= 0xDFFF))) || (n == 4 && (cp < 0x10000 || cp > 0x10FFFF)))
    bad_utf8(base + i);
  len = n;
  return cp;
}

Cls classify(char32_t cp) {
  if (cp < 0x80) return static_cast<Cls>(kAscii[cp]);
  const auto mask = U_GET_GC_MASK(static_cast<UChar32>(cp));
  if (mask & U_GC_L_MASK) return kLetter;
  if (mask & U_GC_N_MASK) return kNumber;
  if (u_hasBinaryProperty(static_cast<UChar32>(cp), UCHAR_WHITE_SPACE)) return kSpace;
  return kOther;
}

// One decoded code point: its class and byte length.
struct Char {
  Cls cls;
  size_t len;
};

class Scanner {
 public:
  Scanner(std::string_view t, size_t base) : text_(t), base_(base) {}
  Char at(size_t i) const {
    unsigned char c = static_cast<unsigned char>(text_[i]);
    if (c < 0x80) return {static_cast<Cls>(kAscii[c]), 1};
    size_t len = 0;
    char32_t cp = decode_at(text_, i, len, base_);
    return {classify(cp), len};
  }
  // End of the run of class `cls` starting at i (the char at i is of that class).
  size_t run_end(size_t i, Cls cls) const {
    while (i < text_.size()) {
      Char ch = at(i);
      if (ch.cls != cls) break;
      i += ch.len;
    }
    return i;
  }
  // Length of a contraction ('s 't 'm 'd 're 've 'll) at i, 0 if none.
  size_t contraction(size_t i) const {
    if (text_[i] != '\'' || i + 1 >= text_.size()) return 0;
    char a = text_[i + 1];
    if (a == 's' || a == 't' || a == 'm' || a == 'd') return 2;
    if (i + 2 >= text_.size()) return 0;
    char b = text_[i + 2];
    if ((a == 'r' && b == 'e') || (a == 'v' && b == 'e') || (a == 'l' && b == 'l')) return 3;
    return 0;
  }
  // End of the piece that starts at i.
  size_t piece_end(size_t i) const {
    if (size_t c = contraction(i)) return i + c;
    Char ch = at(i);
    if (text_[i] == ' ' && i + 1 < text_.size()) {  //  ?\p{L}+ |  ?\p{N}+ |  ?[^\s\p{L}\p{N}]+
      Char next = at(i + 1);
      if (next.cls != kSpace) return run_end(i + 1, next.cls);
    }
    if (ch.cls != kSpace) return run_end(i, ch.cls);
    // \s+(?!\S) | \s+ : a whitespace run leaves its last character to the piece after it.
    size_t end = run_end(i, kSpace);
    if (end == text_.size()) return end;
    size_t last = end - 1;
    while ((static_cast<unsigned char>(text_[last]) & 0xC0) == 0x80) --last;  // start of the last char
    return last > i ? last : end;
  }

 private:
  std::string_view text_;
  size_t base_;
};

}  // namespace

void pretokenize(std::string_view text, std::vector<std::string_view>& out, size_t offset) {
  Scanner s(text, offset);
  for (size_t i = 0; i < text.size();) {
    size_t end = s.piece_end(i);
    out.push_back(text.substr(i, end - i));
    i = end;
  }
}

}  // namespace lmgrid::bpe
