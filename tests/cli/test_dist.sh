# Data parallel on torch c10d (Gloo on loopback): 2 ranks with the global batch split equal one
# process on the whole batch; a killed or hung rank ends the run `interrupted` within the
# timeout, the grid goes on, and the rerun resumes it exactly; torchrun's variables work; bad
# launch settings exit 2 before anything is written.
# ctest: run alone (ranks killed and hung, deadlines: another test beside it on 2 cores shifts them)
. "$(dirname "$0")/lib.sh"
export LMGRID_THREADS=1
export LMGRID_DIST_TIMEOUT=8

# max |a - b| over the (step, value) rows of one metric in two databases
max_diff() {  # max_diff NAME DB1 DB2 [RUN]
  local q="SELECT step, printf('%.17g', value) FROM metrics WHERE name = '$1' AND run_id = ${4:-1} ORDER BY step"
  join -t, <("$BIN" sql "$q" --db "$2" --format csv | tail -n +2) <("$BIN" sql "$q" --db "$3" --format csv | tail -n +2) |
    awk -F, '{d = $2 - $3; if (d < 0) d = -d; if (d > m) m = d; n++} END {if (n == 0) print "none"; else printf "%.3g %d\n", m, n}'
}
# setkey FILE KEY VALUE: a [train] key replaced or added
setkey() { if grep -q "^$2 = " "$1"; then sed -i "s/^$2 = .*/$2 = $3/" "$1"; else sed -i "s/^\[train\]$/[train]\n$2 = $3/" "$1"; fi; }
# wait_checkpoint DB MIN_STEP: until run 1 of DB has a checkpoint at MIN_STEP or later (60 s at most)
wait_checkpoint() {
  local c i
  for i in $(seq 1 600); do
    c=$("$BIN" sql "SELECT count(*) FROM checkpoints WHERE run_id = 1 AND step >= $2" --db "$1" --format csv 2>/dev/null | tail -1)
    [ "${c:-0}" -ge 1 ] && return
    sleep 0.1
  done
}
status_of() { "$BIN" sql "SELECT status FROM runs WHERE id = $2" --db "$1" --format csv | tail -n +2; }
error_of() { "$BIN" sql "SELECT error FROM runs WHERE id = $2" --db "$1" --format csv | tail -n +2; }

# 1. Equivalence over 50 steps: 1 process with batch 8 vs 2 ranks with 4 rows each.
for dtype in float32 float64; do
  write_exp "eq_$dtype.toml" "eq_$dtype" 'steps = 50'
  setkey "eq_$dtype.toml" log_every 1
  setkey "eq_$dtype.toml" eval_every 25
  setkey "eq_$dtype.toml" dtype "\"$dtype\""
  sed -i 's/^d_model = 32$/d_model = 32\ndropout = 0.0/' "eq_$dtype.toml"
  "$BIN" run "eq_$dtype.toml" --db "one_$dtype.db" >/dev/null 2>&1 || fail "$dtype: 1 process"
  expect_exit 0 "$dtype: --nproc 2 trains" -- "$BIN" run "eq_$dtype.toml" --db "two_$dtype.db" --nproc 2
  read -r d n <<<"$(max_diff train/loss "one_$dtype.db" "two_$dtype.db")"
  tol=1e-5
  [ "$dtype" = float64 ] && tol=1e-10
  check "$dtype: 2 ranks x 4 rows = 1 process x 8 rows, train loss over $n steps (max |diff| $d <= $tol)" -- \
    awk -v d="$d" -v n="$n" -v t="$tol" 'BEGIN {exit !(n == 50 && d <= t)}'
  read -r d n <<<"$(max_diff val/loss "one_$dtype.db" "two_$dtype.db")"
  check "$dtype: val loss too ($n evals, max |diff| $d)" -- awk -v d="$d" -v n="$n" -v t="$tol" 'BEGIN {exit !(n == 2 && d <= t)}'
done
# Gradient accumulation: 2 micro-batches per step, only the last one's backward all-reduces.
cp eq_float64.toml acc.toml
sed -i 's/^name = .*/name = "acc"/' acc.toml
setkey acc.toml grad_accum 2
setkey acc.toml steps 20
"$BIN" run acc.toml --db acc1.db >/dev/null 2>&1 || fail "grad_accum: 1 process"
"$BIN" run acc.toml --db acc2.db --nproc 2 >/dev/null 2>&1 || fail "grad_accum: 2 ranks"
read -r d n <<<"$(max_diff train/loss acc1.db acc2.db)"
check "float64, grad_accum 2: 2 ranks = 1 process ($n steps, max |diff| $d <= 1e-10)" -- \
  awk -v d="$d" -v n="$n" 'BEGIN {exit !(n == 20 && d <= 1e-10)}'
ws=$("$BIN" sql "SELECT value FROM summaries WHERE run_id = 1 AND key = 'world_size'" --db two_float32.db --format csv | tail -n +2)
check "the run records its world size ($ws)" -- test "$ws" = "2.0" -o "$ws" = "2"

# 2. A 2-run grid; rank 1 of run 1 is SIGKILLed after the step-100 checkpoint.
write_exp k.toml kill 'steps = 300
checkpoint_every = 50'
setkey k.toml log_every 10
printf '[grid]\n"optim.lr" = [3e-3, 2e-3]\n' >>k.toml
"$BIN" run k.toml --db ref.db --nproc 2 >/dev/null 2>&1 || fail "reference grid"
setsid "$BIN" run k.toml --db k.db --nproc 2 >k1.log 2>&1 &
pid=$!
wait_checkpoint k.db 100
victim=$(pgrep -f -- "--follow --dist-prefix run1$")
check "rank 1 of run 1 found (pid $victim)" -- test -n "$victim"
t0=$(date +%s)
kill -9 $victim
while [ "$(status_of k.db 1)" = running ] && [ $(($(date +%s) - t0)) -lt 60 ]; do sleep 0.1; done
t1=$(date +%s)
wait "$pid"
rc=$?
check "the run ended $((t1 - t0)) s after its rank was killed (timeout $LMGRID_DIST_TIMEOUT s)" -- test $((t1 - t0)) -le $((LMGRID_DIST_TIMEOUT + 2))
check "killed rank: run 1 interrupted ($(status_of k.db 1))" -- test "$(status_of k.db 1)" = interrupted
err=$(error_of k.db 1)
check "the error names the rank and how it died: $err" -- grep -q "rank 1 of 2: worker killed by SIGKILL" <<<"$err"
check "the grid went on: run 2 done" -- test "$(status_of k.db 2)" = done
check "the grid exits 1 (a run is unfinished): $rc" -- test "$rc" = 1
grep -q "interrupted.*run the same command again" k1.log && pass "the grid says how to resume" || { fail "no resume hint"; cat k1.log; }
"$BIN" run k.toml --db k.db --nproc 2 >k2.log 2>&1 || { fail "rerun"; cat k2.log; }
grep -q "run 1: resuming from step" k2.log && pass "the rerun resumes run 1 from a checkpoint" || { fail "no resume"; cat k2.log; }
check "run 1 done after the rerun" -- test "$(status_of k.db 1)" = done
read -r d n <<<"$(max_diff train/loss k.db ref.db)"
check "resumed run: train loss series equals the uninterrupted run's ($n points, max |diff| $d)" -- test "$d" = 0 -a "$n" = 30
read -r d n <<<"$(max_diff val/loss k.db ref.db)"
check "resumed run: val loss equals the uninterrupted run's (max |diff| $d)" -- test "$d" = 0
dups=$("$BIN" sql "SELECT count(*) FROM (SELECT run_id, name, step, count(*) c FROM metrics GROUP BY 1,2,3 HAVING c > 1)" --db k.db --format csv | tail -1)
check "no duplicated metric rows ($dups)" -- test "$dups" = 0

# 3. A hung rank (SIGSTOP): rank 0 gives up after the timeout.
write_exp h.toml hang 'steps = 2000
checkpoint_every = 50'
setsid "$BIN" run h.toml --db h.db --nproc 2 >h.log 2>&1 &
pid=$!
wait_checkpoint h.db 0
victim=$(pgrep -f -- "--follow --dist-prefix run1$")
t0=$(date +%s)
kill -STOP $victim
while [ "$(status_of h.db 1)" = running ] && [ $(($(date +%s) - t0)) -lt 60 ]; do sleep 0.2; done
t1=$(date +%s)
wait "$pid"  # the supervisor stops the hung rank itself (SIGTERM, then SIGKILL after 5 s)
t2=$(date +%s)
check "hung rank: the grid ended $((t2 - t1)) s after the run (the hung rank was stopped)" -- test $((t2 - t1)) -le 8
check "hung rank: no process left" -- test -z "$(pgrep -f -- "--follow --dist-prefix run1$")"
check "hung rank: run interrupted after $((t1 - t0)) s (timeout $LMGRID_DIST_TIMEOUT s)" -- \
  test "$(status_of h.db 1)" = interrupted -a $((t1 - t0)) -ge $((LMGRID_DIST_TIMEOUT - 1)) -a $((t1 - t0)) -le $((LMGRID_DIST_TIMEOUT + 5))
err=$(error_of h.db 1)
check "hung rank: the error says it timed out, not that lmgrid's own stop killed it ($(cut -c1-160 <<<"$err"))" -- \
  test -n "$(grep -i "timed out" <<<"$err")" -a -z "$(grep "killed" <<<"$err")"

# 4. torchrun's variables: two `lmgrid run` processes, rank 0 with the database.
port=$((20000 + RANDOM % 20000))
export WORLD_SIZE=2 MASTER_ADDR=127.0.0.1 MASTER_PORT=$port
RANK=1 LOCAL_RANK=1 "$BIN" run eq_float32.toml >r1.log 2>&1 &
p1=$!
RANK=0 LOCAL_RANK=0 "$BIN" run eq_float32.toml --db launcher.db >r0.log 2>&1
rc0=$?
wait $p1
rc1=$?
unset WORLD_SIZE MASTER_ADDR MASTER_PORT
check "launcher mode: rank 0 and rank 1 exit 0 ($rc0, $rc1)" -- test "$rc0" = 0 -a "$rc1" = 0 || { cat r0.log r1.log; }
read -r d n <<<"$(max_diff train/loss launcher.db two_float32.db)"
check "launcher mode: the same loss series as --nproc 2 ($n points, max |diff| $d)" -- test "$d" = 0 -a "$n" = 50
check "launcher mode: rank 1 wrote no database" -- test ! -e results/lmgrid.db

# GLOO_SOCKET_IFNAME picks Gloo's interface (here the loopback one).
GLOO_SOCKET_IFNAME=lo "$BIN" run eq_float32.toml --db ifname.db --nproc 2 >ifname.log 2>&1 || { fail "GLOO_SOCKET_IFNAME=lo"; cat ifname.log; }
read -r d n <<<"$(max_diff train/loss ifname.db two_float32.db)"
check "GLOO_SOCKET_IFNAME=lo: the same loss series ($n points, max |diff| $d)" -- test "$d" = 0 -a "$n" = 50

# 5. Bad launch settings: exit 2, nothing written.
write_exp odd.toml odd
setkey odd.toml batch_size 7
expect_exit 2 "batch_size 7 over 2 ranks" -- "$BIN" run odd.toml --db odd.db --nproc 2
expect_out "batch_size = 7 does not split over 2 data-parallel ranks" "the error names the key and the ranks"
check "nothing written" -- test ! -e odd.db
expect_exit 2 "RANK >= WORLD_SIZE" -- env WORLD_SIZE=2 RANK=2 MASTER_PORT=1 "$BIN" run eq_float32.toml --db bad.db
expect_out "RANK=2 but WORLD_SIZE=2" "the error names the variables"
expect_exit 2 "WORLD_SIZE without MASTER_PORT" -- env WORLD_SIZE=2 RANK=0 "$BIN" run eq_float32.toml --db bad.db
expect_exit 2 "--nproc under a launcher" -- env WORLD_SIZE=2 RANK=0 MASTER_PORT=1 "$BIN" run eq_float32.toml --db bad.db --nproc 2
expect_exit 2 "a malformed LMGRID_DIST_TIMEOUT" -- env LMGRID_DIST_TIMEOUT=soon "$BIN" run eq_float32.toml --db bad.db --nproc 2
expect_out "LMGRID_DIST_TIMEOUT=soon" "the error names the variable"
check "no database from bad launch settings" -- test ! -e bad.db
finish
