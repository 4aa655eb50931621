# lmgrid run --shard I/N and lmgrid merge, without Slurm: two shards run locally are merged into
# their union; a run present in several inputs is kept once (its done, newest copy), no metric
# row is duplicated, merging again changes nothing (the SQL dump is identical), run files follow
# the runs into the merged database's folder, and report/sample/run work on the merge.
. "$(dirname "$0")/lib.sh"
q() { "$BIN" sql "$1" --db "$2" --format csv | tail -n +2; }
same() { if [ "$2" = "$3" ]; then pass "$1"; else fail "$1: got '$2', wanted '$3'"; fi; }
command -v sqlite3 >/dev/null || { fail "sqlite3 is not installed (tools/setup.sh test installs it)"; finish; exit 1; }
dump() { sqlite3 "$1" .dump; }

cat >g.toml <<'TOML'
[experiment]
name = "merge"
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

# --- --shard: bad input, and the dry run shows only the shard ---------------------------------
for bad in 2/2 x 1/0 -1/2 1/2/3 "0/ 2"; do
  expect_exit 2 "--shard '$bad' is refused" -- "$BIN" run g.toml --shard "$bad" --db bad.db
  expect_out "--shard '$bad'" "the message names --shard '$bad'"
done
check "a refused --shard wrote no database" -- test ! -e bad.db
"$BIN" run g.toml --dry-run >all.txt
all=$(grep -E '^[0-9a-f]{12} ' all.txt | cut -c1-12 | sort)
same "the grid has 4 runs" "$(echo "$all" | wc -l)" 4
"$BIN" run g.toml --dry-run --shard 0/2 >s0.txt
"$BIN" run g.toml --dry-run --shard 1/2 >s1.txt
d0=$(grep -E '^[0-9a-f]{12} ' s0.txt | cut -c1-12 | sort)
d1=$(grep -E '^[0-9a-f]{12} ' s1.txt | cut -c1-12 | sort)
same "the dry runs of shards 0/2 and 1/2 together list the grid" "$(printf '%s\n%s\n' "$d0" "$d1" | grep . | sort)" "$all"
same "and no run twice" "$(printf '%s\n%s\n' "$d0" "$d1" | grep . | sort -u | wc -l)" 4
check "a dry run's count is the shard's ($(tail -1 s0.txt))" -- grep -q "^$(echo "$d0" | grep -c .) runs in experiment 'merge'" s0.txt

# --- two shards, run locally -------------------------------------------------------------------
expect_exit 0 "shard 0/2 runs" -- "$BIN" run g.toml --shard 0/2 --db shards/merge.0.db --no-report
expect_exit 0 "shard 1/2 runs" -- "$BIN" run g.toml --shard 1/2 --db shards/merge.1.db --no-report
h0=$(q "SELECT substr(config_hash, 1, 12) FROM runs ORDER BY 1" shards/merge.0.db)
h1=$(q "SELECT substr(config_hash, 1, 12) FROM runs ORDER BY 1" shards/merge.1.db)
same "shard 0's database holds exactly its dry run's runs" "$h0" "$d0"
same "shard 1's database holds exactly its dry run's runs" "$h1" "$d1"

# --- bad input: nothing written ----------------------------------------------------------------
echo "not a database" >junk.db
expect_exit 2 "an input that is not an lmgrid database" -- "$BIN" merge m/out.db shards/merge.0.db junk.db
expect_out "junk.db" "the message names the file"
expect_exit 2 "a missing input" -- "$BIN" merge m/out.db shards/merge.0.db nowhere.db
expect_out "nowhere.db" "the message names the missing file"
expect_exit 2 "the output among the inputs" -- "$BIN" merge shards/merge.0.db shards/merge.1.db shards/merge.0.db
expect_out "output database" "the message says it is the output"
expect_exit 2 "no input" -- "$BIN" merge m/out.db
check "bad input created no output" -- test ! -e m/out.db

# --- merge: the union ----------------------------------------------------------------------------
expect_exit 0 "merge the two shards into a new database" -- "$BIN" merge m/all.db shards/merge.0.db shards/merge.1.db
expect_out "4 runs \(4 done\)" "it reports 4 done runs"
same "the merge holds the union of the shards" "$(q "SELECT substr(config_hash, 1, 12) FROM runs ORDER BY 1" m/all.db)" "$all"
same "every run done" "$(q "SELECT count(*) FROM runs WHERE status = 'done'" m/all.db)" 4
src_metrics=$(($(q "SELECT count(*) FROM metrics" shards/merge.0.db) + $(q "SELECT count(*) FROM metrics" shards/merge.1.db)))
same "every metric row of the shards, once" "$(q "SELECT count(*) FROM metrics" m/all.db)" "$src_metrics"
for t in params summaries plugins checkpoints; do
  n=$(($(q "SELECT count(*) FROM $t" shards/merge.0.db) + $(q "SELECT count(*) FROM $t" shards/merge.1.db)))
  same "every $t row of the shards ($n)" "$(q "SELECT count(*) FROM $t" m/all.db)" "$n"
done
same "summaries carried (best_val_loss of each run)" \
  "$(q "SELECT r.config_hash || ':' || s.value FROM summaries s JOIN runs r ON r.id = s.run_id WHERE s.key = 'best_val_loss' ORDER BY 1" m/all.db)" \
  "$( (q "SELECT r.config_hash || ':' || s.value FROM summaries s JOIN runs r ON r.id = s.run_id WHERE s.key = 'best_val_loss'" shards/merge.0.db
      q "SELECT r.config_hash || ':' || s.value FROM summaries s JOIN runs r ON r.id = s.run_id WHERE s.key = 'best_val_loss'" shards/merge.1.db) | sort)"
missing=0
while read -r p; do [ -s "m/$p" ] || { missing=$((missing + 1)); echo "missing: m/$p"; }; done < <(q "SELECT path FROM checkpoints" m/all.db)
same "every checkpoint path is relative to the merge's folder and its file is there" "$missing" 0
check "checkpoint paths point into m/runs/" -- test -z "$(q "SELECT path FROM checkpoints WHERE path NOT LIKE 'runs/%'" m/all.db)"
check "run_dir is runs/<hash16>" -- test -z "$(q "SELECT id FROM runs WHERE run_dir != 'runs/' || substr(config_hash, 1, 16)" m/all.db)"
check "tokenizer files came along" -- test "$(ls m/runs/*/tokenizer.txt | wc -l)" = 4

# --- a run present twice: kept once, its newest done copy --------------------------------------
expect_exit 0 "the whole grid again, into a third database" -- "$BIN" run g.toml --db full/full.db --no-report
expect_exit 0 "merge it too" -- "$BIN" merge m/all.db full/full.db
expect_out "4 runs: 0 added, 4 replaced, 0 kept" "its newer copies replace the shards' (all 4)"
same "still 4 runs" "$(q "SELECT count(*) FROM runs" m/all.db)" 4
same "their finished_at is the rerun's" "$(q "SELECT config_hash || ':' || finished_at FROM runs ORDER BY 1" m/all.db)" \
  "$(q "SELECT config_hash || ':' || finished_at FROM runs ORDER BY 1" full/full.db)"
same "no metric row duplicated" "$(q "SELECT run_id, name, step, count(*) FROM metrics GROUP BY run_id, name, step HAVING count(*) > 1" m/all.db)" ""
same "metric rows: one copy per run" "$(q "SELECT count(*) FROM metrics" m/all.db)" "$(q "SELECT count(*) FROM metrics" full/full.db)"
same "no summary, plugin or checkpoint row twice" \
  "$(q "SELECT 'summaries', run_id, key FROM summaries GROUP BY run_id, key HAVING count(*) > 1 UNION ALL SELECT 'plugins', run_id, kind FROM plugins GROUP BY run_id, kind HAVING count(*) > 1 UNION ALL SELECT 'checkpoints', run_id, step FROM checkpoints GROUP BY run_id, step HAVING count(*) > 1" m/all.db)" ""
same "the run ids stayed" "$(q "SELECT group_concat(id, ' ') FROM (SELECT id FROM runs ORDER BY id)" m/all.db)" "1 2 3 4"

# --- idempotent: the same inputs again change nothing ------------------------------------------
dump m/all.db >dump1.sql
expect_exit 0 "merge every input again" -- "$BIN" merge m/all.db shards/merge.0.db shards/merge.1.db full/full.db
expect_out "4 runs: 0 added, 0 replaced, 4 kept" "every run kept"
dump m/all.db >dump2.sql
check "the database is unchanged (sqlite3 .dump identical, $(wc -l <dump1.sql) lines)" -- cmp -s dump1.sql dump2.sql
expect_exit 0 "the shards in the other order into a fresh database" -- "$BIN" merge m/other.db full/full.db shards/merge.1.db shards/merge.0.db
same "the same runs, each the rerun's copy" "$(q "SELECT config_hash || ':' || finished_at FROM runs ORDER BY 1" m/other.db)" \
  "$(q "SELECT config_hash || ':' || finished_at FROM runs ORDER BY 1" m/all.db)"

# --- done beats newer: a failed copy, newer, never replaces a done one ----------------------------
cp shards/merge.1.db failed.db
sqlite3 failed.db "UPDATE runs SET status = 'failed', error = 'later failure', finished_at = finished_at + 1000"
expect_exit 0 "merge a newer but failed copy" -- "$BIN" merge m/all.db failed.db
expect_out "0 replaced" "it replaces nothing"
same "no run failed in the merge" "$(q "SELECT count(*) FROM runs WHERE status != 'done'" m/all.db)" 0
expect_exit 0 "the failed copy first, the done one after" -- "$BIN" merge m/f.db failed.db shards/merge.1.db
same "the done copy replaced the failed one" "$(q "SELECT group_concat(status) FROM runs" m/f.db)" \
  "$(q "SELECT group_concat(status) FROM runs" shards/merge.1.db)"
same "with no row of the failed copy left" "$(q "SELECT count(*) FROM metrics" m/f.db)" "$(q "SELECT count(*) FROM metrics" shards/merge.1.db)"

# --- the merged database works like any other ----------------------------------------------------
expect_exit 0 "lmgrid report on the merge" -- "$BIN" report --db m/all.db --out rpt
expect_out "4 runs" "the report has the 4 runs"
check "report.html written" -- test -s rpt/report.html
expect_exit 0 "lmgrid sample from a merged run's checkpoint" -- "$BIN" sample --run 1 --db m/all.db --prompt "A" -n 10
expect_exit 0 "lmgrid run on the merge" -- "$BIN" run g.toml --db m/all.db --no-report
expect_out "4 runs \(4 done, 0 to run\)" "finds every run done"
# Inputs in the output's own folder share its runs/ folder: paths kept, nothing linked.
expect_exit 0 "merge into a database beside the shards" -- "$BIN" merge shards/all.db shards/merge.0.db shards/merge.1.db
expect_out "0 run files" "links no file"
same "its checkpoint paths are the shards' own" "$(q "SELECT path FROM checkpoints ORDER BY path" shards/all.db)" \
  "$( (q "SELECT path FROM checkpoints" shards/merge.0.db; q "SELECT path FROM checkpoints" shards/merge.1.db) | sort)"
finish
