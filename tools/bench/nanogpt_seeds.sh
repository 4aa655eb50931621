#!/usr/bin/env bash
# nanoGPT's CPU recipe (experiments/nanogpt_cpu.toml) over many seeds: lmgrid's best val/loss per
# seed, their mean, standard deviation and 95% confidence interval of the mean, and how many seeds
# reach a target. Optionally the independent eager PyTorch run (tools/bench/nanogpt_ref.py) for some
# seeds, for comparison with an implementation that shares no code with lmgrid.
#
#   tools/bench/nanogpt_seeds.sh [--seeds 1,2,3,4] [--workers 2] [--db PATH] [--target 1.90]
#                                [--ref-seeds 1,2] [--ref-workers 2]
#
# The database (default results/nanogpt_seeds.db) keeps finished runs, so a second call with more
# seeds only trains the new ones. val/loss is the mean over the whole val split (1,740 windows of
# 64 tokens), not nanoGPT's 20-batch estimate. Each run is ~2 min at 1 thread on this 2-core VM.
set -euo pipefail
SEEDS=1,2,3,4 WORKERS=2 TARGET=1.90 REF_SEEDS="" REF_WORKERS=2
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
DB=$ROOT/results/nanogpt_seeds.db
while [[ $# -gt 0 ]]; do
  case "$1" in
    --seeds) SEEDS=$2; shift 2 ;;
    --workers) WORKERS=$2; shift 2 ;;
    --db) DB=$2; shift 2 ;;
    --target) TARGET=$2; shift 2 ;;
    --ref-seeds) REF_SEEDS=$2; shift 2 ;;
    --ref-workers) REF_WORKERS=$2; shift 2 ;;
    *) echo "usage: $0 [--seeds LIST] [--workers N] [--db PATH] [--target L] [--ref-seeds LIST] [--ref-workers N]" >&2
       exit 2 ;;
  esac
done
LMGRID=${LMGRID_BIN:-$ROOT/build/bin/lmgrid}
export LMGRID_DATA_PATH=${LMGRID_DATA_PATH:-/work/shared/data}
mkdir -p "$(dirname "$DB")"

# One thread per worker: with 2 workers on 2 cores that is the fastest use of the machine.
LMGRID_THREADS=${LMGRID_THREADS:-1} "$LMGRID" run "$ROOT/experiments/nanogpt_cpu.toml" --db "$DB" \
  --workers "$WORKERS" --no-report --set "experiment.seeds=[$SEEDS]"

# mean, sd, 95% CI of the mean (Student t), count <= target over the lines of a "seed value" list.
stats() {
  awk -v target="$TARGET" '
    BEGIN { split("12.706 4.303 3.182 2.776 2.571 2.447 2.365 2.306 2.262 2.228 2.201 2.179 2.160 2.145 " \
                  "2.131 2.120 2.110 2.101 2.093 2.086 2.080 2.074 2.069 2.064 2.060 2.056 2.052 2.048 2.045 2.042", t, " ") }
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
  LOGS=$(mktemp -d /tmp/nanogpt_ref.XXXXXX)
  trap 'rm -rf "$LOGS"' EXIT
  echo
  echo "independent eager PyTorch (tools/bench/nanogpt_ref.py), best val loss (whole val split, every 250 steps):"
  echo "$REF_SEEDS" | tr ',' '\n' | xargs -P "$REF_WORKERS" -I{} sh -c \
    "'$PY' '$ROOT/tools/bench/nanogpt_ref.py' --seed {} --threads 1 > '$LOGS/{}.log'"
  REF=$(for f in "$LOGS"/*.log; do
          s=$(basename "$f" .log)
          awk -v s="$s" '/^step / { for (i = 1; i < NF; i++) if ($i == "val_full" && (b == "" || $(i + 1) < b)) b = $(i + 1) }
                         END { if (b != "") print s, b }' "$f"
        done | sort -n)
  echo "$REF" | awk '{ printf "  seed %-6s %.4f\n", $1, $2 }'
  echo "$REF" | stats
  echo
  echo "what nanoGPT itself would print as best_val_loss (min over its evaluations of one 20-batch estimate),"
  echo "30 simulated logs per reference run:"
  for f in "$LOGS"/*.log; do
    echo "  seed $(basename "$f" .log): $(grep '^nanogpt-style' "$f" | sed 's/^nanogpt-style best_val_loss over 30 simulated logs: //')"
  done
fi
