# Plugin failures are isolated: a plugin that throws or segfaults fails its run only (error names
# the plugin), NaN loss marks the run diverged with its step, and the grid finishes the others.
. "$(dirname "$0")/lib.sh"
export LMGRID_PLUGIN_PATH="$LMGRID_TEST_PLUGINS"
# arch/probe fails at its Nth training forward call; the batch split makes one call per part
# (and one more for its dropout probe), so whole batches keep "call N" at step N here.
export LMGRID_CPU_SPLIT=1
write_exp f.toml failures 'steps = 20'
cat >>f.toml <<'TOML'
[[variant]]
name = "ok"
"model.plugin" = "probe"
[[variant]]
name = "throws"
"model.plugin" = "probe"
"model.fail" = "throw_forward"
"model.fail_at" = 3
[[variant]]
name = "segfault"
"model.plugin" = "probe"
"model.fail" = "segv_forward"
"model.fail_at" = 2
[[variant]]
name = "nan"
"model.plugin" = "probe"
"model.fail" = "nan_loss"
"model.fail_at" = 5
[[variant]]
name = "gpt"
TOML
expect_exit 1 "grid with failing runs exits 1" -- "$BIN" run f.toml --db f.db --workers 2
st() { "$BIN" sql "SELECT status || '|' || COALESCE(error,'') FROM runs WHERE variant = '$1'" --db f.db --format csv | tail -1; }
check "ok run is done" -- test "$(st ok)" = "done|"
check "gpt run after the failures is done" -- test "$(st gpt)" = "done|"
[[ "$(st throws)" == "failed|plugin arch/probe: probe failure requested at forward 3"* ]] && pass "throwing plugin: failed, error names it" || fail "throws: $(st throws)"
[[ "$(st segfault)" == "failed|worker killed by SIGSEGV in plugin arch/probe"* ]] && pass "segfaulting plugin: failed, error names it" || fail "segfault: $(st segfault)"
[[ "$(st nan)" == "diverged|loss became NaN at step 5"* ]] && pass "NaN loss: diverged with its step" || fail "nan: $(st nan)"
# README: exit 1 for "a grid in which a run failed"; the failed runs are skipped, not re-run,
# so the grid still has them.
expect_exit 1 "re-running a grid that still has failed runs exits 1" -- "$BIN" run f.toml --db f.db
expect_out "failed or diverged" "the rerun says runs failed"
check "re-running skips done and failed runs" -- test "$("$BIN" sql "SELECT group_concat(variant || ':' || status, ' ') FROM (SELECT variant, status FROM runs ORDER BY id)" --db f.db --format csv | tail -1)" = "ok:done throws:failed segfault:failed nan:diverged gpt:done"

# A grid whose only run diverges did not succeed: exit 1 (README), and the summary says so.
write_exp d.toml diverges 'steps = 20'
cat >>d.toml <<'TOML'
[model.probe]
fail = "nan_loss"
fail_at = 5
TOML
expect_exit 1 "a grid whose only run diverges exits 1" -- "$BIN" run d.toml --db d.db --set model.plugin=probe --no-report
expect_out "1 of 1 runs failed or diverged" "the summary says why"
check "the run is diverged" -- test "$("$BIN" sql "SELECT status FROM runs" --db d.db --format csv | tail -n +2)" = diverged
finish
