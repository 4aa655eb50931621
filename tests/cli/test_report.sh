# Reports: a tiny real grid (GPT, 2 learning rates x 2 seeds) plus a second experiment sharing its
# keys with a failing and a diverging run (one named like a script), then `lmgrid report`: files,
# escaping, no script, the numbers against SQL, and the page rendered headless by chromium.
. "$(dirname "$0")/lib.sh"
export LMGRID_PLUGIN_PATH="$LMGRID_TEST_PLUGINS"
write_exp g.toml rep 'steps = 40'
sed -i -e "s/^seeds = \[1\]$/seeds = [1, 2]/" -e 's/^eval_every = 20$/eval_every = 8/' g.toml
cat >>g.toml <<'TOML'
[grid]
"optim.lr" = [3e-3, 1e-2]
[report]
best_over = "optim.lr"
x = "tokens"
TOML
expect_exit 0 "the grid runs and ends with a report" -- "$BIN" run g.toml --db r.db
expect_out "report: .*rep/report.html" "run prints where the report is"
check "run wrote the report beside the database" -- test -s rep/report.html -a -s rep/report.md
rm -r rep
expect_exit 0 "running the finished grid again" -- "$BIN" run g.toml --db r.db
check "a grid with every run done still ends with its report" -- test -s rep/report.html
write_exp f.toml rep-fail 'steps = 40'
sed -i 's/^eval_every = 20$/eval_every = 8/' f.toml
cat >>f.toml <<'TOML'
[[variant]]
name = "<script>alert(1)</script>"
"model.plugin" = "probe"
"model.fail" = "throw_forward"
"model.fail_at" = 3
[[variant]]
name = "nan | pipe"
"model.plugin" = "probe"
"model.fail" = "nan_loss"
"model.fail_at" = 5
TOML
expect_exit 1 "the failing experiment exits 1" -- "$BIN" run f.toml --db r.db --no-report
check "--no-report writes none" -- test ! -e rep-fail

expect_exit 2 "unknown --group-by key" -- "$BIN" report --db r.db --group-by optim.lrr
expect_out "did you mean 'optim.lr'" "group-by hint names the nearest key"
expect_exit 2 "bad --x" -- "$BIN" report --db r.db --x epochs
expect_exit 2 "bad --target-loss" -- "$BIN" report --db r.db --target-loss -1
expect_exit 2 "unknown experiment" -- "$BIN" report --db r.db -e rpe
t0=$(date +%s%N)
expect_exit 0 "report over both experiments" -- "$BIN" report --db r.db -e rep -e rep-fail --best-over optim.lr \
  --target-loss 3.3 --out rpt
echo "  (report took $(( ($(date +%s%N) - t0) / 1000000 )) ms)"
for f in rpt/report.html rpt/report.md rpt/train_loss.svg rpt/val_loss.svg rpt/best_over.svg; do
  check "$f written" -- test -s "$f"
done
check "no script in the HTML" -- sh -c '! grep -qi "<script" rpt/report.html'
check "the script-like run name appears escaped" -- grep -qF '&lt;script&gt;alert(1)&lt;/script&gt;' rpt/report.html
check "no external resources (no http src/href)" -- sh -c '! grep -qiE "(src|href)=\"?(https?:|//)" rpt/report.html'
check "Markdown escapes the pipe in a run name" -- grep -qF 'nan \| pipe' rpt/report.md
check "Markdown links the charts" -- grep -qF '![val_loss.svg](val_loss.svg)' rpt/report.md
check "failed run listed with its error" -- grep -qF 'probe failure requested at forward 3' rpt/report.html
check "diverged run listed" -- grep -qE '<td>diverged</td><td class="num">[0-9]+</td><td>loss became NaN' rpt/report.html
check "best-over table names a winning lr" -- grep -qE '<td class="num">0\.0(03|1)</td>' rpt/report.html
check "Welch p-value column" -- grep -q 'p vs best' rpt/report.html
# The numbers: mean best val loss of the lr=0.003 gpt group, straight from SQL.
want=$("$BIN" sql "SELECT printf('%.4f', avg(s.value)) FROM summaries s JOIN runs r ON r.id = s.run_id JOIN params p ON p.run_id = r.id AND p.key = 'optim.lr' WHERE s.key = 'best_val_loss' AND r.status = 'done' AND p.value = 0.003 AND r.experiment = 'rep'" --db r.db --format csv | tail -1)
check "group mean best val loss equals SQL ($want)" -- grep -qE "model.plugin=gpt optim.lr=0.003</td><td class=\"num\">2/2</td><td class=\"num\">1,2</td><td class=\"num\">$want ± " rpt/report.html
# compare
expect_exit 0 "compare two runs" -- "$BIN" compare 1 4 --db r.db
expect_out "optim.lr +0.003 +0.01" "compare shows the differing key"
check "compare hides keys that do not differ" -- sh -c '! grep -q "model.n_layer" out'
expect_exit 0 "compare as json" -- "$BIN" compare 1 2 --db r.db --format json
expect_out '"key": "seed"' "compare json lists the seed"
expect_exit 2 "compare of a missing run" -- "$BIN" compare 1 99 --db r.db
# sql cannot change the database, however the write is spelled.
before=$(sha256sum r.db | cut -d' ' -f1)
for q in "UPDATE runs SET status = 'done'" "PRAGMA user_version = 5" "WITH a AS (SELECT 1) DELETE FROM runs"; do
  expect_exit 2 "sql refuses: $q" -- "$BIN" sql "$q" --db r.db
done
check "the database file is byte-identical" -- test "$before" = "$(sha256sum r.db | cut -d' ' -f1)"
# [report] grammar errors exit 2 before anything runs.
write_exp bad.toml bad '[report]
grup_by = "optim.lr"'
expect_exit 2 "unknown [report] key" -- "$BIN" run bad.toml --db bad.db
expect_out "did you mean 'group_by'" "[report] key hint"
write_exp bad2.toml bad '[report]
best_over = "optim.lrr"'
expect_exit 2 "unknown key named in [report]" -- "$BIN" run bad2.toml --db bad.db
expect_out "did you mean 'optim.lr'" "[report] value hint"
# Accuracy by slice, ranking on accuracy: the slice summaries the trainer records for data sets
# with answers, written into a copy of the database for the runs of 'rep' (lr 0.01 is 0.2 more
# accurate; seed s adds 0.01 s).
cp r.db s.db
sqlite3 s.db "INSERT OR REPLACE INTO summaries (run_id, key, value)
  SELECT r.id, k.key, k.base + (CASE WHEN p.value = 0.01 THEN 0.2 ELSE 0 END) + 0.01 * r.seed
  FROM runs r JOIN params p ON p.run_id = r.id AND p.key = 'optim.lr' CROSS JOIN (
    SELECT 'best_val_accuracy' AS key, 0.5 AS base UNION ALL SELECT 'final_val_accuracy/seq_len=64', 0.6
    UNION ALL SELECT 'final_val_accuracy/seq_len=256', 0.3 UNION ALL SELECT 'final_val_accuracy/task=qa10', 0.1
    UNION ALL SELECT 'final_val_accuracy/task=qa2', 0.2) k
  WHERE r.experiment = 'rep' AND r.status = 'done'"
expect_exit 0 "report with slice summaries" -- "$BIN" report --db s.db -e rep --best-over optim.lr --out srpt
for f in srpt/accuracy_by_seq_len.svg srpt/accuracy_by_task.svg; do check "$f written" -- test -s "$f"; done
check "metric auto ranks on accuracy and says so" -- grep -qF 'Groups ranked by the highest mean best val accuracy (maximised; metric auto' srpt/report.html
check "slice table: mean ± sd per value and the mean column" -- grep -qF 'optim.lr=0.003</td><td class="num">0.6150 ± 0.0071</td><td class="num">0.3150 ± 0.0071</td><td class="num">0.4650 ± 0.0071</td>' srpt/report.html
check "slice values in natural order (qa2 before qa10)" -- grep -qF '<th class="num">task=qa2</th><th class="num">task=qa10</th>' srpt/report.html
check "best-over caption names the maximised metric" -- grep -qF 'the value of optim.lr with the highest mean best val accuracy' srpt/report.html
check "best-over on accuracy picks lr 0.01" -- grep -qF '<td>all runs</td><td class="num">0.01</td><td class="num">0.7150 ± 0.0071</td>' srpt/report.html
check "Markdown has the slice tables and links their charts" -- grep -qF '![accuracy_by_task.svg](accuracy_by_task.svg)' srpt/report.md
expect_exit 0 "--metric loss" -- "$BIN" report --db s.db -e rep --best-over optim.lr --metric loss --out srpt-loss
check "metric loss minimises best val loss" -- grep -qF 'Groups ranked by the lowest mean best val loss (minimised;' srpt-loss/report.html
# --where: the filters of lmgrid runs; the pairwise Welch test of two groups is then the only p-value.
expect_exit 0 "--where keeps the matching runs" -- "$BIN" report --db s.db -e rep --where 'optim.lr>0.005' --group-by optim.lr --out wrpt
check "--where: the group of lr 0.01 only" -- sh -c 'grep -qF "optim.lr=0.01</td>" wrpt/report.html && ! grep -qF "optim.lr=0.003</td>" wrpt/report.html'
check "the unfiltered report has both groups" -- sh -c 'grep -qF "optim.lr=0.01</td>" srpt/report.html && grep -qF "optim.lr=0.003</td>" srpt/report.html'
expect_exit 2 "--where with an unknown key" -- "$BIN" report --db s.db -e rep --where optim.lrr=1 --out wrpt2
expect_out "unknown key 'optim.lrr'" "--where names the unknown key"
expect_exit 2 "--where matching nothing" -- "$BIN" report --db s.db -e rep --where 'optim.lr>1' --out wrpt3
expect_out "check --experiment, --where and --db" "an empty selection says which options select"
best_lr=$("$BIN" sql "SELECT p.value FROM summaries s JOIN runs r ON r.id = s.run_id JOIN params p ON p.run_id = r.id AND p.key = 'optim.lr' WHERE s.key = 'best_val_loss' AND r.status = 'done' AND r.experiment = 'rep' GROUP BY p.value ORDER BY avg(s.value) LIMIT 1" --db s.db --format csv | tail -1)
check "best-over on loss picks the lr of the lowest mean loss in SQL ($best_lr)" -- grep -qF "<td>all runs</td><td class=\"num\">$best_lr</td>" srpt-loss/report.html
expect_exit 0 "--accuracy-x with --accuracy-slice" -- "$BIN" report --db s.db -e rep --accuracy-x optim.lr --accuracy-slice seq_len --out sx
for v in 64 256; do check "accuracy vs optim.lr chart at seq_len=$v" -- test -s "sx/accuracy_vs_optim.lr_at_seq_len_$v.svg"; done
check "accuracy-x table: seq_len=64 at lr 0.01 is 0.8150" -- grep -qE '<td>all runs</td><td>64</td><td class="num">0\.6150</td><td class="num">0\.8150</td>' sx/report.html
expect_exit 2 "unknown --accuracy-x key" -- "$BIN" report --db s.db --accuracy-x optim.lrr
expect_out "--accuracy-x: unknown key 'optim.lrr'; did you mean 'optim.lr'" "accuracy-x hint names the nearest key"
expect_exit 2 "unknown --accuracy-slice key" -- "$BIN" report --db s.db --accuracy-x optim.lr --accuracy-slice seqlen
expect_out "did you mean 'seq_len'" "accuracy-slice hint names the nearest slice key"
expect_exit 0 "--accuracy-x with two slice keys and none chosen" -- "$BIN" report --db s.db -e rep --accuracy-x optim.lr --out sx2
check "one chart of the overall accuracy" -- test -s sx2/accuracy_vs_optim.lr.svg
check "the page names the slice keys to choose from" -- grep -qF 'several slice keys (seq_len, task): choose one with --accuracy-slice' sx2/report.html
expect_exit 2 "bad --metric" -- "$BIN" report --db s.db --metric acc
expect_out "expected auto, loss or accuracy" "metric error names the choices"
expect_exit 2 "--metric accuracy where no run has accuracy" -- "$BIN" report --db r.db -e rep --metric accuracy
expect_out "no finished run has best_val_accuracy" "says why"
write_exp bad3.toml bad '[report]
metric = "acc"'
expect_exit 2 "bad [report] metric" -- "$BIN" run bad3.toml --db bad.db
expect_out 'expected "auto", "loss" or "accuracy"' "[report] metric error"
write_exp bad4.toml bad '[report]
accuracy_x = "optim.lrr"'
expect_exit 2 "unknown key in [report] accuracy_x" -- "$BIN" run bad4.toml --db bad.db
expect_out "did you mean 'optim.lr'" "[report] accuracy_x hint"
write_exp bad5.toml bad '[report]
metrc = "loss"'
expect_exit 2 "misspelt [report] metric" -- "$BIN" run bad5.toml --db bad.db
expect_out "did you mean 'metric'" "[report] metric key hint"
# Render in a real browser.
CHROME=$(command -v chromium || command -v chromium-browser || true)
if [ -z "$CHROME" ]; then
  fail "chromium is not installed (tools/setup.sh test installs it)"
else
  timeout 60 "$CHROME" --headless --disable-gpu --no-sandbox --hide-scrollbars --screenshot="$WORK/shot.png" \
    --window-size=1280,2000 "file://$WORK/rpt/report.html" >chrome.log 2>&1
  rc=$?
  check "chromium rendered the page (exit $rc)" -- test "$rc" = 0
  size=$(stat -c %s "$WORK/shot.png" 2>/dev/null || echo 0)
  check "screenshot is a non-trivial PNG ($size bytes)" -- test "$size" -gt 20000
  check "PNG signature" -- sh -c "head -c 8 '$WORK/shot.png' | od -An -tx1 | grep -q '89 50 4e 47'"
  if grep -iE "ERR_FILE|net::ERR|Failed to load|Uncaught|Refused to" chrome.log; then fail "chromium reported load errors"; else pass "no load errors from chromium"; fi
  [ -n "${LMGRID_REPORT_SHOT:-}" ] && cp "$WORK/shot.png" "$LMGRID_REPORT_SHOT"
fi
finish
