# Bad input: exit 2, a message saying what and where, and no database written.
. "$(dirname "$0")/lib.sh"
write_exp good.toml bad
db="$WORK/db.sqlite"

printf '[experiment]\nname = "x"\n[data\nplugin = 1\n' > syntax.toml
expect_exit 2 "TOML syntax error" -- "$BIN" run syntax.toml --db "$db"
expect_out 'syntax.toml:3:[0-9]+: TOML syntax error' "syntax error names file:line:col"

expect_exit 2 "unknown plugin" -- "$BIN" run good.toml --db "$db" --set model.plugin=gtp
expect_out "unknown arch plugin 'gtp'.*available: .*gpt" "unknown plugin lists the available ones"

write_exp typo.toml bad 'stpes = 3'
expect_exit 2 "unknown key" -- "$BIN" run typo.toml --db "$db"
expect_out "typo.toml:[0-9]+:[0-9]+: .*unknown key 'stpes'; did you mean 'steps'" "unknown key suggests the nearest"

expect_exit 2 "wrong type" -- "$BIN" run good.toml --db "$db" --set 'model.n_layer="two"'
expect_out "'n_layer' must be int but got string" "wrong type is named"

expect_exit 2 "out of range" -- "$BIN" run good.toml --db "$db" --set model.dropout=1.5
expect_out "'dropout' = 1.5 is out of range" "out-of-range value is named"

expect_exit 2 "missing data file offline" -- env LMGRID_DATA_PATH="$WORK/none" LMGRID_CACHE="$WORK/cache" LMGRID_OFFLINE=1 "$BIN" run good.toml --db "$db"
expect_out "Put the file tinyshakespeare/input.txt .* at $WORK/cache/tinyshakespeare/input.txt" "missing data says which file to put where"

expect_exit 2 "ABI-mismatched plugin" -- env LMGRID_PLUGIN_PATH="$LMGRID_TEST_PLUGINS" "$BIN" run good.toml --db "$db" --set model.plugin=probe_badabi
expect_out "plugin ABI version [0-9]+ \(plugin\) != [0-9]+ \(host\)" "ABI mismatch names both versions"

expect_exit 2 "missing experiment file" -- "$BIN" run nothere.toml --db "$db"
expect_exit 2 "bad LMGRID_PEAK_GFLOPS" -- env LMGRID_PEAK_GFLOPS=-3 "$BIN" run good.toml --db "$db"
expect_out "LMGRID_PEAK_GFLOPS='-3' is not a positive number" "bad peak override is named"
expect_exit 2 "bad CLI option" -- "$BIN" run good.toml --workers 0 --db "$db"

# Issue 18: values that used to pass validation, or fail with the wrong code or a raw message.
expect_exit 2 "val_fraction = 0 is refused" -- "$BIN" run good.toml --db "$db" --set data.val_fraction=0
expect_out "--set data.val_fraction=0: \[data\] \(plugin text\): val_fraction must be above 0" "says the val split is needed, and where"
expect_exit 2 "an integer beyond int64 (--set)" -- "$BIN" run good.toml --db "$db" --set train.steps=99999999999999999999
expect_out "--set train.steps=99999999999999999999: 99999999999999999999 is out of the int64 range" "says it is out of the int64 range"
write_exp huge.toml bad 'warmup = 99999999999999999999'
expect_exit 2 "an integer beyond int64 (file)" -- "$BIN" run huge.toml --db "$db"
expect_out "huge.toml:[0-9]+:[0-9]+: TOML syntax error" "the file's line and column are named"
expect_exit 2 "batch_size beyond its bound" -- "$BIN" run good.toml --db "$db" --set train.batch_size=9223372036854775807
expect_out "'batch_size' = 9223372036854775807 is out of range: must be in \[1, 1048576\]" "the bound is shown as integers"
expect_exit 2 "an int range reads as integers" -- "$BIN" run good.toml --db "$db" --set train.steps=0
expect_out "'steps' = 0 is out of range: must be in \[1, 1000000000000\]" "no [1.0, inf]"
printf '[experiment]\nname = "s"\nseeds = [1, "two"]\n' > seeds.toml
expect_exit 2 "a bad seed item" -- "$BIN" run seeds.toml --db "$db"
expect_out 'seeds.toml:3:13: seeds must be integers; item 2 is string "two"' "the item is named by position, value and place"
expect_exit 2 "--set of an unknown [experiment] key" -- "$BIN" run good.toml --db "$db" --set experiment.nmae=x
expect_out "name, description and seeds" "lists the keys that can be set"
check "no database was written by any bad input" -- test ! -e "$db"

# Files that are not lmgrid databases: exit 2, named, untouched.
: > empty.db
expect_exit 2 "query a zero-byte --db" -- "$BIN" runs --db empty.db
expect_out "empty.db is not an lmgrid database \(it is empty" "says it is not an lmgrid database"
printf 'hello, not sqlite\n%.0s' $(seq 1 300) > junk.db
sum=$(sha256sum junk.db)
expect_exit 2 "query a non-SQLite --db" -- "$BIN" runs --db junk.db
expect_out "junk.db is not an lmgrid database" "says it is not an lmgrid database"
expect_exit 2 "run into a non-SQLite --db" -- "$BIN" run good.toml --db junk.db
expect_out "junk.db is not an lmgrid database" "run refuses it too"
check "the foreign file is untouched" -- test "$(sha256sum junk.db)" = "$sum"
sqlite3 other.db "CREATE TABLE people(name TEXT)"
expect_exit 2 "run into a foreign SQLite database" -- "$BIN" run good.toml --db other.db
expect_out "other.db is not an lmgrid database \(an SQLite database with 1 other table\)" "names the foreign tables"
expect_exit 2 "sample from a foreign SQLite database" -- "$BIN" sample --run 1 --db other.db
expect_exit 2 "sql on a zero-byte database" -- "$BIN" sql "SELECT 1" --db empty.db

# Commands on a real database: a metric that does not exist, a negative --top-k.
"$BIN" run good.toml --db real.db --set train.steps=10 --no-report >/dev/null 2>&1 || fail "a small run for the query checks"
expect_exit 2 "metrics --name of a metric the run lacks" -- "$BIN" metrics 1 --name no/such --db real.db
expect_out "run 1 has no metric 'no/such'; its metrics: .*train/loss.*val/loss" "lists the run's metric names"
expect_exit 2 "metrics --name with a near miss" -- "$BIN" metrics 1 --name val/los --db real.db
expect_out "did you mean 'val/loss'" "suggests the nearest name"
expect_exit 0 "metrics --name of a real metric" -- "$BIN" metrics 1 --name val/loss --db real.db --format csv
expect_out "^1,10,[0-9]+,[0-9.]+,val/loss," "prints its rows"
expect_exit 2 "sample --top-k -3" -- "$BIN" sample --run 1 --db real.db --top-k -3 -n 5
expect_out "must be 0 \(all tokens\) or a positive integer, got -3" "says what --top-k takes"
check "no 300-digit range is printed" -- bash -c "! grep -qE '[0-9]{40}' '$WORK/out'"
finish
