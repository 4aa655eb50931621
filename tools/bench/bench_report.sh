#!/usr/bin/env bash
# Report benchmark (not a test): a database of 1,000 runs x 1,000 metric points, then the median
# of 5 timings of `lmgrid report` (target < 5 s) and `lmgrid runs` (target < 0.5 s), beside the
# cost of loading LibTorch (`lmgrid --version` loads the training commands; the query commands
# do not) and the machine's load.
#   tools/bench/bench_report.sh [BUILD_DIR] [N_RUNS] [N_POINTS]
set -euo pipefail
build=${1:-build}
n_runs=${2:-1000}
n_points=${3:-1000}
work=$(mktemp -d "${TMPDIR:-/tmp}/lmgrid-bench-report.XXXXXX")
trap 'rm -rf "$work"' EXIT
load0=$(uptime | sed 's/.*load average: //')
"$build/bin/bench_report" "$work/b.db" "$n_runs" "$n_points"
# median COMMAND...: runs it 5 times; prints the median wall seconds and the median CPU seconds
# (user + sys: on a loaded machine the wall time includes waiting for a core).
median() {
  local walls=() cpus=() out
  local TIMEFORMAT='%R %U %S'
  for i in 1 2 3 4 5; do
    out=$( { time "$@" >/dev/null; } 2>&1 | tail -1)
    walls+=("$(echo "$out" | cut -d' ' -f1)")
    cpus+=("$(echo "$out" | awk '{print $2 + $3}')")
  done
  echo "$(printf '%s\n' "${walls[@]}" | sort -n | sed -n 3p) $(printf '%s\n' "${cpus[@]}" | sort -n | sed -n 3p)"
}
"$build/bin/lmgrid" report --db "$work/b.db" --out "$work/r" --best-over optim.lr  # warm the page cache
read -r rep rep_cpu < <(median "$build/bin/lmgrid" report --db "$work/b.db" --out "$work/r" --best-over optim.lr)
read -r runs runs_cpu < <(median "$build/bin/lmgrid" runs --db "$work/b.db")
read -r floor floor_cpu < <(median "$build/bin/lmgrid" --version)
verdict() { awk -v t="$1" -v lim="$2" 'BEGIN{print (t < lim) ? "ok" : "OVER"}'; }
printf 'load before: %s\n' "$load0"
printf 'load after:  %s\n' "$(uptime | sed 's/.*load average: //')"
printf 'lmgrid report: %.3f s wall, %.3f s CPU (target < 5 s)   %s\n' "$rep" "$rep_cpu" "$(verdict "$rep" 5)"
printf 'lmgrid runs:   %.3f s wall, %.3f s CPU (target < 0.5 s) %s\n' "$runs" "$runs_cpu" "$(verdict "$runs" 0.5)"
printf 'for scale, a command that loads LibTorch (lmgrid --version): %.3f s wall, %.3f s CPU\n' "$floor" "$floor_cpu"
printf 'report size: %s bytes html\n' "$(stat -c %s "$work/r/report.html")"
