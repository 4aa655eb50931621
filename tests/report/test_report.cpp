// Reports: the statistics against reference values, and every number of the report model against
// the same quantity computed directly with SQL on a database built through the real Store API
// (2 architectures x 3 learning rates x 3 seeds, one failed run, one diverged run).
#include <catch2/catch.hpp>

#include <cmath>
#include <filesystem>
#include <map>

#include <lmgrid/base/errors.hpp>
#include <lmgrid/store/query.hpp>
#include <lmgrid/report/report.hpp>
#include <lmgrid/store/store.hpp>
#include <lmgrid/base/util.hpp>

#include "../support.hpp"

using namespace lmgrid;
namespace fs = std::filesystem;

// Reference values computed with scipy 1.10.1 (Debian python3-scipy):
//   scipy.stats.t.cdf(t, df),
//   scipy.stats.ttest_ind(A, B, equal_var=False).pvalue
TEST_CASE("Student t CDF matches scipy and closed forms", "[unit][report]") {
  struct Case {
    double t, df, want;
  };
  for (auto c :
       {Case{2.0, 5, 0.9490302605850709}, Case{-1.3, 3.5, 0.13629770790218498}, Case{0.5, 1, 0.6475836176504333},
        Case{10, 30, 0.9999999999771237}, Case{2.228138851986, 10, 0.9749999999999883},
        Case{-0.1, 2.2, 0.46436106802059796}, Case{3.0, 1000, 0.9986166454778809}}) {
    INFO("t = " << c.t << ", df = " << c.df);
    CHECK(student_t_cdf(c.t, c.df) == Approx(c.want).epsilon(1e-10));
  }
  // Closed forms: df = 1 is Cauchy, df = 2 has F(t) = 1/2 + t / (2 sqrt(2 + t^2)).
  for (double t : {-7.5, -1.0, 0.0, 0.3, 4.0}) {
    CHECK(student_t_cdf(t, 1) == Approx(0.5 + std::atan(t) / M_PI).epsilon(1e-12));
    CHECK(student_t_cdf(t, 2) == Approx(0.5 + t / (2 * std::sqrt(2 + t * t))).epsilon(1e-12));
  }
  CHECK(student_t_cdf(INFINITY, 3) == 1);
  CHECK(student_t_cdf(-INFINITY, 3) == 0);
  CHECK(std::isnan(student_t_cdf(1.0, 0)));
  CHECK(std::isnan(student_t_cdf(NAN, 3)));
}

TEST_CASE("Welch t-test p-values match scipy", "[unit][report]") {
  auto r = welch_t_test({3.41, 3.38, 3.45}, {3.52, 3.49, 3.57, 3.50});
  CHECK(r.t == Approx(-3.9539332045773694).epsilon(1e-10));
  CHECK(r.p == Approx(0.013366785730690814).epsilon(1e-9));
  auto r2 = welch_t_test({1.0, 2.0}, {1.5, 2.7, 3.1});
  CHECK(r2.t == Approx(-1.345594127730196).epsilon(1e-10));
  CHECK(r2.p == Approx(0.2839259832767104).epsilon(1e-9));
  CHECK(r.p == Approx(2 * student_t_cdf(r.t, r.df)).epsilon(1e-12));  // two-sided, from the CDF
  CHECK(welch_t_test({1, 1}, {1, 1}).p == 1);
  CHECK(welch_t_test({1, 1}, {2, 2}).p == 0);
  CHECK_THROWS(welch_t_test({1}, {1, 2}));
}

TEST_CASE("stat_of: mean and sample standard deviation", "[unit][report]") {
  Stat s = stat_of({2, 4, 4, 4, 5, 5, 7, 9});
  CHECK(s.n == 8);
  CHECK(s.mean == Approx(5));
  CHECK(s.std == Approx(std::sqrt(32.0 / 7)));
  CHECK(s.min == 2);
  CHECK(s.max == 9);
  CHECK(stat_of({3}).std == 0);
}

TEST_CASE("axis ticks are nice and cover the range", "[unit][report]") {
  auto t = nice_ticks(0.13, 0.97, 6);
  REQUIRE(t.size() >= 4);
  CHECK(t.front() == Approx(0.2));
  CHECK(t.back() == Approx(0.8));
  CHECK(t[1] - t[0] == Approx(0.2));
  auto s = nice_ticks(1, 1000, 5);
  CHECK(s[1] - s[0] == Approx(200));
  auto l = log_ticks(0.002, 15);
  CHECK(std::find_if(l.begin(), l.end(), [](double v) { return std::abs(v - 0.01) < 1e-12; }) != l.end());
  CHECK(std::find_if(l.begin(), l.end(), [](double v) { return std::abs(v - 10) < 1e-9; }) != l.end());
  auto n = log_ticks(1.5, 4.2);  // narrow: 2, 3, 4
  CHECK(n == std::vector<double>{2, 3, 4});
}

TEST_CASE("escaping for HTML and Markdown", "[unit][report]") {
  CHECK(html_escape("<script>alert(1)</script>") == "&lt;script&gt;alert(1)&lt;/script&gt;");
  CHECK(html_escape("a&b\"'") == "a&amp;b&quot;&#39;");
  CHECK(markdown_escape("a|b\nc") == "a\\|b c");
  CHECK(markdown_escape("<b>") == "&lt;b&gt;");
}

namespace {

fs::path fresh_db(const std::string& name) {
  fs::path dir = fs::temp_directory_path() / ("lmgrid-test-" + name + "-" + std::to_string(getpid()));
  fs::remove_all(dir);
  fs::create_directories(dir);
  return dir / "db.sqlite";
}

// Deterministic noise in [-1, 1].
double noise(int64_t a, int64_t b) {
  uint64_t h = static_cast<uint64_t>(a) * 0x9E3779B97F4A7C15ull ^ (static_cast<uint64_t>(b) + 0x632BE59BD9B4E019ull);
  h ^= h >> 29, h *= 0xBF58476D1CE4E5B9ull, h ^= h >> 32;
  return static_cast<double>(h % 20001) / 10000.0 - 1;
}

const std::vector<double> kLrs{1e-3, 3e-3, 1e-2};
const std::vector<std::string> kArchs{"gpt", "mamba"};
constexpr int kSteps = 1000, kEvalEvery = 100;

// The database: archs x lrs x seeds 1..3 finished, plus a failed and a diverged run.
fs::path make_db() {
  static fs::path path;
  if (!path.empty()) return path;
  path = fresh_db("report");
  Store store(path);
  Experiment exp;
  exp.name = "rep";
  exp.file = "rep.toml";
  for (const auto& arch : kArchs)
    for (double lr : kLrs)
      for (int64_t seed = 1; seed <= 3; ++seed) {
        RunConfig rc;
        rc.experiment = "rep";
        rc.seed = seed;
        rc.values["model.plugin"] = arch;
        rc.values["optim.lr"] = lr;
        rc.values["train.steps"] = int64_t{kSteps};
        if (arch == "gpt")
          rc.values["model.n_layer"] = int64_t{2};  // a plugin's own key
        else
          rc.values["model.d_state"] = int64_t{16};
        exp.runs.push_back(rc);
      }
  for (const char* v : {"<script>alert(1)</script>", "nan | pipe"}) {
    RunConfig rc = exp.runs.front();
    rc.variant = v;
    rc.values["optim.lr"] = 0.1;
    rc.seed = v[0] == '<' ? 7 : 8;
    exp.runs.push_back(rc);
  }
  auto ids = store.register_runs(exp, false);
  for (size_t i = 0; i < ids.size(); ++i) {
    const auto& rc = exp.runs[i];
    int64_t id = ids[i];
    store.mark_started(id, rc.values.at("model.plugin") == Value(std::string("gpt")) ? 27840 : 31000, "cpu");
    if (!rc.variant.empty()) {
      bool failed = rc.variant[0] == '<';
      store.set_step(id, failed ? 3 : 57);
      store.set_status(id, failed ? RunStatus::failed : RunStatus::diverged,
                       failed ? "plugin arch/probe: boom" : "loss became NaN at step 57");
      continue;
    }
    double lr = std::get<double>(rc.values.at("optim.lr"));
    bool gpt = rc.values.at("model.plugin") == Value(std::string("gpt"));
    // Loss floor depends on arch and lr (best lr differs per arch), seeds add noise.
    double floor = (gpt ? 1.5 : 1.6) + 0.2 * std::pow(std::log10(lr) - (gpt ? -2.5 : -2.0), 2);
    std::vector<MetricRow> rows;
    double best = 1e9, last = 0, acc_best = 0;
    for (int s = 1; s <= kSteps; ++s) {
      double base = floor + 2.5 * std::exp(-s / 150.0);
      int64_t tokens = int64_t{s} * 768;
      double t = s * 0.01 * (1 + 0.05 * rc.seed);
      rows.push_back({id, s, tokens, t, "train/loss", base + 0.05 * noise(id, s)});
      if (s % kEvalEvery == 0) {
        double v = base + 0.03 * noise(id, -s);
        rows.push_back({id, s, tokens, t, "val/loss", v});
        best = std::min(best, v), last = v;
        acc_best = std::max(acc_best, 0.6 - 0.1 * v);
      }
    }
    store.write_metrics(rows);
    store.set_summary(id, "best_val_loss", best);
    store.set_summary(id, "final_val_loss", last);
    store.set_summary(id, "tokens_per_s", gpt ? 40000 + 100 * rc.seed : 30000);
    store.set_summary(id, "wall_time_s", kSteps * 0.01 * (1 + 0.05 * rc.seed));
    store.set_summary(id, "mfu", 0.15);
    if (gpt) store.set_summary(id, "best_val_accuracy", acc_best);  // only where the data set has one
    store.set_step(id, kSteps);
    store.set_status(id, RunStatus::done);
  }
  return path;
}

const ReportGroup* find_group(const Report& r, const std::string& arch, double lr) {
  for (const auto& g : r.groups)
    if (g.keys.at("model.plugin") == arch && g.keys.at("optim.lr") == to_string(Value(lr))) return &g;
  return nullptr;
}

// Values of one summary for one (arch, lr) group, from SQL.
std::vector<double> sql_summary(sql::Db& db, const std::string& key, const std::string& arch, double lr) {
  auto st = db.prepare(
      "SELECT s.value FROM summaries s JOIN runs r ON r.id = s.run_id "
      "JOIN params a ON a.run_id = r.id AND a.key = 'model.plugin' JOIN params l ON l.run_id = r.id AND l.key = "
      "'optim.lr' "
      "WHERE s.key = ? AND r.status = 'done' AND a.value = ? AND l.value = ? ORDER BY r.id");
  st.bind(1, key).bind(2, arch).bind(3, lr);
  std::vector<double> out;
  while (st.step()) out.push_back(st.f64(0));
  return out;
}

}  // namespace

TEST_CASE("report numbers equal SQL over a real database", "[unit][report]") {
  Store store(make_db(), true);
  auto& db = store.db();
  ReportOptions opt;
  opt.best_over = "optim.lr";
  opt.target_loss = 2.0;
  Report r = build_report(db, opt);

  // Default grouping: the architecture and the lr; the plugins' own keys are implied, the seed excluded.
  CHECK(r.group_by == std::vector<std::string>{"model.plugin", "optim.lr"});
  CHECK(r.varying.count("seed"));
  // gpt's own key, set in gpt runs and absent elsewhere: implied by model.plugin, not listed.
  CHECK_FALSE(r.varying.count("model.n_layer"));
  CHECK(r.varying.count("model.plugin"));
  CHECK_FALSE(r.varying.count("train.steps"));  // same everywhere: not shown
  CHECK(r.n_runs == 20);
  CHECK(r.n_done == 18);
  CHECK(r.has_accuracy);
  REQUIRE(r.groups.size() == 7);  // 6 finished groups + the lr = 0.1 group of the failed runs

  // Per-group statistics against SQL (mean, and sample std computed from SQL sums).
  for (const auto& arch : kArchs)
    for (double lr : kLrs) {
      INFO(arch << " lr=" << lr);
      const ReportGroup* g = find_group(r, arch, lr);
      REQUIRE(g);
      CHECK(g->n_done == 3);
      CHECK(g->seeds == std::vector<int64_t>{1, 2, 3});
      auto st = db.prepare(
          "SELECT avg(s.value), sum(s.value * s.value), sum(s.value), count(*) FROM summaries s JOIN runs r ON r.id = "
          "s.run_id "
          "JOIN params a ON a.run_id = r.id AND a.key = 'model.plugin' JOIN params l ON l.run_id = r.id AND l.key = "
          "'optim.lr' "
          "WHERE s.key = ? AND r.status = 'done' AND a.value = ? AND l.value = ?");
      for (const char* key : {"best_val_loss", "final_val_loss", "best_val_accuracy"}) {
        st.bind(1, key).bind(2, arch).bind(3, lr);
        REQUIRE(st.step());
        int64_t n = st.i64(3);
        const Stat& s = std::string(key) == "best_val_loss"    ? g->best_val_loss
                        : std::string(key) == "final_val_loss" ? g->final_val_loss
                                                               : g->best_val_accuracy;
        CHECK(s.n == n);
        if (n > 0) {
          double var = (st.f64(1) - st.f64(2) * st.f64(2) / n) / (n - 1);
          CHECK(s.mean == Approx(st.f64(0)).epsilon(1e-12));
          CHECK(s.std == Approx(std::sqrt(var)).epsilon(1e-6));
        }
        st.reset();
      }
      if (arch == "mamba") CHECK(g->best_val_accuracy.n == 0);  // absent summary: no numbers
      // Tokens to the target: first val/loss <= 2.0 per run, mean over runs, from SQL.
      auto tt = db.prepare(
          "SELECT avg(t), count(*) FROM (SELECT min(m.tokens) AS t FROM metrics m JOIN runs r ON r.id = m.run_id "
          "JOIN params a ON a.run_id = r.id AND a.key = 'model.plugin' JOIN params l ON l.run_id = r.id AND l.key = "
          "'optim.lr' "
          "WHERE m.name = 'val/loss' AND m.value <= 2.0 AND r.status = 'done' AND a.value = ? AND l.value = ? GROUP BY "
          "r.id)");
      tt.bind(1, arch).bind(2, lr);
      REQUIRE(tt.step());
      CHECK(g->tokens_to_target.n == tt.i64(1));
      if (tt.i64(1) > 0) CHECK(g->tokens_to_target.mean == Approx(tt.f64(0)));
      // Curves: downsampled for drawing, first point is the mean over the seeds at step 1.
      CHECK(g->train.x.size() <= kMaxCurvePoints);
      CHECK(g->train.x.front() == 1);
      CHECK(g->train.x.back() == kSteps);
      CHECK(g->val.x.size() == kSteps / kEvalEvery);
      auto c = db.prepare(
          "SELECT avg(m.value), min(m.value), max(m.value) FROM metrics m JOIN runs r ON r.id = m.run_id "
          "JOIN params a ON a.run_id = r.id AND a.key = 'model.plugin' JOIN params l ON l.run_id = r.id AND l.key = "
          "'optim.lr' "
          "WHERE m.name = 'train/loss' AND m.step = 1 AND a.value = ? AND l.value = ?");
      c.bind(1, arch).bind(2, lr);
      REQUIRE(c.step());
      CHECK(g->train.y.front() == Approx(c.f64(0)));
      CHECK(g->train.lo.front() == Approx(c.f64(1)));
      CHECK(g->train.hi.front() == Approx(c.f64(2)));
    }

  // Best group = lowest mean best val loss (SQL), sorted first.
  auto bq = db.prepare(
      "SELECT a.value, l.value, avg(s.value) AS m FROM summaries s JOIN runs r ON r.id = s.run_id "
      "JOIN params a ON a.run_id = r.id AND a.key = 'model.plugin' JOIN params l ON l.run_id = r.id AND l.key = "
      "'optim.lr' "
      "WHERE s.key = 'best_val_loss' AND r.status = 'done' GROUP BY a.value, l.value ORDER BY m LIMIT 1");
  REQUIRE(bq.step());
  REQUIRE(r.best_group == 0);
  CHECK(r.groups[0].keys.at("model.plugin") == bq.text(0));
  CHECK(r.groups[0].keys.at("optim.lr") == to_string(Value(bq.f64(1))));

  // Welch p-values: best group vs each other, on the SQL values.
  auto best_vals = sql_summary(db, "best_val_loss", bq.text(0), bq.f64(1));
  int n_p = 0;
  for (const auto& arch : kArchs)
    for (double lr : kLrs) {
      const ReportGroup* g = find_group(r, arch, lr);
      if (g == &r.groups[0]) {
        CHECK_FALSE(g->p_value);
        continue;
      }
      REQUIRE(g->p_value);
      CHECK(*g->p_value ==
            Approx(welch_t_test(best_vals, sql_summary(db, "best_val_loss", arch, lr)).p).epsilon(1e-12));
      ++n_p;
    }
  CHECK(n_p == 5);

  // Best lr per architecture: the lr with the lowest mean, from SQL.
  REQUIRE(r.best_over.size() == 2);
  for (const auto& row : r.best_over) {
    std::string arch = row.label.substr(row.label.find('=') + 1);
    auto w = db.prepare(
        "SELECT l.value, avg(s.value) AS m FROM summaries s JOIN runs r ON r.id = s.run_id "
        "JOIN params a ON a.run_id = r.id AND a.key = 'model.plugin' JOIN params l ON l.run_id = r.id AND l.key = "
        "'optim.lr' "
        "WHERE s.key = 'best_val_loss' AND r.status = 'done' AND a.value = ? GROUP BY l.value ORDER BY m LIMIT 1");
    w.bind(1, arch);
    REQUIRE(w.step());
    INFO(row.label);
    CHECK(row.winner == to_string(Value(w.f64(0))));
    CHECK(row.best_val_loss.mean == Approx(w.f64(1)));
    CHECK(row.means.size() == 3);
  }
  // By construction the best lr is 3e-3 for gpt and 1e-2 for mamba.
  for (const auto& row : r.best_over) CHECK(row.winner == (row.label == "model.plugin=gpt" ? "0.003" : "0.01"));

  // Failed and diverged runs, with error and last step.
  REQUIRE(r.problems.size() == 2);
  CHECK(r.problems[0].status == "failed");
  CHECK(r.problems[0].step == 3);
  CHECK(r.problems[0].error == "plugin arch/probe: boom");
  CHECK(r.problems[1].status == "diverged");
  CHECK(r.problems[1].step == 57);

  // Rendering: escaped names, no script, the tables' numbers.
  std::string html = report_html(r);
  CHECK(html.find("<script") == std::string::npos);
  CHECK(html.find("&lt;script&gt;alert(1)&lt;/script&gt;") != std::string::npos);
  CHECK(html.find("<svg") != std::string::npos);
  CHECK(html.find("http://") == std::string::npos);  // inline SVG needs no namespace URL
  char mean_text[32];
  std::snprintf(mean_text, sizeof(mean_text), "%.4f ± ", r.groups[0].best_val_loss.mean);
  CHECK(html.find(mean_text) != std::string::npos);
  std::string md = report_markdown(r, {"train_loss.svg"});
  CHECK(md.find("nan \\| pipe") != std::string::npos);
  CHECK(md.find("![train_loss.svg](train_loss.svg)") != std::string::npos);
  auto charts = report_charts(r);
  REQUIRE(charts.size() == 3);
  CHECK(charts[2].first == "best_over");
  for (const auto& [name, svg] : charts) CHECK(svg.rfind("<svg xmlns=\"http://www.w3.org/2000/svg\"", 0) == 0);

  fs::path dir = make_db().parent_path() / "out";
  write_report(r, dir);
  for (const char* f : {"report.html", "report.md", "train_loss.svg", "val_loss.svg", "best_over.svg"})
    CHECK(fs::file_size(dir / f) > 100);
}

TEST_CASE("report options are validated with hints", "[unit][report]") {
  Store store(make_db(), true);
  ReportOptions opt;
  opt.group_by = {"optim.lrr"};
  CHECK_THROWS_WITH(build_report(store.db(), opt), Catch::Contains("did you mean 'optim.lr'"));
  opt.group_by = {};
  opt.x = "epochs";
  CHECK_THROWS_AS(build_report(store.db(), opt), UserError);
  opt.x = "time";
  opt.experiments = {"nope"};
  CHECK_THROWS_AS(build_report(store.db(), opt), UserError);
  opt.experiments = {};
  opt.target_loss = -1;
  CHECK_THROWS_AS(build_report(store.db(), opt), UserError);
  // Explicit grouping and an automatic target: every finished run reaches it.
  opt.target_loss.reset();
  opt.group_by = {"model.plugin"};
  Report r = build_report(store.db(), opt);
  CHECK(r.groups.size() == 2);
  CHECK(r.target_automatic);
  for (const auto& g : r.groups)
    if (g.n_done) CHECK(g.tokens_to_target.n == g.n_done);
  // x = time: the curve's x is the mean elapsed time at each step.
  CHECK(r.groups[0].train.x.back() > 9.0);
}

// The experiment's [report] table: parsed, validated against the runs' keys, defaults when absent.
#include <lmgrid/grid/experiment.hpp>
#include <lmgrid/plugin/registry.hpp>

namespace {
const char* kBase =
    "[experiment]\nname = 'r'\nseeds = [1, 2]\n[data]\nplugin = 'text'\n[tokenizer]\nplugin = 'char'\n"
    "[model]\nplugin = 'gpt'\n[optim]\nplugin = 'adamw'\n[grid]\n'optim.lr' = [1e-3, 3e-3]\n";
Experiment load(const std::string& extra) {
  return load_experiment_text(std::string(kBase) + extra, "r.toml", {}, test::built_plugins());
}
}  // namespace

TEST_CASE("[report] table in experiment files", "[unit][report]") {
  auto none = load("");
  CHECK(none.report.group_by.empty());
  CHECK(none.report.x == "step");
  CHECK_FALSE(none.report.target_loss);
  auto e = load(
      "[report]\ngroup_by = ['model.plugin', 'optim.lr']\nbest_over = 'optim.lr'\nx = 'time'\n"
      "target_loss = 2\nout = 'somewhere'\n");
  CHECK(e.report.group_by == std::vector<std::string>{"model.plugin", "optim.lr"});
  CHECK(e.report.best_over == "optim.lr");
  CHECK(e.report.x == "time");
  CHECK(e.report.target_loss == 2.0);
  CHECK(e.report.out == "somewhere");
  CHECK(load("[report]\ngroup_by = 'seed'\n").report.group_by == std::vector<std::string>{"seed"});
  CHECK_THROWS_WITH(load("[report]\ngrup_by = 'optim.lr'\n"),
                    Catch::Contains("r.toml:15:1") && Catch::Contains("did you mean 'group_by'"));
  CHECK_THROWS_WITH(load("[report]\nbest_over = 'optim.lrr'\n"), Catch::Contains("did you mean 'optim.lr'"));
  CHECK_THROWS_WITH(load("[report]\nx = 'epochs'\n"), Catch::Contains("expected \"step\""));
  CHECK_THROWS_WITH(load("[report]\ntarget_loss = -1\n"), Catch::Contains("positive"));
  CHECK_THROWS_WITH(load("[report]\ntarget_loss = 'low'\n"), Catch::Contains("positive"));
  CHECK_THROWS_WITH(load("[report]\ngroup_by = [1]\n"), Catch::Contains("must be a string"));
  CHECK_THROWS_AS(load("report = 3\n"), UserError);
  // [report] does not change the runs: same hashes with and without it.
  REQUIRE(e.runs.size() == none.runs.size());
  for (size_t i = 0; i < e.runs.size(); ++i) CHECK(e.runs[i].hash() == none.runs[i].hash());
}

TEST_CASE("report without loss series or summaries; interrupted runs listed", "[unit][report]") {
  auto path = fresh_db("report-empty");
  {
    Store store(path);
    Experiment exp;
    exp.name = "bare";
    for (int64_t seed : {1, 2}) {
      RunConfig rc;
      rc.experiment = "bare";
      rc.seed = seed;
      rc.values["model.plugin"] = std::string("gpt");
      exp.runs.push_back(rc);
    }
    auto ids = store.register_runs(exp, false);
    store.set_status(ids[0], RunStatus::done);
    store.set_step(ids[1], 12);
    store.set_status(ids[1], RunStatus::interrupted);
  }
  Store store(path, true);
  Report r = build_report(store.db(), ReportOptions{});
  CHECK(r.group_by.empty());  // only the seed varies
  REQUIRE(r.groups.size() == 1);
  CHECK(r.groups[0].label == "all runs");
  CHECK(r.target_loss == 0);
  CHECK(r.best_group == -1);
  REQUIRE(r.problems.size() == 1);
  CHECK(r.problems[0].status == "interrupted");
  CHECK(r.problems[0].step == 12);
  std::string html = report_html(r);
  CHECK(html.find("no data") != std::string::npos);
  CHECK(html.find("tokens to") == std::string::npos);  // no target: no target columns
  ReportOptions missing;
  missing.experiments = {"bare"};
  missing.run_ids = {999};
  CHECK_THROWS_AS(build_report(store.db(), missing), UserError);  // no such run
}

TEST_CASE("runs from named variants are grouped by the variant label", "[unit][report]") {
  fs::path path = fresh_db("report-variants");
  {
    Store store(path);
    Experiment exp;
    exp.name = "var";
    exp.file = "var.toml";
    // Two variants of one plugin that differ in a plugin key, plus another plugin; two lrs.
    struct V {
      const char* name;
      const char* plugin;
      int64_t width;
    };
    for (V v : {V{"ttt-linear", "ttt", 373}, V{"ttt-mlp", "ttt", 297}, V{"gpt", "gpt", 0}})
      for (double lr : {1e-3, 3e-3}) {
        RunConfig rc;
        rc.experiment = "var";
        rc.variant = v.name;
        rc.seed = 1;
        rc.values["model.plugin"] = std::string(v.plugin);
        rc.values["optim.lr"] = lr;
        if (v.width)
          rc.values["model.intermediate"] = v.width;
        else
          rc.values["model.n_layer"] = int64_t{4};
        exp.runs.push_back(rc);
      }
    auto ids = store.register_runs(exp, false);
    for (auto id : ids) {
      store.mark_started(id, 1000, "cpu");
      store.set_summary(id, "best_val_loss", 2.0 + 0.01 * static_cast<double>(id));
      store.set_status(id, RunStatus::done);
    }
  }
  Store store(path, true);
  ReportOptions opt;
  opt.best_over = "optim.lr";
  Report r = build_report(store.db(), opt);
  CHECK(r.group_by == std::vector<std::string>{"variant", "optim.lr"});
  REQUIRE(r.groups.size() == 6);
  CHECK(r.groups[0].label == "variant=ttt-linear optim.lr=0.001");
  // What varies: the swept keys, not gpt's own n_layer (set only where model.plugin = gpt).
  CHECK(r.varying.count("model.intermediate"));
  CHECK_FALSE(r.varying.count("model.n_layer"));
  REQUIRE(r.best_over.size() == 3);
}

TEST_CASE("natural order of slice values", "[unit][report]") {
  std::vector<std::string> v{"qa10", "qa2", "qa1", "qa20", "qa3"};
  std::sort(v.begin(), v.end(), natural_less);
  CHECK(v == std::vector<std::string>{"qa1", "qa2", "qa3", "qa10", "qa20"});
  std::vector<std::string> n{"1024", "256", "64", "1e-3", "word", "0.5"};
  std::sort(n.begin(), n.end(), natural_less);
  CHECK(n == std::vector<std::string>{"1e-3", "0.5", "64", "256", "1024", "word"});
  CHECK(natural_less("a02", "a10"));
  CHECK_FALSE(natural_less("a10", "a9"));
}

// Slice summaries as the trainer records them for data sets with answers: 2 architectures x 2
// widths x 2 learning rates x 2 seeds. Loss prefers lr 1e-3, accuracy prefers lr 1e-2, so the
// ranking metric decides best_over's winner.
namespace {

double acc_of(bool conv, int64_t d, double lr, int64_t seed, int64_t seq_len) {
  return 0.5 + (d == 64 ? 0.2 : 0) - (conv ? 0.15 : 0) + (lr > 5e-3 ? 0.1 : 0) - (seq_len == 256 ? 0.1 : 0) +
         0.01 * static_cast<double>(seed);
}

fs::path make_slice_db() {
  static fs::path path;
  if (!path.empty()) return path;
  path = fresh_db("report-slices");
  Store store(path);
  Experiment exp;
  exp.name = "zoo";
  for (const char* arch : {"attn", "conv"})
    for (int64_t d : {32, 64})
      for (double lr : {1e-3, 1e-2})
        for (int64_t seed : {1, 2}) {
          RunConfig rc;
          rc.experiment = "zoo";
          rc.seed = seed;
          rc.values["model.plugin"] = std::string(arch);
          rc.values["model.d_model"] = d;
          rc.values["optim.lr"] = lr;
          exp.runs.push_back(rc);
        }
  auto ids = store.register_runs(exp, false);
  for (size_t i = 0; i < ids.size(); ++i) {
    const auto& rc = exp.runs[i];
    int64_t id = ids[i], d = std::get<int64_t>(rc.values.at("model.d_model"));
    bool conv = rc.values.at("model.plugin") == Value(std::string("conv"));
    double lr = std::get<double>(rc.values.at("optim.lr"));
    store.mark_started(id, 1000, "cpu");
    double a64 = acc_of(conv, d, lr, rc.seed, 64), a256 = acc_of(conv, d, lr, rc.seed, 256);
    store.set_summary(id, "best_val_loss",
                      1.0 - (d == 64 ? 0.1 : 0) + (conv ? 0.02 : 0) + (lr > 5e-3 ? 0.05 : 0) + 0.01 * rc.seed);
    store.set_summary(id, "final_val_accuracy", (a64 + a256) / 2);
    store.set_summary(id, "best_val_accuracy", (a64 + a256) / 2 + 0.02);
    store.set_summary(id, "final_val_accuracy/seq_len=64", a64);
    store.set_summary(id, "final_val_accuracy/seq_len=256", a256);
    store.set_summary(id, "best_val_accuracy/seq_len=64", a64 + 0.01);
    for (const char* task : {"qa10", "qa2", "qa1"})
      store.set_summary(id, std::string("final_val_accuracy/task=") + task, a64 - 0.01 * std::atoi(task + 2));
    store.set_status(id, RunStatus::done);
  }
  return path;
}

const ReportGroup& group_of(const Report& r, const std::string& arch, const std::string& d, const std::string& lr) {
  for (const auto& g : r.groups)
    if (g.keys.at("model.plugin") == arch && g.keys.at("model.d_model") == d && g.keys.at("optim.lr") == lr) return g;
  FAIL("no group " << arch << " " << d << " " << lr);
  throw 0;
}

}  // namespace

TEST_CASE("accuracy by slice, ranking on accuracy, accuracy vs a config key", "[unit][report]") {
  Store store(make_slice_db(), true);
  ReportOptions opt;
  opt.best_over = "optim.lr";
  opt.accuracy_x = "model.d_model";
  opt.accuracy_slice = "seq_len";
  Report r = build_report(store.db(), opt);
  // auto: every finished run has best_val_accuracy and slice summaries -> accuracy.
  CHECK(r.metric == "accuracy");
  CHECK(r.metric_automatic);
  REQUIRE(r.groups.size() == 8);

  // Slice keys, values in natural order.
  REQUIRE(r.slices.size() == 2);
  CHECK(r.slices[0].key == "seq_len");
  CHECK(r.slices[0].numeric);
  CHECK(r.slices[0].values == std::vector<std::string>{"64", "256"});
  CHECK(r.slices[1].key == "task");
  CHECK_FALSE(r.slices[1].numeric);
  CHECK(r.slices[1].values == std::vector<std::string>{"qa1", "qa2", "qa10"});

  // Cells: attn, d 32, lr 0.01, seeds 1 and 2: seq_len=64 -> 0.61, 0.62; seq_len=256 -> 0.51, 0.52.
  const ReportGroup& g = group_of(r, "attn", "32", "0.01");
  const Stat& c64 = g.slice_accuracy.at("seq_len").at("64");
  CHECK(c64.n == 2);
  CHECK(c64.mean == Approx(0.615));
  CHECK(c64.std == Approx(0.01 / std::sqrt(2.0)));
  CHECK(g.slice_accuracy.at("seq_len").at("256").mean == Approx(0.515));
  CHECK(g.slice_mean.at("seq_len").mean == Approx(0.565));  // per run (0.61 + 0.51) / 2, (0.62 + 0.52) / 2
  CHECK(g.slice_mean.at("seq_len").std == Approx(0.01 / std::sqrt(2.0)));
  CHECK(g.slice_accuracy.at("task").at("qa10").mean == Approx(0.515));
  CHECK(g.slice_mean.at("task").mean == Approx(0.615 - 0.13 / 3));
  CHECK_FALSE(g.slice_accuracy.count("best_val_accuracy"));  // only final_val_accuracy/ slices

  // Ranking: the highest mean best_val_accuracy first: attn d 64 lr 0.01 (0.815 - 0.05 + 0.02).
  REQUIRE(r.best_group == 0);
  CHECK(r.groups[0].label == "model.d_model=64 model.plugin=attn optim.lr=0.01");
  CHECK(r.groups[0].best_val_accuracy.mean == Approx(0.785));
  for (size_t i = 1; i < r.groups.size(); ++i) {
    CHECK(r.groups[i].best_val_accuracy.mean <= r.groups[i - 1].best_val_accuracy.mean);
    REQUIRE(r.groups[i].p_value);
    CHECK(*r.groups[i].p_value ==
          Approx(welch_t_test(r.groups[0].best_val_accuracies, r.groups[i].best_val_accuracies).p).epsilon(1e-12));
  }
  // The winner by loss would be lr 0.001; by accuracy it is 0.01 in every bucket.
  REQUIRE(r.best_over.size() == 4);
  for (const auto& row : r.best_over) {
    INFO(row.label);
    CHECK(row.winner == "0.01");
    REQUIRE(row.means.size() == 2);
    CHECK(row.means[1].second - row.means[0].second == Approx(0.1));  // 0.01 minus 0.001 in accuracy
  }

  // accuracy vs model.d_model per seq_len, one line per architecture, best lr per point.
  CHECK(r.accuracy_slice == "seq_len");
  REQUIRE(r.accuracy_panels.size() == 2);
  CHECK(r.accuracy_panels[0].slice_value == "64");
  CHECK(r.accuracy_panels[1].slice_value == "256");
  for (size_t p = 0; p < 2; ++p) {
    const auto& panel = r.accuracy_panels[p];
    REQUIRE(panel.lines.size() == 2);
    CHECK(panel.lines[0].label == "model.plugin=attn");  // the best group's line first
    CHECK(panel.lines[1].label == "model.plugin=conv");
    for (size_t l = 0; l < 2; ++l) {
      const auto& line = panel.lines[l];
      CHECK(line.x == std::vector<std::string>{"32", "64"});
      CHECK(line.chosen == std::vector<std::string>{"0.01", "0.01"});
      double base = 0.615 - 0.15 * static_cast<double>(l) - 0.1 * static_cast<double>(p);
      CHECK(line.y[0] == Approx(base));
      CHECK(line.y[1] == Approx(base + 0.2));
      CHECK(line.lo[1] == Approx(base + 0.2 - 0.005));
      CHECK(line.hi[1] == Approx(base + 0.2 + 0.005));
    }
  }

  // Rendering: the tables, the notes naming what is maximised, the charts.
  std::string html = report_html(r);
  CHECK(html.find("Groups ranked by the highest mean best val accuracy (maximised") != std::string::npos);
  CHECK(html.find("the value of optim.lr with the highest mean best val accuracy") != std::string::npos);
  CHECK(html.find("Welch t-test on best val accuracy") != std::string::npos);
  CHECK(html.find("<th class=\"num\">seq_len=64</th><th class=\"num\">seq_len=256</th><th class=\"num\">mean</th>") !=
        std::string::npos);
  CHECK(html.find("<th class=\"num\">task=qa1</th><th class=\"num\">task=qa2</th><th class=\"num\">task=qa10</th>") !=
        std::string::npos);
  CHECK(html.find("<td>model.d_model=32 model.plugin=attn optim.lr=0.01</td><td class=\"num\">0.6150 ± 0.0071</td>"
                  "<td class=\"num\">0.5150 ± 0.0071</td><td class=\"num\">0.5650 ± 0.0071</td>") != std::string::npos);
  CHECK(html.find("0.8150 (optim.lr=0.01)") != std::string::npos);
  std::string md = report_markdown(r, {"accuracy_by_seq_len.svg", "val_loss.svg"});
  CHECK(md.find("## Accuracy by slice") != std::string::npos);
  CHECK(md.find("![accuracy_by_seq_len.svg](accuracy_by_seq_len.svg)") < md.find("## Loss curves"));
  CHECK(md.find("![val_loss.svg](val_loss.svg)") > md.find("## Loss curves"));
  auto charts = report_charts(r);
  std::vector<std::string> names;
  for (const auto& [name, svg] : charts) names.push_back(name);
  CHECK(names == std::vector<std::string>{"train_loss", "val_loss", "best_over", "accuracy_by_seq_len",
                                          "accuracy_by_task", "accuracy_vs_model.d_model_at_seq_len_64",
                                          "accuracy_vs_model.d_model_at_seq_len_256"});
  const std::string& by_task = charts[4].second;
  CHECK(by_task.find(">qa10</text>") != std::string::npos);  // categorical axis labels
  CHECK(by_task.find(">qa2</text>") < by_task.find(">qa10</text>"));
  CHECK(charts[5].second.find("Final val accuracy at seq_len=64 vs model.d_model") != std::string::npos);
  CHECK(charts[2].second.find("Best validation accuracy vs optim.lr") != std::string::npos);

  // metric = loss: ranked by the lowest best_val_loss, best_over picks lr 0.001.
  opt.metric = "loss";
  Report lr = build_report(store.db(), opt);
  CHECK(lr.metric == "loss");
  CHECK(lr.groups[0].label == "model.d_model=64 model.plugin=attn optim.lr=0.001");
  for (const auto& row : lr.best_over) CHECK(row.winner == "0.001");
  CHECK(report_html(lr).find("Groups ranked by the lowest mean best val loss (minimised") != std::string::npos);
}

TEST_CASE("accuracy options are validated with hints", "[unit][report]") {
  Store store(make_slice_db(), true);
  ReportOptions opt;
  opt.metric = "acc";
  CHECK_THROWS_WITH(build_report(store.db(), opt), Catch::Contains("expected auto, loss or accuracy"));
  opt.metric = "auto";
  opt.accuracy_x = "model.d_modle";
  CHECK_THROWS_WITH(build_report(store.db(), opt), Catch::Contains("--accuracy-x: unknown key 'model.d_modle'") &&
                                                       Catch::Contains("did you mean 'model.d_model'"));
  opt.accuracy_x = "model.d_model";
  opt.accuracy_slice = "seqlen";
  CHECK_THROWS_WITH(build_report(store.db(), opt), Catch::Contains("did you mean 'seq_len'"));
  opt.accuracy_slice = "";
  // Two slice keys and none chosen: one panel of the overall final_val_accuracy, and a note.
  opt.best_over = "optim.lr";
  Report overall = build_report(store.db(), opt);
  CHECK(overall.accuracy_slice.empty());
  REQUIRE(overall.accuracy_panels.size() == 1);
  CHECK(overall.accuracy_panels[0].slice_value.empty());
  REQUIRE(overall.accuracy_panels[0].lines.size() == 2);
  const auto& attn = overall.accuracy_panels[0].lines[0];
  CHECK(attn.label == "model.plugin=attn");
  CHECK(attn.y[0] == Approx(0.565));  // d 32: best lr 0.01, (0.615 + 0.515) / 2
  CHECK(attn.y[1] == Approx(0.765));
  CHECK(report_html(overall).find("several slice keys (seq_len, task): choose one with --accuracy-slice") !=
        std::string::npos);
  CHECK(report_charts(overall).back().first == "accuracy_vs_model.d_model");
  opt.accuracy_x = "";
  opt.accuracy_slice = "seq_len";
  CHECK_THROWS_WITH(build_report(store.db(), opt), Catch::Contains("needs --accuracy-x"));
  // The first database: only its gpt runs have best_val_accuracy, none has slices.
  Store loss_only(make_db(), true);
  ReportOptions o2;
  o2.experiments = {"rep"};
  CHECK(build_report(loss_only.db(), o2).metric == "loss");  // auto: not every run has accuracy
  o2.metric = "accuracy";
  Report acc = build_report(loss_only.db(), o2);  // gpt runs have best_val_accuracy: ranked on it
  CHECK(acc.groups[0].keys.at("model.plugin") == "gpt");
  CHECK(acc.slices.empty());
}

TEST_CASE("[report] accuracy keys in experiment files", "[unit][report]") {
  auto e = load("[report]\nmetric = 'accuracy'\naccuracy_x = 'optim.lr'\naccuracy_slice = 'seq_len'\n");
  CHECK(e.report.metric == "accuracy");
  CHECK(e.report.accuracy_x == "optim.lr");
  CHECK(e.report.accuracy_slice == "seq_len");
  // The dumped experiment (lmgrid grid --dump) keeps them.
  auto back = load_experiment_text(dump_experiment_toml(e), "dump.toml", {}, test::built_plugins());
  CHECK(back.report.metric == "accuracy");
  CHECK(back.report.accuracy_x == "optim.lr");
  CHECK(back.report.accuracy_slice == "seq_len");
  CHECK(load("").report.metric == "auto");
  CHECK_THROWS_WITH(load("[report]\nmetric = 'acc'\n"), Catch::Contains("expected \"auto\", \"loss\" or \"accuracy\""));
  CHECK_THROWS_WITH(load("[report]\naccuracy_x = 'optim.lrr'\n"), Catch::Contains("did you mean 'optim.lr'"));
  CHECK_THROWS_WITH(load("[report]\naccuracy_slice = 'seq_len'\n"), Catch::Contains("needs accuracy_x"));
  CHECK_THROWS_WITH(load("[report]\nmetrc = 'loss'\n"), Catch::Contains("did you mean 'metric'"));
}

TEST_CASE("equal accuracies rank by the lower loss", "[unit][report]") {
  fs::path path = fresh_db("report-acc-ties");
  {
    Store store(path);
    Experiment exp;
    exp.name = "ties";
    for (double lr : {1e-3, 3e-3, 1e-2})
      for (int64_t seed : {1, 2}) {
        RunConfig rc;
        rc.experiment = "ties";
        rc.seed = seed;
        rc.values["model.plugin"] = std::string("gpt");
        rc.values["optim.lr"] = lr;
        exp.runs.push_back(rc);
      }
    auto ids = store.register_runs(exp, false);
    for (size_t i = 0; i < ids.size(); ++i) {
      double lr = std::get<double>(exp.runs[i].values.at("optim.lr"));
      store.set_summary(ids[i], "best_val_accuracy", lr > 5e-3 ? 0.25 : 0.0);  // 1e-3 and 3e-3 tie at 0
      store.set_summary(ids[i], "final_val_accuracy/task=qa1", 0.0);
      store.set_summary(ids[i], "best_val_loss", lr < 2e-3 ? 3.0 : 2.0);  // 3e-3 has the lower loss
      store.set_status(ids[i], RunStatus::done);
    }
  }
  Store store(path, true);
  ReportOptions opt;
  opt.best_over = "optim.lr";
  Report r = build_report(store.db(), opt);
  CHECK(r.metric == "accuracy");
  REQUIRE(r.groups.size() == 3);
  CHECK(r.groups[0].label == "optim.lr=0.01");
  CHECK(r.groups[1].label == "optim.lr=0.003");  // tie at 0 with 0.001, lower loss
  CHECK(r.groups[2].label == "optim.lr=0.001");
  REQUIRE(r.best_over.size() == 1);
  CHECK(r.best_over[0].winner == "0.01");
}
