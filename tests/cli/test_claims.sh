# README claims no other test checks: Ctrl-C / SIGINT leaves a run interrupted and resumable
# (exit 130); --retry-failed starts from scratch; `lmgrid runs` filters (--where with every
# operator, --sort, -s, -e); `lmgrid data list|fetch`; and the trainer keys grad_accum,
# early_stop_patience, keep_checkpoints, clip, decay_steps and dtype do what they say.
# ctest: run alone (signals sent once a run has reached a step: another test beside it on 2 cores shifts them)
. "$(dirname "$0")/lib.sh"
export LMGRID_PLUGIN_PATH="$LMGRID_TEST_PLUGINS"
# arch/probe fails at its Nth training forward call; the batch split makes one call per part
# (and one more for its dropout probe), so whole batches keep "call N" at step N here.
export LMGRID_CPU_SPLIT=1

# q SQL DB: the rows of a query, one per line, no header.
q() { "$BIN" sql "$1" --db "$2" --format csv | tail -n +2; }
# same DESCRIPTION GOT WANT: string equality that shows both on failure.
same() { if [ "$2" = "$3" ]; then pass "$1"; else fail "$1: got '$2', wanted '$3'"; fi; }
# A path stored in the database, resolved as lmgrid does: absolute, or relative to the db's folder.
resolve() { case "$1" in /*) echo "$1" ;; *) echo "$(dirname "$2")/$1" ;; esac; }
# awk_true 'EXPRESSION' -v a=1 -v b=2: a numeric assertion, true when the expression holds.
# Every value must be non-empty (awk would read an empty one as 0).
awk_true() {
  local e=$1 a
  shift
  for a in "$@"; do case $a in *=) echo "awk_true: no value for ${a%=}"; return 1 ;; esac; done
  awk "$@" "BEGIN { exit !($e) }" </dev/null
}
# wait_for SQL DB: poll (up to 60 s) until the query returns a number >= 1.
wait_for() {
  local i n
  for i in $(seq 1 600); do
    n=$(q "$1" "$2" 2>/dev/null | tail -1)
    [ "${n:-0}" -ge 1 ] 2>/dev/null && return 0
    sleep 0.1
  done
  return 1
}

# --- Ctrl-C (SIGINT to the process group) and SIGINT to the host only -------------------------
# Run 1 trains 1000 steps (a few seconds), run 2 is short; the signal comes once run 1 has written
# its checkpoint of step 100, i.e. mid-training.
write_exp s.toml sigint 'checkpoint_every = 50'
cat >>s.toml <<'TOML'
[[variant]]
name = "long"
"train.steps" = 1000
[[variant]]
name = "short"
"train.steps" = 20
TOML
sigint_case() {  # sigint_case DB KILL-TARGET-PREFIX LABEL
  local db=$1 target=$2 label=$3 pid rc st ck ck_step watchdog
  # step (the step it stopped at) stays set for the caller
  setsid "$BIN" run s.toml --db "$db" >"$db.log1" 2>&1 &
  pid=$!
  (sleep 120 && kill -9 -- -"$pid") >/dev/null 2>&1 &  # a hung run fails the test, not ctest
  watchdog=$!
  wait_for "SELECT count(*) FROM checkpoints WHERE run_id = 1 AND step >= 100" "$db" || fail "$label: no checkpoint of step 100 appeared"
  kill -INT -- "$target$pid"
  wait "$pid"
  rc=$?
  kill "$watchdog" 2>/dev/null
  check "$label: lmgrid run exits 130 (got $rc)" -- test "$rc" = 130
  st=$(q "SELECT status FROM runs WHERE id = 1" "$db")
  step=$(q "SELECT step FROM runs WHERE id = 1" "$db")
  check "$label: the run is left interrupted (status '$st', step $step)" -- test "$st" = interrupted
  check "$label: it stopped mid-training (step $step of 1000)" -- test -n "$step" -a "${step:-1000}" -lt 1000
  check "$label: the next run was not started" -- test "$(q "SELECT status FROM runs WHERE id = 2" "$db")" = pending
  ck=$(q "SELECT path FROM checkpoints WHERE run_id = 1 ORDER BY step DESC LIMIT 1" "$db")
  ck_step=$(q "SELECT step FROM checkpoints WHERE run_id = 1 ORDER BY step DESC LIMIT 1" "$db")
  check "$label: its newest checkpoint is of the step it stopped at ($ck_step)" -- test -n "$ck_step" -a "$ck_step" = "$step"
  check "$label: that checkpoint file exists ($ck)" -- test -n "$ck" -a -s "$(resolve "$ck" "$db")"
}
sigint_case c.db - "Ctrl-C (process group)"
expect_exit 0 "after Ctrl-C, the same command again" -- "$BIN" run s.toml --db c.db
expect_out "run 1: resuming from step $step " "the interrupted run resumes from its checkpoint"
same "both runs end done, run 1 at step 1000" "$(q "SELECT group_concat(status || ':' || step, ' ') FROM runs" c.db)" "done:1000 done:20"
# `kill -INT <pid of lmgrid run>`: the host alone gets the signal.
sigint_case h.db "" "SIGINT to the host process"

# --- --retry-failed starts from scratch --------------------------------------------------------
# The run reads its text from a file (the path is in the config, the content is not), fails at its
# 25th forward after checkpoints at steps 10 and 20. For the retry the file is made too short, so
# the retried run fails while building its dataset, before its first step: whatever of the first
# attempt is still there at that point was not removed by the retry.
shakes=$("$BIN" data fetch tiny_shakespeare | cut -f1)
head -c 200000 "$shakes" >corpus.txt
write_exp rf.toml retry 'steps = 40'
sed -i "s|^source = .*|source = \"$WORK/corpus.txt\"|" rf.toml
cat >>rf.toml <<'TOML'
[[variant]]
name = "probe"
"model.plugin" = "probe"
"model.fail" = "throw_forward"
"model.fail_at" = 25
TOML
n_rows() { q "SELECT (SELECT count(*) FROM $1 WHERE run_id = 1)" rf.db; }
expect_exit 1 "a run that fails at forward 25" -- "$BIN" run rf.toml --db rf.db
same "it failed at forward 25" "$(q "SELECT status || '|' || error FROM runs" rf.db)" "failed|plugin arch/probe: probe failure requested at forward 25"
same "it has checkpoints of steps 10 and 20" "$(q "SELECT group_concat(step, ' ') FROM (SELECT step FROM checkpoints WHERE run_id = 1 ORDER BY step)" rf.db)" "10 20"
m1=$(n_rows metrics)
p1=$(n_rows plugins)
check "it has metrics ($m1 rows) and plugin rows ($p1)" -- test "${m1:-0}" -ge 10 -a "${p1:-0}" -ge 1
rundir=$(resolve "$(q "SELECT run_dir FROM runs WHERE id = 1" rf.db)" "$WORK/rf.db")
old_cks=$(for p in $(q "SELECT path FROM checkpoints WHERE run_id = 1" rf.db); do resolve "$p" "$WORK/rf.db"; done)
check "its run folder holds the checkpoint files" -- test -d "$rundir" -a "$(ls "$rundir"/ckpt-*.lmck | wc -l)" = 2
touch "$rundir/left-by-attempt-1"
# Control: without --retry-failed the failed run and all it left stay as they are.
expect_exit 1 "re-running without --retry-failed: the grid still has a failed run (exit 1)" -- "$BIN" run rf.toml --db rf.db
check "without --retry-failed: metrics, checkpoints and folder kept" -- test "$(n_rows metrics)" = "$m1" -a "$(n_rows checkpoints)" = 2 -a -e "$rundir/left-by-attempt-1"
printf 'too short' >corpus.txt
expect_exit 1 "--retry-failed, with data that fails the run before its first step" -- "$BIN" run rf.toml --db rf.db --retry-failed
same "the retried run failed building its dataset (so it never trained)" \
  "$(q "SELECT status || '|' || (error LIKE '%too few training tokens%') || '|' || step FROM runs" rf.db)" "failed|1|0"
check "the retry removed the old metric rows" -- test "$(n_rows metrics)" = 0
check "the retry removed the old checkpoint rows" -- test "$(n_rows checkpoints)" = 0
check "the retry removed the old plugin and summary rows" -- test "$(n_rows plugins)$(n_rows summaries)" = 00
gone=1
for f in $old_cks "$rundir/left-by-attempt-1"; do [ -e "$f" ] && gone=0 && echo "still there: $f"; done
check "the retry removed the old run folder (checkpoint files, the file put there)" -- test "$gone" = 1
head -c 200000 "$shakes" >corpus.txt
expect_exit 1 "--retry-failed with the data back: fails again at forward 25" -- "$BIN" run rf.toml --db rf.db --retry-failed
check "the retried run trained from step 0 (no resume)" -- test "$(grep -c 'resuming from step' out)" = 0
same "and failed where a fresh run fails" "$(q "SELECT error FROM runs" rf.db)" "plugin arch/probe: probe failure requested at forward 25"

# --- lmgrid runs: --where with each operator, --sort, -s, -e ----------------------------------
# qA: optim.lr 0.002, 0.001, 0.003 (ids 1-3, not in lr order); qB: optim.lr 0.005, a gpt run (4, done) and a probe
# run that fails at create (5, failed, no summaries).
write_exp qa.toml qA 'steps = 5
checkpoint_every = 5'
sed -i 's/^eval_every = .*/eval_every = 5/' qa.toml
printf '[grid]\n"optim.lr" = [2e-3, 1e-3, 3e-3]\n' >>qa.toml
write_exp qb.toml qB 'steps = 5
checkpoint_every = 5'
sed -i -e 's/^eval_every = .*/eval_every = 5/' -e 's/^lr = .*/lr = 5e-3/' qb.toml
cat >>qb.toml <<'TOML'
[[variant]]
name = "gpt"
[[variant]]
name = "probe"
"model.plugin" = "probe"
"model.fail" = "throw_create"
TOML
expect_exit 0 "experiment qA (3 runs)" -- "$BIN" run qa.toml --db q.db --no-report
expect_exit 1 "experiment qB (one done, one failed)" -- "$BIN" run qb.toml --db q.db --no-report
ids_are() {  # ids_are WANT DESCRIPTION -- runs options...
  local want=$1 what=$2 got
  shift 3
  got=$("$BIN" runs --db q.db --format csv "$@" | awk -F, 'NR == 1 { for (i = 1; i <= NF; i++) if ($i == "id") c = i; next } { print $c }' | paste -sd, -)
  if [ "$got" = "$want" ]; then pass "runs $*: $got"; else fail "runs $*: got '$got', wanted '$want'"; fi
}
ids_are "1,2,3,4,5" "all runs" --
ids_are "1" "=" -- --where optim.lr=0.002
ids_are "2,3,4,5" "!=" -- --where optim.lr!=0.002
ids_are "3,4,5" ">" -- --where 'optim.lr>0.002'
ids_are "2" "<" -- --where 'optim.lr<0.002'
ids_are "1,3,4,5" ">=" -- --where 'optim.lr>=0.002'
ids_are "1,2,3" "<=" -- --where 'optim.lr<=0.003'
ids_are "1,3" "two --where must both hold" -- --where 'optim.lr>=0.002' --where 'optim.lr<0.005'
ids_are "5" "~glob on a param" -- --where 'model.plugin~pr*'
ids_are "1,2,3,4" "~glob with ?" -- --where 'model.plugin~g?t'
ids_are "4,5" "~glob on a column" -- --where 'experiment~*B'
ids_are "1,2,3,4" "a summary key (the failed run has none)" -- --where 'best_val_loss<100'
ids_are "" "a summary key nothing satisfies" -- --where 'best_val_loss>100'
ids_are "5" "-s failed" -- -s failed
ids_are "1,2,3,4" "-s done" -- -s done
ids_are "1,2,3,4,5" "-s done -s failed" -- -s done -s failed
ids_are "4,5" "-e qB" -- -e qB
ids_are "1,2,3,4,5" "-e qA -e qB" -- -e qA -e qB
ids_are "1,3" "-e with --where" -- -e qA --where 'optim.lr>0.001'
ids_are "4" "-e with -s" -- -e qB -s done
ids_are "2,1,3,4,5" "--sort optim.lr (ascending)" -- --sort optim.lr
ids_are "4,5,3,1,2" "--sort -optim.lr (descending, ties in id order)" -- --sort -optim.lr
ids_are "5,4,3,2,1" "--sort -id" -- --sort -id
asc=$(q "SELECT group_concat(run_id, ' ') FROM (SELECT run_id FROM summaries WHERE key = 'best_val_loss' ORDER BY value, run_id)" q.db | tr ' ' ,)
desc=$(q "SELECT group_concat(run_id, ' ') FROM (SELECT run_id FROM summaries WHERE key = 'best_val_loss' ORDER BY value DESC, run_id)" q.db | tr ' ' ,)
check "four distinct best_val_loss values to sort ($asc)" -- test "$(q "SELECT count(DISTINCT value) FROM summaries WHERE key = 'best_val_loss'" q.db)" = 4
check "...in neither id order, so an ignored --sort shows" -- test -n "$asc" -a "$asc" != 1,2,3,4 -a "$asc" != 4,3,2,1
ids_are "$asc,5" "--sort best_val_loss (the run without one last)" -- --sort best_val_loss
ids_are "$desc,5" "--sort -best_val_loss (the run without one last)" -- --sort -best_val_loss

# --- lmgrid data list | data fetch -----------------------------------------------------------
want=""
IFS=: read -ra dirs <<<"${LMGRID_DATA_PATH:-}"
for d in "${dirs[@]}"; do [ -f "$d/tinyshakespeare/input.txt" ] && { want="$d/tinyshakespeare/input.txt"; break; }; done
check "LMGRID_DATA_PATH holds tinyshakespeare/input.txt ($want)" -- test -n "$want"
expect_exit 0 "data list" -- "$BIN" data list --format csv
expect_out "^tiny_shakespeare,1115394,.*,$want\$" "data list: tiny_shakespeare resolves into LMGRID_DATA_PATH"
expect_exit 0 "data list (again, for the group source)" -- "$BIN" data list --format csv
expect_out "^austen,4025029,.*,6 files in $(dirname "$(dirname "$want")")/austen\$" "data list: the austen group resolves to its 6 files"
expect_exit 0 "data fetch of a group source" -- "$BIN" data fetch austen
check "data fetch of a group verifies and lists each of its 6 files" -- test "$(grep -c "/austen/.*txt	[0-9a-f]\{64\}$" out)" = 6
expect_exit 0 "data fetch of a source present locally" -- "$BIN" data fetch tiny_shakespeare
check "data fetch says where it is and its (verified) sha256" -- test "$(cat out)" = "$want	$(sha256sum "$want" | cut -d' ' -f1)"
expect_exit 2 "data fetch of an unknown name" -- "$BIN" data fetch no_such_corpus
expect_out "'no_such_corpus' is neither a known source \(tiny_shakespeare, " "the message names it and the known sources"
mkdir -p empty
expect_exit 0 "data list with the source nowhere" -- env LMGRID_DATA_PATH="$WORK/empty" LMGRID_CACHE="$WORK/c2" "$BIN" data list --format csv
expect_out "^tiny_shakespeare,.*,\(missing\)$" "data list: a missing source says so"
expect_exit 2 "data fetch offline of a source that is nowhere" -- env LMGRID_DATA_PATH="$WORK/empty" LMGRID_CACHE="$WORK/c2" LMGRID_OFFLINE=1 "$BIN" data fetch tiny_shakespeare
expect_out "could not download it \(LMGRID_OFFLINE=1\)" "says it did not download"
expect_out "at $WORK/c2/tinyshakespeare/input.txt" "says where to put the file"
mkdir -p c2/tinyshakespeare && cp "$want" c2/tinyshakespeare/input.txt
expect_exit 0 "data fetch finds the source in the cache" -- env LMGRID_DATA_PATH="$WORK/empty" LMGRID_CACHE="$WORK/c2" LMGRID_OFFLINE=1 "$BIN" data fetch tiny_shakespeare
expect_out "^$WORK/c2/tinyshakespeare/input.txt	86c4e6aa" "it resolves to the cached file"
mkdir -p bad/tinyshakespeare && echo "not shakespeare" >bad/tinyshakespeare/input.txt
expect_exit 2 "data fetch of a local file with the wrong content" -- env LMGRID_DATA_PATH="$WORK/bad" "$BIN" data fetch tiny_shakespeare
expect_out "has sha256 [0-9a-f]{64}, expected 86c4e6aa" "the sha256 mismatch is named"

# --- trainer keys ----------------------------------------------------------------------------
write_exp k.toml keys 'steps = 40'
cat >>k.toml <<'TOML'
[[variant]]
name = "accum"
"train.steps" = 10
"train.batch_size" = 4
"train.grad_accum" = 3
[[variant]]
name = "patience"
"optim.lr" = 0.0
"train.steps" = 200
"train.eval_every" = 5
"train.early_stop_patience" = 3
[[variant]]
name = "keep"
"train.checkpoint_every" = 5
"train.keep_checkpoints" = 3
[[variant]]
name = "clip_tiny"
"train.clip" = 1e-9
"train.log_every" = 1
[[variant]]
name = "clip_off"
"train.clip" = 0.0
"train.log_every" = 1
[[variant]]
name = "decay"
"train.steps" = 30
"train.decay_steps" = 20
"train.lr_min" = 1e-4
"train.schedule" = "cosine"
"train.log_every" = 1
[[variant]]
name = "f32"
"train.steps" = 10
"train.log_every" = 1
"train.dtype" = "float32"
[[variant]]
name = "f64"
"train.steps" = 10
"train.log_every" = 1
"train.dtype" = "float64"
TOML
expect_exit 0 "the trainer-key grid" -- "$BIN" run k.toml --db k.db --no-report
rid() { q "SELECT id FROM runs WHERE variant = '$1'" k.db; }
# m VARIANT NAME STEP [COLUMN]: one metric value (17 digits) or its tokens column.
m() { q "SELECT printf('%.17g', ${4:-value}) FROM metrics WHERE run_id = $(rid "$1") AND name = '$2' AND step = $3" k.db; }
check "all 8 runs done" -- test "$(q "SELECT count(*) FROM runs WHERE status = 'done'" k.db)" = 8

# grad_accum: tokens = steps x batch_size x seq_len x grad_accum = 10 x 4 x 32 x 3.
tok=$(q "SELECT value FROM summaries WHERE run_id = $(rid accum) AND key = 'tokens'" k.db)
check "grad_accum: summary tokens = 10*4*32*3 = 3840 (got $tok)" -- awk_true 'a == 3840' -v a="$tok"
same "grad_accum: metric tokens at step 5 = 1920, at step 10 = 3840" "$(m accum train/loss 5 tokens),$(m accum train/loss 10 tokens)" "1920,3840"

# early_stop_patience: lr 0, so val/loss never improves after the first evaluation (step 5);
# 3 evaluations without improvement (10, 15, 20) stop the run at step 20.
r=$(rid patience)
same "early_stop_patience: the run stopped at step 20" "$(q "SELECT status || ':' || step FROM runs WHERE id = $r" k.db)" "done:20"
same "early_stop_patience: evaluations at 5,10,15,20, nothing logged after" \
  "$(q "SELECT group_concat(step, ' ') FROM (SELECT step FROM metrics WHERE run_id = $r AND name = 'val/loss' ORDER BY step)" k.db)|$(q "SELECT max(step) FROM metrics WHERE run_id = $r" k.db)" "5 10 15 20|20"
check "early_stop_patience: val/loss did not change with lr 0" -- test "$(q "SELECT count(DISTINCT value) FROM metrics WHERE run_id = $r AND name = 'val/loss'" k.db)" = 1
check "early_stop_patience: the last checkpoint is of step 20" -- test "$(q "SELECT max(step) FROM checkpoints WHERE run_id = $r" k.db)" = 20

# keep_checkpoints: checkpoints every 5 of 40 steps, keep 3: exactly 30, 35, 40, in rows and files.
r=$(rid keep)
same "keep_checkpoints: rows of steps 30,35,40 only" "$(q "SELECT group_concat(step, ' ') FROM (SELECT step FROM checkpoints WHERE run_id = $r ORDER BY step)" k.db)" "30 35 40"
kdir=$(resolve "$(q "SELECT run_dir FROM runs WHERE id = $r" k.db)" "$WORK/k.db")
same "keep_checkpoints: the run folder holds exactly those 3 files" "$(cd "$kdir" && ls ckpt-* | paste -sd' ' -)" "ckpt-00000030.lmck ckpt-00000035.lmck ckpt-00000040.lmck"
ok=1
for p in $(q "SELECT path FROM checkpoints WHERE run_id = $r" k.db); do [ -s "$(resolve "$p" "$WORK/k.db")" ] || ok=0; done
check "keep_checkpoints: each row's file exists" -- test "$ok" = 1

# clip: train/grad_norm is the norm before clipping (far above a clip of 1e-9, and at step 1 the
# same as without clipping); with the gradient clipped to 1e-9 AdamW's steps are ~lr*g/eps, so
# the loss stays where it started, while without clipping it falls.
gmin=$(q "SELECT min(value) FROM metrics WHERE run_id = $(rid clip_tiny) AND name = 'train/grad_norm'" k.db)
check "clip: recorded grad_norm is the pre-clip norm (min $gmin > 1000 x clip)" -- awk_true 'g > 1e-6' -v g="$gmin"
g1=$(m clip_tiny train/grad_norm 1)
g0=$(m clip_off train/grad_norm 1)
check "clip: step-1 grad_norm equals the unclipped run's ($g1 vs $g0)" -- awk_true '(a > b ? a - b : b - a) < 1e-6 * b && b > 0' -v a="$g1" -v b="$g0"
lt1=$(m clip_tiny train/loss 1)
lt40=$(m clip_tiny train/loss 40)
lo1=$(m clip_off train/loss 1)
lo40=$(m clip_off train/loss 40)
check "clip 1e-9: train loss stays put (step 1 $lt1, step 40 $lt40)" -- awk_true 'a - b < 0.02 && b - a < 0.02' -v a="$lt1" -v b="$lt40"
check "clip 0 (off): train loss falls clearly (step 1 $lo1, step 40 $lo40)" -- awk_true 'a - b > 0.3' -v a="$lo1" -v b="$lo40"

# decay_steps: cosine from 3e-3 to lr_min 1e-4 over updates 0..20 of 30. train/lr at step s is
# the rate of the s-th update (index s-1): lr_min from step 21 on, above it before, and half-way
# (index 10, step 11) 1e-4 + 0.5 * 2.9e-3.
r=$(rid decay)
check "decay_steps: train/lr logged at steps 1..30" -- test "$(q "SELECT count(*) FROM metrics WHERE run_id = $r AND name = 'train/lr'" k.db)" = 30
check "decay_steps: train/lr = lr_min at every step > decay_steps" -- test "$(q "SELECT count(*) FROM metrics WHERE run_id = $r AND name = 'train/lr' AND step > 20 AND abs(value - 1e-4) < 1e-12" k.db)" = 10
check "decay_steps: train/lr above lr_min at every step <= decay_steps" -- test "$(q "SELECT count(*) FROM metrics WHERE run_id = $r AND name = 'train/lr' AND step <= 20 AND value > 1e-4 + 1e-9" k.db)" = 20
lr11=$(m decay train/lr 11)
check "decay_steps: half-way through the decay the rate is 1.55e-3 (got $lr11)" -- awk_true 'x - 1.55e-3 < 1e-12 && 1.55e-3 - x < 1e-12' -v x="$lr11"

# dtype: float64 trains the same model in double precision: the first loss agrees with float32's
# to 1e-3 but not in every digit, and its checkpoint stores 8-byte instead of 4-byte numbers.
a=$(m f32 train/loss 1)
b=$(m f64 train/loss 1)
check "dtype: float64 and float32 step-1 losses agree to 1e-3 ($a vs $b)" -- awk_true 'a - b < 1e-3 && b - a < 1e-3' -v a="$a" -v b="$b"
check "dtype: ...but differ in the late digits" -- test -n "$a" -a "$a" != "$b"
a=$(m f32 train/loss 10)
b=$(m f64 train/loss 10)
check "dtype: step-10 losses still agree to 1e-2 ($a vs $b)" -- awk_true 'a - b < 1e-2 && b - a < 1e-2' -v a="$a" -v b="$b"
ck_size() { stat -c %s "$(resolve "$(q "SELECT path FROM checkpoints WHERE run_id = $(rid "$1") ORDER BY step DESC LIMIT 1" k.db)" "$WORK/k.db")"; }
s32=$(ck_size f32)
s64=$(ck_size f64)
np=$(q "SELECT value FROM summaries WHERE run_id = $(rid f64) AND key = 'n_params'" k.db)
# 4 more bytes per parameter at least (the parameters), at most 12 (and AdamW's two moments).
check "dtype: the float64 checkpoint is larger by 4-12 bytes per parameter ($s64 - $s32 bytes, $np parameters)" -- \
  awk_true 'b - a >= 0.99 * 4 * n && b - a <= 1.01 * 12 * n && n > 0' -v a="$s32" -v b="$s64" -v n="$np"
finish
