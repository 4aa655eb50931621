# Concurrent hosts: two `lmgrid run` of the same grid on the same database at the same time train
# each run exactly once between them, and both exit 0 with the grid complete (the one that runs out
# of runs to claim waits for the other's, and says so). Then a third host joins while one is
# killed: it takes the dead host's run over, and the grid still ends complete with every run once.
# ctest: run alone (hosts started side by side and timed against each other: another test beside it on 2 cores shifts them)
. "$(dirname "$0")/lib.sh"
export LMGRID_THREADS=1
write_exp g.toml concurrent 'steps = 40'
printf '[grid]\n"optim.lr" = [1e-3, 2e-3, 3e-3, 4e-3, 5e-3, 6e-3]\n' >>g.toml

"$BIN" run g.toml --db g.db --workers 1 --no-report >a.log 2>&1 &
pa=$!
"$BIN" run g.toml --db g.db --workers 1 --no-report >b.log 2>&1 &
pb=$!
wait "$pa"
ra=$?
wait "$pb"
rb=$?
check "first host exits 0 ($ra)" -- test "$ra" = 0
check "second host exits 0 ($rb)" -- test "$rb" = 0
[ "$ra" = 0 ] && [ "$rb" = 0 ] || { cat a.log b.log; }
done_n=$("$BIN" sql "SELECT count(*) FROM runs WHERE status = 'done'" --db g.db --format csv | tail -1)
check "the grid is complete when both have returned ($done_n of 6 done)" -- test "$done_n" = 6
# Every run's first progress line ("run N step 5/40") is printed by the host whose worker trained it:
# a run trained by both hosts, or twice by one, would print it twice.
for id in 1 2 3 4 5 6; do
  n=$(cat a.log b.log | grep -c "^run $id step 5/40 ")
  check "run $id was trained exactly once ($n times)" -- test "$n" = 1
done
na=$(grep -c "step 5/40 " a.log) nb=$(grep -c "step 5/40 " b.log)
echo "# the first host trained $na runs, the second $nb"
dups=$("$BIN" sql "SELECT count(*) FROM (SELECT run_id, name, step, count(*) c FROM metrics GROUP BY 1,2,3 HAVING c > 1)" --db g.db --format csv | tail -1)
check "no duplicated metric rows ($dups)" -- test "$dups" = 0
# The same grid on one host alone ends with the same losses (one thread per run on both sides).
"$BIN" run g.toml --db ref.db --workers 1 --no-report >/dev/null 2>&1 || fail "reference grid"
q="SELECT group_concat(printf('%.17g', value), ' ') FROM (SELECT m.value FROM metrics m JOIN runs r ON r.id = m.run_id WHERE m.name = 'val/loss' ORDER BY r.config_hash, m.step)"
v1=$("$BIN" sql "$q" --db g.db --format csv | tail -n +2) v2=$("$BIN" sql "$q" --db ref.db --format csv | tail -n +2)
check "val losses equal those of one host alone" -- test -n "$v1" -a "$v1" = "$v2"

# A host that waits for another's run takes it over when that host dies: host C trains a long
# run, host D finds nothing to claim and waits; C's process group is killed; D resumes the run.
write_exp w.toml takeover 'steps = 3000
checkpoint_every = 100'
sed -i 's/^eval_every = 20$/eval_every = 500/' w.toml
setsid "$BIN" run w.toml --db w.db --no-report >c.log 2>&1 &
pc=$!
wait_ckpt w.db 1 1 || fail "takeover: no checkpoint"
"$BIN" run w.toml --db w.db --no-report >d.log 2>&1 &
pd=$!
for i in $(seq 1 100); do grep -qs "waiting for 1 run" d.log && break; sleep 0.1; done
grep -q "waiting for 1 run that another lmgrid process on this host is training (run 1)" d.log &&
  pass "the second host says it waits for the first's run" || { fail "no waiting message"; cat d.log; }
kill -9 -- -"$pc" 2>/dev/null
wait "$pc" 2>/dev/null
wait "$pd"
rd=$?
check "the waiting host exits 0 after taking the run over ($rd)" -- test "$rd" = 0
grep -q "resuming from step" d.log && pass "it resumed the dead host's run from its checkpoint" || { fail "no resume"; cat d.log; }
check "the run is done" -- test "$("$BIN" sql "SELECT status FROM runs WHERE id = 1" --db w.db --format csv | tail -1)" = done
finish
