#!/usr/bin/env bash
# Merge benchmark (not a test): `lmgrid merge` of the shard databases of a grid of N_RUNS runs
# (default 100) x N_POINTS train/loss points (default 1000; plus N_POINTS/10 val/loss points,
# summaries and params), split into N_SHARDS shard databases (default 4), each run with two
# checkpoint files and a tokenizer.txt in the shards' runs/ folder. The database is written through
# lmgrid's own Store (bench_report, the report benchmark's builder), then split by run id with
# sqlite3 (deletes cascade through the schema's foreign keys). Prints the median of 3 merges into a
# fresh database in another folder (so every run's files are hard-linked into its runs/), and the
# median of 3 merges of the same shards again (nothing to do: every run kept).
#   tools/bench/bench_merge.sh [BUILD_DIR] [N_RUNS] [N_POINTS] [N_SHARDS]
set -euo pipefail
build=${1:-build}
n_runs=${2:-100}
n_points=${3:-1000}
n_shards=${4:-4}
command -v sqlite3 >/dev/null || { echo "bench_merge: needs sqlite3" >&2; exit 2; }
work=$(mktemp -d "${TMPDIR:-/tmp}/lmgrid-bench-merge.XXXXXX")
trap 'rm -rf "$work"' EXIT
load0=$(uptime | sed 's/.*load average: //')
"$build/bin/bench_report" "$work/full.db" "$n_runs" "$n_points" >/dev/null
sqlite3 "$work/full.db" "PRAGMA wal_checkpoint(TRUNCATE)" >/dev/null
# Run files: two checkpoints (64 KiB each) and a tokenizer per run, as a trainer leaves them.
mkdir -p "$work/shards"
while read -r hash; do
  d="$work/shards/runs/${hash:0:16}"
  mkdir -p "$d"
  head -c 65536 /dev/urandom >"$d/ckpt-00000500.lmck"
  head -c 65536 /dev/urandom >"$d/ckpt-00001000.lmck"
  echo "char tokenizer" >"$d/tokenizer.txt"
done < <(sqlite3 "$work/full.db" "SELECT config_hash FROM runs")
sqlite3 "$work/full.db" "INSERT INTO checkpoints(run_id, step, path, sha256, created_at)
  SELECT id, s.step, 'runs/' || substr(config_hash, 1, 16) || printf('/ckpt-%08d.lmck', s.step), 'x', 0
  FROM runs, (SELECT 500 AS step UNION ALL SELECT 1000) s"
for i in $(seq 0 $((n_shards - 1))); do
  cp "$work/full.db" "$work/shards/bench.$i.db"
  sqlite3 "$work/shards/bench.$i.db" "PRAGMA foreign_keys = ON; DELETE FROM runs WHERE id % $n_shards != $i; VACUUM"
done
shards=("$work"/shards/bench.*.db)
rows=$(sqlite3 "$work/full.db" "SELECT count(*) FROM metrics")
# median3 COMMAND...: the median wall seconds of 3 runs (the command prepares nothing itself).
median3() {
  local t=() TIMEFORMAT='%R'
  for i in 1 2 3; do
    [ -n "${FRESH:-}" ] && rm -rf "$work/out"
    t+=("$( { time "$@" >/dev/null; } 2>&1 | tail -1)")
  done
  printf '%s\n' "${t[@]}" | sort -n | sed -n 2p
}
cat "$work"/shards/*.db >/dev/null  # warm the page cache
fresh=$(FRESH=1 median3 "$build/bin/lmgrid" merge "$work/out/merged.db" "${shards[@]}")
again=$(median3 "$build/bin/lmgrid" merge "$work/out/merged.db" "${shards[@]}")
floor=$(median3 "$build/bin/lmgrid" runs --db "$work/out/merged.db")
check=$(sqlite3 "$work/out/merged.db" "SELECT count(*) || ' runs, ' || (SELECT count(*) FROM metrics) || ' metric rows' FROM runs")
printf 'load before: %s\n' "$load0"
printf 'load after:  %s\n' "$(uptime | sed 's/.*load average: //')"
printf 'shards: %d databases, %d runs, %d metric rows, %d run files\n' "$n_shards" "$n_runs" "$rows" \
  "$(find "$work/shards/runs" -type f | wc -l)"
printf 'merged: %s\n' "$check"
printf 'lmgrid merge into a new database: %.3f s wall (median of 3)\n' "$fresh"
printf 'lmgrid merge of the same shards again (every run kept): %.3f s wall (median of 3)\n' "$again"
printf 'for scale, lmgrid runs on the merge: %.3f s wall\n' "$floor"
