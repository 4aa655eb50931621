# `lmgrid plugins check NAME`: every in-tree arch passes; lm2's released-code mode and a
# deliberately leaky test model fail causality (exit 1, the leak's size printed); a scaffolded
# out-of-tree arch passes; bad input is exit 2. And the vocab_size override every arch has:
# BLM-medium's published counts at Llama-2's 32,000-token vocabulary.
. "$(dirname "$0")/lib.sh"
for arch in gpt gem ttt mamba2 ys llama lm2; do
  expect_exit 0 "plugins check $arch passes every check" -- "$BIN" plugins check "$arch"
  expect_out "^ *causal: changing token j moves no logit before j +pass" "$arch: causal row says pass"
done
expect_exit 0 "check --format csv" -- "$BIN" plugins check llama --format csv
expect_out "^decode: token by token = full forward,pass," "llama decodes token by token (csv row)"
expect_out "^params: declared count = the module's,pass," "llama's declared parameter count matches"

expect_exit 1 "lm2 mode code fails the check" -- "$BIN" plugins check lm2 --set mode=code
expect_out "causal: changing token j moves no logit before j +FAIL +[0-9.e-]+ +1e-10 +leak at j" "lm2 code: the causality leak and its size"
expect_out "causal: d\(logits before j\).* +FAIL" "lm2 code: the gradient reaches later embeddings"
expect_out "decode: token by token = full forward +n/a" "lm2 code: no incremental decoding (n/a)"

export LMGRID_PLUGIN_PATH="$LMGRID_BUILD/leaky-plugins"
expect_exit 1 "a leaky model fails" -- "$BIN" plugins check leaky
expect_out "causal: changing token j moves no logit before j +FAIL" "leaky: value leak found"
expect_exit 1 "a gradient-only leak fails" -- "$BIN" plugins check leaky --set leak=gradient
expect_out "causal: changing token j moves no logit before j +pass" "leaky gradient: values are causal"
expect_out "causal: d\(logits before j\).* +FAIL" "leaky gradient: the gradient check finds it"
expect_exit 0 "the leak switched off passes" -- "$BIN" plugins check leaky --set leak=none
unset LMGRID_PLUGIN_PATH

expect_exit 2 "unknown key" -- "$BIN" plugins check llama --set n_layers=2
expect_out "n_layers" "the unknown key is named"
expect_exit 2 "malformed --set" -- "$BIN" plugins check llama --set n_layer
expect_exit 2 "unknown plugin" -- "$BIN" plugins check nosuchmodel
expect_exit 2 "a cross-parameter rule" -- "$BIN" plugins check llama --set n_kv_head=3

# A scaffolded out-of-tree arch, built against the installed SDK, passes.
cmake --install "$LMGRID_BUILD" --prefix "$WORK/sdk" >install.log 2>&1 || { fail "cmake --install"; cat install.log; }
expect_exit 0 "new-plugin scaffolds an arch" -- "$BIN" new-plugin arch mymodel --dir "$WORK/mymodel"
cmake -S "$WORK/mymodel" -B "$WORK/mymodel/build" -DCMAKE_PREFIX_PATH="$WORK/sdk" -DCMAKE_BUILD_TYPE=Release >cfg.log 2>&1 \
  || { fail "configure plugin"; cat cfg.log; }
cmake --build "$WORK/mymodel/build" >build.log 2>&1 || { fail "build plugin"; cat build.log; }
expect_exit 0 "the scaffolded arch passes the check" -- env LMGRID_PLUGIN_PATH="$WORK/mymodel/build" "$BIN" plugins check mymodel
expect_out "^ *causal: changing token j moves no logit before j +pass" "scaffold: causal"

# vocab_size: BLM-medium (d 768, 4 layers, 12 heads, MLP 998, shared norm, tied) at 32,000 tokens.
write_exp blm.toml blm
cat >>blm.toml <<'TOML'
[model.llama]
d_model = 768
n_layer = 4
n_head = 12
mlp_hidden = 998
shared_norm = true
tied_head = true
vocab_size = 32000
TOML
expect_exit 0 "grid counts BLM-medium" -- "$BIN" grid blm.toml --set model.plugin=llama --format csv
expect_out ",43214592,18638592$" "43,214,592 parameters, 18,638,592 non-embedding"
expect_exit 2 "a vocab_size below the tokenizer's is bad input" -- "$BIN" grid blm.toml --set model.plugin=llama --set model.llama.vocab_size=10
expect_out "smaller than the tokenizer's vocabulary" "the message says why"
finish
