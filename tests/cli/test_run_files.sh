# Run files (checkpoints, tokenizer) live beside the database, whatever the working directory:
# a run killed in one folder resumes from another with an absolute --db to the uninterrupted
# final loss without retraining from step 0; a database moved with its runs/ folder still
# samples; a run killed after its final checkpoint keeps its summaries; a v1 database migrates.
# ctest: run alone (a run killed once it has a checkpoint: another test beside it on 2 cores shifts them)
. "$(dirname "$0")/lib.sh"
mkdir -p a b c
write_exp exp.toml files 'steps = 240
checkpoint_every = 40'
db="$WORK/a/grid.db"   # absolute

# Started in a/ with a relative --db, killed once a checkpoint at step >= 80 exists.
( cd a && exec setsid "$BIN" run ../exp.toml --db grid.db --no-report >run1.log 2>&1 ) &
pid=$!
for i in $(seq 1 900); do
  kill -0 "$pid" 2>/dev/null || { fail "the first run ended before it could be killed"; cat a/run1.log; finish; exit; }
  n=$("$BIN" sql "SELECT count(*) FROM checkpoints WHERE step >= 80" --db "$db" --format csv 2>/dev/null | tail -1)
  [ "${n:-0}" -ge 1 ] && break
  sleep 0.2
done
kill -9 -- -"$pid" 2>/dev/null
wait "$pid" 2>/dev/null
check "the run was killed mid-training" -- test "$("$BIN" sql "SELECT status FROM runs" --db "$db" --format csv | tail -1)" = running
ck_step=$("$BIN" sql "SELECT max(step) FROM checkpoints" --db "$db" --format csv | tail -1)
check "it has a checkpoint at step $ck_step < 240" -- test "${ck_step:-0}" -ge 80 -a "${ck_step:-0}" -lt 240
stored=$("$BIN" sql "SELECT run_dir || ' ' || (SELECT path FROM checkpoints ORDER BY step DESC LIMIT 1) FROM runs" --db "$db" --format csv | tail -1)
[[ "$stored" == runs/*" runs/"*/ckpt-*.lmck ]] && pass "paths are stored relative to the database ($stored)" || fail "stored paths: $stored"

# Resumed from b/ with the absolute --db.
( cd b && "$BIN" run ../exp.toml --db "$db" --no-report >run2.log 2>&1 )
rc=$?
check "the resume exits 0 (exit $rc)" -- test "$rc" = 0
grep -q "resuming from step $ck_step " b/run2.log && pass "resumed from step $ck_step" || { fail "no resume from $ck_step"; cat b/run2.log; }
grep -q "checkpoint file missing" b/run2.log && fail "a checkpoint was reported missing" || pass "no checkpoint reported missing"
check "no runs/ folder was made in the other working directory" -- test ! -e b/runs
check "the run's files stayed beside the database" -- test -f "$WORK/a/$(echo "$stored" | cut -d' ' -f1)/tokenizer.txt"
first=$("$BIN" sql "SELECT min(step) FROM metrics WHERE name = 'train/loss'" --db "$db" --format csv | tail -1)
check "metrics of the first session were kept (first train/loss at step $first)" -- test "$first" = 5
dups=$("$BIN" sql "SELECT count(*) FROM (SELECT name, step, count(*) c FROM metrics GROUP BY 1, 2 HAVING c > 1)" --db "$db" --format csv | tail -1)
check "no metric row duplicated ($dups)" -- test "$dups" = 0

# The same run uninterrupted in c/: same final losses to every digit.
( cd c && "$BIN" run ../exp.toml --db ref.db --no-report >/dev/null 2>&1 ) || fail "reference run"
fq="SELECT printf('%.17g', value) FROM metrics WHERE name = 'val/loss' ORDER BY step DESC LIMIT 1"
f1=$("$BIN" sql "$fq" --db "$db" --format csv | tail -1)
f2=$("$BIN" sql "$fq" --db c/ref.db --format csv | tail -1)
check "resumed final val loss equals the uninterrupted one ($f1 vs $f2)" -- test -n "$f1" -a "$f1" = "$f2"
tq="SELECT group_concat(printf('%.17g', value)) FROM (SELECT value FROM metrics WHERE name = 'train/loss' ORDER BY step)"
t1=$("$BIN" sql "$tq" --db "$db" --format csv | tail -1)
t2=$("$BIN" sql "$tq" --db c/ref.db --format csv | tail -1)
check "resumed train loss series equals the uninterrupted one" -- test -n "$t1" -a "$t1" = "$t2"

# Move the finished database together with its runs/ folder, then sample from elsewhere.
mv a moved
expect_exit 0 "sample from the moved database, run from another folder" -- bash -c "cd '$WORK/c' && '$BIN' sample --run 1 --db '$WORK/moved/grid.db' -n 20 --seed 3"
expect_out "checkpoint at step 240" "it loaded the final checkpoint"
expect_exit 0 "sample through a relative --db from the parent folder" -- "$BIN" sample --run 1 --db moved/grid.db -n 5
expect_exit 0 "the moved grid reruns as done" -- "$BIN" run exp.toml --db moved/grid.db --no-report
expect_out "1 runs \(1 done, 0 to run\)" "nothing to run"

# Killed after its final checkpoint but before it was marked done: the rerun resumes at the
# end and writes the same summaries, not NULL losses and 0 tokens/s.
sq="SELECT group_concat(key || '=' || COALESCE(printf('%.17g', value), 'NULL'), ' ') FROM (SELECT key, value FROM summaries WHERE key IN ('final_val_loss', 'final_train_loss', 'best_val_loss', 'tokens') ORDER BY key)"
before=$("$BIN" sql "$sq" --db moved/grid.db --format csv | tail -1)
sqlite3 moved/grid.db "UPDATE runs SET status = 'interrupted'; DELETE FROM summaries;"
expect_exit 0 "rerun of a run interrupted after its final checkpoint" -- "$BIN" run exp.toml --db moved/grid.db --no-report
expect_out "resuming from step 240" "it resumed at the end"
after=$("$BIN" sql "$sq" --db moved/grid.db --format csv | tail -1)
check "the summaries are the same as before ($after)" -- test -n "$before" -a "$before" = "$after"
tps=$("$BIN" sql "SELECT value FROM summaries WHERE key = 'tokens_per_s'" --db moved/grid.db --format csv | tail -1)
check "tokens_per_s is a positive number ($tps)" -- awk -v v="$tps" 'BEGIN { exit !(v + 0 > 0) }'
check "status done" -- test "$("$BIN" sql "SELECT status FROM runs" --db moved/grid.db --format csv | tail -1)" = done

# A version-1 database (paths as typed from another folder) migrates and keeps its checkpoints.
cp moved/grid.db v1.db && cp -r moved/runs runs
h=$("$BIN" sql "SELECT substr(config_hash, 1, 16) FROM runs" --db v1.db --format csv | tail -1)
sqlite3 v1.db "UPDATE runs SET run_dir = 'elsewhere/runs/$h'; UPDATE checkpoints SET path = './elsewhere/runs/$h/' || substr(path, length(path) - 17); PRAGMA user_version = 1;"
expect_exit 0 "sample from a v1 database read-only" -- "$BIN" sample --run 1 --db v1.db -n 5
expect_exit 0 "a v1 database opened by run migrates" -- "$BIN" run exp.toml --db v1.db --no-report
check "user_version is now 2" -- test "$(sqlite3 v1.db 'PRAGMA user_version')" = 2
check "checkpoint paths were rewritten relative to the database" -- test "$(sqlite3 v1.db 'SELECT count(*) FROM checkpoints WHERE path LIKE "runs/'"$h"'/ckpt-%"')" -ge 1
finish
