// Typed values, parameter specs and validation against them.
#include "lmgrid/base/params.hpp"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <sstream>
#include <stdexcept>

#include <fmt/format.h>

#include "lmgrid/base/errors.hpp"

namespace lmgrid {

const char* type_name(ParamType t) {
  switch (t) {
    case ParamType::boolean: return "bool";
    case ParamType::integer: return "int";
    case ParamType::real: return "float";
    case ParamType::string: return "string";
  }
  return "?";
}

ParamType type_of(const Value& v) {
  switch (v.index()) {
    case 0: return ParamType::boolean;
    case 1: return ParamType::integer;
    case 2: return ParamType::real;
    default: return ParamType::string;
  }
}

std::string to_string(const Value& v) {
  if (auto* b = std::get_if<bool>(&v)) return *b ? "true" : "false";
  if (auto* i = std::get_if<int64_t>(&v)) return std::to_string(*i);
  if (auto* d = std::get_if<double>(&v)) {
    if (std::isnan(*d)) return "nan";
    if (std::isinf(*d)) return *d > 0 ? "inf" : "-inf";
    char buf[64];
    auto res = std::to_chars(buf, buf + sizeof(buf), *d);  // shortest round-trip form
    std::string s(buf, res.ptr);
    // Keep reals recognisable as reals: "1" -> "1.0" (but not "1e-05").
    if (s.find_first_of(".eEn") == std::string::npos) s += ".0";
    return s;
  }
  return std::get<std::string>(v);
}

ParamSpec int_param(std::string name, int64_t def, std::string doc, std::optional<double> min,
                    std::optional<double> max) {
  return ParamSpec{std::move(name), ParamType::integer, def, min, max, {}, std::move(doc)};
}
ParamSpec real_param(std::string name, double def, std::string doc, std::optional<double> min,
                     std::optional<double> max) {
  return ParamSpec{std::move(name), ParamType::real, def, min, max, {}, std::move(doc)};
}
ParamSpec bool_param(std::string name, bool def, std::string doc) {
  return ParamSpec{std::move(name), ParamType::boolean, def, {}, {}, {}, std::move(doc)};
}
ParamSpec string_param(std::string name, std::string def, std::string doc, std::vector<std::string> choices) {
  return ParamSpec{std::move(name), ParamType::string, std::move(def), {}, {}, std::move(choices), std::move(doc)};
}

const Value& Params::at(const std::string& key) const {
  auto it = values_.find(key);
  if (it == values_.end()) throw std::out_of_range("parameter '" + key + "' was not declared");
  return it->second;
}
int64_t Params::i(const std::string& key) const {
  const Value& v = at(key);
  if (auto* p = std::get_if<int64_t>(&v)) return *p;
  throw std::invalid_argument("parameter '" + key + "' is not an int");
}
double Params::f(const std::string& key) const {
  const Value& v = at(key);
  if (auto* p = std::get_if<double>(&v)) return *p;
  if (auto* p = std::get_if<int64_t>(&v)) return static_cast<double>(*p);
  throw std::invalid_argument("parameter '" + key + "' is not a float");
}
bool Params::b(const std::string& key) const {
  const Value& v = at(key);
  if (auto* p = std::get_if<bool>(&v)) return *p;
  throw std::invalid_argument("parameter '" + key + "' is not a bool");
}
const std::string& Params::s(const std::string& key) const {
  const Value& v = at(key);
  if (auto* p = std::get_if<std::string>(&v)) return *p;
  throw std::invalid_argument("parameter '" + key + "' is not a string");
}

static size_t edit_distance(const std::string& a, const std::string& b) {
  std::vector<size_t> prev(b.size() + 1), cur(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) prev[j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    cur[0] = i;
    for (size_t j = 1; j <= b.size(); ++j)
      cur[j] = std::min({prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1)});
    std::swap(prev, cur);
  }
  return prev[b.size()];
}

std::string nearest(const std::string& word, const std::vector<std::string>& candidates) {
  std::string best;
  size_t best_d = std::max<size_t>(3, word.size() / 2) + 1;
  for (const auto& c : candidates) {
    size_t d = edit_distance(word, c);
    if (d < best_d) best_d = d, best = c;
  }
  return best;
}

// "must be >= 1", "must be in [0, 0.9]", "must be <= 8": bounds in the parameter's own type.
static std::string range_text(const ParamSpec& spec) {
  auto bound = [&](double b) {
    if (spec.type == ParamType::integer && std::abs(b) < 9.2e18) return fmt::format("{}", static_cast<int64_t>(b));
    return to_string(Value(b));
  };
  if (spec.min && spec.max) return fmt::format("must be in [{}, {}]", bound(*spec.min), bound(*spec.max));
  if (spec.min) return "must be >= " + bound(*spec.min);
  if (spec.max) return "must be <= " + bound(*spec.max);
  return "must be a number";
}

Params validate_params(const std::vector<ParamSpec>& specs, const std::map<std::string, Value>& given,
                       const std::string& where_in, const std::map<std::string, std::string>* locations) {
  std::map<std::string, Value> out;
  std::vector<std::string> names;
  for (const auto& s : specs) names.push_back(s.name);
  for (const auto& [key, value] : given) {
    std::string where = where_in;
    if (locations && locations->count(key) && !locations->at(key).empty()) where = locations->at(key) + ": " + where_in;
    auto it = std::find_if(specs.begin(), specs.end(), [&key = key](const ParamSpec& s) { return s.name == key; });
    if (it == specs.end()) {
      std::string hint = nearest(key, names);
      std::string known;
      for (const auto& n : names) known += (known.empty() ? "" : ", ") + n;
      throw UserError(fmt::format("{}: unknown key '{}'{}; known keys: {}", where, key,
                                  hint.empty() ? "" : "; did you mean '" + hint + "'?",
                                  known.empty() ? "(none)" : known));
    }
    const ParamSpec& spec = *it;
    Value v = value;
    ParamType t = type_of(v);
    if (spec.type == ParamType::real && t == ParamType::integer) {
      v = static_cast<double>(std::get<int64_t>(v));
      t = ParamType::real;
    }
    if (t != spec.type)
      throw UserError(fmt::format("{}: key '{}' must be {} but got {} ({})", where, key, type_name(spec.type),
                                  type_name(t), to_string(value)));
    if (t == ParamType::integer || t == ParamType::real) {
      double x = t == ParamType::integer ? static_cast<double>(std::get<int64_t>(v)) : std::get<double>(v);
      if (std::isnan(x) || (spec.min && x < *spec.min) || (spec.max && x > *spec.max)) {
        throw UserError(
            fmt::format("{}: key '{}' = {} is out of range: {}", where, key, to_string(v), range_text(spec)));
      }
    }
    if (t == ParamType::string && !spec.choices.empty()) {
      const auto& s = std::get<std::string>(v);
      if (std::find(spec.choices.begin(), spec.choices.end(), s) == spec.choices.end()) {
        std::string opts;
        for (const auto& c : spec.choices) opts += (opts.empty() ? "" : ", ") + c;
        throw UserError(fmt::format("{}: key '{}' = \"{}\" is not one of: {}", where, key, s, opts));
      }
    }
    out[key] = v;
  }
  for (const auto& s : specs)
    if (!out.count(s.name)) out[s.name] = s.default_value;
  return Params(std::move(out));
}

}  // namespace lmgrid
