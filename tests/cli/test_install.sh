# `cmake --install` gives a working host: bin/lmgrid, its libraries and the in-tree plugins in
# <prefix>/lib/lmgrid/plugins, found with no environment variable, also after the prefix is
# moved; the installed host trains a tiny grid. Test plugins are not installed.
. "$(dirname "$0")/lib.sh"
cmake --install "$LMGRID_BUILD" --prefix "$WORK/prefix" >install.log 2>&1 || { fail "cmake --install"; cat install.log; }
mv "$WORK/prefix" "$WORK/moved"   # relocatable: nothing may point back at the install prefix
P="$WORK/moved"
check "the host is installed" -- test -x "$P/bin/lmgrid"
for p in arch_gpt arch_gem arch_ttt arch_mamba2 arch_ys data_text tokenizer_char optim_adamw; do
  check "plugin lmgrid_$p.so is installed" -- test -f "$P/lib/lmgrid/plugins/lmgrid_$p.so"
done
check "test plugins are not installed" -- bash -c "! ls '$P'/lib/lmgrid/plugins | grep -q probe"
unset LMGRID_PLUGIN_PATH
# Where the loader finds lmgrid's own libraries for the host, the commands and a plugin.
libs=$(ldd "$P/bin/lmgrid" "$P/lib/liblmgrid_cli.so" "$P/lib/lmgrid/plugins/lmgrid_arch_gpt.so" |
       awk '$1 ~ /^liblmgrid_/ {print $3}' | xargs -r realpath | sort -u)
check "lmgrid's libraries are found ($(echo "$libs" | wc -l) of them)" -- test "$(echo "$libs" | grep -c .)" -ge 4
check "all of them in the moved install" -- bash -c "! echo '$libs' | grep -v '^$(realpath "$P")/lib/' | grep -q ."
check "none from the build tree" -- bash -c "! echo '$libs' | grep -q '$LMGRID_BUILD'"
mkdir elsewhere && cd elsewhere
expect_exit 0 "the installed host lists its plugins" -- "$P/bin/lmgrid" plugins --format csv
expect_out "gpt" "gpt is found"
expect_out "^arch,gpt,.*,$P/lib/lmgrid/plugins\$" "from the installed plugin folder"
check "the plugins come from the install, not the build" -- bash -c "! grep -q '$LMGRID_BUILD' '$WORK/out'"
write_exp tiny.toml installed 'steps = 10'
expect_exit 0 "the installed host trains a tiny grid" -- "$P/bin/lmgrid" run tiny.toml --db i.db --no-report
check "the run is done" -- test "$("$P/bin/lmgrid" sql "SELECT status FROM runs" --db i.db --format csv | tail -n +2)" = done
expect_exit 0 "and samples from it" -- "$P/bin/lmgrid" sample --run 1 --db i.db -n 10
finish
