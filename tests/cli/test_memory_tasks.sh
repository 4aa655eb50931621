# The synthetic memory tasks through the host: a grid on mqar, selective_copy and noisy_recall
# records val/accuracy, val/token_accuracy and accuracy and loss per slice (seq_len=L,
# num_kv_pairs=D), the overall accuracy is the answer-weighted mean of the slices, summaries keep
# best and final of each; 2 data-parallel ranks record the same slices as one process; a text
# tokenizer or impossible settings are refused with exit 2, naming what to change.
. "$(dirname "$0")/lib.sh"
export LMGRID_THREADS=1

cat >mq.toml <<'TOML'
[experiment]
name = "mq"
seeds = [1]
[data]
plugin = "mqar"
settings = "32:2,64:4"
vocab_size = 128
test_examples = 16
train_examples = 256
[tokenizer]
plugin = "ids"
[model]
plugin = "gpt"
n_layer = 2
n_head = 2
d_model = 32
[optim]
plugin = "adamw"
lr = 3e-3
[train]
steps = 30
batch_size = 8
eval_every = 15
eval_batches = 4
checkpoint_every = 15
[[variant]]
name = "mqar"
[[variant]]
name = "copy"
"data.plugin" = "selective_copy"
"data.settings" = "32:4,64:8"
"data.vocab_size" = 16
[[variant]]
name = "noisy"
"data.plugin" = "noisy_recall"
"data.settings" = "32:2,64:4"
"data.vocab_size" = 96
TOML
expect_exit 0 "a grid of the three memory tasks runs" -- "$BIN" run mq.toml --db r.db
q() { "$BIN" sql "$1" --db "${2:-r.db}" --format csv | tail -n +2; }
for run in 1 2 3; do
  key=$([ $run = 2 ] && echo num_tokens || echo num_kv_pairs)
  small=$([ $run = 2 ] && echo 4 || echo 2) big=$([ $run = 2 ] && echo 8 || echo 4)
  n=$(q "SELECT count(DISTINCT name) FROM metrics WHERE run_id = $run AND name IN ('val/accuracy', 'val/token_accuracy',
        'val/accuracy/seq_len=32', 'val/accuracy/seq_len=64', 'val/accuracy/$key=$small', 'val/accuracy/$key=$big',
        'val/loss/seq_len=32', 'val/loss/$key=$big')")
  check "run $run records accuracy, token accuracy and accuracy/loss per slice (8 series: $n)" -- test "$n" = 8
  # 4 eval batches of 8 = 2 batches (16 examples) per setting; answers per example = the size.
  diff=$(q "SELECT printf('%.3g', abs(a.value - (s.value * $small + b.value * $big) / ($small + $big)))
            FROM metrics a JOIN metrics s ON s.run_id = a.run_id AND s.step = a.step AND s.name = 'val/accuracy/$key=$small'
            JOIN metrics b ON b.run_id = a.run_id AND b.step = a.step AND b.name = 'val/accuracy/$key=$big'
            WHERE a.run_id = $run AND a.name = 'val/accuracy' AND a.step = 30")
  check "run $run: val/accuracy = the answer-weighted mean of its slices (|diff| $diff)" -- awk -v d="$diff" 'BEGIN {exit !(d != "" && d < 1e-12)}'
  # One token per answer: exact match and token accuracy agree.
  same=$(q "SELECT count(*) FROM metrics a JOIN metrics t ON t.run_id = a.run_id AND t.step = a.step
            WHERE a.run_id = $run AND a.name = 'val/accuracy' AND t.name = 'val/token_accuracy' AND a.value = t.value")
  check "run $run: token accuracy = accuracy for one-token answers ($same of 2 evaluations)" -- test "$same" = 2
  s=$(q "SELECT count(*) FROM summaries WHERE run_id = $run AND key IN ('best_val_accuracy', 'final_val_accuracy',
        'best_val_accuracy/$key=$big', 'final_val_accuracy/$key=$big', 'best_val_loss/seq_len=64', 'final_val_loss/seq_len=64',
        'best_val_token_accuracy')")
  check "run $run: best and final summaries of the slices ($s of 7)" -- test "$s" = 7
  ok=$(q "SELECT count(*) FROM summaries b JOIN summaries f ON f.run_id = b.run_id AND f.key = 'final_val_accuracy/seq_len=64'
          WHERE b.run_id = $run AND b.key = 'best_val_accuracy/seq_len=64' AND b.value >= f.value
          AND b.value = (SELECT max(value) FROM metrics WHERE run_id = $run AND name = 'val/accuracy/seq_len=64')")
  check "run $run: best = the highest accuracy logged, >= final" -- test "$ok" = 1
done
test -s mq/report.html && grep -q "Accuracy by" mq/report.html && pass "the report shows accuracy by slice" || fail "the report shows accuracy by slice"

# Data parallel: 2 ranks shard the evaluation batches; the slices are summed over ranks.
expect_exit 0 "the same grid on 2 ranks" -- "$BIN" run mq.toml --db r2.db --nproc 2
cmp_q="SELECT run_id, name, step, printf('%.6f', value) FROM metrics WHERE name LIKE 'val/accuracy%' ORDER BY 1, 2, 3"
if [ "$(q "$cmp_q")" = "$(q "$cmp_q" r2.db)" ] && [ -n "$(q "$cmp_q")" ]; then
  pass "2 ranks record the one-process accuracies, every slice ($(q "$cmp_q" | wc -l) points)"
else
  fail "2 ranks record the one-process accuracies"; diff <(q "$cmp_q") <(q "$cmp_q" r2.db) | head
fi
loss_q="SELECT run_id, name, step, value FROM metrics WHERE name LIKE 'val/loss/%' ORDER BY 1, 2, 3"
worst=$(join -j1 <(q "$loss_q" | awk -F, '{print $1"/"$2"/"$3, $4}' | sort) <(q "$loss_q" r2.db | awk -F, '{print $1"/"$2"/"$3, $4}' | sort) |
  awk '{d = $2 - $3; if (d < 0) d = -d; if (d > m) m = d; n++} END {if (n == 0) print "none"; else printf "%.3g", m}')
check "2 ranks: slice losses within 1e-5 of one process (max |diff| $worst)" -- awk -v d="$worst" 'BEGIN {exit !(d != "none" && d < 1e-5)}'

# Refusals: a text tokenizer, impossible settings.
sed 's/^plugin = "ids"$/plugin = "char"/' mq.toml >bad_tok.toml
"$BIN" run bad_tok.toml --db bad.db >out 2>&1
code=$?
# Known at run time only (the host cannot know which tokenizers a dataset accepts before creating
# it): the run fails with the message, the grid exits 1.
check "mqar with the char tokenizer is refused (exit $code)" -- test "$code" = 1
expect_out 'plugin = "ids"' "the message says to use tokenizer ids"
sed 's/^settings = "32:2,64:4"$/settings = "32:20"/' mq.toml >bad_set.toml
expect_exit 2 "impossible mqar settings exit 2" -- "$BIN" run bad_set.toml --db bad2.db
expect_out 'bad_set.toml:.*32:20.*4 x num_kv_pairs <= seq_len' "the message names the file, the setting and the rule"
check "nothing written for the refused grid" -- test ! -e bad2.db
finish
