// Every environment variable lmgrid reads, in one module and one table (the README's
// "Environment variables" table lists the same names; a test keeps the two in step).
// Code reads a variable only through env_or / env_set with a name from env_vars(): reading a
// name that is not in the table is a programming error (std::logic_error), so no variable can
// be read without being documented.
#pragma once

#include <filesystem>
#include <string>
#include <vector>

namespace lmgrid {

struct EnvVar {
  const char* name;
  const char* effect;  // one line, as in the README
};
const std::vector<EnvVar>& env_vars();

// The variable's value, or `fallback` when it is unset or empty.
std::string env_or(const char* name, const std::string& fallback);
// True when the variable is set (even to "").
bool env_set(const char* name);
// lmgrid's cache folder: LMGRID_CACHE, else $XDG_CACHE_HOME/lmgrid, else ~/.cache/lmgrid.
std::filesystem::path cache_dir();

}  // namespace lmgrid
