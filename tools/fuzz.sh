#!/usr/bin/env bash
# Fuzz lmgrid's parsers of untrusted files with libFuzzer (clang, AddressSanitizer + UBSan).
#   tools/fuzz.sh [--seconds N] [--no-build] [TARGET ...]
# Targets (tests/fuzz/; default: all four): experiment, checkpoint, shard_header, tokenizer_state.
# Builds build-fuzz/ (clang, -DLMGRID_FUZZ=ON -DLMGRID_SANITIZE=address,undefined: only the fuzz
# executables and the plugins they load), then runs each target for N seconds (default 60) on a
# working corpus in build-fuzz/corpus/<target>/, seeded from tests/fuzz/corpus/<target>/ (and, for
# experiment, experiments/*.toml), after replaying tests/fuzz/regressions/<target>/ (inputs that
# once crashed: each must now pass). Prints per target: executions, executions/s, corpus size,
# coverage, and the crash input if there was one. Exit 0 when no target crashed, 1 otherwise.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=60 build=1 targets=()
while [ $# -gt 0 ]; do
  case "$1" in
    --seconds) seconds=$2; shift 2 ;;
    --no-build) build=0; shift ;;
    experiment | checkpoint | shard_header | tokenizer_state) targets+=("$1"); shift ;;
    *) echo "usage: tools/fuzz.sh [--seconds N] [--no-build] [experiment|checkpoint|shard_header|tokenizer_state ...]" >&2
       exit 2 ;;
  esac
done
[ ${#targets[@]} -gt 0 ] || targets=(experiment checkpoint shard_header tokenizer_state)
case "$seconds" in '' | *[!0-9]*) echo "tools/fuzz.sh: --seconds needs whole seconds, not '$seconds'" >&2; exit 2 ;; esac

out=build-fuzz
if [ "$build" = 1 ]; then
  # libFuzzer's runtime is in libclang-rt (a Recommends of clang, so named here).
  LMGRID_EXTRA_PACKAGES="clang libclang-rt-14-dev" bash tools/setup.sh deps
  [ -f "$out/build.ninja" ] ||
    cmake -S . -B "$out" -G Ninja -DCMAKE_BUILD_TYPE=Release -DCMAKE_CXX_COMPILER=clang++ -DLMGRID_FUZZ=ON \
          -DLMGRID_SANITIZE=address,undefined -DLMGRID_BUILD_TESTS=OFF >/dev/null
  # The plugins the targets load: every tokenizer, and what the experiment seeds name.
  cmake --build "$out" -j "$(nproc)" --target "${targets[@]/#/fuzz_}" bpe byte char ids words ys_words sentencepiece \
        text shards mqar babi gpt adamw sgd
fi

if [ -z "${LMGRID_DATA_PATH:-}" ] && [ -d ../shared/data ]; then export LMGRID_DATA_PATH=$(cd ../shared/data && pwd); fi
export LMGRID_OFFLINE=1 LMGRID_THREADS=1
export ASAN_OPTIONS="detect_leaks=1:allocator_may_return_null=1"
export LSAN_OPTIONS="suppressions=$PWD/tests/sanitizer.supp:print_suppressions=0"
export UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1:suppressions=$PWD/tests/ubsan.supp"
mkdir -p "$out/artifacts"
failed=0
printf '%-16s %8s %12s %10s %8s %8s  %s\n' target seconds executions "exec/s" corpus cov result
for t in "${targets[@]}"; do
  work="$out/corpus/$t"
  mkdir -p "$work"
  cp -n tests/fuzz/corpus/"$t"/* "$work"/
  [ "$t" = experiment ] && cp -n experiments/*.toml "$work"/
  log="$out/fuzz_$t.log"
  bin="$out/bin/fuzz_$t"
  result=ok
  # Inputs that once crashed, run one by one: each must pass now.
  if compgen -G "tests/fuzz/regressions/$t/*" >/dev/null; then
    if ! "$bin" tests/fuzz/regressions/"$t"/* >"$log.regressions" 2>&1; then
      result="REGRESSION (see $log.regressions)"
      failed=1
    fi
  fi
  # -timeout: one input over 10 s is a hang; -rss_limit_mb: past 4 GiB, an out-of-memory bug.
  if ! "$bin" "$work" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=4096 -print_final_stats=1 \
       -artifact_prefix="$out/artifacts/$t-" >"$log" 2>&1; then
    result="CRASH: $(grep -o "Test unit written to .*" "$log" | tail -1 | sed 's/Test unit written to //') (log $log)"
    failed=1
  fi
  execs=$(grep -o "stat::number_of_executed_units: *[0-9]*" "$log" | grep -o "[0-9]*$" || echo 0)
  rate=$(grep -o "stat::average_exec_per_sec: *[0-9]*" "$log" | grep -o "[0-9]*$" || echo 0)
  cov=$(grep -o "cov: [0-9]*" "$log" | tail -1 | grep -o "[0-9]*" || echo 0)
  printf '%-16s %8s %12s %10s %8s %8s  %s\n' "$t" "$seconds" "${execs:-0}" "${rate:-0}" "$(ls "$work" | wc -l)" "${cov:-0}" "$result"
done
exit "$failed"
