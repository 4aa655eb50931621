// Strict UTF-8 decoding and encoding (lmgrid/base/utf8.hpp), against hand-made byte strings.
#include <catch2/catch.hpp>

#include <stdexcept>

#include <lmgrid/base/utf8.hpp>

using namespace lmgrid;

TEST_CASE("utf8: code points of 1- to 4-byte sequences, and back", "[unit][utf8]") {
  const std::string s = "a\xC3\xA9\xE4\xB8\xAD\xF0\x9F\x98\x80";  // a, é, 中, 😀
  auto cps = utf8_code_points(s);
  REQUIRE(cps.size() == 4);
  CHECK(cps[0] == U'a');
  CHECK(cps[1] == 0xE9);
  CHECK(cps[2] == 0x4E2D);
  CHECK(cps[3] == 0x1F600);
  std::string back;
  for (char32_t c : cps) append_utf8(back, c);
  CHECK(back == s);
  for (char32_t c : {char32_t{0x7F}, char32_t{0x80}, char32_t{0x7FF}, char32_t{0x800}, char32_t{0xFFFF},
                     char32_t{0x10000}, char32_t{0x10FFFF}}) {  // every length boundary
    std::string one;
    append_utf8(one, c);
    CHECK(utf8_code_points(one) == std::vector<char32_t>{c});
  }
  CHECK_NOTHROW(check_utf8(s));
  CHECK(utf8_code_points("").empty());
}

TEST_CASE("utf8: invalid sequences are refused at their byte offset", "[unit][utf8]") {
  const std::vector<std::pair<std::string, size_t>> bad{
      {"ab\x80", 2},            // stray continuation byte
      {"\xC0\xAF", 0},          // overlong 2-byte '/'
      {"x\xE0\x80\xAF", 1},     // overlong 3-byte
      {"\xED\xA0\x80", 0},      // surrogate U+D800
      {"\xF4\x90\x80\x80", 0},  // U+110000
      {"\xF5\x80\x80\x80", 0},  // lead byte past F4
      {"ok\xE4\xB8", 2},        // truncated at the end
      {"\xC3\x28", 0},          // continuation byte missing
  };
  for (const auto& [s, at] : bad) {
    INFO("offset " << at);
    const std::string want = "invalid UTF-8 at byte offset " + std::to_string(at);
    CHECK_THROWS_WITH(utf8_code_points(s), want);
    CHECK_THROWS_WITH(check_utf8(s), want);
  }
}
