# Random kills: a grid of 12 tiny runs on 2 workers is SIGKILLed with its whole process group at
# random moments 6 times, and 2 more times one of its workers alone is SIGKILLed (then the host,
# once it has recorded that run as interrupted); then the grid is run to the end. Every run ends done exactly once (a run once done is never trained again), no
# metric row is lost or duplicated (each run's (metric, step) set is exactly the uninterrupted
# grid's), and the final losses equal the uninterrupted grid's to the last bit (one thread per
# run on both sides). The moments come from a seed printed first (KILL_SEED=S repeats them).
# ctest: run alone (kills at random moments: another test beside it on 2 cores shifts them)
. "$(dirname "$0")/lib.sh"
export LMGRID_THREADS=1
seed=${KILL_SEED:-$(( $(date +%s) % 100000 ))}
echo "# KILL_SEED=$seed"
RANDOM=$seed
# 4000 steps a run keep every kill moment inside training. Under the sanitizers
# (LMGRID_SANITIZER_BUILD=1, the first pass of .ci/run) a step is ~3x slower, so 1200 steps span
# about the same time and the test takes a third of it; the unsanitized pass runs all 4000.
steps=$(sanitized_or 4000 1200)
write_exp g.toml kills "steps = $steps
checkpoint_every = 100"
sed -i 's/^eval_every = 20$/eval_every = 500/; s/^log_every = 5$/log_every = 50/' g.toml
printf '[grid]\n"optim.lr" = [1e-3, 2e-3, 3e-3, 4e-3, 5e-3, 6e-3]\n"model.gpt.d_model" = [32, 48]\n' >>g.toml
sqlv() { "$BIN" sql "$1" --db g.db --format csv 2>/dev/null | tail -n +2; }
finished() { sqlv "SELECT group_concat(id || ':' || printf('%.6f', finished_at), ' ') FROM (SELECT id, finished_at FROM runs WHERE status = 'done' ORDER BY id)"; }

"$BIN" run g.toml --db ref.db --workers 2 --no-report >ref.log 2>&1 || { fail "uninterrupted reference grid"; cat ref.log; }

prev=""  # the done runs and their finishing times: none may change once done
kills=0 worker_kills=0
kinds=(host host worker host host worker host host)
for round in 1 2 3 4 5 6 7 8; do
  setsid "$BIN" run g.toml --db g.db --workers 2 --no-report >"r$round.log" 2>&1 &
  pid=$!
  if [ "${kinds[$((round - 1))]}" = host ]; then
    # the whole host: at a random moment from 0.3 s (before any run) to 2.3 s
    ms=$((300 + RANDOM % 2000))
    sleep "$(printf '%d.%03d' $((ms / 1000)) $((ms % 1000)))"
    kill -9 -- -"$pid" 2>/dev/null && kills=$((kills + 1))
    echo "# round $round: process group killed after $ms ms"
  else
    # one worker, a random moment after it has started; once the host has recorded its run as
    # interrupted, the host is killed too (else it would train the rest of the grid)
    for i in $(seq 1 200); do
      w=$(pgrep -P "$pid" -f "lmgrid worker" | head -1)
      [ -n "$w" ] && break
      sleep 0.05
    done
    ms=$((200 + RANDOM % 800))
    sleep "$(printf '%d.%03d' $((ms / 1000)) $((ms % 1000)))"
    if [ -n "$w" ] && kill -9 "$w" 2>/dev/null; then worker_kills=$((worker_kills + 1)); fi
    echo "# round $round: worker $w killed after $ms ms"
    for i in $(seq 1 100); do grep -q "interrupted: worker killed by SIGKILL" "r$round.log" && break; sleep 0.05; done
    grep -q "interrupted: worker killed by SIGKILL" "r$round.log" &&
      pass "round $round: the killed worker's run is interrupted, not failed" ||
      { fail "round $round: no interrupted run"; cat "r$round.log"; }
    kill -9 -- -"$pid" 2>/dev/null
  fi
  wait "$pid" 2>/dev/null
  now=$(finished)
  for entry in $prev; do
    case " $now " in *" $entry "*) ;; *) fail "round $round: done run ${entry%%:*} changed ($entry)" ;; esac
  done
  prev=$now
done
check "6 host kills and 2 worker kills happened ($kills, $worker_kills)" -- test "$kills" = 6 -a "$worker_kills" = 2
failed=$(sqlv "SELECT count(*) FROM runs WHERE status IN ('failed', 'diverged')")
check "no kill was recorded as a failure of a run ($failed)" -- test "$failed" = 0

"$BIN" run g.toml --db g.db --workers 2 --no-report >last.log 2>&1 || { fail "the last run of the grid"; cat last.log; }
check "every run is done (12)" -- test "$(sqlv "SELECT count(*) FROM runs WHERE status = 'done'")" = 12
for entry in $prev; do
  case " $(finished) " in *" $entry "*) ;; *) fail "done run ${entry%%:*} was trained again" ;; esac
done
pass "no run done before the last invocation was trained again"
steps="SELECT group_concat(k, ' ') FROM (SELECT r.config_hash || '/' || m.name || '/' || m.step AS k FROM metrics m JOIN runs r ON r.id = m.run_id ORDER BY k)"
check "each run's (metric, step) rows are exactly the uninterrupted grid's" -- \
  test "$(sqlv "$steps")" = "$("$BIN" sql "$steps" --db ref.db --format csv | tail -n +2)"
dups=$(sqlv "SELECT count(*) FROM (SELECT run_id, name, step, count(*) c FROM metrics GROUP BY 1,2,3 HAVING c > 1)")
check "no duplicated metric rows ($dups)" -- test "$dups" = 0
q="SELECT group_concat(printf('%.17g', m.value), ' ') FROM (SELECT m.value FROM metrics m JOIN runs r ON r.id = m.run_id WHERE m.name IN ('train/loss', 'val/loss') ORDER BY r.config_hash, m.name, m.step) m"
check "every train and val loss equals the uninterrupted grid's" -- \
  test "$(sqlv "$q")" = "$("$BIN" sql "$q" --db ref.db --format csv | tail -n +2)"
finish
