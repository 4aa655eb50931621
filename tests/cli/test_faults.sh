# Faults of the machine around a grid, each with a clear message naming what and where, exit 1
# (runtime) or 2 (input), nothing finished lost, and a rerun that finishes the grid once the
# fault clears: the database locked by another process past the busy timeout (before the grid
# and mid-run), a read-only results folder, a truncated or corrupted database file, a checkpoint
# deleted between a kill and the resume, and a data set file that disappears mid-grid.
# (A full disk: test_disk_full.sh; a corrupted checkpoint: test_resume.sh; kills: test_kills.sh.)
# The read-only folder needs root for mount (CI runs as root); LMGRID_SKIP_MOUNT=1 skips that part.
# ctest: run alone (locks, kills and file moves at moments in training: another test beside it on 2 cores shifts them)
. "$(dirname "$0")/lib.sh"
export LMGRID_THREADS=1
sqlv() { "$BIN" sql "$1" --db "$2" --format csv 2>/dev/null | tail -n +2; }
final_losses="SELECT group_concat(printf('%.17g', value), ' ') FROM (SELECT m.value FROM metrics m JOIN runs r ON r.id = m.run_id WHERE m.name = 'val/loss' AND r.experiment = 'faults' ORDER BY r.config_hash, m.step)"
dups="SELECT count(*) FROM (SELECT run_id, name, step, count(*) c FROM metrics GROUP BY 1,2,3 HAVING c > 1)"

# Under the sanitizers (LMGRID_SANITIZER_BUILD=1) a step is ~3x slower: 600 steps a run still
# leave each fault below (at step 200 or 300) inside training, in about the same time.
steps=$(sanitized_or 1500 600)
write_exp g.toml faults "steps = $steps
checkpoint_every = 100"
sed -i 's/^eval_every = 20$/eval_every = 500/; s/^log_every = 5$/log_every = 50/' g.toml
printf '[grid]\n"optim.lr" = [1e-3, 2e-3, 3e-3]\n' >>g.toml
"$BIN" run g.toml --db ref.db --workers 1 --no-report >ref.log 2>&1 || { fail "the reference grid"; cat ref.log; }
ref=$(sqlv "$final_losses" ref.db)

# 1. Locked past the busy timeout before the grid starts: exit 1, the lock and the file named,
#    nothing written.
write_exp other.toml other 'steps = 5'
"$BIN" run other.toml --db l.db --no-report >/dev/null 2>&1 || fail "locked: a first experiment in the database"
(echo "BEGIN IMMEDIATE;"; sleep 4; echo "COMMIT;") | sqlite3 l.db &
lock=$!
sleep 0.5
LMGRID_DB_TIMEOUT=1 expect_exit 1 "locked database: exit 1" -- "$BIN" run g.toml --db l.db --workers 1 --no-report
expect_out "another process held the database .*/l.db locked for more than 1 s \(LMGRID_DB_TIMEOUT" "says who holds it, for how long, and what sets the wait"
wait "$lock"
check "nothing was written (no run of the grid registered)" -- test "$(sqlv "SELECT count(*) FROM runs WHERE experiment = 'faults'" l.db)" = 0
# 1b. Locked mid-run: the run is interrupted (or left unrecorded), no new run starts; the rerun
#     finishes the grid with the uninterrupted losses.
LMGRID_DB_TIMEOUT=1 "$BIN" run g.toml --db l.db --workers 1 --no-report >l1.log 2>&1 &
host=$!
wait_ckpt l.db 2 200 || fail "locked mid-run: no checkpoint"  # run 1 is the other experiment's
(echo "BEGIN IMMEDIATE;"; sleep 5; echo "COMMIT;") | sqlite3 l.db &
lock=$!
wait "$host"
rc=$?
wait "$lock"
check "locked mid-run: the grid exits 1 ($rc)" -- test "$rc" = 1
grep -q "locked for more than 1 s" l1.log && pass "locked mid-run: the lock is named" || { fail "locked mid-run: no lock message"; cat l1.log; }
grep -qE "lmgrid: runtime error|lmgrid: run 2 failed" l1.log && { fail "locked mid-run: reported as an error of the run"; cat l1.log; }
grep -q "starting no new runs" l1.log && pass "locked mid-run: no new run is started" || { fail "locked mid-run: new runs started"; cat l1.log; }
check "locked mid-run: no run failed" -- test "$(sqlv "SELECT count(*) FROM runs WHERE status IN ('failed','diverged')" l.db)" = 0
"$BIN" run g.toml --db l.db --workers 1 --no-report >l2.log 2>&1 || { fail "locked mid-run: the rerun"; cat l2.log; }
check "locked mid-run: the rerun finishes the grid" -- test "$(sqlv "SELECT count(*) FROM runs WHERE status = 'done' AND experiment = 'faults'" l.db)" = 3
check "locked mid-run: no duplicated metric rows" -- test "$(sqlv "$dups" l.db)" = 0
check "locked mid-run: val losses equal the uninterrupted grid's" -- test -n "$ref" -a "$(sqlv "$final_losses" l.db)" = "$ref"

# 2. A read-only results folder (a tmpfs remounted read-only).
mkdir ro
if mount -t tmpfs -o size=16m tmpfs ro 2>mount.err; then
  trap 'umount "$WORK/ro" 2>/dev/null; rm -rf "$WORK"' EXIT
  cp ref.db ro/r.db
  sum=$(sha256sum ro/r.db)
  mount -o remount,ro ro
  expect_exit 1 "read-only folder, new database: exit 1" -- "$BIN" run g.toml --db ro/new.db --no-report
  expect_out "cannot write the database .*/ro/new.db: its folder .*/ro is not writable \(Read-only file system\)" "names the folder and the reason"
  check "no file was created" -- test ! -e ro/new.db
  expect_exit 1 "read-only folder, existing database: run exits 1" -- "$BIN" run g.toml --db ro/r.db --no-report
  expect_out "its folder .*/ro is not writable \(Read-only file system\)" "says why"
  expect_exit 0 "read-only folder: queries still work" -- "$BIN" runs --db ro/r.db
  expect_out "faults +done" "and list the runs"
  check "the database is unchanged" -- test "$(sha256sum ro/r.db)" = "$sum"
  umount ro
elif [ "${LMGRID_SKIP_MOUNT:-0}" = 1 ]; then
  echo "skipped: read-only folder (cannot mount a tmpfs: $(cat mount.err)); LMGRID_SKIP_MOUNT=1"
else
  fail "mount a tmpfs (needs root; LMGRID_SKIP_MOUNT=1 skips this part): $(cat mount.err)"
fi

# 3. A truncated and a corrupted database file: a clear message, nothing written to it.
cp ref.db t.db
truncate -s 8192 t.db
sum=$(sha256sum t.db)
expect_exit 2 "truncated database: exit 2" -- "$BIN" run g.toml --db t.db --no-report
expect_out "t.db is not an lmgrid database, or is corrupted \(database disk image is malformed\)" "says it is corrupted"
check "the truncated file is left as it was" -- test "$(sha256sum t.db)" = "$sum"
cp ref.db c.db
pages=$(($(stat -c %s c.db) / 4096))
dd if=/dev/urandom of=c.db bs=4096 seek=$((pages / 2)) count=2 conv=notrunc 2>/dev/null  # pages in the middle
sum=$(sha256sum c.db)
"$BIN" run g.toml --db c.db --no-report >c.log 2>&1
rc=$?
check "corrupted database: exit 1 or 2 ($rc)" -- test "$rc" = 1 -o "$rc" = 2
grep -qE "c.db is corrupted.*\.recover|c.db is not an lmgrid database, or is corrupted" c.log &&
  pass "corrupted database: says so and how to recover" || { fail "corrupted database: no message"; cat c.log; }
check "the corrupted file is left as it was" -- test "$(sha256sum c.db)" = "$sum"

# 4. Checkpoints deleted between a kill and the resume: the newest one (the run resumes from the
#    one before it), then all of them (from step 0); both end with the uninterrupted losses.
for what in newest all; do
  db=k_$what.db
  setsid "$BIN" run g.toml --db "$db" --workers 1 --no-report >"k_$what.log" 2>&1 &
  pid=$!
  wait_ckpt "$db" 1 300 || fail "$what: no checkpoint at step 300"
  kill -9 -- -"$pid" 2>/dev/null
  wait "$pid" 2>/dev/null
  steps=$(sqlv "SELECT group_concat(step, ' ') FROM (SELECT step FROM checkpoints WHERE run_id = 1 ORDER BY step)" "$db")
  if [ "$what" = newest ]; then
    f=$(sqlv "SELECT path FROM checkpoints WHERE run_id = 1 ORDER BY step DESC LIMIT 1" "$db")
    rm -f "$f"
    want="resuming from step ${steps%% *} "
  else
    rm -f runs/*/ckpt-*.lmck
    want=""
  fi
  "$BIN" run g.toml --db "$db" --workers 1 --no-report >"k2_$what.log" 2>&1 || { fail "$what deleted: the rerun"; cat "k2_$what.log"; }
  grep -q "missing" "k2_$what.log" && pass "$what deleted: the missing checkpoint is reported" ||
    { fail "$what deleted: not reported"; cat "k2_$what.log"; }
  if [ -n "$want" ]; then
    grep -q "$want" "k2_$what.log" && pass "$what deleted: resumed from the one before it (${steps%% *})" ||
      { fail "$what deleted: not resumed from ${steps%% *}"; cat "k2_$what.log"; }
  fi
  check "$what deleted: every run done" -- test "$(sqlv "SELECT count(*) FROM runs WHERE status = 'done'" "$db")" = 3
  check "$what deleted: no duplicated metric rows" -- test "$(sqlv "$dups" "$db")" = 0
  check "$what deleted: val losses equal the uninterrupted grid's" -- test "$(sqlv "$final_losses" "$db")" = "$ref"
  rm -rf runs
done

# 5. The data set file disappears mid-grid: the run that needs it is interrupted (not failed),
#    the grid starts no new run, and with the file back the rerun finishes the grid.
mkdir -p data/tinyshakespeare
IFS=: read -ra dirs <<<"$LMGRID_DATA_PATH"
for d in "${dirs[@]}"; do [ -f "$d/tinyshakespeare/input.txt" ] && cp "$d/tinyshakespeare/input.txt" data/tinyshakespeare/ && break; done
LMGRID_DATA_PATH=$WORK/data "$BIN" run g.toml --db d.db --workers 1 --no-report >d1.log 2>&1 &
host=$!
wait_ckpt d.db 1 200 || fail "data: no checkpoint"
mv data/tinyshakespeare/input.txt data/away.txt
wait "$host"
rc=$?
check "data gone: the grid exits 1 ($rc)" -- test "$rc" = 1
grep -q "data source 'tiny_shakespeare' not found" d1.log && pass "data gone: the missing source is named" ||
  { fail "data gone: no message"; cat d1.log; }
grep -q "starting no new runs" d1.log && pass "data gone: no new run is started" || { fail "data gone: runs started"; cat d1.log; }
check "data gone: run 1 (loaded before) is done, run 2 interrupted, run 3 not started" -- \
  test "$(sqlv "SELECT group_concat(status, ' ') FROM (SELECT status FROM runs ORDER BY id)" d.db)" = "done interrupted pending"
mv data/away.txt data/tinyshakespeare/input.txt
LMGRID_DATA_PATH=$WORK/data "$BIN" run g.toml --db d.db --workers 1 --no-report >d2.log 2>&1 || { fail "data back: the rerun"; cat d2.log; }
check "data back: every run done" -- test "$(sqlv "SELECT count(*) FROM runs WHERE status = 'done'" d.db)" = 3
check "data back: no duplicated metric rows" -- test "$(sqlv "$dups" d.db)" = 0
check "data back: val losses equal the uninterrupted grid's" -- test "$(sqlv "$final_losses" d.db)" = "$ref"
finish
