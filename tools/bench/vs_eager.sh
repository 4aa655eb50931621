#!/usr/bin/env bash
# lmgrid against eager PyTorch, whole process (issue 15): the same model trained for the same
# steps by `lmgrid run` and by a plain eager PyTorch script on the same LibTorch (Debian's
# python3-torch is the same 1.13 build as libtorch-dev), interleaved --runs times, each process
# timed from start to exit (start-up, data loading and the end included). Three models:
#   gpt     the nanoGPT CPU recipe (experiments/nanogpt_cpu.toml; tools/bench/nanogpt_ref.py)
#   gem     GEM's config, 4 x 128, 64 slots, chunks of 16 (tools/bench/gem_eager.py)
#   mamba2  the quickstart's Mamba-2, 7 x 128 (tools/bench/mamba2_eager.py)
# Batch 12 x 64 tokens of tiny Shakespeare (char), AdamW, clip 1.0. lmgrid evaluates one batch
# and writes one checkpoint at the end, the eager scripts neither (in their favour). Eager runs
# three times per round: --threads N with the process's OpenMP defaults, --threads N with
# OMP_WAIT_POLICY=PASSIVE (what lmgrid gives its workers), and --threads 1 (when N > 1), where
# Debian's torch still runs OpenBLAS on all cores (torch.set_num_threads does not size OpenBLAS's
# pool): one LibTorch thread and N BLAS threads. The fastest median of the three is its figure.
# Prints every wall time, the medians and lmgrid's speed-up (eager wall / lmgrid wall) per model.
#
#   tools/bench/vs_eager.sh [--runs 3] [--steps 450] [--threads 2] [--models gpt,gem,mamba2]
set -euo pipefail
RUNS=3 STEPS=450 THREADS=2 MODELS=gpt,gem,mamba2
while [[ $# -gt 0 ]]; do
  case "$1" in
    --runs) RUNS=$2; shift 2 ;;
    --steps) STEPS=$2; shift 2 ;;
    --threads) THREADS=$2; shift 2 ;;
    --models) MODELS=$2; shift 2 ;;
    *) echo "usage: $0 [--runs N] [--steps N] [--threads N] [--models gpt,gem,mamba2]" >&2; exit 2 ;;
  esac
done
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
LMGRID=${LMGRID_BIN:-$ROOT/build/bin/lmgrid}
PY=/usr/bin/python3
[ -x "$LMGRID" ] || { echo "$0: $LMGRID not built" >&2; exit 2; }
if [ -z "${LMGRID_DATA_PATH:-}" ]; then
  [ -d "$ROOT/../shared/data" ] || { echo "$0: set LMGRID_DATA_PATH (no ../shared/data beside the checkout)" >&2; exit 2; }
  LMGRID_DATA_PATH=$(cd "$ROOT/../shared/data" && pwd)
fi
export LMGRID_DATA_PATH LMGRID_OFFLINE=1
if ! "$PY" -c "import torch" 2>/dev/null; then
  echo "vs_eager: installing python3-torch (Debian)" >&2
  if [[ $(id -u) -eq 0 ]]; then apt-get install -y python3-torch >/dev/null; else sudo apt-get install -y python3-torch >/dev/null; fi
fi
WORK=$(mktemp -d "${TMPDIR:-/tmp}/lmgrid-vs-eager.XXXXXX")
trap 'rm -rf "$WORK"' EXIT

# The lmgrid side of each model: a one-run grid with no evaluation or checkpoint before the end.
common_train() {
  cat <<TOML
[train]
steps = $STEPS
batch_size = 12
clip = 1.0
eval_every = $STEPS
eval_batches = 1
checkpoint_every = $STEPS
log_every = 50
TOML
}
sed -e "s/^steps = .*/steps = $STEPS/" -e "s/^eval_every = .*/eval_every = $STEPS/" \
  -e "s/^eval_batches = .*/eval_batches = 1/" -e "s/^checkpoint_every = .*/checkpoint_every = $STEPS/" \
  "$ROOT/experiments/nanogpt_cpu.toml" >"$WORK/gpt.toml"
{
  printf '[experiment]\nname = "vs_eager_gem"\n[data]\nplugin = "text"\nsource = "tiny_shakespeare"\nseq_len = 64\n'
  printf '[tokenizer]\nplugin = "char"\n[model]\nplugin = "gem"\n'
  printf '[optim]\nplugin = "adamw"\nlr = 1e-3\nbeta1 = 0.9\nbeta2 = 0.99\nweight_decay = 0.01\n'
  common_train
  printf 'schedule = "constant"\nwarmup = 0\n'
} >"$WORK/gem.toml"
{
  printf '[experiment]\nname = "vs_eager_mamba2"\n[data]\nplugin = "text"\nsource = "tiny_shakespeare"\nseq_len = 64\n'
  printf '[tokenizer]\nplugin = "char"\n[model]\nplugin = "mamba2"\nd_model = 128\nn_layer = 7\n'
  printf '[model.mamba2]\nd_state = 64\nheaddim = 64\nchunk_size = 64\n'
  printf '[optim]\nplugin = "adamw"\nlr = 1e-3\nbeta1 = 0.9\nbeta2 = 0.95\nweight_decay = 0.1\n'
  common_train
  printf 'schedule = "constant"\nwarmup = 0\n'
} >"$WORK/mamba2.toml"

eager_cmd() {  # eager_cmd MODEL THREADS: the eager script of a model, for $STEPS steps
  case $1 in
    gpt) echo "$ROOT/tools/bench/nanogpt_ref.py --steps $STEPS --threads $2 --no-eval" ;;
    gem) echo "$ROOT/tools/bench/gem_eager.py --steps $STEPS --warmup 0 --threads $2" ;;
    mamba2) echo "$ROOT/tools/bench/mamba2_eager.py --steps $STEPS --warmup 0 --threads $2" ;;
  esac
}
wall() {  # wall LOG CMD...: whole-process seconds of CMD (its output to LOG); fails with it
  local log=$1 t0 t1
  shift
  t0=$(date +%s.%N)
  "$@" >"$log" 2>&1 || { echo "$0: failed: $* (see below)" >&2; tail -n 20 "$log" >&2; exit 1; }
  t1=$(date +%s.%N)
  echo "$t1 - $t0" | bc
}
median() { printf '%s\n' "$@" | sort -g | awk '{v[NR] = $1} END {print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2}'; }

exec 9>/tmp/lmgrid-bench.lock
flock 9
echo "load average $(cut -d' ' -f1-3 /proc/loadavg); $(nproc) CPUs; $STEPS steps, $THREADS threads; $("$PY" -c 'import torch; print("eager torch", torch.__version__)')"
summary=()
for model in ${MODELS//,/ }; do
  [ -f "$WORK/$model.toml" ] || { echo "$0: unknown model $model" >&2; exit 2; }
  lm=() py=() pyp=() py1=()
  for i in $(seq "$RUNS"); do
    rm -rf "$WORK/db.sqlite"* "$WORK/runs"
    a=$(wall "$WORK/lm.log" env LMGRID_THREADS="$THREADS" "$LMGRID" run "$WORK/$model.toml" --workers 1 --db "$WORK/db.sqlite" --no-report)
    # shellcheck disable=SC2046
    b=$(wall "$WORK/py.log" env -u OMP_WAIT_POLICY "$PY" $(eager_cmd "$model" "$THREADS"))
    # shellcheck disable=SC2046
    c=$(wall "$WORK/pyp.log" env OMP_WAIT_POLICY=PASSIVE "$PY" $(eager_cmd "$model" "$THREADS"))
    d=$c
    # shellcheck disable=SC2046
    if [ "$THREADS" -gt 1 ]; then d=$(wall "$WORK/py1.log" env OMP_WAIT_POLICY=PASSIVE "$PY" $(eager_cmd "$model" 1)); fi
    lm+=("$a") py+=("$b") pyp+=("$c") py1+=("$d")
    printf '%s run %d: lmgrid %.1f s | eager %.1f s | eager, passive OpenMP %.1f s | eager, 1 thread %.1f s\n' \
      "$model" "$i" "$a" "$b" "$c" "$d"
  done
  ml=$(median "${lm[@]}") me=$(median "${py[@]}") mp=$(median "${pyp[@]}") m1=$(median "${py1[@]}")
  best=$(printf '%s\n%s\n%s\n' "$me" "$mp" "$m1" | sort -g | head -1)
  line=$(printf '%-7s lmgrid %6.1f s, eager %6.1f s (passive %6.1f s, 1 thread %6.1f s): lmgrid %.2fx the best eager' \
    "$model" "$ml" "$me" "$mp" "$m1" "$(echo "scale=4; $best / $ml" | bc)")
  echo "$line"
  summary+=("$line")
done
echo "medians of $RUNS, whole process:"
printf '  %s\n' "${summary[@]}"
