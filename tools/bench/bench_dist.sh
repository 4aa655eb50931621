#!/usr/bin/env bash
# Data-parallel speed on this machine (issue 16): the nanoGPT CPU recipe's model (4x4x128,
# context 64) with a global batch of 24, trained for --steps steps as
#   one   : 1 process, LMGRID_THREADS=T (all the cores)
#   half  : 1 process, LMGRID_THREADS=T/2 (one rank's share: the data-parallel baseline)
#   nproc : lmgrid run --nproc 2, LMGRID_THREADS=T/2 per rank (Gloo on loopback)
# interleaved --runs times; prints each run's tokens/s (the run's `tokens_per_s` summary: training
# time only, all ranks together), rank 0's mean perf/comm_share, whole-process wall time, the
# medians and the speed-ups nproc / half (data-parallel scaling) and nproc / one (the better way
# to use this machine's cores for one run).
#
#   tools/bench/bench_dist.sh [--steps 200] [--runs 3] [--batch 24] [--threads T]
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
BIN=${LMGRID_BIN:-$ROOT/build/bin/lmgrid}
STEPS=200 RUNS=3 BATCH=24 THREADS=$(nproc)
while [ $# -gt 0 ]; do
  case $1 in
    --steps) STEPS=$2; shift 2 ;;
    --runs) RUNS=$2; shift 2 ;;
    --batch) BATCH=$2; shift 2 ;;
    --threads) THREADS=$2; shift 2 ;;
    *) echo "$0: unknown option $1" >&2; exit 2 ;;
  esac
done
[ -x "$BIN" ] || { echo "$0: $BIN not built" >&2; exit 2; }
[ $((THREADS / 2)) -ge 1 ] || { echo "$0: needs at least 2 threads" >&2; exit 2; }
export LMGRID_DATA_PATH=${LMGRID_DATA_PATH:-$ROOT/../shared/data}
WORK=$(mktemp -d "${TMPDIR:-/tmp}/lmgrid-bench-dist.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
cd "$WORK"
sed -e "s/^steps = .*/steps = $STEPS/" -e "s/^batch_size = .*/batch_size = $BATCH/" \
  -e "s/^eval_every = .*/eval_every = $STEPS/" -e "s/^eval_batches = .*/eval_batches = 2/" \
  -e "s/^checkpoint_every = .*/checkpoint_every = $STEPS/" -e "s/^warmup = .*/warmup = 10/" \
  "$ROOT/experiments/nanogpt_cpu.toml" >exp.toml
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg); $(nproc) CPUs; $STEPS steps, global batch $BATCH x 64 tokens"
summary() { "$BIN" sql "SELECT printf('%.0f', value) FROM summaries WHERE key = '$2'" --db "$1" --format csv | tail -n +2; }
one=() half=() two=() share=()
for i in $(seq 1 "$RUNS"); do
  rm -rf one.db half.db two.db runs
  th0=$(date +%s.%N)
  LMGRID_THREADS=$((THREADS / 2)) "$BIN" run exp.toml --db half.db --no-report >/dev/null 2>&1
  t0=$(date +%s.%N)
  LMGRID_THREADS=$THREADS "$BIN" run exp.toml --db one.db --no-report >/dev/null 2>&1
  t1=$(date +%s.%N)
  LMGRID_THREADS=$((THREADS / 2)) "$BIN" run exp.toml --db two.db --no-report --nproc 2 >/dev/null 2>&1
  t2=$(date +%s.%N)
  a=$(summary one.db tokens_per_s) b=$(summary two.db tokens_per_s) h=$(summary half.db tokens_per_s)
  c=$("$BIN" sql "SELECT printf('%.3f', avg(value)) FROM metrics WHERE name = 'perf/comm_share'" --db two.db --format csv | tail -n +2)
  one+=("$a") half+=("$h") two+=("$b") share+=("$c")
  printf 'run %d: 1 process x %d threads %s tok/s (%.1f s wall) | 1 process x %d threads %s tok/s (%.1f s wall) | 2 ranks x %d threads %s tok/s (%.1f s wall), comm share %s\n' \
    "$i" $((THREADS / 2)) "$h" "$(echo "$t0 - $th0" | bc)" "$THREADS" "$a" "$(echo "$t1 - $t0" | bc)" $((THREADS / 2)) "$b" \
    "$(echo "$t2 - $t1" | bc)" "$c"
done
median() { printf '%s\n' "$@" | sort -g | awk '{v[NR] = $1} END {print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2}'; }
m1=$(median "${one[@]}") mh=$(median "${half[@]}") m2=$(median "${two[@]}") ms=$(median "${share[@]}")
echo "median tokens/s: 1 process x $((THREADS / 2)) threads $mh, 1 process x $THREADS threads $m1, 2 ranks x $((THREADS / 2)) threads $m2"
echo "speed-up of 2 ranks: $(echo "scale=3; $m2 / $mh" | bc)x over 1 process x $((THREADS / 2)) threads, $(echo "scale=3; $m2 / $m1" | bc)x over 1 process x $THREADS threads; median comm share $ms"
