// Environment variables: one table in code (env_vars) and the README's table list the same
// names; reading a name that is not in the table is refused.
#include <catch2/catch.hpp>

#include <filesystem>
#include <fstream>
#include <regex>
#include <set>
#include <sstream>
#include <stdexcept>

#include <lmgrid/base/env.hpp>

#include "../support.hpp"

using namespace lmgrid;

TEST_CASE("the README's environment table lists exactly the variables lmgrid reads", "[unit]") {
  auto readme = lmgrid::test::source_root() / "README.md";
  std::ifstream in(readme);
  REQUIRE(in);
  std::stringstream ss;
  ss << in.rdbuf();
  std::string text = ss.str();
  auto start = text.find("## Environment variables");
  REQUIRE(start != std::string::npos);
  auto end = text.find("\n## ", start + 1);
  std::string section = text.substr(start, end - start);
  // Names in the first column of the table: | `NAME` | ... or | `NAME`, `NAME2` | ...
  std::set<std::string> documented;
  std::istringstream lines(section);
  std::regex name_re("`([A-Z_][A-Z0-9_]*)`");
  for (std::string line; std::getline(lines, line);) {
    if (line.rfind("| `", 0) != 0) continue;
    std::string first = line.substr(0, line.find('|', 1));
    for (std::sregex_iterator it(first.begin(), first.end(), name_re), e; it != e; ++it) documented.insert((*it)[1]);
  }
  std::set<std::string> read;
  for (const auto& v : env_vars()) read.insert(v.name);
  CHECK(documented == read);
}

TEST_CASE("env_or reads listed variables and refuses unlisted ones", "[unit]") {
  test::ScopedEnv db("LMGRID_DB", "/x/y.db");
  CHECK(env_or("LMGRID_DB", "d") == "/x/y.db");
  test::ScopedEnv empty("LMGRID_DB", "");
  CHECK(env_or("LMGRID_DB", "d") == "d");
  CHECK(env_set("LMGRID_DB"));
  CHECK_THROWS_AS(env_or("LMGRID_NOT_A_VARIABLE", ""), std::logic_error);
  test::ScopedEnv cache("LMGRID_CACHE", "/c");
  CHECK(cache_dir() == "/c");
}
