// Faults of the machine, as opposed to faults of a run (errors.hpp): their exit code is 1 like
// any runtime error, but a run they stop ends `interrupted`, not `failed`, and resumes later.
#pragma once

#include <stdexcept>
#include <string>

namespace lmgrid {

// A fault of the machine, not of the run: the disk or quota is full, an I/O error, a read-only
// file system. A run it stops ends `interrupted` (it resumes once the fault is cleared) and the
// grid starts no new run.
class MachineError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// errno values that are faults of the machine (ENOSPC, EDQUOT, EIO, EROFS).
bool is_machine_errno(int err);
// Throws MachineError for such an errno, else std::runtime_error; the message is
// "<what>: <strerror(err)>".
[[noreturn]] void throw_io_error(const std::string& what, int err);
}  // namespace lmgrid
