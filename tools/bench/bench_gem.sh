#!/usr/bin/env bash
# GEM training speed: lmgrid (through the host, `lmgrid run`) against a plain eager PyTorch GEM
# (tools/bench/gem_eager.py), same model, batch 12, T 64, same threads, same machine and LibTorch
# (Debian's python3-torch is the same 1.13 build). Prints the median tokens/s of each over RUNS
# runs and their ratio, with the load average before and after.
#
#   tools/bench/bench_gem.sh [--runs 3] [--steps 150] [--threads 2]
#
# The lmgrid figure is the run's `tokens_per_s` summary (training steps only: evaluation and
# checkpoints excluded) read from a private database; the Python figure times --steps steps after
# 5 warm-up steps. Run it on a quiet machine; it takes the shared bench lock.
set -euo pipefail
RUNS=3 STEPS=150 THREADS=2
while [[ $# -gt 0 ]]; do
  case "$1" in
    --runs) RUNS=$2; shift 2 ;;
    --steps) STEPS=$2; shift 2 ;;
    --threads) THREADS=$2; shift 2 ;;
    *) echo "usage: $0 [--runs N] [--steps N] [--threads N]" >&2; exit 2 ;;
  esac
done
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
LMGRID=${LMGRID_BIN:-$ROOT/build/bin/lmgrid}
PY=/usr/bin/python3
# Data as tools/setup.sh resolves it: LMGRID_DATA_PATH, else ../shared/data beside the checkout.
if [ -z "${LMGRID_DATA_PATH:-}" ]; then
  [ -d "$ROOT/../shared/data" ] || { echo "$0: set LMGRID_DATA_PATH (no ../shared/data beside the checkout)" >&2; exit 2; }
  LMGRID_DATA_PATH=$(cd "$ROOT/../shared/data" && pwd)
fi
export LMGRID_DATA_PATH LMGRID_OFFLINE=1

if ! "$PY" -c "import torch" 2>/dev/null; then
  echo "bench_gem: installing python3-torch (Debian)" >&2
  if [[ $(id -u) -eq 0 ]]; then apt-get install -y python3-torch >/dev/null; else sudo apt-get install -y python3-torch >/dev/null; fi
fi

WORK=$(mktemp -d /tmp/bench_gem.XXXXXX)
trap 'rm -rf "$WORK"' EXIT
cat > "$WORK/gem.toml" <<TOML
[experiment]
name = "bench_gem"
[data]
plugin = "text"
source = "tiny_shakespeare"
seq_len = 64
sampling = "epoch"
[tokenizer]
plugin = "char"
[model]
plugin = "gem"
[optim]
plugin = "adamw"
lr = 1e-3
beta1 = 0.9
beta2 = 0.99
weight_decay = 0.01
[train]
steps = $STEPS
batch_size = 12
schedule = "constant"
warmup = 0
clip = 1.0
eval_every = 1000000
eval_batches = 1
checkpoint_every = 1000000
log_every = 50
TOML

median() { sort -g | awk '{a[NR]=$1} END {m=(NR%2)?a[(NR+1)/2]:(a[NR/2]+a[NR/2+1])/2; printf "%.0f", m}'; }

exec 9>/tmp/lmgrid-bench.lock
flock 9
LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
: > "$WORK/lm" ; : > "$WORK/py" ; : > "$WORK/pyp"
for i in $(seq "$RUNS"); do
  rm -f "$WORK"/db*
  LMGRID_THREADS=$THREADS "$LMGRID" run "$WORK/gem.toml" --db "$WORK/db.sqlite" >/dev/null 2>&1
  "$LMGRID" sql "SELECT value FROM summaries WHERE key = 'tokens_per_s'" --db "$WORK/db.sqlite" --format csv |
    tail -n 1 >> "$WORK/lm"
  # Two eager baselines: plain (the process defaults, as a user would run it) and with the
  # OpenMP setting lmgrid gives its workers (passive waiting, see cmd_run.cpp), which makes
  # eager PyTorch several times faster on 2 cores: the stronger baseline.
  env -u OMP_WAIT_POLICY "$PY" "$ROOT/tools/bench/gem_eager.py" --steps "$STEPS" --warmup 5 --threads "$THREADS" |
    sed -n 's/.* \([0-9][0-9]*\) tok\/s$/\1/p' >> "$WORK/py"
  OMP_WAIT_POLICY=PASSIVE "$PY" "$ROOT/tools/bench/gem_eager.py" --steps "$STEPS" --warmup 5 --threads "$THREADS" |
    sed -n 's/.* \([0-9][0-9]*\) tok\/s$/\1/p' >> "$WORK/pyp"
  echo "run $i: lmgrid $(tail -n1 "$WORK/lm" | cut -d. -f1) tok/s, eager $(tail -n1 "$WORK/py") tok/s," \
       "eager+passive $(tail -n1 "$WORK/pyp") tok/s" >&2
done
LOAD_AFTER=$(cut -d' ' -f1-3 /proc/loadavg)
LM=$(median < "$WORK/lm") PYT=$(median < "$WORK/py") PYP=$(median < "$WORK/pyp")
echo "gem (batch 12, T 64, d 128, 4 layers, M 64, b 16), $THREADS threads, $STEPS steps, median of $RUNS runs"
echo "lmgrid:        $LM tok/s"
echo "eager PyTorch: $PYT tok/s (process defaults)"
echo "eager PyTorch: $PYP tok/s (OMP_WAIT_POLICY=PASSIVE, as lmgrid's workers)"
awk -v a="$LM" -v b="$PYT" -v c="$PYP" 'BEGIN { printf "ratio:         %.2fx (vs plain eager), %.2fx (vs eager with passive OpenMP)\n", a / b, a / c }'
echo "load average before: $LOAD_BEFORE, after: $LOAD_AFTER"
