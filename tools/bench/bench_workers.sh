#!/usr/bin/env bash
# Grids that fill the machine (issue 15): a 12-run grid of tiny gpt models (the nanoGPT CPU
# recipe's shape at 2 layers x 64 wide, 4 learning rates x 3 seeds) run whole as
#   auto : lmgrid run (--workers auto, the default: here 2 one-thread workers on 2 cores)
#   one  : lmgrid run --workers 1 (one worker on every core; each run's batches split over them,
#          docs/performance.md "The batch split")
#   whole: LMGRID_CPU_SPLIT=1 lmgrid run --workers 1 (one worker on every core, whole batches: what
#          --workers 1 meant before the batch split)
#   one1 : lmgrid run --workers 1 --threads 1 (one worker, the thread count auto gives each run)
# interleaved --runs times; prints each invocation's whole-process wall time, the medians and the
# speed-up one / auto, and how far the final train losses of auto are from one's (every run's
# last train/loss; within 1e-3 expected, the thread counts differ) and from one1's (identical
# expected: same thread count per run, a run's numbers do not depend on the other workers).
#
#   tools/bench/bench_workers.sh [--steps 150] [--runs 3]
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
BIN=${LMGRID_BIN:-$ROOT/build/bin/lmgrid}
STEPS=150 RUNS=3
while [ $# -gt 0 ]; do
  case $1 in
    --steps) STEPS=$2; shift 2 ;;
    --runs) RUNS=$2; shift 2 ;;
    *) echo "$0: unknown option $1" >&2; exit 2 ;;
  esac
done
[ -x "$BIN" ] || { echo "$0: $BIN not built" >&2; exit 2; }
unset LMGRID_THREADS
export LMGRID_DATA_PATH=${LMGRID_DATA_PATH:-$ROOT/../shared/data}
WORK=$(mktemp -d "${TMPDIR:-/tmp}/lmgrid-bench-workers.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
cd "$WORK"
cat >grid.toml <<EOF
[experiment]
name = "workers"
seeds = [1, 2, 3]
[data]
plugin = "text"
source = "tiny_shakespeare"
seq_len = 64
[tokenizer]
plugin = "char"
[model]
plugin = "gpt"
n_layer = 2
d_model = 64
[model.gpt]
n_head = 4
[optim]
plugin = "adamw"
[train]
steps = $STEPS
batch_size = 12
warmup = 10
eval_every = $STEPS
eval_batches = 4
checkpoint_every = $STEPS
[grid]
"optim.lr" = [3e-4, 1e-3, 2e-3, 3e-3]
EOF
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg); $(nproc) CPUs; 12 runs x $STEPS steps"
final_losses() {  # one line per run, in registration order (the same grid expands the same way)
  "$BIN" sql "SELECT r.id, printf('%.9f', m.value) FROM runs r JOIN metrics m ON m.run_id = r.id WHERE m.name = 'train/loss' AND m.step = (SELECT max(step) FROM metrics WHERE run_id = r.id AND name = 'train/loss') ORDER BY r.id" --db "$1" --format csv | tail -n +2 | tr ',' ' '
}
timed() {  # timed DB ARGS...: runs the grid into DB, prints the wall seconds
  local db=$1
  shift
  rm -rf "$db" runs
  local t0 t1
  t0=$(date +%s.%N)
  "$BIN" run grid.toml --db "$db" --no-report "$@" >"$db.log" 2>&1
  t1=$(date +%s.%N)
  echo "$t1 - $t0" | bc
}
auto=() one=() one1=() whole=()
for i in $(seq 1 "$RUNS"); do
  a=$(timed auto.db)
  o=$(timed one.db --workers 1)
  o1=$(timed one1.db --workers 1 --threads 1)
  w=$(LMGRID_CPU_SPLIT=1 timed whole.db --workers 1)
  auto+=("$a") one+=("$o") one1+=("$o1") whole+=("$w")
  printf 'run %d: auto %.1f s (%s) | --workers 1 %.1f s | --workers 1 --threads 1 %.1f s | --workers 1, no split %.1f s\n' \
    "$i" "$a" "$(grep -o '[0-9]* workers\? x [0-9]* threads\?' auto.db.log | head -1)" "$o" "$o1" "$w"
done
median() { printf '%s\n' "$@" | sort -g | awk '{v[NR] = $1} END {print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2}'; }
ma=$(median "${auto[@]}") mo=$(median "${one[@]}") mo1=$(median "${one1[@]}") mw=$(median "${whole[@]}")
printf 'median wall: auto %.1f s, --workers 1 %.1f s, --workers 1 --threads 1 %.1f s, --workers 1 no split %.1f s\n' \
  "$ma" "$mo" "$mo1" "$mw"
echo "speed-up of --workers auto: $(echo "scale=2; $mo / $ma" | bc)x over --workers 1," \
  "$(echo "scale=2; $mw / $ma" | bc)x over --workers 1 without the split"
# Final losses of the last invocation of each.
paste -d' ' <(final_losses auto.db) <(final_losses one.db | awk '{print $NF}') <(final_losses one1.db | awk '{print $NF}') |
  awk '{d1 = $(NF-2) - $(NF-1); if (d1 < 0) d1 = -d1; if (d1 > m1) m1 = d1; if ($(NF-2) != $NF) n++}
       END {printf "final train/loss, 12 runs: max |auto - one| = %.2e; auto vs one1 (same threads): %d of %d differ\n", m1, n, NR}'
