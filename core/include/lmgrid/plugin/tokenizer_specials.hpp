// Checks shared by the tokenizers whose specials are strings (byte, bpe).
#pragma once

#include <stdexcept>
#include <string>
#include <vector>

namespace lmgrid {

// Saved state names the specials again; an empty one would match at every offset and encode()
// would never advance (a hang found by fuzzing). Throws std::runtime_error naming `what` (e.g.
// "saved lmgrid-bpe tokenizer state") and the special's index.
inline void check_special_strings(const std::vector<std::string>& specials, const std::string& what) {
  for (size_t k = 0; k < specials.size(); ++k)
    if (specials[k].empty()) throw std::runtime_error(what + ": special token " + std::to_string(k) + " is empty");
}

}  // namespace lmgrid
