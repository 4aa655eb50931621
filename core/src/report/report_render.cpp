// Report rendering (see report.hpp): HTML with inline CSS and SVG, Markdown with SVG files.
// Formats numbers the model computed; computes nothing new except chart geometry.
#include <algorithm>
#include <cctype>
#include <cmath>
#include <set>

#include <fmt/format.h>

#include "lmgrid/report/report.hpp"
#include "lmgrid/store/store.hpp"
#include "lmgrid/base/util.hpp"

namespace lmgrid {

namespace fs = std::filesystem;

std::string html_escape(const std::string& s) {
  std::string out;
  out.reserve(s.size());
  for (char c : s) {
    switch (c) {
      case '&': out += "&amp;"; break;
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '"': out += "&quot;"; break;
      case '\'': out += "&#39;"; break;
      default: out += c;
    }
  }
  return out;
}

std::string markdown_escape(const std::string& s) {
  std::string out;
  out.reserve(s.size());
  for (char c : s) {
    switch (c) {
      case '|': out += "\\|"; break;
      case '\\': out += "\\\\"; break;
      case '`': out += "\\`"; break;
      case '*': out += "\\*"; break;
      case '_': out += "\\_"; break;
      case '[': out += "\\["; break;
      case ']': out += "\\]"; break;
      case '&': out += "&amp;"; break;
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '\n':
      case '\r': out += ' '; break;
      default: out += c;
    }
  }
  return out;
}

namespace {

// Colour-blind-friendly palette (Okabe-Ito order, then darker extras).
const char* kPalette[] = {"#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7",
                          "#56B4E9", "#8C6D1F", "#1B1B1B", "#7A4FA8", "#6A8F00"};

std::string num(double v, int digits = 4) {
  if (!std::isfinite(v)) return "–";
  return fmt::format("{:.{}f}", v, digits);
}
std::string pm(const Stat& s, int digits = 4) {
  if (s.n == 0) return "–";
  if (s.n == 1) return num(s.mean, digits);
  return num(s.mean, digits) + " ± " + num(s.std, digits);
}
std::string count_text(double v) { return human_count(static_cast<int64_t>(std::llround(v))); }
std::string short_num(double v) {  // axis labels: 1.2K, 3M, 0.001, 2.5
  double a = std::abs(v);
  if (a >= 1e9) return fmt::format("{:g}B", v / 1e9);
  if (a >= 1e6) return fmt::format("{:g}M", v / 1e6);
  if (a >= 1e4) return fmt::format("{:g}K", v / 1e3);
  return fmt::format("{:g}", v);
}
std::string duration(double s) {
  if (!std::isfinite(s)) return "–";
  if (s < 10) return fmt::format("{:.2f} s", s);
  if (s < 60) return fmt::format("{:.1f} s", s);
  return human_duration(s);
}
std::string p_text(const std::optional<double>& p) {
  if (!p) return "–";
  if (*p < 1e-4) return "<0.0001";
  return fmt::format("{:.3g}", *p);
}

// Short legend label: key suffix after the last '.', when that suffix is unique among keys.
std::string short_label(const ReportGroup& g, const std::vector<std::string>& keys) {
  std::string out;
  for (const auto& k : keys) {
    const std::string& v = g.keys.at(k);
    if (v.empty()) continue;
    std::string s = k.substr(k.rfind('.') == std::string::npos ? 0 : k.rfind('.') + 1);
    int same = 0;
    for (const auto& o : keys) same += o.size() >= s.size() && o.compare(o.size() - s.size(), s.size(), s) == 0;
    out += (out.empty() ? "" : " ") + (same > 1 ? k : s) + "=" + v;
  }
  return out.empty() ? g.label : out;
}

struct Series {
  std::string label, color;
  Curve c;
  bool markers = false;
};

struct ChartSpec {
  std::string title, x_label, y_label;
  bool log_x = false, log_y = false;
  bool x_is_time = false;
  std::vector<std::string> x_categories;  // non-empty: a categorical x axis, category i at x = i
  bool y_unit = false;                    // y is a fraction: the axis spans 0..1
  std::vector<double> x_ticks;            // non-empty: ticks at these values (a few discrete values)
};

std::string truncate(const std::string& s, size_t n) { return s.size() <= n ? s : s.substr(0, n - 1) + "…"; }

// Chart geometry: the canvas and its margins, the data range on each axis (after fit_axes, the
// drawn range) and the mapping from data to canvas coordinates.
struct ChartFrame {
  static constexpr double W = 880, H = 380, ml = 70, mr = 250, mt = 40, mb = 52;
  static constexpr double pw = W - ml - mr, ph = H - mt - mb;
  double x0 = INFINITY, x1 = -INFINITY, y0 = INFINITY, y1 = -INFINITY;
  bool log_x = false, log_y = false;
  bool empty() const { return !std::isfinite(x0); }
  double fx(double x) const {
    return log_x ? ml + (std::log(x) - std::log(x0)) / (std::log(x1) - std::log(x0)) * pw
                 : ml + (x - x0) / (x1 - x0) * pw;
  }
  double fy(double y) const {
    return log_y ? mt + ph - (std::log(y) - std::log(y0)) / (std::log(y1) - std::log(y0)) * ph
                 : mt + ph - (y - y0) / (y1 - y0) * ph;
  }
};

// The data range of the series: x over the points (x > 0 only on a log x axis), y over the bands.
ChartFrame data_range(const ChartSpec& spec, const std::vector<Series>& series) {
  ChartFrame f;
  for (const auto& s : series)
    for (size_t i = 0; i < s.c.x.size(); ++i) {
      if (spec.log_x && !(s.c.x[i] > 0)) continue;
      f.x0 = std::min(f.x0, s.c.x[i]), f.x1 = std::max(f.x1, s.c.x[i]);
      f.y0 = std::min(f.y0, s.c.lo[i]), f.y1 = std::max(f.y1, s.c.hi[i]);
    }
  return f;
}

// Decides log or linear per axis (log only where the range is positive) and pads the ranges.
void fit_axes(const ChartSpec& spec, ChartFrame& f) {
  f.log_y = spec.log_y && f.y0 > 0, f.log_x = spec.log_x && f.x0 > 0;
  if (!spec.x_categories.empty()) f.x0 = -0.5, f.x1 = static_cast<double>(spec.x_categories.size()) - 0.5;
  if (spec.y_unit) {
    f.y0 = std::min(f.y0, 0.0) - 0.02, f.y1 = std::max(f.y1, 1.0) + 0.02;
  } else if (f.log_y) {
    f.y0 /= 1.03, f.y1 *= 1.03;
  } else {
    double pad = (f.y1 - f.y0) * 0.04 + (f.y1 == f.y0 ? std::max(1e-3, std::abs(f.y0) * 0.05) : 0);
    f.y0 -= pad, f.y1 += pad;
  }
  if (f.x1 == f.x0) f.x0 -= 0.5, f.x1 += 0.5;
  if (f.log_x) f.x0 /= 1.15, f.x1 *= 1.15;
}

// The opening <svg> tag, the accessible title, the white background and the visible title.
std::string svg_head(const ChartSpec& spec, bool standalone) {
  using F = ChartFrame;
  std::string o;
  o += fmt::format(
      "<svg {}viewBox=\"0 0 {} {}\" width=\"{}\" height=\"{}\" role=\"img\" class=\"chart\" "
      "font-family=\"system-ui, -apple-system, 'Segoe UI', Roboto, sans-serif\">\n",
      standalone ? "xmlns=\"http://www.w3.org/2000/svg\" " : "", F::W, F::H, F::W, F::H);
  o += fmt::format("<title>{}</title>\n<rect width=\"{}\" height=\"{}\" fill=\"#ffffff\"/>\n", html_escape(spec.title),
                   F::W, F::H);
  o += fmt::format("<text x=\"{}\" y=\"24\" font-size=\"15\" font-weight=\"600\" fill=\"#111827\">{}</text>\n", F::ml,
                   html_escape(spec.title));
  return o;
}

// Axes: grid lines with tick labels on both axes, the plot-area border and the axis titles.
std::string svg_axes(const ChartSpec& spec, const ChartFrame& f) {
  using F = ChartFrame;
  auto yt = f.log_y ? log_ticks(f.y0, f.y1) : nice_ticks(f.y0, f.y1, 6);
  auto xt = f.log_x ? log_ticks(f.x0, f.x1) : nice_ticks(f.x0, f.x1, 7);
  if (!spec.x_ticks.empty()) xt = spec.x_ticks;
  if (!spec.x_categories.empty()) {
    xt.clear();
    for (size_t i = 0; i < spec.x_categories.size(); ++i) xt.push_back(static_cast<double>(i));
  }
  std::string o = "<g font-size=\"11\" fill=\"#4b5563\">\n";
  for (double v : yt) {
    if (v < f.y0 || v > f.y1) continue;
    double y = f.fy(v);
    o += fmt::format(
        "<line x1=\"{:.1f}\" x2=\"{:.1f}\" y1=\"{:.1f}\" y2=\"{:.1f}\" stroke=\"#e5e7eb\"/>"
        "<text x=\"{:.1f}\" y=\"{:.1f}\" text-anchor=\"end\">{}</text>\n",
        F::ml, F::ml + F::pw, y, y, F::ml - 6, y + 4, html_escape(short_num(v)));
  }
  for (double v : xt) {
    if (v < f.x0 || v > f.x1) continue;
    double x = f.fx(v);
    std::string label = spec.x_is_time && f.x1 >= 600 ? human_duration(v) : short_num(v);
    if (!spec.x_categories.empty()) label = truncate(spec.x_categories[static_cast<size_t>(std::llround(v))], 12);
    o += fmt::format(
        "<line x1=\"{:.1f}\" x2=\"{:.1f}\" y1=\"{:.1f}\" y2=\"{:.1f}\" stroke=\"#e5e7eb\"/>"
        "<text x=\"{:.1f}\" y=\"{:.1f}\" text-anchor=\"middle\">{}</text>\n",
        x, x, F::mt, F::mt + F::ph, x, F::mt + F::ph + 16, html_escape(label));
  }
  o += "</g>\n";
  o += fmt::format("<rect x=\"{}\" y=\"{}\" width=\"{}\" height=\"{}\" fill=\"none\" stroke=\"#9ca3af\"/>\n", F::ml,
                   F::mt, F::pw, F::ph);
  o += fmt::format(
      "<text x=\"{:.1f}\" y=\"{:.1f}\" font-size=\"12\" fill=\"#374151\" text-anchor=\"middle\">{}</text>\n",
      F::ml + F::pw / 2, F::H - 12, html_escape(spec.x_label));
  o += fmt::format(
      "<text transform=\"translate(16 {:.1f}) rotate(-90)\" font-size=\"12\" fill=\"#374151\" "
      "text-anchor=\"middle\">{}{}</text>\n",
      F::mt + F::ph / 2, html_escape(spec.y_label), f.log_y ? " (log scale)" : "");
  return o;
}

// Series: the min..max bands first (only where they have spread), then the mean lines on top,
// with point markers on short or marked series.
std::string svg_series(const ChartFrame& f, const std::vector<Series>& series) {
  std::string o = "<g>\n";
  for (const auto& s : series) {
    if (s.c.x.size() < 2) continue;
    bool any_spread = false;
    for (size_t i = 0; i < s.c.x.size(); ++i) any_spread |= s.c.hi[i] > s.c.lo[i];
    if (!any_spread) continue;
    std::string pts;
    for (size_t i = 0; i < s.c.x.size(); ++i) pts += fmt::format("{:.1f},{:.1f} ", f.fx(s.c.x[i]), f.fy(s.c.hi[i]));
    for (size_t i = s.c.x.size(); i-- > 0;) pts += fmt::format("{:.1f},{:.1f} ", f.fx(s.c.x[i]), f.fy(s.c.lo[i]));
    o += fmt::format("<polygon points=\"{}\" fill=\"{}\" fill-opacity=\"{}\" stroke=\"none\"/>\n", pts, s.color,
                     series.size() > 4 ? 0.07 : 0.16);  // many overlapping bands: fainter
  }
  for (const auto& s : series) {
    std::string pts;
    for (size_t i = 0; i < s.c.x.size(); ++i) {
      if (f.log_x && !(s.c.x[i] > 0)) continue;
      pts += fmt::format("{:.1f},{:.1f} ", f.fx(s.c.x[i]), f.fy(s.c.y[i]));
    }
    o += fmt::format(
        "<polyline points=\"{}\" fill=\"none\" stroke=\"{}\" stroke-width=\"2\" "
        "stroke-linejoin=\"round\"><title>{}</title></polyline>\n",
        pts, s.color, html_escape(s.label));
    if (s.markers || s.c.x.size() <= 30)
      for (size_t i = 0; i < s.c.x.size(); ++i) {
        if (f.log_x && !(s.c.x[i] > 0)) continue;
        o += fmt::format("<circle cx=\"{:.1f}\" cy=\"{:.1f}\" r=\"3\" fill=\"{}\"/>\n", f.fx(s.c.x[i]), f.fy(s.c.y[i]),
                         s.color);
      }
  }
  return o + "</g>\n";
}

// Legend right of the plot: a colour swatch and the (truncated) label per series, full label as tooltip.
std::string svg_legend(const std::vector<Series>& series) {
  using F = ChartFrame;
  double lx = F::ml + F::pw + 18, ly = F::mt + 6;
  std::string o = "<g font-size=\"12\" fill=\"#1f2937\">\n";
  for (size_t i = 0; i < series.size(); ++i) {
    double y = ly + 20 * static_cast<double>(i);
    o += fmt::format(
        "<line x1=\"{:.1f}\" x2=\"{:.1f}\" y1=\"{:.1f}\" y2=\"{:.1f}\" stroke=\"{}\" stroke-width=\"3\"/>"
        "<text x=\"{:.1f}\" y=\"{:.1f}\">{}<title>{}</title></text>\n",
        lx, lx + 18, y, y, series[i].color, lx + 24, y + 4, html_escape(truncate(series[i].label, 30)),
        html_escape(series[i].label));
  }
  return o + "</g>\n";
}

// One line chart with bands, grid, ticks, axis labels and a legend on the right ("no data" when
// no series has a point). standalone: with the xmlns an .svg file needs.
std::string svg_chart(const ChartSpec& spec, const std::vector<Series>& series, bool standalone) {
  using F = ChartFrame;
  ChartFrame f = data_range(spec, series);
  std::string o = svg_head(spec, standalone);
  if (f.empty())
    return o + fmt::format("<text x=\"{}\" y=\"{}\" font-size=\"13\" fill=\"#6b7280\">no data</text>\n</svg>\n",
                           F::ml + 20, F::mt + F::ph / 2);
  fit_axes(spec, f);
  return o + svg_axes(spec, f) + svg_series(f, series) + svg_legend(series) + "</svg>\n";
}

bool wants_log(const std::vector<Series>& series) {
  double lo = INFINITY, hi = -INFINITY;
  for (const auto& s : series)
    for (size_t i = 0; i < s.c.y.size(); ++i) lo = std::min(lo, s.c.lo[i]), hi = std::max(hi, s.c.hi[i]);
  return lo > 0 && hi / lo >= 2;  // a loss falling 2x or more: log y keeps the end readable
}

std::string x_label(const std::string& x) {
  return x == "tokens" ? "tokens seen" : x == "time" ? "wall time (s)" : "training step";
}

struct Table {
  std::vector<std::string> headers;
  std::vector<std::vector<std::string>> rows;
  std::vector<bool> numeric;  // right-aligned columns
  int highlight = -1;         // row index shown as the best
};

Table summary_table(const Report& r) {
  Table t;
  t.headers = {"group", "runs", "seeds", "best val loss", "final val loss"};
  if (r.has_accuracy) t.headers.push_back("best val acc");
  for (const char* h : {"params", "tokens/s"}) t.headers.push_back(h);
  if (r.has_mfu) t.headers.push_back("MFU");
  t.headers.push_back("wall time");
  if (r.target_loss > 0) {
    t.headers.push_back(fmt::format("tokens to {:.4g}", r.target_loss));
    t.headers.push_back(fmt::format("time to {:.4g}", r.target_loss));
  }
  t.headers.push_back("p vs best");
  for (size_t i = 0; i < r.groups.size(); ++i) {
    const auto& g = r.groups[i];
    std::vector<std::string> row{g.label, fmt::format("{}/{}", g.n_done, g.run_ids.size())};
    std::string seeds;
    for (auto s : g.seeds) seeds += (seeds.empty() ? "" : ",") + std::to_string(s);
    row.push_back(seeds.empty() ? "–" : seeds);
    row.push_back(pm(g.best_val_loss));
    row.push_back(pm(g.final_val_loss));
    if (r.has_accuracy) row.push_back(pm(g.best_val_accuracy));
    row.push_back(g.n_params.n ? count_text(g.n_params.mean) : "–");
    row.push_back(g.tokens_per_s.n ? fmt::format("{:.0f}", g.tokens_per_s.mean) : "–");
    if (r.has_mfu) row.push_back(g.mfu.n ? fmt::format("{:.1f}%", 100 * g.mfu.mean) : "–");
    row.push_back(g.wall_time_s.n ? duration(g.wall_time_s.mean) : "–");
    if (r.target_loss > 0) {
      std::string reach =
          g.tokens_to_target.n < g.n_done ? fmt::format(" ({}/{} runs)", g.tokens_to_target.n, g.n_done) : "";
      row.push_back(g.tokens_to_target.n ? count_text(g.tokens_to_target.mean) + reach
                    : g.n_done           ? "not reached"
                                         : "–");
      row.push_back(g.time_to_target.n ? duration(g.time_to_target.mean) : g.n_done ? "not reached" : "–");
    }
    row.push_back(static_cast<int>(i) == r.best_group ? "best" : p_text(g.p_value));
    t.rows.push_back(std::move(row));
  }
  t.highlight = r.best_group;
  t.numeric.assign(t.headers.size(), true);
  t.numeric[0] = false;
  return t;
}

Table varying_table(const Report& r) {
  Table t;
  t.headers = {"key", "values"};
  for (const auto& [k, vals] : r.varying) {
    std::string v;
    for (const auto& x : vals) v += (v.empty() ? "" : ", ") + (x.empty() ? "(unset)" : x);
    t.rows.push_back({k, v});
  }
  t.numeric = {false, false};
  return t;
}

bool by_accuracy(const Report& r) { return r.metric == "accuracy"; }
std::string metric_name(const Report& r) { return by_accuracy(r) ? "best val accuracy" : "best val loss"; }

Table best_over_table(const Report& r) {
  Table t;
  const std::string& k = r.opt.best_over;
  t.headers = {"group", "best " + k, metric_name(r), "mean " + metric_name(r) + " per " + k};
  for (const auto& row : r.best_over) {
    std::string all;
    for (const auto& [v, m] : row.means) all += (all.empty() ? "" : ", ") + v + ": " + num(m);
    t.rows.push_back({row.label.empty() ? "all runs" : row.label, row.winner,
                      pm(by_accuracy(r) ? row.best_val_accuracy : row.best_val_loss), all});
  }
  t.numeric = {false, true, true, false};
  return t;
}

std::string best_over_note(const Report& r) {
  return fmt::format("Per group of the other keys, the value of {} with the {} mean {}.", r.opt.best_over,
                     by_accuracy(r) ? "highest" : "lowest", metric_name(r));
}

// The line saying what ranks the groups.
std::string ranking_note(const Report& r) {
  std::string s = by_accuracy(r) ? "Groups ranked by the highest mean best val accuracy (maximised"
                                 : "Groups ranked by the lowest mean best val loss (minimised";
  if (r.metric_automatic)
    s += by_accuracy(r) ? "; metric auto: every finished run has best val accuracy and per-slice accuracies"
                        : "; metric auto: not every finished run has best val accuracy and per-slice accuracies";
  s += "; --metric loss|accuracy, metric in [report], to choose).";
  return by_accuracy(r) ? s + " Equal mean accuracies rank by the lower mean best val loss." : s;
}

const char* kSliceNote =
    "Final val accuracy (exact match over the answers, at each run's last evaluation; summaries "
    "final_val_accuracy/<key>=<value>) per value of the key: mean ± sample standard deviation over the group's "
    "finished runs. mean: each run's mean over the key's values, then mean ± sd over the runs.";

Table slice_table(const Report& r, const SliceKey& sk) {
  Table t;
  t.headers = {"group"};
  for (const auto& v : sk.values) t.headers.push_back(sk.key + "=" + v);
  t.headers.push_back("mean");
  for (size_t i = 0; i < r.groups.size(); ++i) {
    const auto& g = r.groups[i];
    auto k = g.slice_accuracy.find(sk.key);
    if (k == g.slice_accuracy.end()) continue;
    std::vector<std::string> row{g.label};
    for (const auto& v : sk.values) {
      auto c = k->second.find(v);
      row.push_back(c == k->second.end() ? "–" : pm(c->second));
    }
    auto m = g.slice_mean.find(sk.key);
    row.push_back(m == g.slice_mean.end() ? "–" : pm(m->second));
    if (static_cast<int>(i) == r.best_group) t.highlight = static_cast<int>(t.rows.size());
    t.rows.push_back(std::move(row));
  }
  t.numeric.assign(t.headers.size(), true);
  t.numeric[0] = false;
  return t;
}

std::string accuracy_x_title(const Report& r, const AccuracyPanel& p) {
  return p.slice_value.empty()
             ? "Final val accuracy vs " + r.opt.accuracy_x
             : fmt::format("Final val accuracy at {}={} vs {}", r.accuracy_slice, p.slice_value, r.opt.accuracy_x);
}

std::string accuracy_x_note(const Report& r) {
  std::string s = r.accuracy_slice.empty() ? "Final val accuracy (final_val_accuracy)"
                                           : "Final val accuracy at each value of " + r.accuracy_slice +
                                                 " (final_val_accuracy/" + r.accuracy_slice + "=<value>)";
  s += " against " + r.opt.accuracy_x + ", one line per group of the other keys: mean over the finished runs";
  if (!r.opt.best_over.empty())
    s += ", at each point the value of " + r.opt.best_over + " with the highest mean accuracy there (in brackets)";
  s += "; the band spans min..max.";
  if (r.accuracy_slice.empty() && r.slices.size() > 1) {
    std::string list;
    for (const auto& k : r.slices) list += (list.empty() ? "" : ", ") + k.key;
    s += " The runs have several slice keys (" + list +
         "): choose one with --accuracy-slice (accuracy_slice in [report]) for one chart per value.";
  }
  return s;
}

// Rows: (line, slice value); columns: the accuracy_x values.
Table accuracy_x_table(const Report& r) {
  Table t;
  std::vector<std::string> xs;
  for (const auto& p : r.accuracy_panels)
    for (const auto& l : p.lines)
      for (const auto& x : l.x)
        if (std::find(xs.begin(), xs.end(), x) == xs.end()) xs.push_back(x);
  std::sort(xs.begin(), xs.end(), natural_less);
  t.headers = {"group"};
  if (!r.accuracy_slice.empty()) t.headers.push_back(r.accuracy_slice);
  for (const auto& x : xs) t.headers.push_back(r.opt.accuracy_x + "=" + x);
  for (const auto& p : r.accuracy_panels)
    for (const auto& l : p.lines) {
      std::vector<std::string> row{l.label.empty() ? "all runs" : l.label};
      if (!r.accuracy_slice.empty()) row.push_back(p.slice_value);
      for (const auto& x : xs) {
        auto it = std::find(l.x.begin(), l.x.end(), x);
        if (it == l.x.end()) {
          row.push_back("–");
          continue;
        }
        size_t i = static_cast<size_t>(it - l.x.begin());
        std::string cell = num(l.y[i]);
        if (!l.chosen[i].empty()) cell += " (" + r.opt.best_over + "=" + l.chosen[i] + ")";
        row.push_back(cell);
      }
      t.rows.push_back(std::move(row));
    }
  t.numeric.assign(t.headers.size(), true);
  t.numeric[0] = false;
  if (!r.accuracy_slice.empty()) t.numeric[1] = false;
  return t;
}

Table problems_table(const Report& r) {
  Table t;
  t.headers = {"run", "experiment", "variant", "group", "status", "last step", "error"};
  for (const auto& p : r.problems)
    t.rows.push_back({std::to_string(p.id), p.experiment, p.variant, p.label, p.status, std::to_string(p.step),
                      p.error.empty() ? "–" : p.error});
  t.numeric = {true, false, false, false, false, true, false};
  return t;
}

std::string html_table(const Table& t) {
  std::string o = "<div class=\"scroll\"><table>\n<thead><tr>";
  for (size_t i = 0; i < t.headers.size(); ++i)
    o += fmt::format("<th{}>{}</th>", t.numeric[i] ? " class=\"num\"" : "", html_escape(t.headers[i]));
  o += "</tr></thead>\n<tbody>\n";
  for (size_t r = 0; r < t.rows.size(); ++r) {
    o += static_cast<int>(r) == t.highlight ? "<tr class=\"best\">" : "<tr>";
    for (size_t i = 0; i < t.rows[r].size(); ++i)
      o += fmt::format("<td{}>{}</td>", t.numeric[i] ? " class=\"num\"" : "", html_escape(t.rows[r][i]));
    o += "</tr>\n";
  }
  return o + "</tbody></table></div>\n";
}

std::string md_table(const Table& t) {
  std::string o = "|";
  for (const auto& h : t.headers) o += " " + markdown_escape(h) + " |";
  o += "\n|";
  for (size_t i = 0; i < t.headers.size(); ++i) o += t.numeric[i] ? "---:|" : "---|";
  o += "\n";
  for (size_t r = 0; r < t.rows.size(); ++r) {
    o += "|";
    for (const auto& c : t.rows[r]) {
      std::string cell = markdown_escape(c);
      if (static_cast<int>(r) == t.highlight && !cell.empty()) cell = "**" + cell + "**";
      o += " " + cell + " |";
    }
    o += "\n";
  }
  return o;
}

std::string meta_line(const Report& r) {
  std::string ex;
  for (const auto& e : r.experiments) ex += (ex.empty() ? "" : ", ") + e;
  std::map<std::string, int> by_status;
  by_status[status_name(RunStatus::done)] = r.n_done;
  for (const auto& p : r.problems) ++by_status[p.status];
  std::string counts;
  for (const auto& [s, n] : by_status)
    if (n) counts += fmt::format("{}{} {}", counts.empty() ? "" : ", ", n, s);
  std::string groups;
  for (const auto& k : r.group_by) groups += (groups.empty() ? "" : ", ") + k;
  return fmt::format("Experiments: {}. {} runs ({}). Grouped by: {}. Generated {}.", ex, r.n_runs, counts,
                     groups.empty() ? "nothing (one group)" : groups, r.generated_at);
}

std::string target_note(const Report& r) {
  if (r.target_loss <= 0) return "";
  return r.target_automatic
             ? fmt::format(
                   "Target loss {:.4g}: the highest best val loss of any finished run (so every finished run "
                   "reaches it); set another with --target-loss. Tokens and time to target: first val/loss "
                   "evaluation at or below it, mean over the runs that reached it.",
                   r.target_loss)
             : fmt::format(
                   "Target loss {:.4g}. Tokens and time to target: first val/loss evaluation at or below it, "
                   "mean over the runs that reached it.",
                   r.target_loss);
}

std::string stats_note(const Report& r) {
  return "Mean ± sample standard deviation over the finished runs (seeds) of each group. p vs best: two-sided "
         "Welch t-test on " +
         metric_name(r) + " between the best group and that group (both need at least 2 finished runs).";
}

const char* kCss = R"CSS(
:root { color-scheme: light; }
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: #111827; background: #f9fafb;
       margin: 0; padding: 24px 32px 48px; }
main { max-width: 1240px; margin: 0 auto; }
h1 { font-size: 22px; margin: 0 0 4px; }
h2 { font-size: 17px; margin: 28px 0 8px; padding-bottom: 4px; border-bottom: 1px solid #e5e7eb; }
h3 { font-size: 15px; margin: 16px 0 6px; }
p.meta, p.note { color: #4b5563; margin: 4px 0 10px; }
.scroll { overflow-x: auto; }
table { border-collapse: collapse; background: #fff; border: 1px solid #e5e7eb; font-size: 13px; }
th, td { padding: 4px 8px; border-bottom: 1px solid #eef0f3; text-align: left; white-space: nowrap; }
th { background: #f3f4f6; font-weight: 600; color: #374151; white-space: normal; vertical-align: bottom; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
tr:nth-child(even) td { background: #fafafa; }
tr.best td { background: #ecfdf5; font-weight: 600; }
td:last-child { white-space: normal; }
td:first-child { white-space: normal; min-width: 10em; max-width: 24em; }
figure { margin: 12px 0 20px; background: #fff; border: 1px solid #e5e7eb; display: inline-block; }
svg.chart { display: block; max-width: 100%; height: auto; }
.empty { color: #6b7280; font-style: italic; }
)CSS";

std::vector<Series> group_series(const Report& r, bool val) {
  std::vector<Series> out;
  for (size_t i = 0; i < r.groups.size() && out.size() < kMaxChartGroups; ++i) {
    const auto& g = r.groups[i];
    const Curve& c = val ? g.val : g.train;
    if (c.x.empty()) continue;
    out.push_back({short_label(g, r.group_by), kPalette[out.size() % 10], c});
  }
  return out;
}

std::string charts_caption(const Report& r) {
  size_t with_data = 0;
  for (const auto& g : r.groups) with_data += !g.train.x.empty() || !g.val.x.empty();
  std::string s = "One line per group: the mean over its finished runs at each point; the band spans their min..max.";
  if (with_data > kMaxChartGroups) s += fmt::format(" Showing the {} best of {} groups.", kMaxChartGroups, with_data);
  return s;
}

// A chart file name from text: letters, digits, '-', '_' and '.' kept, anything else '_'.
std::string file_stem(const std::string& s) {
  std::string o = s;
  for (char& c : o)
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '-' && c != '_' && c != '.') c = '_';
  return o;
}

// Points (x, Stat) as a marked series sorted by x; the axis is numeric or categorical.
Series stat_series(const std::string& label, size_t colour, std::vector<std::pair<double, const Stat*>> pts) {
  std::sort(pts.begin(), pts.end(), [](const auto& a, const auto& b) { return a.first < b.first; });
  Series s{label, kPalette[colour % 10], {}, true};
  for (const auto& [x, st] : pts)
    s.c.x.push_back(x), s.c.y.push_back(st->mean), s.c.lo.push_back(st->min), s.c.hi.push_back(st->max);
  return s;
}

// A numeric axis of geometrically swept values (lengths, sizes, counts) reads best on a log scale.
bool geometric(const std::vector<double>& xs) {
  if (xs.empty()) return false;
  auto [lo, hi] = std::minmax_element(xs.begin(), xs.end());
  return *lo > 0 && *hi / *lo >= 3;
}

// Accuracy against the values of one slice key, one line per group (the best kMaxChartGroups).
std::string slice_chart(const Report& r, const SliceKey& sk, bool standalone) {
  std::vector<Series> series;
  std::vector<double> xs;
  for (size_t i = 0; i < sk.values.size(); ++i)
    xs.push_back(sk.numeric ? std::strtod(sk.values[i].c_str(), nullptr) : static_cast<double>(i));
  for (const auto& g : r.groups) {
    if (series.size() >= kMaxChartGroups) break;
    auto k = g.slice_accuracy.find(sk.key);
    if (k == g.slice_accuracy.end()) continue;
    std::vector<std::pair<double, const Stat*>> pts;
    for (size_t i = 0; i < sk.values.size(); ++i) {
      auto c = k->second.find(sk.values[i]);
      if (c != k->second.end() && c->second.n) pts.emplace_back(xs[i], &c->second);
    }
    if (!pts.empty()) series.push_back(stat_series(short_label(g, r.group_by), series.size(), std::move(pts)));
  }
  ChartSpec spec;
  spec.title = "Final validation accuracy by " + sk.key;
  spec.x_label = sk.key;
  spec.y_label = "final val accuracy";
  spec.y_unit = true;
  if (!sk.numeric) spec.x_categories = sk.values;
  spec.log_x = sk.numeric && geometric(xs);
  if (sk.numeric && xs.size() <= 12) spec.x_ticks = xs;
  return svg_chart(spec, series, standalone);
}

// One accuracy_x panel: accuracy against the config key, one line per group of the other keys.
std::string accuracy_x_chart(const Report& r, const AccuracyPanel& p, bool standalone) {
  std::vector<std::string> cats;
  for (const auto& l : p.lines)
    for (const auto& x : l.x)
      if (std::find(cats.begin(), cats.end(), x) == cats.end()) cats.push_back(x);
  std::sort(cats.begin(), cats.end(), natural_less);
  bool numeric = !cats.empty();
  std::vector<double> xs;
  for (const auto& c : cats) {
    char* end;
    double x = std::strtod(c.c_str(), &end);
    numeric = numeric && !c.empty() && *end == 0;
    xs.push_back(x);
  }
  std::vector<Series> series;
  for (const auto& l : p.lines) {
    if (series.size() >= kMaxChartGroups) break;
    Series s{l.label.empty() ? "all runs" : l.label, kPalette[series.size() % 10], {}, true};
    for (size_t i = 0; i < l.x.size(); ++i) {
      size_t ci = static_cast<size_t>(std::find(cats.begin(), cats.end(), l.x[i]) - cats.begin());
      s.c.x.push_back(numeric ? xs[ci] : static_cast<double>(ci));
      s.c.y.push_back(l.y[i]), s.c.lo.push_back(l.lo[i]), s.c.hi.push_back(l.hi[i]);
    }
    series.push_back(std::move(s));
  }
  ChartSpec spec;
  spec.title = accuracy_x_title(r, p);
  spec.x_label = r.opt.accuracy_x;
  spec.y_label = "final val accuracy";
  spec.y_unit = true;
  if (!numeric) spec.x_categories = cats;
  spec.log_x = numeric && geometric(xs);
  if (numeric && xs.size() <= 12) spec.x_ticks = xs;
  return svg_chart(spec, series, standalone);
}

bool starts_with(const std::string& s, const char* p) { return s.rfind(p, 0) == 0; }

}  // namespace

static std::vector<std::pair<std::string, std::string>> report_charts_impl(const Report& r, bool standalone) {
  std::vector<std::pair<std::string, std::string>> out;
  for (bool val : {false, true}) {
    auto series = group_series(r, val);
    ChartSpec spec;
    spec.title = val ? "Validation loss" : "Training loss";
    spec.title += " vs " + std::string(r.opt.x == "tokens" ? "tokens" : r.opt.x == "time" ? "wall time" : "step");
    spec.x_label = x_label(r.opt.x);
    spec.y_label = val ? "val loss (nats/token)" : "train loss (nats/token)";
    spec.log_y = wants_log(series);
    spec.x_is_time = r.opt.x == "time";
    out.emplace_back(val ? "val_loss" : "train_loss", svg_chart(spec, series, standalone));
  }
  if (!r.opt.best_over.empty() && !r.best_over.empty()) {
    // Best val loss against the swept value, one line per group-without-the-key (numeric keys only).
    std::vector<Series> series;
    bool numeric = true;
    double lo = INFINITY, hi = -INFINITY;
    for (size_t bi = 0; bi < r.best_over.size() && series.size() < kMaxChartGroups; ++bi) {
      const auto& row = r.best_over[bi];
      Series s{row.label.empty() ? "all runs" : row.label, kPalette[series.size() % 10], {}};
      std::vector<std::string> other_keys;
      for (const auto& k : r.group_by)
        if (k != r.opt.best_over) other_keys.push_back(k);
      bool labelled = false;
      for (const auto& g : r.groups) {
        const Stat& st = by_accuracy(r) ? g.best_val_accuracy : g.best_val_loss;
        if (st.n == 0) continue;
        std::string label;
        for (const auto& k : r.group_by)
          if (k != r.opt.best_over && !g.keys.at(k).empty())
            label += (label.empty() ? "" : " ") + k + "=" + g.keys.at(k);
        if (label != row.label) continue;
        if (!labelled && !other_keys.empty()) s.label = short_label(g, other_keys), labelled = true;
        char* end;
        const std::string& v = g.keys.at(r.opt.best_over);
        double x = std::strtod(v.c_str(), &end);
        if (v.empty() || *end) numeric = false;
        s.c.x.push_back(x), s.c.y.push_back(st.mean);
        s.c.lo.push_back(st.min), s.c.hi.push_back(st.max);
        lo = std::min(lo, x), hi = std::max(hi, x);
      }
      // Sort the points by x.
      std::vector<size_t> ord(s.c.x.size());
      for (size_t i = 0; i < ord.size(); ++i) ord[i] = i;
      std::sort(ord.begin(), ord.end(), [&](size_t a, size_t b) { return s.c.x[a] < s.c.x[b]; });
      Curve c;
      for (size_t i : ord)
        c.x.push_back(s.c.x[i]), c.y.push_back(s.c.y[i]), c.lo.push_back(s.c.lo[i]), c.hi.push_back(s.c.hi[i]);
      s.c = c;
      s.markers = true;
      series.push_back(std::move(s));
    }
    if (numeric) {
      ChartSpec spec;
      spec.title = (by_accuracy(r) ? "Best validation accuracy vs " : "Best validation loss vs ") + r.opt.best_over;
      spec.x_label = r.opt.best_over;
      spec.y_label = by_accuracy(r) ? "best val accuracy" : "best val loss (nats/token)";
      spec.y_unit = by_accuracy(r);
      spec.log_x = lo > 0 && hi / lo >= 3;  // learning rates and sizes are swept geometrically
      out.emplace_back("best_over", svg_chart(spec, series, standalone));
    }
  }
  for (const auto& sk : r.slices) out.emplace_back("accuracy_by_" + file_stem(sk.key), slice_chart(r, sk, standalone));
  for (const auto& p : r.accuracy_panels)
    out.emplace_back("accuracy_vs_" + file_stem(r.opt.accuracy_x) +
                         (p.slice_value.empty() ? "" : "_at_" + file_stem(r.accuracy_slice + "_" + p.slice_value)),
                     accuracy_x_chart(r, p, standalone));
  return out;
}

std::vector<std::pair<std::string, std::string>> report_charts(const Report& r) { return report_charts_impl(r, true); }

std::string report_html(const Report& r) {
  std::string o = "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n";
  o += "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n";
  o += "<title>" + html_escape(r.title) + "</title>\n<style>" + kCss + "</style>\n</head>\n<body>\n<main>\n";
  o += "<h1>" + html_escape(r.title) + "</h1>\n";
  o += "<p class=\"meta\">" + html_escape(meta_line(r)) + "</p>\n";
  o += "<h2>What varies</h2>\n";
  if (r.varying.empty())
    o += "<p class=\"empty\">Every selected run has the same config.</p>\n";
  else
    o += html_table(varying_table(r));
  o += "<h2>Summary by group</h2>\n";
  o += "<p class=\"note\">" + html_escape(ranking_note(r)) + "</p>\n";
  o += "<p class=\"note\">" + html_escape(stats_note(r) + " " + target_note(r)) + "</p>\n";
  o += html_table(summary_table(r));
  if (!r.opt.best_over.empty()) {
    o += "<h2>Best " + html_escape(r.opt.best_over) + "</h2>\n";
    o += "<p class=\"note\">" + html_escape(best_over_note(r)) + "</p>\n";
    o += r.best_over.empty() ? "<p class=\"empty\">No finished runs.</p>\n" : html_table(best_over_table(r));
  }
  auto charts = report_charts_impl(r, false);
  auto figures = [&](const char* prefix) {
    std::string f;
    for (const auto& [name, svg] : charts)
      if (prefix[0] ? starts_with(name, prefix) : !starts_with(name, "accuracy_"))
        f += "<figure>\n" + svg + "</figure>\n";
    return f;
  };
  if (!r.slices.empty()) {
    o += "<h2>Accuracy by slice</h2>\n<p class=\"note\">" + html_escape(kSliceNote) + "</p>\n";
    for (const auto& sk : r.slices) o += "<h3>" + html_escape(sk.key) + "</h3>\n" + html_table(slice_table(r, sk));
    o += figures("accuracy_by_");
  }
  if (!r.opt.accuracy_x.empty()) {
    o += "<h2>Accuracy vs " + html_escape(r.opt.accuracy_x) + "</h2>\n";
    o += "<p class=\"note\">" + html_escape(accuracy_x_note(r)) + "</p>\n";
    bool any = false;
    for (const auto& p : r.accuracy_panels) any |= !p.lines.empty();
    o += any ? html_table(accuracy_x_table(r)) + figures("accuracy_vs_")
             : "<p class=\"empty\">No finished run has final val accuracy.</p>\n";
  }
  o += "<h2>Failed, diverged and interrupted runs</h2>\n";
  if (r.problems.empty())
    o += "<p class=\"empty\">None.</p>\n";
  else
    o += html_table(problems_table(r));
  o += "<h2>Loss curves</h2>\n<p class=\"note\">" + html_escape(charts_caption(r)) + "</p>\n";
  o += figures("");
  o += "</main>\n</body>\n</html>\n";
  return o;
}

std::string report_markdown(const Report& r, const std::vector<std::string>& chart_files) {
  std::string o = "# " + markdown_escape(r.title) + "\n\n" + markdown_escape(meta_line(r)) + "\n\n";
  o += "## What varies\n\n";
  o += r.varying.empty() ? "Every selected run has the same config.\n\n" : md_table(varying_table(r)) + "\n";
  o += "## Summary by group\n\n" + markdown_escape(ranking_note(r)) + "\n\n";
  o += markdown_escape(stats_note(r) + " " + target_note(r)) + "\n\n";
  o += md_table(summary_table(r)) + "\n";
  if (!r.opt.best_over.empty()) {
    o += "## Best " + markdown_escape(r.opt.best_over) + "\n\n" + markdown_escape(best_over_note(r)) + "\n\n";
    o += r.best_over.empty() ? "No finished runs.\n\n" : md_table(best_over_table(r)) + "\n";
  }
  auto links = [&](const char* prefix) {
    std::string l;
    for (const auto& f : chart_files)
      if (prefix[0] ? starts_with(f, prefix) : !starts_with(f, "accuracy_")) l += "![" + f + "](" + f + ")\n\n";
    return l;
  };
  if (!r.slices.empty()) {
    o += "## Accuracy by slice\n\n" + markdown_escape(kSliceNote) + "\n\n";
    for (const auto& sk : r.slices)
      o += "### " + markdown_escape(sk.key) + "\n\n" + md_table(slice_table(r, sk)) + "\n";
    o += links("accuracy_by_");
  }
  if (!r.opt.accuracy_x.empty()) {
    o += "## Accuracy vs " + markdown_escape(r.opt.accuracy_x) + "\n\n" + markdown_escape(accuracy_x_note(r)) + "\n\n";
    bool any = false;
    for (const auto& p : r.accuracy_panels) any |= !p.lines.empty();
    o += any ? md_table(accuracy_x_table(r)) + "\n" + links("accuracy_vs_")
             : "No finished run has final val accuracy.\n\n";
  }
  o += "## Failed, diverged and interrupted runs\n\n";
  o += r.problems.empty() ? "None.\n\n" : md_table(problems_table(r)) + "\n";
  o += "## Loss curves\n\n" + markdown_escape(charts_caption(r)) + "\n\n";
  o += links("");
  return o;
}

fs::path write_report(const Report& r, const fs::path& dir) {
  fs::create_directories(dir);
  std::vector<std::string> files;
  for (const auto& [name, svg] : report_charts(r)) {
    write_file_atomic(dir / (name + ".svg"), svg);
    files.push_back(name + ".svg");
  }
  write_file_atomic(dir / "report.md", report_markdown(r, files));
  write_file_atomic(dir / "report.html", report_html(r));
  return dir / "report.html";
}

}  // namespace lmgrid
