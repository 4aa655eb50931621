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
check "no database was written by any bad input" -- test ! -e "$db"
finish
