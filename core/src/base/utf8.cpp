// Strict UTF-8 (see utf8.hpp).
#include "lmgrid/base/utf8.hpp"

#include <stdexcept>

namespace lmgrid {

namespace {

// Calls on(cp) for each code point of s; throws at the first invalid sequence.
template <class On>
void decode(const std::string& s, On on) {
  for (size_t i = 0; i < s.size();) {
    const auto c = static_cast<unsigned char>(s[i]);
    // Lead bytes: C0/C1 would be overlong 2-byte forms, F5..FF beyond U+10FFFF.
    const size_t n = c < 0x80                 ? 1
                     : c >= 0xC2 && c <= 0xDF ? 2
                     : c >= 0xE0 && c <= 0xEF ? 3
                     : c >= 0xF0 && c <= 0xF4 ? 4
                                              : 0;
    bool ok = n > 0 && i + n <= s.size();
    char32_t cp = n == 1 ? c : c & (0x7F >> n);
    for (size_t k = 1; ok && k < n; ++k) {
      const auto cc = static_cast<unsigned char>(s[i + k]);
      ok = (cc & 0xC0) == 0x80;
      cp = cp << 6 | (cc & 0x3F);
    }
    // Overlong 3- and 4-byte forms, surrogates, and code points past U+10FFFF.
    if (ok &&
        ((n == 3 && (cp < 0x800 || (cp >= 0xD800 && cp <= 0xDFFF))) || (n == 4 && (cp < 0x10000 || cp > 0x10FFFF))))
      ok = false;
    if (!ok) throw std::invalid_argument("invalid UTF-8 at byte offset " + std::to_string(i));
    on(cp);
    i += n;
  }
}

}  // namespace

std::vector<char32_t> utf8_code_points(const std::string& s) {
  std::vector<char32_t> out;
  out.reserve(s.size());
  decode(s, [&](char32_t cp) { out.push_back(cp); });
  return out;
}

void check_utf8(const std::string& s) {
  decode(s, [](char32_t) {});
}

void append_utf8(std::string& out, char32_t cp) {
  if (cp < 0x80) {
    out += static_cast<char>(cp);
  } else if (cp < 0x800) {
    out += static_cast<char>(0xC0 | (cp >> 6)), out += static_cast<char>(0x80 | (cp & 0x3F));
  } else if (cp < 0x10000) {
    out += static_cast<char>(0xE0 | (cp >> 12)), out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else {
    out += static_cast<char>(0xF0 | (cp >> 18)), out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F)), out += static_cast<char>(0x80 | (cp & 0x3F));
  }
}

}  // namespace lmgrid
