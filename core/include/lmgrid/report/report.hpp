// Comparison reports over the results database: `lmgrid report`, and the end of `lmgrid run`.
//
// build_report() reads the selected runs (one query for runs, params, summaries; one ordered
// query for the train/val loss series), groups them and computes every number shown; the
// renderers only format. Numbers are computed on the full series; curves are downsampled to at
// most kMaxCurvePoints per line for drawing only.
//
// Grouping: runs with equal values of the group-by keys form a group (by default every config
// key that varies across the selected runs, except the seed and run-identity keys such as the
// variant label). Per group: mean ± sample std (n-1) over its finished runs. The ranking metric
// (ReportSpec::metric) orders the groups: "loss", the lowest mean best_val_loss first, or
// "accuracy", the highest mean best_val_accuracy first (ties by the lower mean best_val_loss);
// "auto" is accuracy when every selected
// finished run has best_val_accuracy and at least one slice summary (final_val_accuracy/<k>=<v>,
// a data set with answers), else loss. A two-sided Welch t-test on that summary compares the best
// group with every other group where both have >= 2 finished runs; best_over picks per bucket the
// swept value ranked best by the same metric.
//
// Slices: summaries final_val_accuracy/<key>=<value> (the accuracy at the run's last evaluation
// on the val answers whose tag has that value) give, per slice key, a table of groups x values
// (mean ± sd over the group's finished runs) and a chart of accuracy against the value (numeric
// values on a numeric axis, words such as qa1..qa20 in natural order on a categorical one).
// accuracy_x = K adds, per value of one slice key (accuracy_slice; the only one by default), a
// chart of accuracy against the config key K, one line per group of the other keys, each point
// the best best_over value at that point (the highest mean accuracy plotted there); without a
// slice key (none, or several and none chosen) one chart of the overall final_val_accuracy. K,
// like best_over, is added to the group-by keys.
//
// Curves: the runs of a group are aligned by step (their configs differ only in the seed, so
// they log at the same steps); at each step the line is the mean over the runs that logged it and
// the band spans min..max. x is the step, the tokens seen or the mean elapsed wall time there.
//
// Target loss: a run reaches it at its first val/loss point <= target (tokens and elapsed
// seconds there). Without --target-loss the target is the largest best_val_loss among finished
// runs, so every finished run reaches it and the columns compare speed to a common loss.
#pragma once

#include <cstdint>
#include <filesystem>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "lmgrid/config/run_config.hpp"
#include "lmgrid/store/sqlite.hpp"

namespace lmgrid {

inline constexpr size_t kMaxCurvePoints = 400;  // per drawn line
inline constexpr size_t kMaxChartGroups = 10;   // lines per chart: the best groups

// What to report on. Mirrors the CLI flags and the experiment's [report] table.
// The settings an experiment's [report] table holds (ReportSpec: group_by (empty: the default
// grouping above), best_over ("" or a key swept within groups, also grouped by), x (step |
// tokens | time), target_loss (> 0; nullopt: automatic), out, metric (auto | loss | accuracy),
// accuracy_x (a config key), accuracy_slice (a slice key)), plus which runs to report on.
// One type for `lmgrid report`'s flags and [report], so nothing is copied field by field.
struct ReportOptions : ReportSpec {
  std::vector<std::string> experiments;  // empty: every experiment in the database
  std::vector<int64_t> run_ids;          // empty: every run of those experiments
  std::vector<std::string> where;        // lmgrid runs --where filters, all must hold (empty: none)
  std::string title;                     // "" -> "lmgrid report: <experiments>"
};

// Checks the options against the keys of the database (UserError naming the bad one, with the
// nearest known key). Called by build_report().
void validate_report_options(sql::Db& db, const ReportOptions& opt);

// Sample statistics of one quantity over a group's runs (NaN-free inputs only).
struct Stat {
  int n = 0;
  double mean = 0, std = 0, min = 0, max = 0;  // std: sample (n-1), 0 when n < 2
};
Stat stat_of(const std::vector<double>& xs);

// A drawn line: x, mean and band (lo..hi) at each point, downsampled.
struct Curve {
  std::vector<double> x, y, lo, hi;
};

struct ReportGroup {
  std::string label;                        // "model.plugin=gpt optim.lr=0.001" (keys present)
  std::map<std::string, std::string> keys;  // group-by key -> value as text ("" when absent)
  std::vector<int64_t> run_ids;             // every selected run in the group
  std::vector<int64_t> seeds;               // of the finished runs
  int n_done = 0;                           // runs with status done
  std::vector<double> best_val_losses;      // of the finished runs, by run id (t-test input, metric loss)
  std::vector<double> best_val_accuracies;  // of the finished runs, by run id (t-test input, metric accuracy)
  Stat best_val_loss, final_val_loss, best_val_accuracy, final_val_accuracy, n_params, tokens_per_s, mfu, wall_time_s;
  // final_val_accuracy/<key>=<value>: slice key -> value -> statistics over the finished runs,
  // and slice key -> statistics of each run's mean over that key's values.
  std::map<std::string, std::map<std::string, Stat>> slice_accuracy;
  std::map<std::string, Stat> slice_mean;
  Stat tokens_to_target, time_to_target;  // over the finished runs that reached the target
  std::optional<double> p_value;          // Welch, vs the best group (nullopt: not computed)
  Curve train, val;
};

// Best value of a swept key per group-without-that-key.
struct BestOverRow {
  std::string label;                                  // the other group keys ("" when there are none)
  std::string winner;                                 // value of the swept key in the best group
  Stat best_val_loss, best_val_accuracy;              // of the winning group
  std::vector<std::pair<std::string, double>> means;  // every value tried -> its mean of the ranking metric
};

// One slice key seen in the summaries (final_val_accuracy/<key>=<value>) and its values.
struct SliceKey {
  std::string key;
  std::vector<std::string> values;  // natural order: numerically when all are numbers, qa2 < qa10
  bool numeric = false;             // every value is a number
};

// A line of an accuracy-vs-config-key chart: one group of the other keys.
struct AccuracyLine {
  std::string label;                // "model.plugin=gpt" ("" when there are no other keys)
  std::vector<std::string> x;       // values of accuracy_x, natural order
  std::vector<double> y, lo, hi;    // mean, min, max over the chosen group's finished runs
  std::vector<std::string> chosen;  // best_over value used at each point ("" without best_over)
};

// One panel: accuracy at one slice value (or overall final_val_accuracy) vs accuracy_x.
struct AccuracyPanel {
  std::string slice_value;  // "" : overall accuracy (no slice key)
  std::vector<AccuracyLine> lines;
};

// Slice values sorted naturally: numbers numerically (before words), digit runs inside words by
// value (qa2 < qa10), the rest as text.
bool natural_less(const std::string& a, const std::string& b);

struct ProblemRun {
  int64_t id = 0;
  std::string experiment, variant, status, error, label;
  int64_t step = 0;
};

struct Report {
  ReportOptions opt;
  std::string title;
  std::vector<std::string> experiments;  // present among the selected runs
  int n_runs = 0, n_done = 0;
  std::map<std::string, std::vector<std::string>> varying;  // key -> distinct values (text)
  std::vector<std::string> group_by;                        // keys actually grouped by
  std::vector<ReportGroup> groups;                          // sorted by the ranking metric, best first
  int best_group = -1;                                      // index into groups, -1 if none finished
  double target_loss = 0;                                   // the target used (0: no val/loss at all)
  bool target_automatic = false;
  bool has_accuracy = false, has_mfu = false;
  std::string metric;  // the ranking metric used: "loss" or "accuracy" (opt.metric resolved)
  bool metric_automatic = false;
  std::vector<BestOverRow> best_over;
  std::vector<SliceKey> slices;                // sorted by key
  std::string accuracy_slice;                  // the slice key of the accuracy_x panels ("" : overall)
  std::vector<AccuracyPanel> accuracy_panels;  // one per value of accuracy_slice (empty without accuracy_x)
  std::vector<ProblemRun> problems;            // failed, diverged, interrupted
  std::string generated_at;                    // UTC, ISO 8601
};

Report build_report(sql::Db& db, const ReportOptions& opt);

// Renderers. Every text from the database is escaped for its target.
std::string report_html(const Report& r);  // one self-contained page: inline CSS and SVG, no script
std::string report_markdown(const Report& r, const std::vector<std::string>& chart_files);
// Charts in drawing order, each {file stem, SVG text}: train loss, val loss, best-over, then
// accuracy_by_<slice key> per slice key and accuracy_vs_<accuracy_x>_at_<slice>_<value> per panel
// (characters other than letters, digits, '-', '_' and '.' become '_').
std::vector<std::pair<std::string, std::string>> report_charts(const Report& r);
// Writes dir/report.html, dir/report.md and dir/<chart>.svg; returns the HTML path.
std::filesystem::path write_report(const Report& r, const std::filesystem::path& dir);

// Statistics (Boost.Math's Student's t distribution; tested against scipy reference values).
// Student t cumulative distribution P(T <= t) with df > 0 degrees of freedom (NaN otherwise).
double student_t_cdf(double t, double df);
struct WelchResult {
  double t = 0, df = 0, p = 1;  // p two-sided
};
// Welch's unequal-variance t-test; both samples need >= 2 values.
WelchResult welch_t_test(const std::vector<double>& a, const std::vector<double>& b);

// Escaping for text placed in HTML/SVG (& < > " ') and in Markdown table cells (also | and
// newlines; < > & as entities so no raw HTML reaches a Markdown renderer).
std::string html_escape(const std::string& s);
std::string markdown_escape(const std::string& s);

// "Nice" axis ticks (1, 2, 5 x 10^k steps) covering [lo, hi], about `target` of them.
std::vector<double> nice_ticks(double lo, double hi, int target = 6);
// Ticks for a log axis over [lo, hi] (lo > 0): decades, or 1-2-5 / 1..9 within them when narrow.
std::vector<double> log_ticks(double lo, double hi);

// Where a report goes by default: beside the database, in a folder named after the experiment
// when there is one (results/<experiment>/ for the default database), else <db dir>/report.
std::filesystem::path default_report_dir(const std::filesystem::path& db, const std::vector<std::string>& experiments);

}  // namespace lmgrid
