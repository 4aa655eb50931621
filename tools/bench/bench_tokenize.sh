#!/usr/bin/env bash
# Tokenizer encode speed per core (issue 13: BPE >= 5 MB/s per core on TinyStories text): runs
# build/bin/bench_tokenize pinned to one CPU and prints its per-run figures and the median MB/s.
#
#   tools/bench/bench_tokenize.sh [--runs 7] [--tokenizer bpe] [--set pretrained=gpt2] [--source NAME|FILE]
#
# Defaults: GPT-2's pretrained BPE on the TinyStories train sample (2.1 MB).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
BENCH=${LMGRID_BENCH_BIN:-$ROOT/build/bin/bench_tokenize}
# Data as tools/setup.sh resolves it: LMGRID_DATA_PATH, else ../shared/data beside the checkout.
if [ -z "${LMGRID_DATA_PATH:-}" ]; then
  [ -d "$ROOT/../shared/data" ] || { echo "$0: set LMGRID_DATA_PATH (no ../shared/data beside the checkout)" >&2; exit 2; }
  LMGRID_DATA_PATH=$(cd "$ROOT/../shared/data" && pwd)
fi
export LMGRID_DATA_PATH LMGRID_OFFLINE=1
[ -x "$BENCH" ] || { echo "$0: $BENCH not built (cmake --build build --target bench_tokenize)" >&2; exit 2; }
CPU=$(taskset -pc $$ 2>/dev/null | sed 's/.*: //; s/[,-].*//' || echo 0)
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg); pinned to CPU $CPU"
exec taskset -c "$CPU" "$BENCH" "$@"
