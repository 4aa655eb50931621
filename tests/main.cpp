// Catch2 main for lmgrid_tests. Tags: [unit], [sweep] (see tests/CMakeLists.txt).
// Every test's scratch files go to one private folder (TMPDIR, so fs::temp_directory_path()
// and mkstemp use it), removed when the binary exits: tests leave nothing in /tmp.
#define CATCH_CONFIG_RUNNER
#include <catch2/catch.hpp>

#include <cstdlib>
#include <filesystem>
#include <string>

int main(int argc, char** argv) {
  namespace fs = std::filesystem;
  std::string tmpl = (fs::temp_directory_path() / "lmgrid-tests-XXXXXX").string();
  if (!mkdtemp(tmpl.data())) {
    std::perror("lmgrid_tests: mkdtemp");
    return 1;
  }
  setenv("TMPDIR", tmpl.c_str(), 1);
  int rc = Catch::Session().run(argc, argv);
  std::error_code ec;
  fs::remove_all(tmpl, ec);
  return rc;
}
