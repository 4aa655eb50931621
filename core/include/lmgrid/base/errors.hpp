// lmgrid error types. The exit code a user sees follows from the type:
//   UserError    -> exit 2 (bad input: config, CLI arguments, missing data, ABI mismatch)
//   anything else -> exit 1 (runtime failure)
// Messages say what went wrong and where (file:line:col, key, plugin name).
#pragma once

#include <stdexcept>
#include <string>

namespace lmgrid {

// Bad input from the user: the host prints the message and exits with status 2.
class UserError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// An input file named by the config (a data set, a data source's file) is not there. Before a
// grid starts this is bad input like any other (exit 2); in a worker, after the grid was
// validated, the file has disappeared (deleted, an unmounted disk): a fault of the machine, so
// the run ends `interrupted` and resumes once the file is back.
class MissingInputError : public UserError {
 public:
  using UserError::UserError;
};

// An exception thrown by plugin code, re-thrown at the plugin boundary with the plugin named.
class PluginError : public std::runtime_error {
 public:
  PluginError(std::string plugin, const std::string& what)
      : std::runtime_error("plugin " + plugin + ": " + what), plugin_(std::move(plugin)) {}
  const std::string& plugin() const { return plugin_; }

 private:
  std::string plugin_;
};

// A checkpoint whose checksum, magic or version does not match: never loaded.
class CheckpointError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

}  // namespace lmgrid
