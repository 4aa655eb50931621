// Typed configuration values, parameter specs and validated parameter tables.
//
// A plugin declares its parameters as ParamSpecs (name, type, default, range, one-line doc).
// The host validates the user's table for that plugin against them before anything runs
// (unknown key -> nearest-name hint, wrong type, out of range) and hands the plugin a
// Params object in which every declared key is present and has the declared type.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <variant>
#include <vector>

namespace lmgrid {

// A scalar config value. Lists exist only in grids, never in one run's config.
using Value = std::variant<bool, int64_t, double, std::string>;

enum class ParamType { boolean, integer, real, string };

const char* type_name(ParamType t);
ParamType type_of(const Value& v);
// Canonical text of a value: integers plain, reals in shortest round-trip form ("0.001"),
// strings as is, booleans true/false. Used for hashing, the params table and display.
std::string to_string(const Value& v);

struct ParamSpec {
  std::string name;
  ParamType type = ParamType::real;
  Value default_value = 0.0;
  std::optional<double> min;  // inclusive bounds for integer and real params
  std::optional<double> max;
  std::vector<std::string> choices;  // allowed values of a string param (empty = any)
  std::string doc;                   // one line, shown by `lmgrid plugins show`
};

// Convenience constructors, so plugin spec lists read as tables.
ParamSpec int_param(std::string name, int64_t def, std::string doc, std::optional<double> min = {},
                    std::optional<double> max = {});
ParamSpec real_param(std::string name, double def, std::string doc, std::optional<double> min = {},
                     std::optional<double> max = {});
ParamSpec bool_param(std::string name, bool def, std::string doc);
ParamSpec string_param(std::string name, std::string def, std::string doc, std::vector<std::string> choices = {});

// A validated parameter table: every declared key present with its declared type.
// Accessors throw std::out_of_range naming the key if a plugin asks for an undeclared key.
class Params {
 public:
  Params() = default;
  explicit Params(std::map<std::string, Value> values) : values_(std::move(values)) {}

  int64_t i(const std::string& key) const;
  double f(const std::string& key) const;
  bool b(const std::string& key) const;
  const std::string& s(const std::string& key) const;
  bool has(const std::string& key) const { return values_.count(key) > 0; }
  const std::map<std::string, Value>& values() const { return values_; }
  void set(const std::string& key, Value v) { values_[key] = std::move(v); }

 private:
  const Value& at(const std::string& key) const;
  std::map<std::string, Value> values_;
};

// Validates `given` (raw user values, keyed by param name) against `specs`; fills defaults.
// `where` prefixes error messages, e.g. "experiments/x.toml: [model] (plugin gpt)".
// Throws UserError on unknown keys (with a "did you mean" hint), wrong types and ranges.
// An integer given for a real param is accepted and converted. `locations` (optional) maps a
// key to its source position ("file:line:col"), which then starts the message.
Params validate_params(const std::vector<ParamSpec>& specs, const std::map<std::string, Value>& given,
                       const std::string& where, const std::map<std::string, std::string>* locations = nullptr);

// Nearest candidate by edit distance, or "" when nothing is close.
std::string nearest(const std::string& word, const std::vector<std::string>& candidates);

}  // namespace lmgrid
