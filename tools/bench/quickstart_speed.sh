#!/usr/bin/env bash
# Tokens/s of every architecture at the quickstart size, relative to gpt (issue 15's targets:
# mamba2, gem and ttt-linear >= 70% of gpt, ttt-mlp >= 50%). Each round runs every variant once,
# in turn, through tools/bench/profile_step.sh (one worker, --threads T, the whole training loop
# with its evaluation and checkpoint); the table gives the median loop time over the rounds, the
# tokens/s it means (steps x 12 x 64 tokens), and the ratio to gpt's median.
#
#   tools/bench/quickstart_speed.sh [--rounds 3] [--steps 100] [--threads 1] [VARIANT ...]
#   (default variants: gpt gem ttt-linear ttt-mlp mamba2 ys; LMGRID_CPU_KERNELS=composite in the
#   environment measures the LibTorch composites instead of the fused kernels)
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
ROUNDS=3 STEPS=100 THREADS=1 VARIANTS=()
while [ $# -gt 0 ]; do
  case $1 in
    --rounds) ROUNDS=$2; shift 2 ;;
    --steps) STEPS=$2; shift 2 ;;
    --threads) THREADS=$2; shift 2 ;;
    -*) echo "$0: unknown option $1" >&2; exit 2 ;;
    *) VARIANTS+=("$1"); shift ;;
  esac
done
[ ${#VARIANTS[@]} -gt 0 ] || VARIANTS=(gpt gem ttt-linear ttt-mlp mamba2 ys)
OUT=$(mktemp)
trap 'rm -f "$OUT"' EXIT
echo "# $(date -u +%F) $(lscpu | sed -n 's/^Model name: *//p'), $STEPS steps, $THREADS thread(s), $ROUNDS rounds," \
  "LMGRID_CPU_KERNELS=${LMGRID_CPU_KERNELS:-auto}"
for r in $(seq "$ROUNDS"); do
  for v in "${VARIANTS[@]}"; do
    "$ROOT/tools/bench/profile_step.sh" --steps "$STEPS" --threads "$THREADS" --no-perf "$v" |
      sed -n "s/^## \([^:]*\): [0-9]* steps in \([0-9.]*\) s$/\1 \2/p" >>"$OUT"
  done
  echo "round $r: $(awk -v r="$r" 'NR > (r - 1) * n' n=${#VARIANTS[@]} "$OUT" | tr '\n' ' ')" >&2
done
python3 - "$OUT" "$STEPS" "${VARIANTS[@]}" <<'PY'
import statistics, sys
path, steps, names = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
times = {}
for line in open(path):
    name, secs = line.split()
    times.setdefault(name, []).append(float(secs))
med = {n: statistics.median(times[n]) for n in names if n in times}
tok = {n: steps * 12 * 64 / s for n, s in med.items()}
base = tok.get("gpt")
print("\n| variant | loop times (s) | median (s) | tokens/s | vs gpt |\n|---|---|---:|---:|---:|")
for n in names:
    if n not in med:
        continue
    ratio = f"{100 * tok[n] / base:.0f}%" if base else "-"
    print(f"| {n} | {', '.join(f'{t:.2f}' for t in times[n])} | {med[n]:.2f} | {tok[n] / 1e3:.1f}K | {ratio} |")
PY
