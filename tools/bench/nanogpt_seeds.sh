#!/usr/bin/env bash
# nanoGPT's CPU recipe (experiments/nanogpt_cpu.toml) over many seeds: lmgrid's best val/loss per
# seed, their mean, standard deviation and 95% confidence interval of the mean, and how many seeds
# reach a target. Optionally the independent eager PyTorch run (tools/bench/nanogpt_ref.py) for some
# seeds, for comparison with an implementation that shares no code with lmgrid.
#
#   tools/bench/nanogpt_seeds.sh [--seeds 1,2,3,4] [--workers 2] [--db PATH] [--target 1.90]
#                                [--ref-seeds 1,2] [--ref-workers 2] [--svg FILE]
#
# It also draws the per-seed values as a strip plot (SVG, default results/nanogpt_seeds.svg) with
# each implementation's mean and 95% CI, the target and nanoGPT's published 1.88.
#
# The database (default results/nanogpt_seeds.db) keeps finished runs, so a second call with more
# seeds only trains the new ones. val/loss is the mean over the whole val split (1,740 windows of
# 64 tokens), not nanoGPT's 20-batch estimate. Each run is ~2 min at 1 thread on this 2-core VM.
set -euo pipefail
SEEDS=1,2,3,4 WORKERS=2 TARGET=1.90 REF_SEEDS="" REF_WORKERS=2
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
DB=$ROOT/results/nanogpt_seeds.db
SVG=$ROOT/results/nanogpt_seeds.svg
while [[ $# -gt 0 ]]; do
  case "$1" in
    --seeds) SEEDS=$2; shift 2 ;;
    --workers) WORKERS=$2; shift 2 ;;
    --db) DB=$2; shift 2 ;;
    --target) TARGET=$2; shift 2 ;;
    --ref-seeds) REF_SEEDS=$2; shift 2 ;;
    --ref-workers) REF_WORKERS=$2; shift 2 ;;
    --svg) SVG=$2; shift 2 ;;
    *) echo "usage: $0 [--seeds LIST] [--workers N] [--db PATH] [--target L] [--ref-seeds LIST] [--ref-workers N] [--svg FILE]" >&2
       exit 2 ;;
  esac
done
LMGRID=${LMGRID_BIN:-$ROOT/build/bin/lmgrid}
# Data as tools/setup.sh resolves it: LMGRID_DATA_PATH, else ../shared/data beside the checkout.
if [ -z "${LMGRID_DATA_PATH:-}" ]; then
  [ -d "$ROOT/../shared/data" ] || { echo "$0: set LMGRID_DATA_PATH (no ../shared/data beside the checkout)" >&2; exit 2; }
  LMGRID_DATA_PATH=$(cd "$ROOT/../shared/data" && pwd)
fi
export LMGRID_DATA_PATH
mkdir -p "$(dirname "$DB")"

# One thread per worker: with 2 workers on 2 cores that is the fastest use of the machine.
LMGRID_THREADS=${LMGRID_THREADS:-1} "$LMGRID" run "$ROOT/experiments/nanogpt_cpu.toml" --db "$DB" \
  --workers "$WORKERS" --no-report --set "experiment.seeds=[$SEEDS]"

# Two-sided 95% Student t quantiles for 1..30 degrees of freedom (1.96 beyond).
T95="12.706 4.303 3.182 2.776 2.571 2.447 2.365 2.306 2.262 2.228 2.201 2.179 2.160 2.145 2.131"
T95="$T95 2.120 2.110 2.101 2.093 2.086 2.080 2.074 2.069 2.064 2.060 2.056 2.052 2.048 2.045 2.042"

# mean, sd, 95% CI of the mean (Student t), count <= target over the lines of a "seed value" list.
stats() {
  awk -v target="$TARGET" -v T95="$T95" '
    BEGIN { split(T95, t, " ") }
    { v[NR] = $2; s += $2; if ($2 <= target) hit++ }
    END {
      n = NR; if (n == 0) { print "  no runs"; exit }
      m = s / n; ss = 0; for (i = 1; i <= n; i++) ss += (v[i] - m) ^ 2
      sd = n > 1 ? sqrt(ss / (n - 1)) : 0
      q = n > 1 ? (n - 1 <= 30 ? t[n - 1] : 1.96) : 0
      half = n > 1 ? q * sd / sqrt(n) : 0
      printf "  n %d  mean %.4f  sd %.4f  95%% CI of the mean [%.4f, %.4f]  <= %s: %d of %d\n", \
             n, m, sd, m - half, m + half, target, hit + 0, n
    }'
}

echo
echo "lmgrid, experiments/nanogpt_cpu.toml, best val/loss (whole val split) per seed:"
ROWS=$("$LMGRID" sql --db "$DB" --format csv "
  SELECT CAST(p.value AS INTEGER) AS seed, s.value AS best
  FROM runs r JOIN params p ON p.run_id = r.id AND p.key = 'seed'
  JOIN summaries s ON s.run_id = r.id AND s.key = 'best_val_loss'
  WHERE r.experiment = 'nanogpt_cpu' AND r.status = 'done' ORDER BY seed" | tail -n +2 | tr ',' ' ')
echo "$ROWS" | awk '{ printf "  seed %-6s %.4f\n", $1, $2 }'
echo "$ROWS" | stats

if [[ -n "$REF_SEEDS" ]]; then
  PY=/usr/bin/python3
  if ! "$PY" -c "import torch" 2>/dev/null; then
    echo "nanogpt_seeds: installing python3-torch (Debian) for the reference runs" >&2
    if [[ $(id -u) -eq 0 ]]; then apt-get install -y python3-torch >/dev/null; else sudo apt-get install -y python3-torch >/dev/null; fi
  fi
  # Logs are kept beside the database; a seed whose log is complete is not run again.
  LOGS=$(dirname "$DB")/nanogpt_ref
  mkdir -p "$LOGS"
  TODO=$(echo "$REF_SEEDS" | tr ',' '\n' | while read -r s; do
           grep -q '^nanogpt-style' "$LOGS/$s.log" 2>/dev/null || echo "$s"
         done)
  echo
  echo "reference runs to make: $(echo $TODO | wc -w) (logs in $LOGS)"
  echo "$TODO" | { grep . || true; } | xargs -r -P "$REF_WORKERS" -I{} sh -c \
    "'$PY' '$ROOT/tools/bench/nanogpt_ref.py' --seed {} --threads 1 > '$LOGS/{}.log.tmp' && mv '$LOGS/{}.log.tmp' '$LOGS/{}.log'"
  echo "independent eager PyTorch (tools/bench/nanogpt_ref.py), best val loss (whole val split, every 250 steps):"
  REF=$(for s in $(echo "$REF_SEEDS" | tr ',' ' '); do f=$LOGS/$s.log; [[ -f $f ]] || continue
          awk -v s="$s" '/^step / { for (i = 1; i < NF; i++) if ($i == "val_full" && (b == "" || $(i + 1) < b)) b = $(i + 1) }
                         END { if (b != "") print s, b }' "$f"
        done | sort -n)
  echo "$REF" | awk '{ printf "  seed %-6s %.4f\n", $1, $2 }'
  echo "$REF" | stats
  echo
  echo "what nanoGPT itself would print as best_val_loss (min over its evaluations of one 20-batch estimate),"
  echo "30 simulated logs per reference run:"
  for s in $(echo "$REF_SEEDS" | tr ',' ' '); do
    [[ -f $LOGS/$s.log ]] || continue
    echo "  seed $s: $(grep '^nanogpt-style' "$LOGS/$s.log" | sed 's/^nanogpt-style best_val_loss over 30 simulated logs: //')"
  done
fi

# Strip plot: one row per implementation, a dot per seed, the mean with its 95% CI, dashed lines
# at the target and at nanoGPT's published 1.88.
{
  echo "$ROWS" | awk 'NF == 2 { print "lmgrid", $2 }'
  if [[ -n "$REF_SEEDS" ]]; then echo "$REF" | awk 'NF == 2 { print "reference", $2 }'; fi
} | awk -v target="$TARGET" -v T95="$T95" '
  BEGIN { split(T95, t, " ")
          lo = 1.88; hi = target }
  { if (!($1 in n)) order[++rows] = $1; n[$1]++; v[$1, n[$1]] = $2; sum[$1] += $2
    if ($2 < lo) lo = $2; if ($2 > hi) hi = $2 }
  END {
    lo = int(lo * 100 - 0.5) / 100; hi = int(hi * 100 + 1) / 100
    W = 720; L = 190; R = 30; top = 58; rh = 60; H = top + rows * rh + 50
    printf "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" font-family=\"DejaVu Sans, sans-serif\" font-size=\"12\">\n", W, H
    printf "<rect width=\"100%%\" height=\"100%%\" fill=\"white\"/>\n"
    printf "<text x=\"%d\" y=\"20\" font-size=\"14\">nanoGPT CPU recipe: best val loss per seed (whole val split)</text>\n", L
    for (x = lo; x <= hi + 1e-9; x += 0.01) {
      px = L + (x - lo) / (hi - lo) * (W - L - R)
      printf "<line x1=\"%.1f\" y1=\"%d\" x2=\"%.1f\" y2=\"%d\" stroke=\"#ddd\"/>\n", px, top, px, H - 40
      printf "<text x=\"%.1f\" y=\"%d\" text-anchor=\"middle\">%.2f</text>\n", px, H - 24, x
    }
    printf "<text x=\"%d\" y=\"%d\" text-anchor=\"middle\">best val/loss</text>\n", (L + W - R) / 2, H - 6
    split("1.88 nanoGPT README|" target " target", refs, "|")
    for (k = 1; k <= 2; k++) {
      split(refs[k], f, " "); px = L + (f[1] - lo) / (hi - lo) * (W - L - R)
      printf "<line x1=\"%.1f\" y1=\"%d\" x2=\"%.1f\" y2=\"%d\" stroke=\"#c33\" stroke-dasharray=\"4 3\"/>\n", px, top - 8, px, H - 40
      printf "<text x=\"%.1f\" y=\"%d\" fill=\"#c33\" text-anchor=\"middle\">%s</text>\n", px, top - 12, (k == 1 ? "1.88 (nanoGPT README)" : target " (issue target)")
    }
    for (r = 1; r <= rows; r++) {
      name = order[r]; m = sum[name] / n[name]; y = top + (r - 0.5) * rh; ss = 0
      for (i = 1; i <= n[name]; i++) ss += (v[name, i] - m) ^ 2
      half = n[name] > 1 ? (n[name] - 1 <= 30 ? t[n[name] - 1] : 1.96) * sqrt(ss / (n[name] - 1)) / sqrt(n[name]) : 0
      label = name == "lmgrid" ? "lmgrid" : "eager PyTorch reference"
      printf "<text x=\"%d\" y=\"%.1f\" text-anchor=\"end\">%s</text>\n", L - 10, y - 4, label
      printf "<text x=\"%d\" y=\"%.1f\" text-anchor=\"end\" fill=\"#555\">%d seeds, mean %.4f</text>\n", L - 10, y + 12, n[name], m
      for (i = 1; i <= n[name]; i++) {
        px = L + (v[name, i] - lo) / (hi - lo) * (W - L - R); jit = ((i * 7) % 5 - 2) * 4
        printf "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"4\" fill=\"%s\" fill-opacity=\"0.7\"/>\n", px, y + jit, name == "lmgrid" ? "#1f77b4" : "#ff7f0e"
      }
      a = L + (m - half - lo) / (hi - lo) * (W - L - R); b = L + (m + half - lo) / (hi - lo) * (W - L - R)
      pm = L + (m - lo) / (hi - lo) * (W - L - R)
      printf "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"black\" stroke-width=\"2\"/>\n", a, y + 18, b, y + 18
      printf "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"black\" stroke-width=\"3\"/>\n", pm, y + 12, pm, y + 24
    }
    printf "<text x=\"%d\" y=\"%d\" fill=\"#555\">bar: mean and its 95%% CI</text>\n", 10, H - 6
    print "</svg>"
  }' > "$SVG"
echo
echo "strip plot: $SVG"
