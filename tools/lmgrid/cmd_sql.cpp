// lmgrid sql "SELECT ...": read-only SQL over the results database. The database is opened
// read-only and only statements SQLite reports as read-only are prepared, so nothing changes.
#include <fmt/format.h>

#include <lmgrid/base/errors.hpp>
#include <lmgrid/store/store.hpp>
#include <lmgrid/base/util.hpp>
#include <lmgrid/report/table.hpp>

#include "commands.hpp"

namespace lmgrid::cli {

void add_sql(CLI::App& app) {
  struct Opt {
    std::string db, format = "table", query;
  };
  auto opt = std::make_shared<Opt>();
  auto* cmd = app.add_subcommand("sql", "Run a read-only SQL query on the results database");
  cmd->add_option("query", opt->query, "one SELECT statement")->required();
  cmd->add_option("--db", opt->db, "results database (default $LMGRID_DB or results/lmgrid.db)");
  cmd->add_option("--format", opt->format, "table, csv or json");
  cmd->callback([opt] {
    Format format = parse_format(opt->format);
    Store store(opt->db.empty() ? default_db_path() : std::filesystem::path(opt->db), true);
    sqlite3_stmt* raw = nullptr;
    const char* tail = nullptr;
    if (sqlite3_prepare_v2(store.db().raw(), opt->query.c_str(), -1, &raw, &tail) != SQLITE_OK)
      throw UserError(fmt::format("SQL error: {}", sqlite3_errmsg(store.db().raw())));
    std::unique_ptr<sqlite3_stmt, int (*)(sqlite3_stmt*)> guard(raw, sqlite3_finalize);
    if (!raw) throw UserError("empty SQL statement");
    if (!sqlite3_stmt_readonly(raw))
      throw UserError("lmgrid sql is read-only: the statement would change the database (use SELECT)");
    if (tail && std::string(tail).find_first_not_of(" \t\r\n;") != std::string::npos)
      throw UserError("lmgrid sql takes one statement");
    int n = sqlite3_column_count(raw);
    std::vector<std::string> headers;
    for (int i = 0; i < n; ++i) headers.push_back(sqlite3_column_name(raw, i));
    std::vector<std::vector<std::string>> rows;
    int rc;
    while ((rc = sqlite3_step(raw)) == SQLITE_ROW) {
      std::vector<std::string> row;
      for (int i = 0; i < n; ++i) {
        switch (sqlite3_column_type(raw, i)) {
          case SQLITE_NULL: row.emplace_back(""); break;
          case SQLITE_INTEGER: row.push_back(std::to_string(sqlite3_column_int64(raw, i))); break;
          case SQLITE_FLOAT: row.push_back(fmt::format("{}", sqlite3_column_double(raw, i))); break;
          default: {
            const unsigned char* t = sqlite3_column_text(raw, i);
            row.emplace_back(t ? reinterpret_cast<const char*>(t) : "");
          }
        }
      }
      rows.push_back(std::move(row));
    }
    if (rc != SQLITE_DONE) throw UserError(fmt::format("SQL error: {}", sqlite3_errmsg(store.db().raw())));
    std::fputs(render_rows(headers, rows, format).c_str(), stdout);
  });
}

}  // namespace lmgrid::cli
