// cpu_kernels_enabled: lmgrid/kernels/cpu_kernels.hpp.
#include "lmgrid/kernels/cpu_kernels.hpp"

#include <cstdlib>
#include <stdexcept>
#include <string>

namespace lmgrid::kernels {

bool cpu_kernels_enabled() {
  const char* v = std::getenv("LMGRID_CPU_KERNELS");
  const std::string s = v ? v : "auto";
  if (s == "auto" || s.empty()) return true;
  if (s == "composite") return false;
  throw std::invalid_argument("LMGRID_CPU_KERNELS=" + s + ": expected auto or composite");
}

}  // namespace lmgrid::kernels
