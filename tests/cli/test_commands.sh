# The query commands, sample, env and grid: outputs a script can read, read-only SQL.
. "$(dirname "$0")/lib.sh"
write_exp c.toml cmds 'steps = 30'
printf '[grid]\n"optim.lr" = [1e-3, 3e-3]\n' >>c.toml
expect_exit 0 "grid prints the expanded runs" -- "$BIN" grid c.toml
expect_out "^2 +[0-9a-f]{12} +0.003 +[0-9]+" "grid shows hash, varying key and parameter count"
expect_exit 0 "dry run" -- "$BIN" run c.toml --db c.db --dry-run
check "dry run writes nothing" -- test ! -e c.db
expect_exit 0 "run" -- "$BIN" run c.toml --db c.db
expect_exit 0 "runs as json" -- "$BIN" runs --db c.db --format json
expect_out '"optim.lr": 0.003' "runs json has the varying key"
expect_exit 0 "runs --where" -- "$BIN" runs --db c.db --where optim.lr=0.003 --format csv --columns id,optim.lr,best_val_loss
check "runs --where selects one run" -- test "$(wc -l < out)" = "2"
expect_exit 2 "bad --where" -- "$BIN" runs --db c.db --where 'optim.lr'
expect_exit 2 "unknown --where key" -- "$BIN" runs --db c.db --where optim.lrr=1
expect_out "did you mean 'optim.lr'" "unknown key gets a hint"
expect_exit 0 "metrics" -- "$BIN" metrics 1 --db c.db --name val/loss --format csv
check "metrics exports the val series (2 evals)" -- test "$(grep -c 'val/loss' out)" = "2"
before=$(sha256sum c.db | cut -d' ' -f1)
expect_exit 2 "sql refuses writes" -- "$BIN" sql "DELETE FROM runs" --db c.db
expect_out "read-only" "sql says it is read-only"
expect_exit 2 "sql refuses a second statement" -- "$BIN" sql "SELECT 1; DELETE FROM runs" --db c.db
check "the database file is unchanged" -- test "$before" = "$(sha256sum c.db | cut -d' ' -f1)"
expect_exit 0 "sql select" -- "$BIN" sql "SELECT count(*) AS n FROM runs" --db c.db --format json
expect_out '"n": 2' "sql json output"
expect_exit 0 "sample" -- "$BIN" sample --run 1 --db c.db -n 40 --seed 3 --top-k 5 --top-p 0.9 --prompt "ROMEO:"
cp out s1
"$BIN" sample --run 1 --db c.db -n 40 --seed 3 --top-k 5 --top-p 0.9 --prompt "ROMEO:" >s2 2>&1
check "sampling is reproducible with a seed" -- cmp -s s1 s2
check "sample continues the prompt" -- grep -q "^ROMEO:" s1
expect_exit 0 "interactive sample" -- sh -c "printf 'KING:\n' | '$BIN' sample --run 1 --db c.db -n 10 -i"
expect_exit 2 "sample of a missing run" -- "$BIN" sample --run 99 --db c.db
expect_exit 0 "plugins show" -- "$BIN" plugins show gpt
expect_out "^n_layer +int +4 +\[1" "plugins show lists typed params with defaults and ranges"
expect_exit 0 "env" -- "$BIN" env --format json --matmul-size 256
expect_out '"blas_core"' "env reports the BLAS core"
# The LibTorch build, as its own config says: CUDA with its version for the torch wheel, CPU only
# for Debian's; the version is the one the binary was compiled against.
expect_exit 0 "env as csv" -- "$BIN" env --format csv --matmul-size 64
expect_out "^libtorch_build,(CPU only|CUDA [0-9]+\.[0-9]+ \(cuDNN [0-9.]+\))$" "env says CPU or CUDA build"
expect_out "^libtorch,[12]\.[0-9]+\.[0-9]+$" "env shows the LibTorch version"
expect_out "^cpu_bf16,(avx512_bf16|amx_bf16|none)" "env says whether the CPU has bf16 instructions"

# grid --dump: every resolved run as TOML that `lmgrid run` accepts back with the same hashes.
expect_exit 0 "grid --dump" -- "$BIN" grid c.toml --dump
cp out dump.toml
check "the dump has one [[variant]] per config" -- test "$(grep -c '^\[\[variant\]\]' dump.toml)" = 2
expect_exit 0 "the dump reruns on the same database" -- "$BIN" run dump.toml --db c.db --no-report
expect_out "2 runs \(2 done, 0 to run\)" "its runs are the done ones: same config hashes"
h1=$("$BIN" grid c.toml --no-params --format csv | cut -d, -f2 | tail -n +2)
h2=$("$BIN" grid dump.toml --no-params --format csv | cut -d, -f2 | tail -n +2)
check "grid prints the same hashes for the file and its dump" -- test -n "$h1" -a "$h1" = "$h2"
expect_exit 0 "quickstart dumps" -- "$BIN" grid "$LMGRID_SOURCE/experiments/quickstart.toml" --dump
cp out q.toml
q1=$("$BIN" grid "$LMGRID_SOURCE/experiments/quickstart.toml" --no-params --format csv | cut -d, -f2 | tail -n +2)
q2=$("$BIN" grid q.toml --no-params --format csv | cut -d, -f2 | tail -n +2)
check "quickstart's 12 runs keep their hashes through --dump" -- test "$(echo "$q1" | wc -l)" = 12 -a "$q1" = "$q2"
# [report] group_by may name the variant, as `lmgrid report -g variant` does (mqar.toml groups so).
expect_exit 0 "mqar.toml (its report grouped by variant and width) dumps" -- \
  "$BIN" grid "$LMGRID_SOURCE/experiments/mqar.toml" --dump
expect_out 'group_by = \["variant", "model.d_model"\]' "the dump keeps its report grouping"
# --set reaches [experiment]: a renamed copy of the grid is a new experiment with new hashes.
expect_exit 0 "--set experiment.name" -- "$BIN" grid c.toml --no-params --set experiment.name=renamed
expect_out "2 runs in experiment 'renamed'" "the experiment is renamed"
finish
