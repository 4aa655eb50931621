// RunConfig: canonical JSON, hash and the reverse (as stored in the database).
#include "lmgrid/config/run_config.hpp"

#include <algorithm>

#include <fmt/format.h>
#include <nlohmann/json.hpp>
#include <toml++/toml.h>

#include "lmgrid/base/errors.hpp"
#include "lmgrid/base/util.hpp"

namespace lmgrid {

using json = nlohmann::json;

std::map<std::string, Value> RunConfig::section(const std::string& name) const {
  std::map<std::string, Value> out;
  std::string prefix = name + ".";
  for (const auto& [k, v] : values)
    if (k.rfind(prefix, 0) == 0 && k != prefix + "plugin") out[k.substr(prefix.size())] = v;
  return out;
}

const std::string& RunConfig::plugin(const std::string& section) const {
  auto it = values.find(section + ".plugin");
  if (it == values.end() || !std::holds_alternative<std::string>(it->second))
    throw UserError("[" + section + "] has no plugin");
  return std::get<std::string>(it->second);
}

static json to_json(const Value& v) {
  if (auto* b = std::get_if<bool>(&v)) return *b;
  if (auto* i = std::get_if<int64_t>(&v)) return *i;
  if (auto* d = std::get_if<double>(&v)) return *d;
  return std::get<std::string>(v);
}

static Value from_json_value(const json& j) {
  if (j.is_boolean()) return j.get<bool>();
  if (j.is_number_integer()) return j.get<int64_t>();
  if (j.is_number_float()) return j.get<double>();
  return j.get<std::string>();
}

std::string RunConfig::canonical_json() const {
  json j = json::object();
  j["experiment"] = experiment;
  j["seed"] = seed;
  for (const auto& [k, v] : values) {
    auto dot = k.find('.');
    j[k.substr(0, dot)][k.substr(dot + 1)] = to_json(v);
  }
  return j.dump();
}

std::string RunConfig::hash() const { return sha256_hex(canonical_json()); }

RunConfig RunConfig::from_json(const std::string& text) {
  json j = json::parse(text);
  RunConfig c;
  for (auto it = j.begin(); it != j.end(); ++it) {
    if (it.key() == "experiment") {
      c.experiment = it.value().get<std::string>();
    } else if (it.key() == "seed") {
      c.seed = it.value().get<int64_t>();
    } else if (it.value().is_object()) {
      for (auto kv = it.value().begin(); kv != it.value().end(); ++kv)
        c.values[it.key() + "." + kv.key()] = from_json_value(kv.value());
    }
  }
  return c;
}

Value parse_scalar(const std::string& text) {
  try {
    auto tbl = toml::parse("v = " + text);
    const toml::node* n = tbl.get("v");
    if (auto x = n->value_exact<int64_t>()) return *x;
    if (auto x = n->value_exact<double>()) return *x;
    if (auto x = n->value_exact<bool>()) return *x;
    if (auto x = n->value_exact<std::string>()) return *x;
  } catch (const toml::parse_error&) {
  }
  // TOML refuses an integer beyond 64 bits; say so rather than take it for a string.
  std::string digits = text;
  digits.erase(std::remove(digits.begin(), digits.end(), '_'), digits.end());
  if (!digits.empty() && (digits[0] == '+' || digits[0] == '-')) digits.erase(0, 1);
  if (!digits.empty() && std::all_of(digits.begin(), digits.end(), [](char c) { return c >= '0' && c <= '9'; }))
    throw UserError(fmt::format("{} is out of the int64 range [-9223372036854775808, 9223372036854775807]", text));
  return text;
}

}  // namespace lmgrid
