# Shared helpers for CLI tests: a scratch folder, assertions that say what failed.
set -u
BIN=${LMGRID_BIN:?LMGRID_BIN not set (run through ctest)}
WORK=$(mktemp -d "${TMPDIR:-/tmp}/lmgrid-cli.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
cd "$WORK"
# Tests leave the user's cache (~/.cache/lmgrid: downloads, the MFU peak) alone.
export LMGRID_CACHE="$WORK/cache"
FAILS=0
PASSES=0
pass() { PASSES=$((PASSES + 1)); echo "ok - $1"; }
fail() { FAILS=$((FAILS + 1)); echo "FAIL - $1"; }
# expect_exit CODE DESCRIPTION -- command...   (stderr+stdout kept in $WORK/out)
expect_exit() {
  local want=$1 what=$2; shift 3
  "$@" >"$WORK/out" 2>&1
  local got=$?
  if [ "$got" = "$want" ]; then pass "$what (exit $got)"; else fail "$what: exit $got, wanted $want"; cat "$WORK/out"; fi
}
expect_out() {  # expect_out PATTERN DESCRIPTION: grep the last command's output
  if grep -qE -- "$1" "$WORK/out"; then pass "$2"; else fail "$2: output lacks /$1/"; cat "$WORK/out"; fi
}
check() {  # check DESCRIPTION -- test-expression...
  local what=$1; shift 2
  if "$@"; then pass "$what"; else fail "$what"; fi
}
finish() { echo "$PASSES passed, $FAILS failed"; [ "$FAILS" = 0 ]; }
# wait_ckpt DB RUN STEP: waits (30 s at most) until run RUN of DB has a checkpoint at STEP or later.
# sanitized_or PLAIN SANITIZED: PLAIN, or SANITIZED in a sanitizer build (LMGRID_SANITIZER_BUILD=1,
# .ci/run's first pass), where a training step is ~3x slower: step counts that keep a test's
# faults mid-run in about the same time.
sanitized_or() { if [ "${LMGRID_SANITIZER_BUILD:-0}" = 1 ]; then echo "$2"; else echo "$1"; fi; }
wait_ckpt() {
  local i n
  for i in $(seq 1 300); do
    n=$("$BIN" sql "SELECT count(*) FROM checkpoints WHERE run_id = $2 AND step >= $3" --db "$1" --format csv 2>/dev/null | tail -n +2)
    [ "${n:-0}" -ge 1 ] 2>/dev/null && return 0
    sleep 0.1
  done
  return 1
}
# A small experiment file: write_exp FILE NAME [extra toml]
write_exp() {
  cat >"$1" <<TOML
[experiment]
name = "$2"
seeds = [1]
[data]
plugin = "text"
source = "tiny_shakespeare"
seq_len = 32
[tokenizer]
plugin = "char"
[model]
plugin = "gpt"
[model.gpt]
n_layer = 2
n_head = 2
d_model = 32
[optim]
plugin = "adamw"
lr = 3e-3
[train]
batch_size = 8
eval_every = 20
eval_batches = 4
log_every = 5
${3:-}
TOML
  # defaults for keys the caller did not set
  grep -q '^steps' "$1" || sed -i 's/^\[train\]$/[train]\nsteps = 40/' "$1"
  grep -q '^checkpoint_every' "$1" || sed -i 's/^\[train\]$/[train]\ncheckpoint_every = 10/' "$1"
}
