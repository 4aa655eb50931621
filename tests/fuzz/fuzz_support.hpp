// Shared by the libFuzzer targets (tests/fuzz/fuzz_*.cpp): the contract a target checks is that
// bad input ends in the exception type its API documents, never in a crash, a hang, a sanitizer
// report or another exception type. Anything else aborts, which libFuzzer records as a crash.
#pragma once

#include <cstdio>
#include <cstdlib>
#include <exception>
#include <string>
#include <typeinfo>

namespace lmgrid::fuzz {

// Stops the fuzzer with what broke the contract (libFuzzer saves the input as crash-<sha1>).
[[noreturn]] inline void contract_broken(const std::string& what) {
  std::fprintf(stderr, "lmgrid fuzz: contract broken: %s\n", what.c_str());
  std::abort();
}

// The dynamic type's (mangled) name and message of the exception being handled.
inline std::string describe(const std::exception& e) { return std::string(typeid(e).name()) + ": " + e.what(); }

}  // namespace lmgrid::fuzz
