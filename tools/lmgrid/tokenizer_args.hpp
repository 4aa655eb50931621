// What `lmgrid tokenize` and `lmgrid data tokenize` share: the tokenizer's --set KEY=VALUE
// options, typed by its parameter specs, and the rule that a tokenizer's complaints about the
// user's text are bad input (exit 2). Header-only, in the CLI library.
#pragma once

#include <map>
#include <stdexcept>
#include <string>
#include <vector>

#include <fmt/format.h>

#include <lmgrid/base/errors.hpp>
#include <lmgrid/base/params.hpp>

namespace lmgrid::cli {

// "KEY=VALUE" -> a value of the type `specs` declare for KEY (unknown keys are left to
// validate_params, which suggests the nearest).
inline std::map<std::string, Value> parse_tokenizer_sets(const std::vector<std::string>& sets,
                                                         const std::vector<ParamSpec>& specs) {
  std::map<std::string, Value> out;
  for (const auto& s : sets) {
    size_t eq = s.find('=');
    if (eq == std::string::npos || eq == 0) throw UserError("--set " + s + ": expected KEY=VALUE");
    std::string key = s.substr(0, eq), text = s.substr(eq + 1);
    if (key.rfind("tokenizer.", 0) == 0) key = key.substr(10);
    if (text.size() >= 2 && text.front() == '"' && text.back() == '"') text = text.substr(1, text.size() - 2);
    ParamType type = ParamType::string;
    for (const auto& spec : specs)
      if (spec.name == key) type = spec.type;
    try {
      size_t used = 0;
      switch (type) {
        case ParamType::integer: out[key] = static_cast<int64_t>(std::stoll(text, &used)); break;
        case ParamType::real: out[key] = std::stod(text, &used); break;
        case ParamType::boolean:
          if (text != "true" && text != "false") throw std::invalid_argument("bool");
          out[key] = text == "true", used = text.size();
          break;
        case ParamType::string: out[key] = text, used = text.size(); break;
      }
      if (used != text.size()) throw std::invalid_argument("trailing");
    } catch (const std::logic_error&) {
      throw UserError(fmt::format("--set {}: '{}' is not a {}", s, text, type_name(type)));
    }
  }
  return out;
}

// Runs a tokenizer call: the tokenizer's complaints about its input (std::invalid_argument,
// std::out_of_range: bad UTF-8, unknown ids) are bad input, named "ORIGIN: ID: what" (ORIGIN:
// the file or source the text came from, if given), anything else a plugin failure.
template <class F>
auto guard_tokenizer_input(const std::string& id, F&& f, const std::string& origin = "") -> decltype(f()) {
  const std::string where = origin.empty() ? id : origin + ": " + id;
  try {
    return f();
  } catch (const std::invalid_argument& e) {
    throw UserError(fmt::format("{}: {}", where, e.what()));
  } catch (const std::out_of_range& e) {
    throw UserError(fmt::format("{}: {}", where, e.what()));
  } catch (const UserError&) {
    throw;
  } catch (const std::exception& e) {
    throw PluginError(id, e.what());
  }
}

}  // namespace lmgrid::cli
