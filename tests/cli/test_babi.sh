# data/babi with tokenizer/words, end to end: the named sources resolve (`lmgrid data list`), a
# 2-step run records exact-match accuracy overall and per task (val/accuracy/task=qa1) and, in
# BABILong mode, per context length; inconsistent parameters are bad input (exit 2) that says why.
. "$(dirname "$0")/lib.sh"
expect_exit 0 "data list" -- "$BIN" data list --format csv
expect_out "^babi_en,5901983,.*,.*/babi/en$" "babi_en resolves to the folder"
expect_out "^babi_en10k,1688844,.*,.*/babi/en-10k.tar.xz$" "babi_en10k resolves to the archive"

babi_exp() {  # babi_exp FILE NAME [SEQ_LEN [extra [data] keys]]
  cat >"$1" <<TOML
[experiment]
name = "$2"
seeds = [1]
[data]
plugin = "babi"
source = "babi_en"
tasks = "1,19"
seq_len = ${3:-96}
${4:-}
[tokenizer]
plugin = "words"
[model]
plugin = "gpt"
[model.gpt]
n_layer = 1
n_head = 2
d_model = 32
[optim]
plugin = "adamw"
lr = 3e-3
[train]
steps = 2
batch_size = 8
eval_every = 2
eval_batches = 4
log_every = 1
checkpoint_every = 2
TOML
}
metric_names() { "$BIN" sql "SELECT DISTINCT name FROM metrics ORDER BY name" --db "$1" --format csv; }

babi_exp b.toml babi
expect_exit 0 "a 2-step bAbI run" -- "$BIN" run b.toml --db b.db
expect_exit 0 "its metrics" -- metric_names b.db
for m in val/accuracy val/token_accuracy val/accuracy/task=qa1 val/accuracy/task=qa19 val/loss/task=qa1; do
  expect_out "^$m\$" "metric $m recorded"
done
expect_exit 0 "accuracy is a fraction" -- "$BIN" sql \
  "SELECT count(*) AS n FROM metrics WHERE name = 'val/accuracy' AND value >= 0 AND value <= 1" --db b.db --format csv
expect_out "^[1-9]" "val/accuracy has values in [0, 1]"

babi_exp l.toml babilong 160 'filler = "austen"
lengths = "0,128"'
expect_exit 0 "a 2-step BABILong run (austen filler)" -- "$BIN" run l.toml --db l.db
expect_exit 0 "its metrics" -- metric_names l.db
for m in val/accuracy/length=0 val/accuracy/length=128 val/accuracy/task=qa19 val/loss/length=128; do
  expect_out "^$m\$" "metric $m recorded"
done

babi_exp d.toml defaults
sed -i '/^source = /d; /^tasks = /d' d.toml
expect_exit 2 "the default en-10k lacks qa3's training file" -- "$BIN" grid d.toml
expect_out "qa3_three-supporting-facts_train.txt" "the message names the missing file"
expect_exit 0 "en-10k without task 3" -- "$BIN" grid d.toml --set data.tasks=1-2,4-20
babi_exp e.toml errors
expect_exit 2 "lengths without a filler" -- "$BIN" grid e.toml --set data.lengths=0,512
expect_out "filler" "the message says a filler is needed"
expect_exit 2 "seq_len below the longest length" -- "$BIN" grid e.toml --set data.filler=austen --set data.lengths=0,512
expect_out "seq_len must be at least 512 \+ 8 = 520" "the message gives the smallest seq_len"
expect_exit 2 "a task outside 1-20" -- "$BIN" grid e.toml --set data.tasks=1-21
expect_out "outside the tasks 1-20" "the message says which tasks exist"
finish
