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
finish
