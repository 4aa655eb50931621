// RAII wrapper over SQLite: errors become std::runtime_error with the SQL text.
#include "lmgrid/store/sqlite.hpp"

#include <stdexcept>

#include "lmgrid/base/errors.hpp"
#include "lmgrid/base/machine_error.hpp"

namespace lmgrid::sql {

// A full disk or an I/O error under the database is a fault of the machine (MachineError:
// the run is interrupted, not failed); anything else is a runtime error.
[[noreturn]] static void throw_sql_error(sqlite3* db, const std::string& what) {
  std::string msg = what + ": " + (db ? sqlite3_errmsg(db) : "sqlite error");
  int code = db ? (sqlite3_extended_errcode(db) & 0xff) : SQLITE_ERROR;
  if (code == SQLITE_FULL || code == SQLITE_IOERR) throw MachineError(msg);
  throw std::runtime_error(msg);
}

Stmt::Stmt(sqlite3* db, const std::string& sql) : db_(db) {
  if (sqlite3_prepare_v2(db, sql.c_str(), -1, &stmt_, nullptr) != SQLITE_OK)
    throw_sql_error(db, "preparing SQL [" + sql + "]");
}
Stmt::Stmt(Stmt&& o) noexcept : db_(o.db_), stmt_(o.stmt_) { o.stmt_ = nullptr; }
// Destructors cannot report: finalize returns the last step's error (already thrown), and close
// fails only while statements are open (none are: every Stmt is finalized first).
Stmt::~Stmt() { (void)sqlite3_finalize(stmt_); }

// Every bind's result code is checked: a wrong index or an oversized value is a bug to report,
// not a NULL silently stored.
void Stmt::check_bind(int rc, int i) {
  if (rc == SQLITE_OK) return;
  std::string sql = sqlite3_sql(stmt_) ? sqlite3_sql(stmt_) : "";
  throw_sql_error(db_, "binding parameter " + std::to_string(i) + " of SQL [" + sql + "]");
}
Stmt& Stmt::bind(int i, int64_t v) {
  check_bind(sqlite3_bind_int64(stmt_, i, v), i);
  return *this;
}
Stmt& Stmt::bind(int i, double v) {
  check_bind(sqlite3_bind_double(stmt_, i, v), i);
  return *this;
}
Stmt& Stmt::bind(int i, const std::string& v) {
  check_bind(sqlite3_bind_text(stmt_, i, v.data(), static_cast<int>(v.size()), SQLITE_TRANSIENT), i);
  return *this;
}
Stmt& Stmt::bind_null(int i) {
  check_bind(sqlite3_bind_null(stmt_, i), i);
  return *this;
}
Stmt& Stmt::bind(int i, const Value& v) {
  if (auto* b = std::get_if<bool>(&v)) return bind(i, static_cast<int64_t>(*b));
  if (auto* x = std::get_if<int64_t>(&v)) return bind(i, *x);
  if (auto* d = std::get_if<double>(&v)) return bind(i, *d);
  return bind(i, std::get<std::string>(v));
}

bool Stmt::step() {
  int rc = sqlite3_step(stmt_);
  if (rc == SQLITE_ROW) return true;
  if (rc == SQLITE_DONE) return false;
  std::string sql = sqlite3_sql(stmt_) ? sqlite3_sql(stmt_) : "";
  sqlite3_reset(stmt_);
  throw_sql_error(db_, "running SQL [" + sql + "]");
}
void Stmt::run() {
  while (step()) {
  }
  reset();
}
void Stmt::reset() {
  // sqlite3_reset repeats the last step's error, which step() has already thrown.
  (void)sqlite3_reset(stmt_);
  (void)sqlite3_clear_bindings(stmt_);  // always SQLITE_OK
}
int Stmt::columns() const { return sqlite3_column_count(stmt_); }
std::string Stmt::column_name(int i) const { return sqlite3_column_name(stmt_, i); }
bool Stmt::is_null(int i) const { return sqlite3_column_type(stmt_, i) == SQLITE_NULL; }
int Stmt::type(int i) const { return sqlite3_column_type(stmt_, i); }
int64_t Stmt::i64(int i) const { return sqlite3_column_int64(stmt_, i); }
double Stmt::f64(int i) const { return sqlite3_column_double(stmt_, i); }
std::string Stmt::text(int i) const {
  const unsigned char* t = sqlite3_column_text(stmt_, i);
  return t ? std::string(reinterpret_cast<const char*>(t), sqlite3_column_bytes(stmt_, i)) : std::string();
}

Db::Db(const std::string& path, bool read_only) : path_(path) {
  int flags = read_only ? SQLITE_OPEN_READONLY : (SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE);
  if (sqlite3_open_v2(path.c_str(), &db_, flags | SQLITE_OPEN_FULLMUTEX, nullptr) != SQLITE_OK) {
    std::string msg = db_ ? sqlite3_errmsg(db_) : "cannot open";
    sqlite3_close(db_);
    db_ = nullptr;
    throw std::runtime_error("opening database " + path + ": " + msg);
  }
  (void)sqlite3_busy_timeout(db_, 30000);  // always SQLITE_OK on an open connection
  if (read_only) exec("PRAGMA query_only = ON");
}
Db::Db(Db&& o) noexcept : db_(o.db_), path_(std::move(o.path_)) { o.db_ = nullptr; }
Db::~Db() { (void)sqlite3_close(db_); }

void Db::exec(const std::string& sql) {
  char* err = nullptr;
  if (sqlite3_exec(db_, sql.c_str(), nullptr, nullptr, &err) != SQLITE_OK) {
    sqlite3_free(err);
    throw_sql_error(db_, "SQL [" + sql.substr(0, 200) + "]");
  }
}
int64_t Db::last_insert_id() const { return sqlite3_last_insert_rowid(db_); }

Transaction::Transaction(Db& db) : db_(db) { db_.exec("BEGIN IMMEDIATE"); }
Transaction::~Transaction() {
  if (!done_) {
    try {
      db_.exec("ROLLBACK");
    } catch (...) {
    }
  }
}
void Transaction::commit() {
  db_.exec("COMMIT");
  done_ = true;
}

}  // namespace lmgrid::sql
