#!/usr/bin/env bash
# llm.c token shard read speed (issue 13: >= 1 GB/s): runs build/bin/bench_shards and prints its
# per-run figures and the medians (GB/s of token bytes, warm page cache). The scans are one
# thread; train_batch fills its rows on LibTorch's intra-op threads (LMGRID_THREADS or all cores).
#
#   tools/bench/bench_shards.sh [--tokens 268435456] [--format v1|v7] [--dir DIR] [--runs 5] [--batch 64] [--seq-len 1024]
#
# Default: one 512 MB uint16 shard in $TMPDIR (or /tmp), removed afterwards.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
BENCH=${LMGRID_BENCH_BIN:-$ROOT/build/bin/bench_shards}
[ -x "$BENCH" ] || { echo "$0: $BENCH not built (cmake --build build --target bench_shards)" >&2; exit 2; }
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg); $(nproc) CPUs; free disk in ${TMPDIR:-/tmp}:$(df -h --output=avail "${TMPDIR:-/tmp}" | tail -1)"
exec "$BENCH" "$@"
