# An out-of-tree plugin made with `lmgrid new-plugin`, built against the installed SDK, is listed
# from LMGRID_PLUGIN_PATH and runs in a grid.
. "$(dirname "$0")/lib.sh"
cmake --install "$LMGRID_BUILD" --prefix "$WORK/sdk" >install.log 2>&1 || { fail "cmake --install"; cat install.log; }
check "SDK installs its CMake package" -- test -f "$WORK/sdk/lib/cmake/lmgrid/lmgridConfig.cmake"
expect_exit 0 "new-plugin scaffolds a project" -- "$BIN" new-plugin arch mymodel --dir "$WORK/mymodel"
expect_exit 2 "new-plugin refuses a non-empty folder" -- "$BIN" new-plugin arch mymodel --dir "$WORK/mymodel"
expect_exit 2 "new-plugin refuses a bad name" -- "$BIN" new-plugin arch My-Model --dir "$WORK/x"
cmake -S "$WORK/mymodel" -B "$WORK/mymodel/build" -DCMAKE_PREFIX_PATH="$WORK/sdk" -DCMAKE_BUILD_TYPE=Release >cfg.log 2>&1 \
  || { fail "configure plugin"; cat cfg.log; }
cmake --build "$WORK/mymodel/build" >build.log 2>&1 || { fail "build plugin"; cat build.log; }
export LMGRID_PLUGIN_PATH="$WORK/mymodel/build"
expect_exit 0 "plugins lists it" -- "$BIN" plugins --kind arch
expect_out "^arch +mymodel +0.1" "the new plugin is listed"
write_exp oot.toml outoftree 'steps = 20'
expect_exit 0 "it runs in a grid" -- "$BIN" run oot.toml --db oot.db --set model.plugin=mymodel
check "its run is done" -- test "$("$BIN" sql "SELECT status FROM runs" --db oot.db --format csv | tail -1)" = "done"
check "the plugin file hash is recorded" -- test -n "$("$BIN" sql "SELECT file_sha256 FROM plugins WHERE kind='arch' AND name='mymodel'" --db oot.db --format csv | tail -1)"
# A scaffolded dataset with a loss mask (copy task): the trainer logs val/accuracy and stores the
# best and final accuracy as summaries, equal to the metric rows they come from.
expect_exit 0 "new-plugin scaffolds a dataset" -- "$BIN" new-plugin data mycopy --dir "$WORK/mycopy"
cmake -S "$WORK/mycopy" -B "$WORK/mycopy/build" -DCMAKE_PREFIX_PATH="$WORK/sdk" -DCMAKE_BUILD_TYPE=Release >cfg2.log 2>&1 \
  || { fail "configure data plugin"; cat cfg2.log; }
cmake --build "$WORK/mycopy/build" >build2.log 2>&1 || { fail "build data plugin"; cat build2.log; }
export LMGRID_PLUGIN_PATH="$WORK/mymodel/build:$WORK/mycopy/build"
cat >copy.toml <<TOML
[experiment]
name = "copy"
seeds = [1]
[data]
plugin = "mycopy"
seq_len = 16
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
lr = 3e-3
[train]
steps = 20
batch_size = 4
eval_every = 10
eval_batches = 2
TOML
expect_exit 0 "a masked dataset runs" -- "$BIN" run copy.toml --db copy.db
sql() { "$BIN" sql "$1" --db copy.db --format csv | tail -1; }
best=$(sql "SELECT value FROM summaries WHERE key='best_val_accuracy'")
check "best_val_accuracy is stored" -- test -n "$best"
check "best_val_accuracy = MAX(val/accuracy)" -- test "$best" = "$(sql "SELECT MAX(value) FROM metrics WHERE name='val/accuracy'")"
check "final_val_accuracy = the last val/accuracy" -- test "$(sql "SELECT value FROM summaries WHERE key='final_val_accuracy'")" = \
  "$(sql "SELECT value FROM metrics WHERE name='val/accuracy' ORDER BY step DESC LIMIT 1")"
finish
