// Catch2 main for lmgrid_tests. Tags: [unit], [sweep] (see tests/CMakeLists.txt).
#define CATCH_CONFIG_MAIN
#include <catch2/catch.hpp>
