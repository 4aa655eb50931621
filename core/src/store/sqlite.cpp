// RAII wrapper over SQLite: errors become exceptions with the SQL text and the reason (see
// throw_sql_error for which are faults of the machine).
#include "lmgrid/store/sqlite.hpp"

#include <unistd.h>

#include <cctype>
#include <chrono>
#include <thread>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <stdexcept>

#include <fmt/format.h>

#include "lmgrid/base/env.hpp"
#include "lmgrid/base/errors.hpp"
#include "lmgrid/base/machine_error.hpp"

namespace lmgrid::sql {

// How long a statement waits for a lock another process holds: LMGRID_DB_TIMEOUT seconds
// (default 30). Past it the statement fails with SQLITE_BUSY.
int Db::busy_timeout_s() {
  const std::string v = env_or("LMGRID_DB_TIMEOUT", "");
  if (v.empty()) return 30;
  char* end = nullptr;
  long s = std::strtol(v.c_str(), &end, 10);
  if (end == v.c_str() || *end != '\0' || s < 1 || s > 7 * 24 * 3600)
    throw UserError(fmt::format("environment variable LMGRID_DB_TIMEOUT={}: expected whole seconds in [1, 604800]", v));
  return static_cast<int>(s);
}

// What failed, with the reason SQLite gives, as the exception a caller can act on:
//  - a full disk, an I/O error, a read-only file or folder, a lock held past the timeout: faults
//    of the machine (MachineError: a run they stop is interrupted, not failed, and resumes);
//  - a corrupted database file: a runtime error that names the file and what to do;
//  - anything else: a runtime error.
[[noreturn]] static void throw_sql_error(sqlite3* db, const std::string& what) {
  std::string msg = what + ": " + (db ? sqlite3_errmsg(db) : "sqlite error");
  const int code = db ? (sqlite3_extended_errcode(db) & 0xff) : SQLITE_ERROR;
  const char* file = db ? sqlite3_db_filename(db, "main") : nullptr;
  const std::string path = file && *file ? file : "the database";
  switch (code) {
    case SQLITE_FULL:
    case SQLITE_IOERR: throw MachineError(msg);
    case SQLITE_BUSY:
    case SQLITE_LOCKED:
      throw BusyError(fmt::format(
          "another process held the database {} locked for more than {} s (LMGRID_DB_TIMEOUT sets the wait): {}", path,
          Db::busy_timeout_s(), msg));
    case SQLITE_READONLY:
      throw MachineError(
          fmt::format("cannot write the database {}: the file or its folder is read-only: {}", path, msg));
    case SQLITE_CORRUPT:
    case SQLITE_NOTADB: throw std::runtime_error(corrupted_message(path, msg));
    default: throw std::runtime_error(msg);
  }
}

std::string corrupted_message(const std::string& path, const std::string& finding) {
  return fmt::format(
      "the database {} is corrupted ({}); `sqlite3 {} .recover` copies out what it still holds (move the file "
      "aside to start a new one)",
      path, finding, path);
}

// An SQLite URI for a file name (RFC 3986 percent-encoding of what a path may hold).
static std::string file_uri(const std::string& path) {
  std::string out = "file:";
  for (unsigned char c : path) {
    if (std::isalnum(c) || std::strchr("/-._~", c))
      out += static_cast<char>(c);
    else
      out += fmt::format("%{:02X}", c);
  }
  return out;
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
  std::string name = path;
  const std::filesystem::path dir = std::filesystem::path(path).parent_path();
  const bool dir_writable = access(dir.empty() ? "." : dir.c_str(), W_OK) == 0;
  const int dir_errno = errno;
  if (!read_only && !dir_writable && (dir_errno == EROFS || dir_errno == EACCES))
    // SQLite would fail later with "unable to open database file": its journal lives beside it.
    throw MachineError(fmt::format("cannot write the database {}: its folder {} is not writable ({})", path,
                                   dir.string(), std::strerror(dir_errno)));
  if (read_only && !dir_writable && !std::filesystem::exists(path + "-wal")) {
    // A WAL database on read-only media (a read-only mount, an archive): nobody can be writing
    // it, so it is read as immutable, without the -shm file SQLite could not create there.
    name = file_uri(path) + "?immutable=1";
    flags |= SQLITE_OPEN_URI;
  }
  if (sqlite3_open_v2(name.c_str(), &db_, flags | SQLITE_OPEN_FULLMUTEX, nullptr) != SQLITE_OK) {
    std::string msg = db_ ? sqlite3_errmsg(db_) : "cannot open";
    sqlite3_close(db_);
    db_ = nullptr;
    throw std::runtime_error("opening database " + path + ": " + msg);
  }
  (void)sqlite3_busy_timeout(db_, Db::busy_timeout_s() * 1000);  // always SQLITE_OK on an open connection
  if (read_only) exec("PRAGMA query_only = ON");
}
double Db::now_s() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}
void Db::sleep_s(double s) { std::this_thread::sleep_for(std::chrono::duration<double>(s)); }

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
