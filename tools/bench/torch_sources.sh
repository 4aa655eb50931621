#!/usr/bin/env bash
# The two LibTorch sources side by side on the nanoGPT CPU recipe (experiments/nanogpt_cpu.toml):
# for each build folder given, the recipe in float32 and with bfloat16 autocast, one after the
# other on this machine, and a table of tokens/s (training time only), best and final val loss
# and wall time. Run it on a quiet machine: the runs are timed.
#   tools/bench/torch_sources.sh [--steps N] [--seed S] BUILD_DIR...
#   e.g. tools/bench/torch_sources.sh build-debian build
# Install size and time of each source are in the README ("LibTorch"); this script measures speed.
set -euo pipefail
cd "$(dirname "$0")/../.."
steps=2000 seed=1337 builds=()
while [ $# -gt 0 ]; do
  case "$1" in
    --steps) steps=$2; shift 2 ;;
    --seed) seed=$2; shift 2 ;;
    *) builds+=("$1"); shift ;;
  esac
done
[ ${#builds[@]} -gt 0 ] || { echo "usage: tools/bench/torch_sources.sh [--steps N] [--seed S] BUILD_DIR..." >&2; exit 2; }
export LMGRID_DATA_PATH=${LMGRID_DATA_PATH:-$(cd .. && pwd)/shared/data}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
rows=()
for b in "${builds[@]}"; do
  bin=$b/bin/lmgrid
  [ -x "$bin" ] || { echo "no $bin" >&2; exit 2; }
  ver=$("$bin" env --format csv --matmul-size 64 | awk -F, '$1=="libtorch"{v=$2} $1=="libtorch_blas"{bl=$2} END{print v" ("bl")"}')
  for dtype in float32 bfloat16; do
    db=$tmp/$(basename "$b")-$dtype.db
    echo "== $b ($ver), $dtype, $steps steps" >&2
    "$bin" run experiments/nanogpt_cpu.toml --db "$db" --no-report --set train.dtype=$dtype --set train.steps=$steps \
      --set train.decay_steps=$steps --set "experiment.seeds=[$seed]" >/dev/null 2>"$tmp/log" || { tail "$tmp/log"; exit 1; }
    q() { "$bin" sql --db "$db" "SELECT value FROM summaries WHERE key='$1'" --format csv | tail -1; }
    rows+=("$(printf '| %s | %s | %s | %.0f | %.4f | %.4f | %.0f |' "$b" "$ver" "$dtype" "$(q tokens_per_s)" \
      "$(q best_val_loss)" "$(q final_val_loss)" "$(q wall_time_s)")")
  done
done
echo "| build | LibTorch (BLAS) | dtype | tokens/s | best val | final val | wall s |"
echo "|---|---|---|---:|---:|---:|---:|"
printf '%s\n' "${rows[@]}"
