# lmgrid slurm: the sbatch array script (its #SBATCH lines, absolute paths, shell quoting of --set
# values, bad input writing nothing, --submit without sbatch), then a REAL Slurm on this machine:
# munged, slurmctld and slurmd configured for localhost under the scratch folder, a 4-run grid
# submitted as an array of 2 tasks, the shard databases merged into 4 done runs (merging again
# changes nothing) and reported; data-parallel jobs: `--nodes 1 --ntasks-per-node 2` (srun's two
# tasks one 2-rank group) and `--nproc 2 --array 2`, both with the loss series of a local
# `lmgrid run --nproc 2`. Slurm missing (slurm-wlm, munge: tools/setup.sh test installs them)
# fails the test; LMGRID_SKIP_SLURM=1 skips the real-Slurm part only.
# ctest: run alone (a real Slurm, jobs cancelled mid-run, deadlines: another test beside it on 2 cores shifts them)
. "$(dirname "$0")/lib.sh"
q() { "$BIN" sql "$1" --db "$2" --format csv | tail -n +2; }
same() { if [ "$2" = "$3" ]; then pass "$1"; else fail "$1: got '$2', wanted '$3'"; fi; }
BIN_ABS=$(readlink -f "$BIN")

cat >g.toml <<'TOML'
[experiment]
name = "slurm-grid"
seeds = [1, 2]
[data]
plugin = "text"
source = "tiny_shakespeare"
seq_len = 32
[tokenizer]
plugin = "char"
[model]
plugin = "gpt"
[model.gpt]
n_layer = 1
n_head = 2
d_model = 16
[optim]
plugin = "adamw"
[train]
steps = 20
batch_size = 4
eval_every = 10
eval_batches = 2
log_every = 5
checkpoint_every = 10
[grid]
"optim.lr" = [3e-3, 1e-3]
TOML

# --- bad input writes nothing ----------------------------------------------------------------------
sed 's/n_layer = 1/n_layr = 1/' g.toml >bad.toml
expect_exit 2 "a grid with an unknown key" -- "$BIN" slurm bad.toml
expect_out "n_layr" "the message names the key"
expect_exit 2 "--array 0" -- "$BIN" slurm g.toml --array 0
expect_out "--array" "the message names --array"
expect_exit 2 "a bad --time" -- "$BIN" slurm g.toml --time "ten minutes"
expect_out "--time 'ten minutes'" "the message names --time"
expect_exit 2 "a --partition that would inject an #SBATCH line" -- "$BIN" slurm g.toml --partition $'a\n#SBATCH --x'
expect_exit 2 "a bad --gpus" -- "$BIN" slurm g.toml --gpus many
mkdir empty-path
expect_exit 2 "--submit with no sbatch on PATH" -- env PATH="$WORK/empty-path" "$BIN" slurm g.toml --submit
expect_out "sbatch not found" "the message says sbatch is missing"
expect_exit 2 "--nproc 3 with batch_size 4 (as lmgrid run --nproc 3)" -- "$BIN" slurm g.toml --nproc 3
expect_out "batch_size = 4 does not split over 3 data-parallel ranks" "the message names the key and the ranks"
expect_exit 2 "--nodes 2 --ntasks-per-node 3 (6 ranks, batch_size 4)" -- "$BIN" slurm g.toml --nodes 2 --ntasks-per-node 3
expect_out "does not split over 6 data-parallel ranks" "the message names the 6 ranks"
expect_exit 2 "--nodes with --array" -- "$BIN" slurm g.toml --nodes 2 --array 2
expect_out "--nodes and --array together" "the message names both"
expect_exit 2 "--nodes 1 --ntasks-per-node 1 (one rank)" -- "$BIN" slurm g.toml --nodes 1
expect_out "at least 2 ranks" "the message says why"
expect_exit 2 "--nproc 2 with --nodes" -- "$BIN" slurm g.toml --nodes 2 --nproc 2
expect_exit 2 "--ntasks-per-node without --nodes" -- "$BIN" slurm g.toml --ntasks-per-node 2
expect_exit 2 "--master-port without --nodes" -- "$BIN" slurm g.toml --master-port 29600
expect_exit 2 "--master-port 70000" -- "$BIN" slurm g.toml --nodes 2 --master-port 70000
check "bad input wrote nothing (no results/)" -- test ! -e results

# --- the script ------------------------------------------------------------------------------------
desc="it's a \"quoted\" \$HOME \`x\` value"
expect_exit 0 "lmgrid slurm writes the script" -- "$BIN" slurm g.toml --array 2 --partition debug --time 0:10:00 \
  --gpus 1 --cpus 1 --set "experiment.description=$desc"
script="$WORK/results/slurm/slurm-grid.sbatch"
expect_out "^$script\$" "it prints the script's path"
expect_out "4 runs in 2 tasks" "and how the runs fall into the tasks"
check "the script exists" -- test -s "$script"
for line in '#SBATCH --array=0-1' '#SBATCH --partition=debug' '#SBATCH --time=0:10:00' '#SBATCH --gpus=1' \
  '#SBATCH --cpus-per-task=1' "#SBATCH --output=$WORK/results/slurm/slurm-grid.%A_%a.out"; do
  check "script line: $line" -- grep -qxF -- "$line" "$script"
done
check "the script is valid bash" -- bash -n "$script"
check "it runs the absolute binary on the absolute file, shard \$SLURM_ARRAY_TASK_ID/2, into results/shards/" -- \
  grep -qF "exec $BIN_ABS run $WORK/g.toml --shard \"\$SLURM_ARRAY_TASK_ID\"/2 --db $WORK/results/shards/slurm-grid.\"\$SLURM_ARRAY_TASK_ID\".db" "$script"
check "it exports LMGRID_DATA_PATH" -- grep -qxF "export LMGRID_DATA_PATH=$(realpath -m -s "$LMGRID_DATA_PATH")" "$script"
expect_exit 0 "without --array" -- env LMGRID_PLUGIN_PATH=plugins-here "$BIN" slurm g.toml
check "the default array is one task per run, at most 8 (4 here)" -- grep -qxF '#SBATCH --array=0-3' "$script"
check "a relative LMGRID_PLUGIN_PATH is exported absolute" -- grep -qxF "export LMGRID_PLUGIN_PATH=$WORK/plugins-here" "$script"
expect_exit 2 "run outside sbatch (no SLURM_ARRAY_TASK_ID), the script refuses" -- bash "$script"
expect_out "SLURM_ARRAY_TASK_ID" "saying why"

# --nproc K: each task runs its shard on K ranks; --cpus C shared by them (LMGRID_THREADS = C / K).
expect_exit 0 "--nproc 2 --cpus 3" -- env -u LMGRID_THREADS "$BIN" slurm g.toml --array 2 --nproc 2 --cpus 3
expect_out "each run on 2 data-parallel ranks" "it says each run spans 2 ranks"
check "the task runs its shard with --nproc 2" -- \
  grep -qF "exec $BIN_ABS run $WORK/g.toml --shard \"\$SLURM_ARRAY_TASK_ID\"/2 --nproc 2 --db $WORK/results/shards/slurm-grid.\"\$SLURM_ARRAY_TASK_ID\".db --no-report" "$script"
check "LMGRID_THREADS = max(1, 3 / 2) = 1" -- grep -qxF "export LMGRID_THREADS=1" "$script"
check "#SBATCH --cpus-per-task=3 (the task's, shared by its ranks)" -- grep -qxF "#SBATCH --cpus-per-task=3" "$script"
expect_exit 0 "--nproc 2 --cpus 8 with LMGRID_THREADS set" -- env LMGRID_THREADS=3 "$BIN" slurm g.toml --nproc 2 --cpus 8
check "the user's LMGRID_THREADS is kept" -- grep -qxF "export LMGRID_THREADS=3" "$script"

# --nodes N --ntasks-per-node K: one job, srun's N*K tasks the ranks of every run.
expect_exit 0 "--nodes 2 --ntasks-per-node 2" -- env -u LMGRID_THREADS "$BIN" slurm g.toml --nodes 2 --ntasks-per-node 2 \
  --partition debug --time 0:10:00 --gpus 1 --cpus 2 --set "experiment.description=$desc"
expect_out "one job of 2 nodes x 2 ranks \(WORLD_SIZE 4\)" "it describes the job"
for line in '#SBATCH --nodes=2' '#SBATCH --ntasks-per-node=2' '#SBATCH --ntasks=4' '#SBATCH --partition=debug' \
  '#SBATCH --time=0:10:00' '#SBATCH --gpus-per-node=1' '#SBATCH --cpus-per-task=2' \
  "#SBATCH --output=$WORK/results/slurm/slurm-grid.%j.out" 'export LMGRID_THREADS=2' \
  'MASTER_ADDR=$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n1)' 'export MASTER_ADDR' \
  'export MASTER_PORT=$((29500 + SLURM_JOB_ID % 1000))'; do
  check "data-parallel script line: $line" -- grep -qxF -- "$line" "$script"
done
check "no #SBATCH --array line" -- bash -c "! grep -q -- '--array' '$script'"
check "the data-parallel script is valid bash" -- bash -n "$script"
srun_line=$(grep '^exec srun ' "$script")
want="exec srun --nodes=2 --ntasks-per-node=2 --ntasks=4 --cpus-per-task=2 --kill-on-bad-exit=1 bash -c 'RANK=\$SLURM_PROCID LOCAL_RANK=\$SLURM_LOCALID WORLD_SIZE=\$SLURM_NTASKS exec $BIN_ABS run $WORK/g.toml --db $WORK/results/shards/slurm-grid.db --no-report --set "
same "the srun line (rank variables from Slurm's, the whole grid into results/shards/slurm-grid.db)" "${srun_line:0:${#want}}" "$want"
# The rank's command as its bash -c gets it: the --set value intact through two levels of quoting.
inner=$(eval "set -- ${srun_line#exec srun }"; while [ "$1" != -c ]; do shift; done; printf %s "$2")
words=$(eval "set -- ${inner#*exec }"; printf '%s\n' "$@")
same "the rank's --set value arrives unchanged" "$(tail -n1 <<<"$words")" "experiment.description=$desc"
expect_exit 2 "the data-parallel script outside sbatch refuses" -- env -u SLURM_JOB_ID bash "$script"
expect_out "SLURM_JOB_ID is not set" "saying why"
expect_exit 0 "--master-port 29999" -- "$BIN" slurm g.toml --nodes 1 --ntasks-per-node 2 --master-port 29999
check "MASTER_PORT=29999" -- grep -qxF "export MASTER_PORT=29999" "$script"

# The tasks' command lines, run here as Slurm would (task 0 and task 1): the --set value arrives
# intact through the shell quoting.
"$BIN" slurm g.toml --array 2 --set "experiment.description=$desc" >/dev/null 2>&1
for i in 0 1; do
  expect_exit 0 "task $i of the script, run by hand" -- env SLURM_ARRAY_TASK_ID=$i bash "$script"
done
same "the --set value reached the runs unchanged" "$(sqlite3 results/shards/slurm-grid.0.db "SELECT description FROM experiments")" "$desc"
n0=$(q "SELECT count(*) FROM runs" results/shards/slurm-grid.0.db)
n1=$(q "SELECT count(*) FROM runs" results/shards/slurm-grid.1.db)
same "the two tasks ran the 4 runs between them" "$((n0 + n1))" 4
rm -rf results

# --- --submit, with a stand-in sbatch ------------------------------------------------------------
mkdir fake
cat >fake/sbatch <<'SH'
#!/bin/sh
echo "$@" >"$(dirname "$0")/args"
echo "4242;cluster"
SH
chmod +x fake/sbatch
expect_exit 0 "--submit with a stand-in sbatch" -- env PATH="$WORK/fake:$PATH" "$BIN" slurm g.toml --array 2 --submit
expect_out "submitted job 4242" "prints the job id"
same "sbatch was given the script" "$(cat fake/args)" "--parsable $WORK/results/slurm/slurm-grid.sbatch"
printf '#!/bin/sh\necho "sbatch: error: invalid partition" >&2\nexit 1\n' >fake/sbatch
expect_exit 1 "an sbatch that refuses the job" -- env PATH="$WORK/fake:$PATH" "$BIN" slurm g.toml --submit
expect_out "invalid partition" "its message is shown"
rm -rf results fake

# --- a real Slurm --------------------------------------------------------------------------------------
missing=""
for p in munged slurmctld slurmd sbatch squeue sinfo scancel; do command -v $p >/dev/null || missing="$missing $p"; done
if [ -n "$missing" ]; then
  if [ "${LMGRID_SKIP_SLURM:-}" = 1 ]; then
    echo "skip - Slurm is not installed (missing:$missing) and LMGRID_SKIP_SLURM=1"
  else
    fail "Slurm is not installed (missing:$missing): tools/setup.sh test installs slurm-wlm and munge; LMGRID_SKIP_SLURM=1 skips this part"
  fi
  finish
  exit
fi
if [ "${LMGRID_SKIP_SLURM:-}" = 1 ]; then echo "skip - the real Slurm (LMGRID_SKIP_SLURM=1)"; finish; exit; fi

S="$WORK/slurm"
JOB=""
# Stops what this test started, by its pid files only; then removes the scratch folder.
slurm_down() {
  [ -n "$JOB" ] && scancel "$JOB" 2>/dev/null
  local f pid i
  for f in "$S/run/slurmd.pid" "$S/run/slurmctld.pid" "$S/munge/munged.pid"; do
    [ -s "$f" ] || continue
    pid=$(cat "$f")
    kill "$pid" 2>/dev/null || continue
    for i in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
    kill -0 "$pid" 2>/dev/null && kill -9 "$pid" 2>/dev/null
  done
}
trap 'slurm_down; rm -rf "$WORK"' EXIT
trap 'exit 143' TERM INT HUP  # a ctest timeout or Ctrl-C still runs the EXIT trap
show_logs() {
  local f
  for f in "$S"/log/*.log "$S"/munge/munged.log results/slurm/*.out; do
    [ -f "$f" ] && { echo "--- $f"; tail -n 30 "$f"; }
  done
}
# munged wants every folder above its socket searchable by all, and its key private.
chmod 755 "$WORK"
mkdir -p "$S/munge" "$S/key" "$S/state" "$S/spool" "$S/log" "$S/run"
chmod 755 "$S" "$S/munge"
chmod 700 "$S/key"
dd if=/dev/urandom of="$S/key/munge.key" bs=1024 count=1 status=none
chmod 400 "$S/key/munge.key"
munged --socket="$S/munge/munge.socket" --key-file="$S/key/munge.key" --pid-file="$S/munge/munged.pid" \
  --log-file="$S/munge/munged.log" --seed-file="$S/munge/munged.seed" >"$S/log/munged.out" 2>&1
check "munged started" -- test -S "$S/munge/munge.socket"
node=$(slurmd -C | head -1)
user=$(id -un)
port=$((20000 + RANDOM % 4000 * 2))
cat >"$S/slurm.conf" <<CONF
ClusterName=lmgridtest
SlurmctldHost=$(hostname -s)
SlurmUser=$user
SlurmdUser=$user
SlurmctldPort=$port
SlurmdPort=$((port + 1))
AuthType=auth/munge
AuthInfo=socket=$S/munge/munge.socket
CredType=cred/munge
StateSaveLocation=$S/state
SlurmdSpoolDir=$S/spool
SlurmctldPidFile=$S/run/slurmctld.pid
SlurmdPidFile=$S/run/slurmd.pid
SlurmctldLogFile=$S/log/slurmctld.log
SlurmdLogFile=$S/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
MpiDefault=none
ReturnToService=2
$node
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
CONF
export SLURM_CONF="$S/slurm.conf"
slurmctld -f "$SLURM_CONF" >"$S/log/slurmctld.out" 2>&1
slurmd -f "$SLURM_CONF" >"$S/log/slurmd.out" 2>&1
idle=0
for i in $(seq 1 120); do
  sinfo -h -o %t 2>/dev/null | grep -qx idle && { idle=1; break; }
  sleep 0.5
done
if [ $idle = 0 ]; then
  fail "the Slurm node did not become idle within 60 s (sinfo: $(sinfo -h -o '%n %t' 2>&1 | head -3))"
  show_logs
  finish
  exit
fi
pass "slurmctld and slurmd up, node idle ($(sinfo -h -o '%n %c CPUs %t'))"

# From a folder with a space in its name: the #SBATCH --output line and the task's paths are quoted.
mkdir "$WORK/sub mit"
cp g.toml "$WORK/sub mit/"
cd "$WORK/sub mit"
expect_exit 0 "lmgrid slurm --array 2 --submit" -- "$BIN" slurm g.toml --array 2 --submit
check "the --output line is double-quoted" -- grep -qxF "#SBATCH --output=\"$WORK/sub mit/results/slurm/slurm-grid.%A_%a.out\"" results/slurm/slurm-grid.sbatch
expect_out "submitted job [0-9]+" "prints the job id"
JOB=$(sed -n 's/^submitted job \([0-9]*\)$/\1/p' "$WORK/out")
done_=0
for i in $(seq 1 600); do
  [ -z "$(squeue -h -j "$JOB" -o %i 2>/dev/null)" ] && { done_=1; break; }
  sleep 0.5
done
if [ $done_ = 0 ]; then
  fail "the array job $JOB did not finish within 300 s: $(squeue -h -o '%i %t %R' 2>&1 | head -4)"
  show_logs
  finish
  exit
fi
pass "array job $JOB finished"
for i in 0 1; do
  out="results/slurm/slurm-grid.${JOB}_$i.out"
  check "task $i wrote its output file ($out)" -- test -s "$out"
  check "task $i ran its shard into results/shards/slurm-grid.$i.db" -- test -s "results/shards/slurm-grid.$i.db"
done
expect_exit 0 "lmgrid merge of the two shard databases" -- "$BIN" merge results/lmgrid.db results/shards/slurm-grid.0.db results/shards/slurm-grid.1.db
expect_out "results/lmgrid.db: 4 runs \(4 done\)" "4 runs, all done"
[ "$FAILS" = 0 ] || show_logs
same "no metric row duplicated" "$(q "SELECT run_id, name, step, count(*) FROM metrics GROUP BY run_id, name, step HAVING count(*) > 1" results/lmgrid.db)" ""
sqlite3 results/lmgrid.db .dump >dump1.sql
expect_exit 0 "merging the shards again" -- "$BIN" merge results/lmgrid.db results/shards/slurm-grid.0.db results/shards/slurm-grid.1.db
sqlite3 results/lmgrid.db .dump >dump2.sql
check "changes nothing (sqlite3 .dump identical)" -- cmp -s dump1.sql dump2.sql
expect_exit 0 "lmgrid report on the merge" -- "$BIN" report --db results/lmgrid.db
expect_out "4 runs" "reports the 4 runs"
check "report.html written" -- test -s results/slurm-grid/report.html

# --- scancel (SIGTERM) leaves the run interrupted; the same script again resumes it --------------
# One run of 1,000 steps (about 20 s here; 400 under the sanitizers, whose steps are ~3x slower),
# cancelled once it has its first checkpoint (step 50).
long=$(sanitized_or 1000 400)
sed -e 's/name = "slurm-grid"/name = "slurm-long"/' -e 's/seeds = \[1, 2\]/seeds = [1]/' -e "s/^steps = 20/steps = $long/" \
  -e 's/^checkpoint_every = 10/checkpoint_every = 50/' -e 's/^eval_every = 10/eval_every = 500/' \
  -e 's/^d_model = 16/d_model = 64/' -e 's/^batch_size = 4/batch_size = 16/' -e '/^\[grid\]/,$d' g.toml >long.toml
# wait_until SECONDS COMMAND...: polls every 0.2 s.
wait_until() {
  local n=$(($1 * 5)) i
  shift
  for i in $(seq 1 $n); do "$@" && return 0; sleep 0.2; done
  return 1
}
has_checkpoint() { [ "$(sqlite3 results/shards/slurm-long.0.db "SELECT count(*) FROM checkpoints WHERE step >= 50" 2>/dev/null)" -ge 1 ] 2>/dev/null; }
queue_empty() { [ -z "$(squeue -h -j "$JOB" -o %i 2>/dev/null)" ]; }
expect_exit 0 "a one-run grid of $long steps submitted" -- "$BIN" slurm long.toml --submit
JOB=$(sed -n 's/^submitted job \([0-9]*\)$/\1/p' "$WORK/out")
if wait_until 120 has_checkpoint; then
  pass "the run wrote its first checkpoint"
  scancel "$JOB"
  wait_until 120 queue_empty && pass "scancel ended the job" || fail "job $JOB still queued 120 s after scancel"
  st=$(sqlite3 results/shards/slurm-long.0.db "SELECT status || ':' || step FROM runs")
  check "the cancelled run is left interrupted mid-training ($st)" -- bash -c "[[ '$st' == interrupted:* && '${st#*:}' -lt $long ]]"
  expect_exit 0 "lmgrid slurm --submit of the same grid again" -- "$BIN" slurm long.toml --submit
  JOB=$(sed -n 's/^submitted job \([0-9]*\)$/\1/p' "$WORK/out")
  wait_until 300 queue_empty && pass "the second job finished" || fail "job $JOB did not finish within 300 s"
  same "the run is done at step $long" "$(sqlite3 results/shards/slurm-long.0.db "SELECT status || ':' || step FROM runs")" "done:$long"
  check "it resumed from its checkpoint" -- grep -q "resuming from step" "results/slurm/slurm-long.${JOB}_0.out"
else
  fail "no checkpoint within 120 s"
fi

# --- data-parallel jobs -----------------------------------------------------------------------------
# A 2-run grid, trained locally with `lmgrid run --nproc 2` (the reference), then on Slurm by one
# job of 2 srun tasks (--nodes 1 --ntasks-per-node 2) and by an array of 2 tasks of 2 ranks each.
cd "$WORK"
cpus=$(sinfo -h -o %c | head -n1)
check "the node has the 2 CPUs two ranks need ($cpus)" -- test "${cpus:-0}" -ge 2
write_exp dp.toml slurm-dp 'steps = 30'
sed -i -e 's/^log_every = 5$/log_every = 1/' -e 's/^d_model = 32$/d_model = 32\ndropout = 0.0/' dp.toml
printf '[grid]\n"optim.lr" = [3e-3, 2e-3]\n' >>dp.toml
export LMGRID_DIST_TIMEOUT=60
expect_exit 0 "the reference: lmgrid run --nproc 2 here" -- env LMGRID_THREADS=1 "$BIN" run dp.toml --nproc 2 --db local.db --no-report \
  --set "experiment.description=$desc"
# The train/loss points of every run, keyed by config hash and step; then max |diff| and the count.
series() {
  "$BIN" sql "SELECT r.config_hash || '@' || m.step, printf('%.17g', m.value) FROM metrics m JOIN runs r ON r.id = m.run_id WHERE m.name = 'train/loss'" \
    --db "$1" --format csv | tail -n +2 | sort
}
max_diff() {
  join -t, <(series "$1") <(series "$2") |
    awk -F, '{d = $2 - $3; if (d < 0) d = -d; if (d > m) m = d; n++} END {printf "%.3g %d\n", m, n}'
}
wait_job() {  # wait_job SECONDS WHAT
  if wait_until "$1" queue_empty; then pass "$2: job $JOB finished"; else fail "$2: job $JOB still queued after $1 s"; scancel "$JOB"; show_logs; fi
}
expect_exit 0 "lmgrid slurm --nodes 1 --ntasks-per-node 2 --submit" -- env -u LMGRID_THREADS "$BIN" slurm dp.toml --nodes 1 \
  --ntasks-per-node 2 --cpus 1 --submit --set "experiment.description=$desc"
JOB=$(sed -n 's/^submitted job \([0-9]*\)$/\1/p' "$WORK/out")
wait_job 120 "--nodes 1 --ntasks-per-node 2"
db=results/shards/slurm-dp.db
same "the job's database has both runs done" "$(q "SELECT group_concat(status, ' ') FROM runs" $db)" "done done"
same "each run trained on 2 ranks (world_size summary)" "$(q "SELECT group_concat(CAST(value AS INT), ' ') FROM summaries WHERE key = 'world_size'" $db)" "2 2"
out="results/slurm/slurm-dp.$JOB.out"
check "srun's second task was rank 1 of 2, following rank 0 ($out)" -- grep -q "rank 1 of 2: following the runs of rank 0" "$out"
same "the --set value reached rank 0 through srun and bash -c" "$(sqlite3 $db "SELECT description FROM experiments")" "$desc"
read -r d n <<<"$(max_diff local.db $db)"
check "the job's train/loss = the local --nproc 2 run's ($n points of 2 runs, max |diff| $d <= 1e-5)" -- \
  awk -v d="$d" -v n="$n" 'BEGIN {exit !(n == 60 && d <= 1e-5)}'
s1=$(series local.db | grep "^$(q "SELECT config_hash FROM runs WHERE id = 1" local.db)@" | wc -l)
check "run 1's series is among them ($s1 points)" -- test "$s1" = 30

expect_exit 0 "lmgrid slurm --nproc 2 --array 2 --submit" -- env -u LMGRID_THREADS "$BIN" slurm dp.toml --nproc 2 --array 2 \
  --cpus 2 --db-dir results/array --submit --set "experiment.description=$desc"
JOB=$(sed -n 's/^submitted job \([0-9]*\)$/\1/p' "$WORK/out")
wait_job 180 "--nproc 2 --array 2"
expect_exit 0 "lmgrid merge of the two shard databases" -- "$BIN" merge results/dp.db results/array/slurm-dp.0.db results/array/slurm-dp.1.db
expect_out "results/dp.db: 2 runs \(2 done\)" "2 runs, all done"
same "each run trained on 2 ranks (world_size summary)" "$(q "SELECT group_concat(CAST(value AS INT), ' ') FROM summaries WHERE key = 'world_size'" results/dp.db)" "2 2"
read -r d n <<<"$(max_diff local.db results/dp.db)"
check "the merged train/loss = the local --nproc 2 run's ($n points of 2 runs, max |diff| $d <= 1e-5)" -- \
  awk -v d="$d" -v n="$n" 'BEGIN {exit !(n == 60 && d <= 1e-5)}'
[ "$FAILS" = 0 ] || show_logs
finish
