// Report model (see report.hpp): runs -> groups -> statistics and curves; plus the t-test maths.
// Rendering lives in report_render.cpp.
#include "lmgrid/report/report.hpp"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <ctime>
#include <limits>
#include <set>
#include <unordered_map>

#include <boost/math/distributions/students_t.hpp>
#include <fmt/format.h>

#include "lmgrid/base/errors.hpp"
#include "lmgrid/store/query.hpp"
#include "lmgrid/store/store.hpp"
#include "lmgrid/base/util.hpp"

namespace lmgrid {

// ---------------------------------------------------------------- statistics

Stat stat_of(const std::vector<double>& xs) {
  Stat s;
  s.n = static_cast<int>(xs.size());
  if (xs.empty()) return s;
  double sum = 0;
  s.min = s.max = xs[0];
  for (double x : xs) sum += x, s.min = std::min(s.min, x), s.max = std::max(s.max, x);
  s.mean = sum / s.n;
  if (s.n > 1) {
    double ss = 0;
    for (double x : xs) ss += (x - s.mean) * (x - s.mean);
    s.std = std::sqrt(ss / (s.n - 1));
  }
  return s;
}

namespace {

// Student's t from Boost.Math; a domain error (NaN input) gives NaN rather than an exception.
using StudentT = boost::math::students_t_distribution<
    double, boost::math::policies::policy<boost::math::policies::domain_error<boost::math::policies::ignore_error>>>;

}  // namespace

double student_t_cdf(double t, double df) {
  if (std::isnan(t) || !(df > 0)) return std::numeric_limits<double>::quiet_NaN();
  if (std::isinf(t)) return t > 0 ? 1 : 0;
  return boost::math::cdf(StudentT(df), t);
}

WelchResult welch_t_test(const std::vector<double>& a, const std::vector<double>& b) {
  if (a.size() < 2 || b.size() < 2) throw std::invalid_argument("welch_t_test needs >= 2 values per sample");
  Stat sa = stat_of(a), sb = stat_of(b);
  double va = sa.std * sa.std / sa.n, vb = sb.std * sb.std / sb.n;
  WelchResult r;
  double se2 = va + vb;
  if (se2 == 0) {  // no spread at all: equal means are indistinguishable, different ones certain
    r.t = sa.mean == sb.mean ? 0 : std::copysign(std::numeric_limits<double>::infinity(), sa.mean - sb.mean);
    r.df = sa.n + sb.n - 2;
    r.p = sa.mean == sb.mean ? 1 : 0;
    return r;
  }
  r.t = (sa.mean - sb.mean) / std::sqrt(se2);
  r.df = se2 * se2 / (va * va / (sa.n - 1) + vb * vb / (sb.n - 1));
  // Two-sided: P(|T| >= |t|) = 2 P(T >= |t|), the upper tail taken directly (no 1 - cdf).
  r.p = 2 * boost::math::cdf(boost::math::complement(StudentT(r.df), std::abs(r.t)));
  return r;
}

// ---------------------------------------------------------------- ticks

std::vector<double> nice_ticks(double lo, double hi, int target) {
  if (!(hi > lo)) {
    double pad = lo == 0 ? 1 : std::abs(lo) * 0.1;
    lo -= pad, hi += pad;
  }
  double raw = (hi - lo) / std::max(1, target);
  double mag = std::pow(10, std::floor(std::log10(raw)));
  double step = mag;
  for (double m : {1.0, 2.0, 5.0, 10.0})
    if (m * mag >= raw) {
      step = m * mag;
      break;
    }
  std::vector<double> out;
  for (double v = std::ceil(lo / step - 1e-9) * step; v <= hi + step * 1e-9; v += step)
    out.push_back(std::abs(v) < step * 1e-9 ? 0 : v);
  return out;
}

std::vector<double> log_ticks(double lo, double hi) {
  if (!(lo > 0) || !(hi > lo)) return nice_ticks(lo, hi);
  double span = std::log10(hi / lo);
  std::vector<double> mults = span > 2.5   ? std::vector<double>{1}
                              : span > 0.9 ? std::vector<double>{1, 2, 5}
                                           : std::vector<double>{1, 2, 3, 4, 5, 6, 7, 8, 9};
  std::vector<double> out;
  for (int e = static_cast<int>(std::floor(std::log10(lo))); e <= static_cast<int>(std::ceil(std::log10(hi))); ++e)
    for (double m : mults) {
      double v = m * std::pow(10.0, e);
      if (v >= lo * (1 - 1e-9) && v <= hi * (1 + 1e-9)) out.push_back(v);
    }
  if (out.size() < 3) return nice_ticks(lo, hi, 5);  // too narrow for log ticks: linear positions
  return out;
}

// ---------------------------------------------------------------- options

namespace {

std::vector<std::string> report_keys(sql::Db& db) {
  auto keys = known_keys(db);
  keys.push_back("seed");
  return keys;
}

void check_key(const std::string& flag, const std::string& key, const std::vector<std::string>& keys) {
  if (std::find(keys.begin(), keys.end(), key) != keys.end()) return;
  std::string hint = nearest(key, keys);
  throw UserError(
      fmt::format("{}: unknown key '{}'{}", flag, key, hint.empty() ? "" : "; did you mean '" + hint + "'?"));
}

constexpr const char* kSlicePrefix = "final_val_accuracy/";

// A summary key "final_val_accuracy/<key>=<value>" split into key and value; false otherwise.
bool parse_slice(const std::string& summary, std::string& key, std::string& value) {
  size_t n = std::char_traits<char>::length(kSlicePrefix);
  if (summary.compare(0, n, kSlicePrefix) != 0) return false;
  size_t eq = summary.find('=', n);
  if (eq == std::string::npos || eq == n) return false;
  key = summary.substr(n, eq - n), value = summary.substr(eq + 1);
  return true;
}

// A text that is a whole number ("16", "1e-3", "-2.5"); sets x.
bool as_number(const std::string& s, double& x) {
  if (s.empty()) return false;
  char* end;
  x = std::strtod(s.c_str(), &end);
  return *end == 0 && std::isfinite(x);
}

}  // namespace

bool natural_less(const std::string& a, const std::string& b) {
  double x, y;
  bool na = as_number(a, x), nb = as_number(b, y);
  if (na && nb) return x < y || (x == y && a < b);
  if (na != nb) return na;  // numbers first
  size_t i = 0, j = 0;
  while (i < a.size() && j < b.size()) {
    bool da = std::isdigit(static_cast<unsigned char>(a[i])), db = std::isdigit(static_cast<unsigned char>(b[j]));
    if (da && db) {  // compare the digit runs by value: skip leading zeros, then length, then digits
      size_t ie = i, je = j;
      while (ie < a.size() && std::isdigit(static_cast<unsigned char>(a[ie]))) ++ie;
      while (je < b.size() && std::isdigit(static_cast<unsigned char>(b[je]))) ++je;
      size_t is = i, js = j;
      while (is + 1 < ie && a[is] == '0') ++is;
      while (js + 1 < je && b[js] == '0') ++js;
      if (ie - is != je - js) return ie - is < je - js;
      int c = a.compare(is, ie - is, b, js, je - js);
      if (c != 0) return c < 0;
      i = ie, j = je;
    } else {
      if (a[i] != b[j]) return a[i] < b[j];
      ++i, ++j;
    }
  }
  if ((i < a.size()) != (j < b.size())) return j < b.size();
  return a < b;
}

void validate_report_options(sql::Db& db, const ReportOptions& opt) {
  if (opt.x != "step" && opt.x != "tokens" && opt.x != "time")
    throw UserError(fmt::format("--x '{}': expected step, tokens or time", opt.x));
  if (opt.target_loss && !(*opt.target_loss > 0))
    throw UserError(fmt::format("--target-loss {}: must be a positive loss", *opt.target_loss));
  if (opt.metric != "auto" && opt.metric != "loss" && opt.metric != "accuracy")
    throw UserError(fmt::format("--metric '{}': expected auto, loss or accuracy", opt.metric));
  auto keys = report_keys(db);
  for (const auto& k : opt.group_by) check_key("--group-by", k, keys);
  if (!opt.best_over.empty()) check_key("--best-over", opt.best_over, keys);
  if (!opt.accuracy_x.empty()) check_key("--accuracy-x", opt.accuracy_x, keys);
  if (!opt.accuracy_slice.empty()) {
    if (opt.accuracy_x.empty()) throw UserError("--accuracy-slice needs --accuracy-x (the config key on the x axis)");
    std::set<std::string> slice_keys;
    std::string k, v;
    for (const auto& s : keys)
      if (parse_slice(s, k, v)) slice_keys.insert(k);
    if (!slice_keys.count(opt.accuracy_slice)) {
      std::vector<std::string> known(slice_keys.begin(), slice_keys.end());
      std::string hint = nearest(opt.accuracy_slice, known), list;
      for (const auto& x : known) list += (list.empty() ? "" : ", ") + x;
      throw UserError(fmt::format("--accuracy-slice: unknown slice key '{}'{} (slice keys in the database: {})",
                                  opt.accuracy_slice, hint.empty() ? "" : "; did you mean '" + hint + "'?",
                                  list.empty() ? "none: no run has final_val_accuracy/<key>=<value>" : list));
    }
  }
  if (!opt.experiments.empty()) {
    std::vector<std::string> names = experiment_names(db);
    for (const auto& e : opt.experiments)
      if (std::find(names.begin(), names.end(), e) == names.end()) {
        std::string hint = nearest(e, names);
        throw UserError(fmt::format("--experiment: no experiment '{}' in the database{}", e,
                                    hint.empty() ? "" : "; did you mean '" + hint + "'?"));
      }
  }
}

// ---------------------------------------------------------------- the model

namespace {

std::string value_text(const std::optional<Value>& v) { return v ? to_string(*v) : ""; }

// Per-step accumulator of one group's series.
struct Acc {
  int n = 0;
  double sum = 0, lo = 0, hi = 0, tokens = 0, time = 0;
};

Curve to_curve(const std::map<int64_t, Acc>& pts, const std::string& x) {
  Curve c;
  size_t n = pts.size();
  if (n == 0) return c;
  // Evenly spaced indices, always keeping the first and last point.
  size_t keep = std::min(n, kMaxCurvePoints);
  std::vector<size_t> idx;
  for (size_t i = 0; i < keep; ++i) idx.push_back(keep == 1 ? 0 : (i * (n - 1)) / (keep - 1));
  size_t next = 0, i = 0;
  for (const auto& [step, a] : pts) {
    if (next < idx.size() && idx[next] == i) {
      while (next < idx.size() && idx[next] == i) ++next;
      c.x.push_back(x == "tokens" ? a.tokens / a.n : x == "time" ? a.time / a.n : static_cast<double>(step));
      c.y.push_back(a.sum / a.n);
      c.lo.push_back(a.lo);
      c.hi.push_back(a.hi);
    }
    ++i;
  }
  return c;
}

// Number of distinct value tuples of `keys` over the runs.
size_t n_partitions(const std::vector<RunRecord>& runs, const std::vector<std::string>& keys) {
  std::set<std::vector<std::string>> seen;
  for (const auto& r : runs) {
    std::vector<std::string> v;
    for (const auto& k : keys) v.push_back(value_text(r.get(k)));
    seen.insert(std::move(v));
  }
  return seen.size();
}

// Every varying key except the seed, minus keys implied by the others: a key is dropped when
// grouping without it gives the same groups (e.g. a plugin's own parameters when the plugin
// differs). Keys unset in some runs are tried first, "<section>.plugin" keys are always kept.
std::vector<std::string> default_group_by(const std::vector<RunRecord>& runs, const std::vector<std::string>& vkeys) {
  std::vector<std::string> keys;
  for (const auto& k : vkeys)
    if (k != "seed") keys.push_back(k);
  size_t target = n_partitions(runs, keys);
  auto is_plugin = [](const std::string& k) { return k.size() > 7 && k.compare(k.size() - 7, 7, ".plugin") == 0; };
  auto sometimes_unset = [&](const std::string& k) {
    for (const auto& r : runs)
      if (!r.get(k)) return true;
    return false;
  };
  std::vector<std::string> order;
  for (int pass = 0; pass < 2; ++pass)
    for (const auto& k : keys)
      if (!is_plugin(k) && sometimes_unset(k) == (pass == 0)) order.push_back(k);
  for (const auto& k : order) {
    std::vector<std::string> without;
    for (const auto& o : keys)
      if (o != k) without.push_back(o);
    if (n_partitions(runs, without) == target) keys = std::move(without);
  }
  // Named [[variant]]s read better than the keys they set ("variant=ttt-mlp" rather than
  // "model.intermediate=297 model.plugin=ttt"): when every run has a variant label and the label
  // plus the remaining keys gives the same groups, group by the label and drop what it implies.
  bool all_named = !runs.empty();
  for (const auto& r : runs) all_named = all_named && !r.variant.empty();
  if (all_named && n_partitions(runs, {"variant"}) > 1) {
    std::vector<std::string> with{"variant"};
    with.insert(with.end(), keys.begin(), keys.end());
    if (n_partitions(runs, with) == target) {
      for (size_t i = 1; i < with.size();) {
        std::vector<std::string> without = with;
        without.erase(without.begin() + static_cast<std::ptrdiff_t>(i));
        if (n_partitions(runs, without) == target)
          with = std::move(without);
        else
          ++i;
      }
      keys = std::move(with);
    }
  }
  return keys;
}

// The runs to report on: those of opt.experiments (all when empty) that pass opt.where, only
// opt.run_ids when given (the query's own filters); UserError when none is left.
std::vector<RunRecord> select_runs(sql::Db& db, const ReportOptions& opt) {
  RunQuery q;
  q.experiments = opt.experiments;
  q.where = opt.where;
  q.ids = opt.run_ids;
  auto runs = query_runs(db, q);
  if (runs.empty()) throw UserError("no runs to report on (check --experiment, --where and --db)");
  return runs;
}

// The current time as "YYYY-MM-DD HH:MM UTC".
std::string utc_now_text() {
  std::time_t now = std::time(nullptr);
  char buf[32];
  std::strftime(buf, sizeof(buf), "%Y-%m-%d %H:%M UTC", std::gmtime(&now));
  return buf;
}

// Header fields: time stamp, experiments present (sorted), title, run count.
void fill_header(Report& rep, const std::vector<RunRecord>& runs) {
  rep.generated_at = utc_now_text();
  std::set<std::string> ex;
  for (const auto& r : runs) ex.insert(r.experiment);
  rep.experiments.assign(ex.begin(), ex.end());
  std::string names;
  for (const auto& e : rep.experiments) names += (names.empty() ? "" : ", ") + e;
  rep.title = !rep.opt.title.empty() ? rep.opt.title : "lmgrid report: " + names;
  rep.n_runs = static_cast<int>(runs.size());
}

// Order of values shown for a key: numbers first, in numeric order; other texts keep their place.
bool numbers_first(const std::string& a, const std::string& b) {
  char *ea, *eb;
  double x = std::strtod(a.c_str(), &ea), y = std::strtod(b.c_str(), &eb);
  bool na = !a.empty() && *ea == 0, nb = !b.empty() && *eb == 0;
  if (na && nb) return x < y;
  return na && !nb;
}

// "What varies": each varying key -> its distinct values, except keys set to one value in some
// runs and absent from the others (a plugin's own setting that follows from model.plugin).
std::map<std::string, std::vector<std::string>> varying_values(const std::vector<RunRecord>& runs,
                                                               const std::vector<std::string>& vkeys) {
  std::map<std::string, std::vector<std::string>> out;
  for (const auto& k : vkeys) {
    std::set<std::string> vals;
    for (const auto& r : runs) vals.insert(value_text(r.get(k)));
    std::vector<std::string> v(vals.begin(), vals.end());
    std::stable_sort(v.begin(), v.end(), numbers_first);
    if (v.size() == 2 && std::count(v.begin(), v.end(), std::string()) == 1) continue;
    out[k] = v;
  }
  return out;
}

// The keys to group by: opt.group_by, else the default; best_over appended when missing.
std::vector<std::string> grouping_keys(const ReportOptions& opt, const std::vector<RunRecord>& runs,
                                       const std::vector<std::string>& vkeys) {
  std::vector<std::string> keys = !opt.group_by.empty() ? opt.group_by : default_group_by(runs, vkeys);
  for (const std::string* k : {&opt.best_over, &opt.accuracy_x})
    if (!k->empty() && std::find(keys.begin(), keys.end(), *k) == keys.end()) keys.push_back(*k);
  return keys;
}

// "k=v" for each key in order whose value is set, except `skip`, joined by spaces.
std::string keys_label(const std::vector<std::string>& keys, const std::map<std::string, std::string>& vals,
                       const std::string& skip = "") {
  std::string label;
  for (const auto& k : keys)
    if (k != skip && !vals.at(k).empty()) label += (label.empty() ? "" : " ") + k + "=" + vals.at(k);
  return label;
}

using RunGroups = std::unordered_map<int64_t, size_t>;  // run id -> index into Report::groups

// Creates the groups (in order of first appearance) with their run ids; returns each run's group.
RunGroups assign_groups(Report& rep, const std::vector<RunRecord>& runs) {
  std::map<std::vector<std::string>, size_t> gindex;
  RunGroups run_group;
  for (const auto& r : runs) {
    std::vector<std::string> vals;
    for (const auto& k : rep.group_by) vals.push_back(value_text(r.get(k)));
    auto [it, fresh] = gindex.emplace(vals, rep.groups.size());
    if (fresh) {
      ReportGroup g;
      for (size_t i = 0; i < rep.group_by.size(); ++i) g.keys[rep.group_by[i]] = vals[i];
      g.label = keys_label(rep.group_by, g.keys);
      if (g.label.empty()) g.label = "all runs";
      rep.groups.push_back(std::move(g));
    }
    run_group[r.id] = it->second;
    rep.groups[it->second].run_ids.push_back(r.id);
  }
  return run_group;
}

// The finite summary values of one group's finished runs: the inputs of its statistics.
struct GroupValues {
  std::vector<double> best, final, acc, facc, params, tps, mfu, wall;
  std::map<std::string, std::map<std::string, std::vector<double>>> slice;  // key -> value -> per run
  std::map<std::string, std::vector<double>> slice_mean;                    // key -> each run's mean
};

// Adds a finished run's finite summaries (and its parameter count) to its group's values.
void add_run_values(const RunRecord& r, GroupValues& v) {
  auto put = [&](const char* key, std::vector<double>& out) {
    auto it = r.summaries.find(key);
    if (it != r.summaries.end() && std::isfinite(it->second)) out.push_back(it->second);
  };
  put("best_val_loss", v.best);
  put("final_val_loss", v.final);
  put("best_val_accuracy", v.acc);
  put("final_val_accuracy", v.facc);
  put("tokens_per_s", v.tps);
  put("mfu", v.mfu);
  put("wall_time_s", v.wall);
  if (r.n_params > 0)
    v.params.push_back(static_cast<double>(r.n_params));
  else
    put("n_params", v.params);
  std::map<std::string, std::pair<double, int>> sums;  // slice key -> sum, count of this run
  std::string key, value;
  for (const auto& [name, x] : r.summaries)
    if (std::isfinite(x) && parse_slice(name, key, value)) {
      v.slice[key][value].push_back(x);
      auto& [sum, n] = sums[key];
      sum += x, ++n;
    }
  for (const auto& [k, sn] : sums) v.slice_mean[k].push_back(sn.first / sn.second);
}

// Whether a run has best_val_accuracy and at least one slice summary (metric auto -> accuracy).
bool has_answers(const RunRecord& r) {
  auto it = r.summaries.find("best_val_accuracy");
  if (it == r.summaries.end() || !std::isfinite(it->second)) return false;
  auto s = r.summaries.lower_bound(kSlicePrefix);
  return s != r.summaries.end() && s->first.compare(0, std::char_traits<char>::length(kSlicePrefix), kSlicePrefix) == 0;
}

// Walks the runs once: counts and collects the finished ones per group (returned by group) and
// lists the failed, diverged and interrupted ones in rep.problems. `done` gets the finished ids.
std::vector<GroupValues> collect_runs(Report& rep, const std::vector<RunRecord>& runs, const RunGroups& run_group,
                                      std::set<int64_t>& done, bool& all_answers) {
  all_answers = true;
  std::vector<GroupValues> vals(rep.groups.size());
  for (const auto& r : runs) {
    size_t gi = run_group.at(r.id);
    auto status = parse_run_status(r.status);
    if (status != RunStatus::done) {
      if (status && (is_unsuccessful(*status) || *status == RunStatus::interrupted))
        rep.problems.push_back({r.id, r.experiment, r.variant, r.status, r.error, rep.groups[gi].label, r.step});
      continue;
    }
    done.insert(r.id);
    auto& g = rep.groups[gi];
    ++g.n_done;
    ++rep.n_done;
    g.seeds.push_back(r.seed);
    add_run_values(r, vals[gi]);
    all_answers = all_answers && has_answers(r);
  }
  return vals;
}

// Each group's statistics from its values; sets rep.has_accuracy and rep.has_mfu.
void group_statistics(Report& rep, const std::vector<GroupValues>& vals) {
  for (size_t i = 0; i < rep.groups.size(); ++i) {
    auto& g = rep.groups[i];
    const auto& v = vals[i];
    g.best_val_losses = v.best;
    g.best_val_accuracies = v.acc;
    g.best_val_loss = stat_of(v.best), g.final_val_loss = stat_of(v.final), g.best_val_accuracy = stat_of(v.acc);
    g.final_val_accuracy = stat_of(v.facc);
    for (const auto& [k, by_value] : v.slice)
      for (const auto& [val, xs] : by_value) g.slice_accuracy[k][val] = stat_of(xs);
    for (const auto& [k, xs] : v.slice_mean) g.slice_mean[k] = stat_of(xs);
    g.n_params = stat_of(v.params), g.tokens_per_s = stat_of(v.tps), g.mfu = stat_of(v.mfu);
    g.wall_time_s = stat_of(v.wall);
    std::sort(g.seeds.begin(), g.seeds.end());
    rep.has_accuracy |= !v.acc.empty();
    rep.has_mfu |= !v.mfu.empty();
  }
}

// The automatic target loss: the largest best_val_loss of any finished run (0 when none).
double largest_best_loss(const std::vector<GroupValues>& vals) {
  double max_best = 0;
  for (const auto& v : vals)
    for (double x : v.best) max_best = std::max(max_best, x);
  return max_best;
}

// Train/val curves and tokens/time to rep.target_loss of every group, from one ordered scan of
// the loss series of the finished runs.
void group_curves(sql::Db& db, Report& rep, const std::set<int64_t>& done, const RunGroups& run_group) {
  size_t n = rep.groups.size();
  std::vector<std::map<int64_t, Acc>> train(n), val(n);
  std::vector<std::vector<double>> tok_target(n), time_target(n);
  if (!done.empty()) {
    int64_t cur_run = -1;
    bool reached = false;
    scan_loss_series(db, *done.begin(), *done.rbegin(), [&](const LossPoint& p) {
      if (p.run_id != cur_run) cur_run = p.run_id, reached = false;
      if (!done.count(p.run_id)) return;
      size_t gi = run_group.at(p.run_id);
      double tokens = static_cast<double>(p.tokens), t = p.elapsed_s, y = p.value;
      Acc& a = (p.is_val ? val : train)[gi][p.step];
      if (a.n == 0) a.lo = a.hi = y;
      ++a.n, a.sum += y, a.lo = std::min(a.lo, y), a.hi = std::max(a.hi, y), a.tokens += tokens, a.time += t;
      if (p.is_val && !reached && rep.target_loss > 0 && y <= rep.target_loss * (1 + 1e-12)) {
        reached = true;
        tok_target[gi].push_back(tokens);
        time_target[gi].push_back(t);
      }
    });
  }
  for (size_t i = 0; i < n; ++i) {
    rep.groups[i].train = to_curve(train[i], rep.opt.x);
    rep.groups[i].val = to_curve(val[i], rep.opt.x);
    rep.groups[i].tokens_to_target = stat_of(tok_target[i]);
    rep.groups[i].time_to_target = stat_of(time_target[i]);
  }
}

// The ranking metric's statistics and per-run values of a group.
const Stat& rank_stat(const Report& rep, const ReportGroup& g) {
  return rep.metric == "accuracy" ? g.best_val_accuracy : g.best_val_loss;
}
const std::vector<double>& rank_values(const Report& rep, const ReportGroup& g) {
  return rep.metric == "accuracy" ? g.best_val_accuracies : g.best_val_losses;
}
// a ranks before b by the metric: lower loss or higher accuracy.
bool rank_better(const Report& rep, double a, double b) { return rep.metric == "accuracy" ? a > b : a < b; }

// Sorts the groups best first by rep.metric (groups without its summary last, in their order;
// equal mean accuracies, common in short runs that score 0 or 1, by the lower mean best_val_loss),
// sets rep.best_group and each group's Welch p-value against the best.
void rank_groups(Report& rep) {
  std::stable_sort(rep.groups.begin(), rep.groups.end(), [&](const ReportGroup& a, const ReportGroup& b) {
    bool ha = rank_stat(rep, a).n > 0, hb = rank_stat(rep, b).n > 0;
    if (ha != hb) return ha;
    if (!ha) return false;
    double ma = rank_stat(rep, a).mean, mb = rank_stat(rep, b).mean;
    if (ma != mb || rep.metric != "accuracy") return rank_better(rep, ma, mb);
    bool la = a.best_val_loss.n > 0, lb = b.best_val_loss.n > 0;
    if (la != lb) return la;
    return la && a.best_val_loss.mean < b.best_val_loss.mean;
  });
  if (!rep.groups.empty() && rank_stat(rep, rep.groups[0]).n > 0) rep.best_group = 0;
  if (rep.best_group == 0 && rank_values(rep, rep.groups[0]).size() >= 2)
    for (size_t i = 1; i < rep.groups.size(); ++i)
      if (rank_values(rep, rep.groups[i]).size() >= 2)
        rep.groups[i].p_value = welch_t_test(rank_values(rep, rep.groups[0]), rank_values(rep, rep.groups[i])).p;
}

// opt.metric resolved: "auto" is accuracy when every finished run has best_val_accuracy and a
// slice summary. An explicit "accuracy" with no best_val_accuracy anywhere is a UserError.
void resolve_metric(Report& rep, bool all_answers) {
  rep.metric_automatic = rep.opt.metric == "auto";
  if (rep.opt.metric == "auto")
    rep.metric = rep.n_done > 0 && all_answers ? "accuracy" : "loss";
  else
    rep.metric = rep.opt.metric;
  if (rep.metric == "accuracy" && !rep.has_accuracy)
    throw UserError(
        "--metric accuracy: no finished run has best_val_accuracy (only data sets with answers record it); "
        "use --metric loss");
}

// Order of the values tried for the best-over key: numeric when both are numbers, else as text.
bool best_over_value_less(const std::pair<std::string, double>& a, const std::pair<std::string, double>& b) {
  char *ea, *eb;
  double x = std::strtod(a.first.c_str(), &ea), y = std::strtod(b.first.c_str(), &eb);
  if (*ea == 0 && *eb == 0 && !a.first.empty() && !b.first.empty()) return x < y;
  return a.first < b.first;
}

// Best value of opt.best_over per bucket of the other group keys: the first ranked group (the
// best by rep.metric), with the mean of the metric for every value tried.
std::vector<BestOverRow> best_over_rows(const Report& rep) {
  const std::string& key = rep.opt.best_over;
  std::vector<BestOverRow> rows;
  std::map<std::string, size_t> bucket;
  for (const auto& g : rep.groups) {
    if (rank_stat(rep, g).n == 0) continue;
    std::string label = keys_label(rep.group_by, g.keys, key);
    auto [it, fresh] = bucket.emplace(label, rows.size());
    if (fresh) {  // groups are sorted best first, so the first one met wins
      BestOverRow row;
      row.label = label;
      row.winner = g.keys.at(key);
      row.best_val_loss = g.best_val_loss;
      row.best_val_accuracy = g.best_val_accuracy;
      rows.push_back(std::move(row));
    }
    rows[it->second].means.emplace_back(g.keys.at(key), rank_stat(rep, g).mean);
  }
  for (auto& row : rows) std::stable_sort(row.means.begin(), row.means.end(), best_over_value_less);
  return rows;
}

// The slice keys over the groups, each with its values in natural order.
std::vector<SliceKey> slice_keys(const Report& rep) {
  std::map<std::string, std::set<std::string>> seen;
  for (const auto& g : rep.groups)
    for (const auto& [k, by_value] : g.slice_accuracy)
      for (const auto& [v, st] : by_value) seen[k].insert(v);
  std::vector<SliceKey> out;
  for (const auto& [k, vals] : seen) {
    SliceKey sk;
    sk.key = k;
    sk.values.assign(vals.begin(), vals.end());
    std::sort(sk.values.begin(), sk.values.end(), natural_less);
    sk.numeric = true;
    double x;
    for (const auto& v : sk.values) sk.numeric = sk.numeric && as_number(v, x);
    out.push_back(std::move(sk));
  }
  return out;
}

// The accuracy of a group at one slice value (the overall final_val_accuracy when key is "").
const Stat* panel_stat(const ReportGroup& g, const std::string& key, const std::string& value) {
  if (key.empty()) return g.final_val_accuracy.n ? &g.final_val_accuracy : nullptr;
  auto k = g.slice_accuracy.find(key);
  if (k == g.slice_accuracy.end()) return nullptr;
  auto v = k->second.find(value);
  return v == k->second.end() || v->second.n == 0 ? nullptr : &v->second;
}

// Panels of accuracy vs opt.accuracy_x: per value of the slice key (one overall panel without
// slices, or several and none chosen), one line per group of the keys other than accuracy_x and
// best_over, at each x value the group (over best_over's values) with the highest mean accuracy
// there. Sets rep.accuracy_slice.
void accuracy_panels(Report& rep) {
  const std::string& xk = rep.opt.accuracy_x;
  const std::string& bo = rep.opt.best_over;
  std::string sk = rep.opt.accuracy_slice;
  if (sk.empty() && rep.slices.size() == 1) sk = rep.slices[0].key;  // several: the overall accuracy
  rep.accuracy_slice = sk;
  std::vector<std::string> values{""};
  for (const auto& s : rep.slices)
    if (s.key == sk) values = s.values;
  for (const auto& v : values) {
    AccuracyPanel panel;
    panel.slice_value = v;
    // line label -> x value -> (the chosen group's stat, its best_over value)
    std::map<std::string, std::map<std::string, std::pair<const Stat*, std::string>>> pts;
    std::vector<std::string> order;  // line labels by their best group's rank
    for (const auto& g : rep.groups) {
      const Stat* st = panel_stat(g, sk, v);
      if (!st) continue;
      std::string label;
      for (const auto& k : rep.group_by)
        if (k != xk && k != bo && !g.keys.at(k).empty()) label += (label.empty() ? "" : " ") + k + "=" + g.keys.at(k);
      if (!pts.count(label)) order.push_back(label);
      auto& cell = pts[label][g.keys.at(xk)];
      if (!cell.first || st->mean > cell.first->mean) cell = {st, bo.empty() ? "" : g.keys.at(bo)};
    }
    for (const auto& label : order) {
      AccuracyLine line;
      line.label = label;
      for (const auto& [x, c] : pts[label]) line.x.push_back(x);
      std::sort(line.x.begin(), line.x.end(), natural_less);
      for (const auto& x : line.x) {
        const auto& [st, chosen] = pts[label][x];
        line.y.push_back(st->mean), line.lo.push_back(st->min), line.hi.push_back(st->max);
        line.chosen.push_back(chosen);
      }
      panel.lines.push_back(std::move(line));
    }
    rep.accuracy_panels.push_back(std::move(panel));
  }
}

}  // namespace

Report build_report(sql::Db& db, const ReportOptions& opt) {
  validate_report_options(db, opt);
  Report rep;
  rep.opt = opt;
  auto runs = select_runs(db, opt);
  fill_header(rep, runs);
  auto vkeys = varying_keys(runs);  // config keys, seed included
  rep.varying = varying_values(runs, vkeys);
  rep.group_by = grouping_keys(opt, runs, vkeys);
  RunGroups run_group = assign_groups(rep, runs);
  std::set<int64_t> done;
  bool all_answers = false;
  auto vals = collect_runs(rep, runs, run_group, done, all_answers);
  group_statistics(rep, vals);
  resolve_metric(rep, all_answers);
  rep.target_automatic = !opt.target_loss;
  rep.target_loss = opt.target_loss ? *opt.target_loss : largest_best_loss(vals);
  group_curves(db, rep, done, run_group);
  rank_groups(rep);
  if (!opt.best_over.empty()) rep.best_over = best_over_rows(rep);
  rep.slices = slice_keys(rep);
  if (!opt.accuracy_x.empty()) accuracy_panels(rep);
  return rep;
}

// Default folder: beside the database, named after the experiment when there is one
// (results/<experiment>/ for the default database), else <db dir>/report.
std::filesystem::path default_report_dir(const std::filesystem::path& db, const std::vector<std::string>& experiments) {
  std::string name = experiments.size() == 1 ? experiments[0] : "report";
  for (char& c : name)
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '-' && c != '_' && c != '.') c = '_';
  if (name.empty() || name == "." || name == "..") name = "report";
  return (db.has_parent_path() ? db.parent_path() : std::filesystem::path(".")) / name;
}

}  // namespace lmgrid
