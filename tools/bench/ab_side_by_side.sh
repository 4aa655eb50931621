#!/usr/bin/env bash
# A/B of two builds of lmgrid on one quickstart variant (or of two variants, below), side by side:
# in each round build A and build B train the same run at the same time, one thread each on a core
# of their own (taskset), and the cores are swapped every round, so that both see the same machine
# at the same moment (these machines are shared and noisy: alternating runs one after the other gave
# 3-5% swings, more than the changes being measured). Prints each round's loop times and B / A, then
# their geometric mean; below 1 means B is faster. The two cores need not be equally fast (3% apart
# was seen here); over an even number of rounds each side has each core equally often, and the
# geometric mean cancels that, where a median over rounds would not. Two identical builds gave
# 0.957-1.041 per round and 0.993 in all over 6 rounds: effects under 2-3% are not resolved.
#
#   tools/bench/ab_side_by_side.sh A B [--rounds 8] [--steps 100] [VARIANT [VARIANT_B]]   (default ttt-mlp)
#
# With VARIANT_B, side B trains VARIANT_B instead (A and B may be the same build): e.g.
# `ab_side_by_side.sh S S gpt ttt-mlp` gives TTT-MLP's time over gpt's, measured at the same
# moments, and tokens/s relative to gpt as its inverse. Two one-thread runs at once on the two
# cores is how the quickstart grid itself trains (`--workers auto`: 2 workers x 1 thread).
#
# A and B are build snapshots holding bin/lmgrid, lib/ and plugins/, e.g. made before and after a
# change with `tools/bench/ab_side_by_side.sh --snapshot DIR` (copies build/{bin,lib,plugins}).
# Each side runs with LD_LIBRARY_PATH=DIR/lib (ahead of the binaries' RUNPATH) and finds its
# plugins beside its own executable. Needs 2 usable cores.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
if [ "${1:-}" = --snapshot ]; then
  [ $# -eq 2 ] || { echo "usage: $0 --snapshot DIR" >&2; exit 2; }
  mkdir -p "$2"
  cp -r "$ROOT/build/bin" "$ROOT/build/lib" "$ROOT/build/plugins" "$2/"
  echo "snapshot of build/ in $2"
  exit 0
fi
ROUNDS=8 STEPS=100 VARIANT=ttt-mlp VARIANT_B= SIDES=()
while [ $# -gt 0 ]; do
  case $1 in
    --rounds) ROUNDS=$2; shift 2 ;;
    --steps) STEPS=$2; shift 2 ;;
    -*) echo "$0: unknown option $1" >&2; exit 2 ;;
    *) SIDES+=("$1"); shift ;;
  esac
done
[ ${#SIDES[@]} -ge 2 ] || { echo "usage: $0 A B [--rounds 8] [--steps 100] [VARIANT [VARIANT_B]]" >&2; exit 2; }
[ ${#SIDES[@]} -le 4 ] || { echo "$0: two builds and at most two variants" >&2; exit 2; }
[ ${#SIDES[@]} -ge 3 ] && VARIANT=${SIDES[2]}
VARIANT_B=${SIDES[3]:-$VARIANT}
A=$(cd "${SIDES[0]}" && pwd) B=$(cd "${SIDES[1]}" && pwd)
for d in "$A" "$B"; do
  [ -x "$d/bin/lmgrid" ] && [ -d "$d/lib" ] && [ -d "$d/plugins" ] ||
    { echo "$0: $d is not a build snapshot (bin/lmgrid, lib/, plugins/)" >&2; exit 2; }
done
[ "$(nproc)" -ge 2 ] || { echo "$0: needs 2 usable cores, $(nproc) here" >&2; exit 2; }
export LMGRID_DATA_PATH=${LMGRID_DATA_PATH:-$ROOT/../shared/data}
OUT=$(mktemp -d)
trap 'rm -rf "$OUT"' EXIT
side() {  # side DIR CORE FILE VARIANT: the loop seconds of one run of the variant
  LMGRID_BIN=$1/bin/lmgrid LD_LIBRARY_PATH=$1/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH} taskset -c "$2" \
    "$ROOT/tools/bench/profile_step.sh" --steps "$STEPS" --threads 1 --no-perf "$4" |
    sed -n 's/^## [^:]*: [0-9]* steps in \([0-9.]*\) s$/\1/p' >"$3"
}
cores=($(python3 -c 'import os; print(*sorted(os.sched_getaffinity(0))[:2])'))  # the first two usable cores
echo "# $(date -u +%F) $(lscpu | sed -n 's/^Model name: *//p'); $STEPS steps, 1 thread each;" \
  "A = $A ($VARIANT), B = $B ($VARIANT_B)"
for r in $(seq "$ROUNDS"); do
  ca=${cores[$((r % 2))]} cb=${cores[$(((r + 1) % 2))]}
  side "$A" "$ca" "$OUT/a" "$VARIANT" &
  side "$B" "$cb" "$OUT/b" "$VARIANT_B" &
  wait
  a=$(cat "$OUT/a") b=$(cat "$OUT/b")
  [ -n "$a" ] && [ -n "$b" ] || { echo "$0: round $r printed no loop time" >&2; exit 1; }
  echo "round $r: A $a s (core $ca), B $b s (core $cb), B / A $(echo "scale=3; $b / $a" | bc)" | tee -a "$OUT/rounds"
done
python3 - "$OUT/rounds" <<'PY'
import math, sys
r = [float(l.rsplit(" ", 1)[1]) for l in open(sys.argv[1])]
geo = math.exp(sum(map(math.log, r)) / len(r))
note = "" if len(r) % 2 == 0 else " (an odd number of rounds: the cores do not cancel)"
print(f"B / A over {len(r)} rounds: geometric mean {geo:.3f}, range {min(r):.3f}-{max(r):.3f}{note}")
print(f"A / B (B's speed relative to A's): {1 / geo:.3f}")
PY
