// Text tables, CSV and JSON for command output (see table.hpp).
#include "lmgrid/report/table.hpp"

#include <algorithm>
#include <cstdlib>
#include <sstream>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "lmgrid/base/errors.hpp"

namespace lmgrid {

Format parse_format(const std::string& s) {
  if (s == "table") return Format::table;
  if (s == "csv") return Format::csv;
  if (s == "json") return Format::json;
  throw UserError("--format must be table, csv or json (got '" + s + "')");
}

static bool looks_numeric(const std::string& s) {
  if (s.empty()) return false;
  char* end = nullptr;
  std::strtod(s.c_str(), &end);
  return end && *end == '\0';
}

static std::string csv_cell(const std::string& s) {
  if (s.find_first_of(",\"\n") == std::string::npos) return s;
  std::string out = "\"";
  for (char c : s) out += c == '"' ? std::string("\"\"") : std::string(1, c);
  return out + "\"";
}

std::string render_rows(const std::vector<std::string>& headers, const std::vector<std::vector<std::string>>& rows,
                        Format format) {
  std::string out;
  if (format == Format::json) {
    nlohmann::json arr = nlohmann::json::array();
    for (const auto& r : rows) {
      nlohmann::json o = nlohmann::json::object();
      for (size_t i = 0; i < headers.size() && i < r.size(); ++i) {
        if (looks_numeric(r[i]) && r[i] != "nan" && r[i] != "inf") {
          o[headers[i]] = nlohmann::json::parse(r[i], nullptr, false).is_discarded() ? nlohmann::json(r[i])
                                                                                     : nlohmann::json::parse(r[i]);
        } else if (r[i].empty()) {
          o[headers[i]] = nullptr;
        } else {
          o[headers[i]] = r[i];
        }
      }
      arr.push_back(o);
    }
    return arr.dump(2) + "\n";
  }
  if (format == Format::csv) {
    for (size_t i = 0; i < headers.size(); ++i) out += (i ? "," : "") + csv_cell(headers[i]);
    out += "\n";
    for (const auto& r : rows) {
      for (size_t i = 0; i < r.size(); ++i) out += (i ? "," : "") + csv_cell(r[i]);
      out += "\n";
    }
    return out;
  }
  std::vector<size_t> width(headers.size());
  std::vector<bool> numeric(headers.size(), true);
  for (size_t i = 0; i < headers.size(); ++i) width[i] = headers[i].size();
  for (const auto& r : rows)
    for (size_t i = 0; i < r.size() && i < headers.size(); ++i) {
      width[i] = std::max(width[i], r[i].size());
      if (!r[i].empty() && !looks_numeric(r[i])) numeric[i] = false;
    }
  auto line = [&](const std::vector<std::string>& r) {
    std::string s;
    for (size_t i = 0; i < headers.size(); ++i) {
      std::string cell = i < r.size() ? r[i] : "";
      std::string pad(width[i] - std::min(width[i], cell.size()), ' ');
      s += (i ? "  " : "") + (numeric[i] ? pad + cell : cell + (i + 1 < headers.size() ? pad : ""));
    }
    return s + "\n";
  };
  out += line(headers);
  std::vector<std::string> rule;
  for (size_t w : width) rule.push_back(std::string(w, '-'));
  out += line(rule);
  for (const auto& r : rows) out += line(r);
  return out;
}

}  // namespace lmgrid
