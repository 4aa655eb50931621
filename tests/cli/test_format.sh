# The C++ follows .clang-format (tools/format.sh formats it; --check is what this test runs).
. "$(dirname "$0")/lib.sh"
cd "${LMGRID_SOURCE:?}"
command -v clang-format >/dev/null || { fail "clang-format is not installed (tools/setup.sh test installs it)"; finish; exit; }
expect_exit 0 "every C++ file follows .clang-format" -- tools/format.sh --check
finish
