// Results store: schema version, run registration and claiming, metrics with NaN flags.
#include <catch2/catch.hpp>

#include <filesystem>

#include <lmgrid/errors.hpp>
#include <lmgrid/registry.hpp>
#include <lmgrid/experiment.hpp>
#include <lmgrid/store.hpp>

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
  CHECK(s.run(ids[0])->status == "interrupted");
  s.set_status(ids[1], "failed", "boom");
  s.register_runs(exp, true);
  CHECK(s.run(ids[1])->status == "pending");
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

TEST_CASE("read-only store refuses writes and missing files", "[unit]") {
  auto path = fresh_db("ro");
  { Store s(path); }
  Store ro(path, true);
  CHECK_THROWS(ro.db().exec("DELETE FROM runs"));
  CHECK_THROWS_AS(Store(path.string() + ".missing", true), UserError);
}
