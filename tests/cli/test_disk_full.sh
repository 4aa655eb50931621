# A disk that fills mid-grid (a small tmpfs under the database and run files): the run that hits
# it ends `interrupted` with the system's reason, the grid starts no new run and says so, nothing
# finished is lost; with space back, the same command finishes the grid (no run failed, no metric
# row duplicated). Needs root for mount (CI runs as root); LMGRID_SKIP_MOUNT=1 skips it.
. "$(dirname "$0")/lib.sh"
export LMGRID_THREADS=1
mkdir disk
if ! mount -t tmpfs -o size=2500k tmpfs disk 2>mount.err; then
  if [ "${LMGRID_SKIP_MOUNT:-0}" = 1 ]; then
    echo "skipped: cannot mount a tmpfs ($(cat mount.err)); LMGRID_SKIP_MOUNT=1"
    finish
    exit $?
  fi
  fail "mount a 2.5 MB tmpfs (needs root; LMGRID_SKIP_MOUNT=1 skips this test): $(cat mount.err)"
  finish
  exit 1
fi
trap 'umount "$WORK/disk" 2>/dev/null; rm -rf "$WORK"' EXIT

write_exp g.toml full 'steps = 60
checkpoint_every = 20'
printf '[grid]\n"optim.lr" = [1e-3, 2e-3, 3e-3, 4e-3, 5e-3, 6e-3, 7e-3, 8e-3]\n' >>g.toml
count() { "$BIN" sql "SELECT count(*) FROM runs WHERE status = '$1'" --db disk/g.db --format csv | tail -1; }

"$BIN" run g.toml --db disk/g.db --no-report >run1.log 2>&1
rc=$?
check "the grid on a full disk exits 1 ($rc)" -- test "$rc" = 1
grep -q "starting no new runs" run1.log && pass "the grid says it starts no new runs" || { fail "no 'starting no new runs'"; cat run1.log; }
grep -qE "No space left on device|database or disk is full" run1.log && pass "the system's reason is shown" || { fail "no ENOSPC text"; cat run1.log; }
done1=$(count done) int1=$(($(count interrupted) + $(count running))) failed1=$(count failed) pending1=$(count pending)
check "some runs finished before the disk filled ($done1 done)" -- test "$done1" -ge 1
# `running` where even its end could not be written (the database is on the full disk too)
check "the run that hit it is interrupted, not failed ($int1 interrupted or unrecorded, $failed1 failed)" -- test "$int1" -ge 1 -a "$failed1" = 0
check "later runs were not started ($pending1 pending)" -- test "$pending1" -ge 1
err=$("$BIN" sql "SELECT error FROM runs WHERE status = 'interrupted' LIMIT 1" --db disk/g.db --format csv | tail -n +2)
if [ -n "$err" ]; then
  check "its error names the cause ($(cut -c1-120 <<<"$err"))" -- grep -qE "No space left on device|database or disk is full" <<<"$err"
fi
check "no half-written temporary file left" -- test -z "$(find disk -name '*.tmp.*')"
done_at=$("$BIN" sql "SELECT group_concat(id || ':' || finished_at, ' ') FROM runs WHERE status = 'done'" --db disk/g.db --format csv | tail -1)

mount -o remount,size=64m disk || fail "remount with space"
"$BIN" run g.toml --db disk/g.db --no-report >run2.log 2>&1 || { fail "rerun with space back"; cat run2.log; }
check "with space back, every run is done ($(count done) of 8)" -- test "$(count done)" = 8
done_after=$("$BIN" sql "SELECT group_concat(id || ':' || finished_at, ' ') FROM runs WHERE id IN ($(sed "s/:[^ ]*//g; s/ /,/g; s/\"//g" <<<"$done_at"))" --db disk/g.db --format csv | tail -1)
check "the runs done before were not repeated" -- test -n "$done_at" -a "$done_at" = "$done_after"
dups=$("$BIN" sql "SELECT count(*) FROM (SELECT run_id, name, step, count(*) c FROM metrics GROUP BY 1,2,3 HAVING c > 1)" --db disk/g.db --format csv | tail -1)
check "no duplicated metric rows ($dups)" -- test "$dups" = 0
# The interrupted run ends as it would have uninterrupted.
"$BIN" run g.toml --db ref.db --no-report >/dev/null 2>&1 || fail "reference grid"
q="SELECT group_concat(printf('%.17g', value), ' ') FROM (SELECT m.value FROM metrics m JOIN runs r ON r.id = m.run_id WHERE m.name = 'val/loss' ORDER BY r.config_hash, m.step)"
check "final val losses of all 8 runs equal an uninterrupted grid's" -- \
  test "$("$BIN" sql "$q" --db disk/g.db --format csv | tail -1)" = "$("$BIN" sql "$q" --db ref.db --format csv | tail -1)"
finish
