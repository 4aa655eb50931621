// Thin RAII wrapper over the SQLite C API: prepared statements with bound parameters only.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include <sqlite3.h>

#include "lmgrid/base/machine_error.hpp"
#include "lmgrid/base/params.hpp"

namespace lmgrid::sql {

// SQLITE_BUSY or SQLITE_LOCKED: another connection holds a lock this statement needs. Usually
// thrown after the busy timeout (LMGRID_DB_TIMEOUT) has passed, but SQLite returns it at once,
// without waiting, where waiting could deadlock (switching the journal mode while another process
// opens the same new file); Db::retry_busy waits those out.
class BusyError : public MachineError {
 public:
  using MachineError::MachineError;
};

class Stmt {
 public:
  Stmt(sqlite3* db, const std::string& sql);
  Stmt(Stmt&& o) noexcept;
  Stmt(const Stmt&) = delete;
  ~Stmt();

  Stmt& bind(int i, int64_t v);
  Stmt& bind(int i, int v) { return bind(i, static_cast<int64_t>(v)); }
  Stmt& bind(int i, double v);
  Stmt& bind(int i, const std::string& v);
  Stmt& bind(int i, const char* v) { return bind(i, std::string(v)); }
  Stmt& bind_null(int i);
  Stmt& bind(int i, const Value& v);
  template <class T>
  Stmt& bind(int i, const std::optional<T>& v) {
    return v ? bind(i, *v) : bind_null(i);
  }

  bool step();  // true while a row is available
  void run();   // step to completion, reset
  void reset();
  int columns() const;
  std::string column_name(int i) const;
  bool is_null(int i) const;
  int type(int i) const;  // SQLITE_INTEGER, SQLITE_FLOAT, SQLITE_TEXT, SQLITE_BLOB, SQLITE_NULL
  int64_t i64(int i) const;
  double f64(int i) const;
  std::string text(int i) const;
  sqlite3_stmt* raw() { return stmt_; }

 private:
  void check_bind(int rc, int i);
  sqlite3* db_;
  sqlite3_stmt* stmt_ = nullptr;
};

class Db {
 public:
  // read_only opens with SQLITE_OPEN_READONLY (and query_only), so no statement can write.
  Db(const std::string& path, bool read_only);
  Db(Db&& o) noexcept;
  Db(const Db&) = delete;
  ~Db();

  void exec(const std::string& sql);
  // Runs f again while it throws BusyError, until the busy timeout has passed since the first
  // try: for statements SQLite fails at once, without calling its busy handler.
  template <class F>
  void retry_busy(F&& f) {
    const double deadline = now_s() + busy_timeout_s();
    for (int attempt = 0;; ++attempt) {
      try {
        f();
        return;
      } catch (const BusyError&) {
        if (now_s() >= deadline) throw;
        sleep_s(attempt < 20 ? 0.005 : 0.05);
      }
    }
  }
  static int busy_timeout_s();
  Stmt prepare(const std::string& sql) { return Stmt(db_, sql); }
  int64_t last_insert_id() const;
  sqlite3* raw() { return db_; }
  const std::string& path() const { return path_; }

 private:
  static double now_s();
  static void sleep_s(double s);
  sqlite3* db_ = nullptr;
  std::string path_;
};

// BEGIN IMMEDIATE ... COMMIT, rolled back if not committed (exception safety).
class Transaction {
 public:
  explicit Transaction(Db& db);
  ~Transaction();
  void commit();

 private:
  Db& db_;
  bool done_ = false;
};

// The message for a corrupted database file: which file, SQLite's finding, and what to do.
std::string corrupted_message(const std::string& path, const std::string& finding);

}  // namespace lmgrid::sql
