# Determinism and resume: the same config twice gives identical loss series; a grid killed
# with SIGKILL mid-run resumes, repeats no done run, ends with the uninterrupted final loss,
# and duplicates no metric row.
# ctest: run alone (grids killed mid-run: another test beside it on 2 cores shifts them)
. "$(dirname "$0")/lib.sh"
write_exp a.toml same 'steps = 60'
"$BIN" run a.toml --db one.db >/dev/null 2>&1 || fail "first run"
"$BIN" run a.toml --db two.db >/dev/null 2>&1 || fail "second run"
q="SELECT group_concat(printf('%d:%.17g', step, value), ' ') FROM (SELECT step, value FROM metrics WHERE name IN ('train/loss','val/loss') ORDER BY name, step)"
s1=$("$BIN" sql "$q" --db one.db --format csv | tail -1)
s2=$("$BIN" sql "$q" --db two.db --format csv | tail -1)
check "same config and seed twice: identical loss series" -- test -n "$s1" -a "$s1" = "$s2"

# A grid of two runs: the second is killed mid-run with the whole process group.
write_exp k.toml kill 'steps = 300
checkpoint_every = 50'
cat >>k.toml <<'TOML'
[grid]
"optim.lr" = [3e-3, 2e-3]
TOML
setsid "$BIN" run k.toml --db k.db >run1.log 2>&1 &
pid=$!
for i in $(seq 1 600); do
  st=$("$BIN" sql "SELECT count(*) FROM checkpoints c JOIN runs r ON r.id = c.run_id WHERE r.id = 2 AND c.step >= 100" --db k.db --format csv 2>/dev/null | tail -1)
  [ "${st:-0}" -ge 1 ] && break
  sleep 0.2
done
kill -9 -- -"$pid" 2>/dev/null
wait "$pid" 2>/dev/null
status=$("$BIN" sql "SELECT status FROM runs WHERE id = 2" --db k.db --format csv | tail -1)
check "run 2 was killed while running (status $status)" -- test "$status" = "running"
# tail -n +2: the data rows only (with no row, tail -1 would return the csv header).
done_at=$("$BIN" sql "SELECT finished_at FROM runs WHERE id = 1" --db k.db --format csv | tail -n +2)
"$BIN" run k.toml --db k.db >run2.log 2>&1 || { fail "rerun"; cat run2.log; }
grep -q "resuming from step" run2.log && pass "interrupted run resumed from a checkpoint" || { fail "no resume"; cat run2.log; }
done_after=$("$BIN" sql "SELECT finished_at FROM runs WHERE id = 1" --db k.db --format csv | tail -n +2)
check "done run was not repeated ($done_at)" -- test -n "$done_at" -a "$done_at" = "$done_after"
dups=$("$BIN" sql "SELECT count(*) FROM (SELECT run_id, name, step, count(*) c FROM metrics GROUP BY 1,2,3 HAVING c > 1)" --db k.db --format csv | tail -1)
check "no duplicated metric rows ($dups)" -- test "$dups" = "0"
# The same run uninterrupted, in a fresh database.
"$BIN" run k.toml --db ref.db >/dev/null 2>&1 || fail "reference run"
fq="SELECT printf('%.17g', value) FROM metrics WHERE run_id = 2 AND name = 'val/loss' ORDER BY step DESC LIMIT 1"
f1=$("$BIN" sql "$fq" --db k.db --format csv | tail -n +2)
f2=$("$BIN" sql "$fq" --db ref.db --format csv | tail -n +2)
check "resumed run ends with the uninterrupted final val loss ($f1 vs $f2)" -- test -n "$f1" -a "$f1" = "$f2"
tq="SELECT group_concat(printf('%.17g', value)) FROM (SELECT value FROM metrics WHERE run_id = 2 AND name = 'train/loss' ORDER BY step)"
t1=$("$BIN" sql "$tq" --db k.db --format csv | tail -1)
t2=$("$BIN" sql "$tq" --db ref.db --format csv | tail -1)
check "resumed run has the uninterrupted train loss series" -- test -n "$t1" -a "$t1" = "$t2"

# A corrupted newest checkpoint: the run resumes from the one before it, not from step 0.
write_exp c.toml corrupt 'steps = 300
checkpoint_every = 50'
"$BIN" run c.toml --db cref.db >/dev/null 2>&1 || fail "corrupt: reference run"
setsid "$BIN" run c.toml --db c.db >c1.log 2>&1 &
pid=$!
for i in $(seq 1 600); do
  st=$("$BIN" sql "SELECT count(*) FROM checkpoints WHERE run_id = 1 AND step >= 100" --db c.db --format csv 2>/dev/null | tail -1)
  [ "${st:-0}" -ge 1 ] && break
  sleep 0.1
done
kill -9 -- -"$pid" 2>/dev/null
wait "$pid" 2>/dev/null
steps=$("$BIN" sql "SELECT group_concat(step, ' ') FROM (SELECT step FROM checkpoints WHERE run_id = 1 ORDER BY step)" --db c.db --format csv | tail -1)
newest=$("$BIN" sql "SELECT path FROM checkpoints WHERE run_id = 1 ORDER BY step DESC LIMIT 1" --db c.db --format csv | tail -n +2)
case "$newest" in /* | "") ;; *) newest="$WORK/$newest" ;; esac
older=${steps%% *}
check "two checkpoints kept before the kill ($steps)" -- test "$older" != "$steps"
size=$(stat -c %s "$newest")
printf 'XXXXXXXX' | dd of="$newest" bs=1 seek=$((size / 2)) conv=notrunc 2>/dev/null  # payload, not header
"$BIN" run c.toml --db c.db >c2.log 2>&1 || { fail "corrupt: rerun"; cat c2.log; }
grep -q "trying the checkpoint before it" c2.log && pass "the corrupted newest checkpoint is reported" || { fail "no report"; cat c2.log; }
grep -q "resuming from step $older " c2.log && pass "resumed from the checkpoint before it (step $older)" || { fail "not from step $older"; cat c2.log; }
check "the corrupted file is moved aside" -- test -e "$newest.corrupt"
fq1=$("$BIN" sql "SELECT printf('%.17g', value) FROM metrics WHERE run_id = 1 AND name = 'val/loss' ORDER BY step DESC LIMIT 1" --db c.db --format csv | tail -n +2)
fq2=$("$BIN" sql "SELECT printf('%.17g', value) FROM metrics WHERE run_id = 1 AND name = 'val/loss' ORDER BY step DESC LIMIT 1" --db cref.db --format csv | tail -n +2)
check "and ends with the uninterrupted final val loss ($fq1 vs $fq2)" -- test -n "$fq1" -a "$fq1" = "$fq2"

# A corrupted checkpoint is detected and not loaded.
ck=$("$BIN" sql "SELECT path FROM checkpoints WHERE run_id = 1 ORDER BY step DESC LIMIT 1" --db k.db --format csv | tail -n +2)
case "$ck" in /* | "") ;; *) ck="$WORK/$ck" ;; esac  # stored relative to the database's folder
check "run 1's newest checkpoint file exists ($ck)" -- test -n "$ck" -a -s "$ck"
printf 'XXXX' | dd of="$ck" bs=1 seek=2000 conv=notrunc 2>/dev/null
expect_exit 1 "sample from a corrupted checkpoint fails" -- "$BIN" sample --run 1 --db k.db -n 5
expect_out "corrupted" "corruption is reported"
finish
