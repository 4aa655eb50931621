// Command output a person or a script reads: rows under headers as an aligned text table,
// CSV or JSON (`--format table|csv|json`).
#pragma once

#include <string>
#include <vector>

namespace lmgrid {

// Output formats of commands a script may read.
enum class Format { table, csv, json };
Format parse_format(const std::string& s);  // throws UserError

// Prints rows under headers in the chosen format. Cells are already text; `numeric` marks
// columns to right-align (table) and emit unquoted (json) when they parse as numbers.
std::string render_rows(const std::vector<std::string>& headers, const std::vector<std::vector<std::string>>& rows,
                        Format format);

}  // namespace lmgrid
