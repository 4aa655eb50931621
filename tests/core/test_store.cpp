// Results store: schema version, run registration and claiming, metrics with NaN flags.
#include <catch2/catch.hpp>

#include <atomic>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <thread>

#include <fmt/format.h>

#include <lmgrid/base/errors.hpp>
#include <lmgrid/plugin/registry.hpp>
#include <lmgrid/grid/experiment.hpp>
#include <lmgrid/store/sqlite.hpp>
#include <lmgrid/store/store.hpp>

#include "../support.hpp"

using namespace lmgrid;
namespace fs = std::filesystem;

static fs::path fresh_db(const std::string& name) {
  fs::path dir = fs::temp_directory_path() / ("lmgrid-test-" + name + "-" + std::to_string(getpid()));
  fs::remove_all(dir);
  fs::create_directories(dir);
  return dir / "db.sqlite";
}

static Experiment tiny_experiment(int n_seeds) {
  const Registry& reg = test::built_plugins();
  std::string seeds;
  for (int i = 1; i <= n_seeds; ++i) seeds += (i > 1 ? "," : "") + std::to_string(i);
  return load_experiment_text("[experiment]\nname='s'\nseeds=[" + seeds +
                                  "]\n[data]\nplugin='text'\n[tokenizer]\nplugin='char'\n[model]\nplugin='gpt'\n"
                                  "[optim]\nplugin='adamw'\n",
                              "s.toml", {}, reg);
}

TEST_CASE("schema is versioned and WAL", "[unit]") {
  auto path = fresh_db("schema");
  Store s(path);
  {  // statements are scoped: an open read would pin a snapshot (and block writers' upgrades)
    auto st = s.db().prepare("PRAGMA user_version");
    REQUIRE(st.step());
    CHECK(st.i64(0) == kSchemaVersion);
    auto jm = s.db().prepare("PRAGMA journal_mode");
    REQUIRE(jm.step());
    CHECK(jm.text(0) == "wal");
  }
  s.db().exec("PRAGMA user_version = 99");
  CHECK_THROWS_WITH(Store(path), Catch::Contains("newer than this lmgrid"));
}

TEST_CASE("register and claim runs atomically; re-registering keeps them", "[unit]") {
  auto path = fresh_db("claim");
  Store s(path);
  auto exp = tiny_experiment(3);
  auto ids = s.register_runs(exp, false);
  REQUIRE(ids.size() == 3);
  CHECK(s.register_runs(exp, false) == ids);
  // params are typed for WHERE clauses
  {
    auto st = s.db().prepare("SELECT typeof(value) FROM params WHERE run_id = ? AND key = 'optim.lr'");
    st.bind(1, ids[0]);
    REQUIRE(st.step());
    CHECK(st.text(0) == "real");
  }
  Store other(path);  // a second connection claims different runs
  auto a = s.claim_next(ids, 1);
  auto b = other.claim_next(ids, 2);
  auto c = s.claim_next(ids, 3);
  REQUIRE(a);
  REQUIRE(b);
  REQUIRE(c);
  CHECK(a->id != b->id);
  CHECK(b->id != c->id);
  CHECK_FALSE(s.claim_next(ids, 4));
  // A running run whose worker is gone becomes interrupted when the grid is registered again.
  s.db().prepare("UPDATE runs SET worker_pid = 999999999").run();
  s.register_runs(exp, false);
  CHECK(s.run(ids[0])->status == RunStatus::interrupted);
  s.set_status(ids[1], RunStatus::failed, "boom");
  s.register_runs(exp, true);
  CHECK(s.run(ids[1])->status == RunStatus::pending);
}

TEST_CASE("metrics keep NaN as a flag and can be cut after a step", "[unit]") {
  auto path = fresh_db("metrics");
  Store s(path);
  auto ids = s.register_runs(tiny_experiment(1), false);
  MetricWriter w(s, ids[0]);
  for (int step = 1; step <= 5; ++step) w.add(step, step * 10, step * 0.1, "train/loss", 1.0 / step);
  w.add(6, 60, 0.6, "train/loss", std::nan(""));
  w.flush();
  auto cnt = [&] {
    auto st = s.db().prepare("SELECT count(*), sum(finite = 0) FROM metrics WHERE run_id = ?");
    st.bind(1, ids[0]);
    st.step();
    return std::make_pair(st.i64(0), st.i64(1));
  };
  CHECK(cnt() == std::make_pair(int64_t{6}, int64_t{1}));
  s.delete_metrics_after(ids[0], 3);
  CHECK(cnt().first == 3);
}

TEST_CASE("run statuses have one string form", "[unit]") {
  for (const auto& name : run_statuses()) {
    auto s = parse_run_status(name);
    REQUIRE(s);
    CHECK(status_name(*s) == name);
  }
  CHECK(run_statuses().size() == 6);
  CHECK_FALSE(parse_run_status("Done"));
  CHECK(is_final(RunStatus::diverged));
  CHECK_FALSE(is_final(RunStatus::interrupted));
  CHECK(is_unsuccessful(RunStatus::failed));
  CHECK_FALSE(is_unsuccessful(RunStatus::done));
}

TEST_CASE("read-only store refuses writes and missing files", "[unit]") {
  auto path = fresh_db("ro");
  { Store s(path); }
  Store ro(path, true);
  CHECK_THROWS(ro.db().exec("DELETE FROM runs"));
  CHECK_THROWS_AS(Store(path.string() + ".missing", true), UserError);
}

TEST_CASE("run files are stored relative to the database and found from any folder", "[unit]") {
  auto path = fresh_db("relative");
  auto dir = path.parent_path();
  auto exp = tiny_experiment(1);
  std::string hash = exp.runs[0].hash();
  {
    Store s(path);
    auto ids = s.register_runs(exp, false);
    CHECK(s.run(ids[0])->run_dir == "runs/" + hash.substr(0, 16));
    CHECK(s.run_dir(hash) == dir / "runs" / hash.substr(0, 16));
    s.add_checkpoint(ids[0], 10, s.run_dir(hash) / "ckpt-00000010.lmck", "abc");
    s.add_checkpoint(ids[0], 20, s.run_dir(hash) / "ckpt-00000020.lmck", "def");
    auto st = s.db().prepare("SELECT path FROM checkpoints WHERE step = 20");
    REQUIRE(st.step());
    CHECK(st.text(0) == "runs/" + hash.substr(0, 16) + "/ckpt-00000020.lmck");
  }
  // Opened by a relative path from another working directory: same absolute files.
  auto cwd = fs::current_path();
  fs::current_path(dir.parent_path());
  {
    Store s(dir.filename() / path.filename(), true);
    CHECK(s.path() == path);
    auto cks = s.checkpoints(1);
    REQUIRE(cks.size() == 2);
    CHECK(cks[0].step == 20);  // newest first
    CHECK(cks[0].path == dir / "runs" / hash.substr(0, 16) / "ckpt-00000020.lmck");
    CHECK(cks[1].sha256 == "abc");
  }
  fs::current_path(cwd);
  // The database moved with its runs/ folder resolves to the new place.
  auto moved = dir.parent_path() / (dir.filename().string() + "-moved");
  fs::remove_all(moved);
  fs::rename(dir, moved);
  {
    Store s(moved / path.filename(), true);
    CHECK(s.checkpoints(1)[0].path == moved / "runs" / hash.substr(0, 16) / "ckpt-00000020.lmck");
    CHECK(s.run_dir(hash) == moved / "runs" / hash.substr(0, 16));
  }
  fs::remove_all(moved);
}

TEST_CASE("a version-1 database (paths as typed) migrates to paths relative to the database", "[unit]") {
  auto path = fresh_db("v1");
  auto exp = tiny_experiment(1);
  std::string h16 = exp.runs[0].hash().substr(0, 16);
  {
    Store s(path);
    auto ids = s.register_runs(exp, false);
    // What v1 wrote for `--db results/x.db` run from elsewhere: paths relative to that folder.
    s.db().prepare("UPDATE runs SET run_dir = ? WHERE id = ?").bind(1, "results/runs/" + h16).bind(2, ids[0]).run();
    s.db()
        .prepare("INSERT INTO checkpoints(run_id, step, path, sha256) VALUES(?, 5, ?, 'x')")
        .bind(1, ids[0])
        .bind(2, "./results/runs/" + h16 + "/ckpt-00000005.lmck")
        .run();
    s.db().exec("PRAGMA user_version = 1");
  }
  {  // Read-only: not migrated, but the files are found by the v1 layout rule.
    Store ro(path, true);
    CHECK(ro.schema_version() == 1);
    CHECK(ro.checkpoints(1)[0].path == path.parent_path() / "runs" / h16 / "ckpt-00000005.lmck");
  }
  Store s(path);
  CHECK(s.schema_version() == kSchemaVersion);
  CHECK(s.run(1)->run_dir == "runs/" + h16);
  auto st = s.db().prepare("SELECT path FROM checkpoints");
  REQUIRE(st.step());
  CHECK(st.text(0) == "runs/" + h16 + "/ckpt-00000005.lmck");
}

TEST_CASE("files that are not lmgrid databases are refused by name", "[unit]") {
  auto dir = fresh_db("notdb").parent_path();
  auto empty = dir / "empty.db";
  { std::ofstream touch(empty); }
  CHECK_THROWS_WITH(Store(empty, true), Catch::Contains("empty.db is not an lmgrid database (it is empty"));
  auto text = dir / "text.db";
  { std::ofstream(text) << std::string(4096, 'x'); }
  CHECK_THROWS_AS(Store(text, true), UserError);
  CHECK_THROWS_WITH(Store(text), Catch::Contains("text.db is not an lmgrid database"));
  CHECK(fs::file_size(text) == 4096);  // untouched
  auto other = dir / "other.db";
  {
    sql::Db db(other.string(), false);
    db.exec("CREATE TABLE people(name TEXT)");
  }
  CHECK_THROWS_WITH(Store(other), Catch::Contains("not an lmgrid database (an SQLite database with 1 other table)"));
  CHECK_THROWS_AS(Store(other, true), UserError);
  // An empty file opened for writing becomes a database.
  Store fresh(empty);
  CHECK(fresh.schema_version() == kSchemaVersion);
}

TEST_CASE("metric names and stats come from the store API", "[unit]") {
  auto path = fresh_db("mstats");
  Store s(path);
  auto ids = s.register_runs(tiny_experiment(1), false);
  MetricWriter w(s, ids[0]);
  w.add(1, 10, 0.1, "val/accuracy", 0.25);
  w.add(2, 20, 0.2, "val/accuracy", 0.75);
  w.add(3, 30, 0.3, "val/accuracy", std::nan(""));
  w.add(4, 40, 0.4, "val/accuracy", 0.5);
  w.add(1, 10, 0.1, "train/loss", 3.0);
  w.flush();
  CHECK(s.metric_names(ids[0]) == std::vector<std::string>{"train/loss", "val/accuracy"});
  auto m = s.metric_stats(ids[0], "val/accuracy");
  REQUIRE(m);
  CHECK(m->count == 3);
  CHECK(m->first == 0.25);
  CHECK(m->last == 0.5);
  CHECK(m->max == 0.75);
  CHECK(m->min == 0.25);
  CHECK(m->mean == Approx(0.5));
  CHECK_FALSE(s.metric_stats(ids[0], "no/such"));
  auto rows = s.metric_rows(ids[0], {"val/accuracy"});
  REQUIRE(rows.size() == 4);
  CHECK(std::isnan(rows[2].value));
}

TEST_CASE("a metric flush that fails names the run and SQLite's message", "[unit]") {
  auto path = fresh_db("flushfail");
  Store s(path);
  auto ids = s.register_runs(tiny_experiment(1), false);
  MetricWriter w(s, ids[0]);
  w.add(1, 10, 0.1, "train/loss", 2.0);
  s.db().exec("PRAGMA query_only = ON");  // every write now fails inside SQLite
  CHECK_THROWS_WITH(w.flush(), Catch::Contains(fmt::format("writing 1 metric rows of run {} failed", ids[0])) &&
                                   Catch::Contains("readonly"));
  CHECK(w.pending() == 1);  // nothing is dropped: a later flush may still write them
  s.db().exec("PRAGMA query_only = OFF");
  w.flush();
  CHECK(w.pending() == 0);
  CHECK(s.metric_rows(ids[0]).size() == 1);
}

TEST_CASE("retry_busy runs again what SQLite failed at once with BUSY, up to the busy timeout", "[unit]") {
  auto path = fresh_db("retry");
  Store s(path);
  int calls = 0;
  s.db().retry_busy([&] {
    if (++calls < 3) throw sql::BusyError("busy");
  });
  CHECK(calls == 3);
  test::ScopedEnv timeout("LMGRID_DB_TIMEOUT", "1");
  calls = 0;
  auto t0 = std::chrono::steady_clock::now();
  CHECK_THROWS_AS(s.db().retry_busy([&] {
    ++calls;
    throw sql::BusyError("busy");
  }),
                  sql::BusyError);
  CHECK(std::chrono::steady_clock::now() - t0 >= std::chrono::seconds(1));
  CHECK(calls > 3);
  // Other errors pass through at once.
  calls = 0;
  CHECK_THROWS_AS(s.db().retry_busy([&] {
    ++calls;
    throw std::runtime_error("no");
  }),
                  std::runtime_error);
  CHECK(calls == 1);
}

TEST_CASE("connections opening one new database at once all get the WAL lmgrid store", "[unit]") {
  // Two hosts starting one grid on a new file race to switch it to WAL; SQLite fails the loser's
  // switch at once (no busy wait), which lmgrid retries (this failed ~1 time in 30 before).
  for (int round = 0; round < 40; ++round) {
    auto path = fresh_db("race");
    std::vector<std::thread> threads;
    std::atomic<int> failures{0};
    std::string first_error;
    std::mutex m;
    for (int t = 0; t < 3; ++t)
      threads.emplace_back([&] {
        try {
          Store s(path);
        } catch (const std::exception& e) {
          std::lock_guard<std::mutex> lock(m);
          if (failures++ == 0) first_error = e.what();
        }
      });
    for (auto& t : threads) t.join();
    INFO("round " << round << ": " << first_error);
    REQUIRE(failures == 0);
  }
}
