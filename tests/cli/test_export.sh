# lmgrid export: a tiny gpt run (trained bpe with a special, padded vocabulary, bias = false,
# dropout) and a tiny llama run (sentencepiece, shared norm, grouped KV heads, untied head, a
# non-default RoPE base) exported with --format hf, a mamba2 run (no transformers class: raw
# tensors), bad input (exit 2 naming what and where), --force, and a failed export leaving
# nothing behind.
# Always (standard-library Python only): every model.safetensors parses (header length and
# alignment, dtypes, shapes, offsets tiling the buffer), config.json and the tokenizer files say
# what they should. With a Python that has torch + transformers + safetensors (the pip build's
# venv, found as tools/setup.sh names it): transformers loads the gpt export as GPT2LMHeadModel
# and the llama export as LlamaForCausalLM, float32, eval, and its logits on the reference ids
# equal lmgrid's (lmgrid_reference.safetensors, written by `export --reference`) to < 1e-4; the
# exported tokenizers give lmgrid's ids. Without one, that part prints SKIP.
. "$(dirname "$0")/lib.sh"

# The Python with transformers: $LMGRID_TORCH_PYTHON, the build's LMGRID_TORCH_PYTHON (a pip
# build), then tools/setup.sh's venv ($LMGRID_VENV, default ~/.cache/lmgrid/torch-2.11.0).
HFPY=""
cache_py=$(sed -n 's/^LMGRID_TORCH_PYTHON:STRING=//p' "${LMGRID_BUILD:-.}/CMakeCache.txt" 2>/dev/null)
for p in "${LMGRID_TORCH_PYTHON:-}" "$cache_py" "${LMGRID_VENV:-$HOME/.cache/lmgrid/torch-2.11.0}/bin/python"; do
  [ -n "$p" ] || continue
  if "$p" -c "import torch, transformers, safetensors" 2>/dev/null; then HFPY=$p; break; fi
done

write_exp gpt.toml gpt 'steps = 30
checkpoint_every = 30'
sed -i 's/^seq_len = 32$/seq_len = 48/; s/^plugin = "char"$/plugin = "bpe"\nvocab_size = 320\nspecials = "<|endoftext|>"/' gpt.toml
sed -i 's/^d_model = 32$/d_model = 32\ndropout = 0.1\nvocab_size = 384/' gpt.toml
write_exp llama.toml llama 'steps = 30
checkpoint_every = 30'
if [ "${LMGRID_SANITIZER_BUILD:-0}" = 1 ]; then
  # The sentencepiece plugin refuses to load under AddressSanitizer (tests/CMakeLists.txt): the
  # llama run uses the bpe tokenizer there, and its sentencepiece files are checked elsewhere.
  echo "SKIP - llama's sentencepiece tokenizer files (sanitizer build): the llama run uses bpe"
  export LLAMA_TOKENIZER=bpe
  sed -i 's/^seq_len = 32$/seq_len = 48/; s/^plugin = "char"$/plugin = "bpe"\nvocab_size = 400/' llama.toml
else
  export LLAMA_TOKENIZER=sentencepiece
  sed -i 's/^seq_len = 32$/seq_len = 48/; s/^plugin = "char"$/plugin = "sentencepiece"\nmodel_type = "bpe"\nvocab_size = 400\nbyte_fallback = true\nnormalization = "identity"/' llama.toml
fi
sed -i 's/^plugin = "gpt"$/plugin = "llama"/; s/^\[model.gpt\]$/[model.llama]/; s/^n_head = 2$/n_head = 4\nn_kv_head = 2\nshared_norm = true\ntied_head = false\nrope_base = 500.0\ninit_std = 0.2\nresidual_dropout = 0.1/' llama.toml
write_exp mamba.toml mamba 'steps = 10
checkpoint_every = 10'
sed -i 's/^plugin = "gpt"$/plugin = "mamba2"/; s/^\[model.gpt\]$/[model.mamba2]/; s/^n_head = 2$/d_state = 8\nheaddim = 8\nngroups = 2\nchunk_size = 4/; s/^d_model = 32$/d_model = 16/' mamba.toml
for e in gpt llama mamba; do
  "$BIN" run $e.toml --db ex.db --workers 1 --no-report >run-$e.log 2>&1 || { fail "run $e"; cat run-$e.log; }
done
ids=$(python3 -c 'import sqlite3, sys; print(" ".join(str(r[0]) for r in sqlite3.connect(sys.argv[1]).execute("SELECT id FROM runs ORDER BY id")))' ex.db)
check "three runs trained ($ids)" -- test "$ids" = "1 2 3"

TEXT=$'ROMEO:\nWhat light through yonder window breaks?<|endoftext|>JULIET: Ay me!'
LTEXT=$'ROMEO:\nWhat light through yonder window breaks? JULIET: Ay me!'
expect_exit 0 "export gpt --format hf" -- "$BIN" export --run 1 --db ex.db --format hf --out gpt-hf --reference "$TEXT"
expect_out "exported as GPT2LMHeadModel" "the gpt run is a GPT2LMHeadModel"
expect_out "biases are zeros" "says the biases of a bias = false run are zeros"
expect_exit 0 "export llama --format hf" -- "$BIN" export --run 2 --db ex.db --out llama-hf --reference "$LTEXT"
expect_out "exported as LlamaForCausalLM" "the llama run is a LlamaForCausalLM"
expect_out "residual_dropout = 0.1 is training-only" "says which training-only option has no counterpart"
expect_exit 0 "export mamba2 --format hf" -- "$BIN" export --run 3 --db ex.db --out mamba-hf --reference "To be"
expect_out "arch/mamba2 has no transformers class: raw" "mamba2 falls back to raw tensors, and says so"
expect_exit 0 "export gpt --format raw" -- "$BIN" export --run 1 --db ex.db --format raw --out gpt-raw

# Bad input: exit 2, saying what and where.
expect_exit 2 "an unknown run" -- "$BIN" export --run 99 --db ex.db --out x
expect_out "no run with id 99 in .*ex.db" "names the run and the database"
expect_exit 2 "an unknown format" -- "$BIN" export --run 1 --db ex.db --format onnx --out x
expect_out "unknown export format 'onnx' \(known: hf, raw\)" "names the format and the known ones"
cp ex.db nock.db
python3 -c 'import sqlite3, sys; c = sqlite3.connect(sys.argv[1]); c.execute("DELETE FROM checkpoints WHERE run_id = 3"); c.commit()' nock.db
expect_exit 2 "a run with no checkpoint" -- "$BIN" export --run 3 --db nock.db --out x
expect_out "run 3 in .*nock.db has no checkpoint yet" "names the run"
check "nothing written for bad input" -- test ! -e x
before=$(stat -c %Y gpt-hf/model.safetensors)
expect_exit 2 "a non-empty --out without --force" -- "$BIN" export --run 2 --db ex.db --out gpt-hf
expect_out "gpt-hf is not empty: pass --force to replace it" "says how to replace it"
check "the existing export is untouched" -- test "$(stat -c %Y gpt-hf/model.safetensors)" = "$before" -a ! -e gpt-hf/tokenizer.model
long=$(printf 'To be, or not to be, that is the question. %.0s' $(seq 30))
expect_exit 2 "a reference text longer than the context" -- "$BIN" export --run 1 --db ex.db --out gpt-hf --force --reference "$long"
expect_out "more than the model's context of 48" "names the context"
check "a failed export leaves the old folder and no temp folder" -- \
  sh -c 'test -f gpt-hf/lmgrid_reference.safetensors && test -z "$(ls -A . | grep "^\.gpt-hf")"'
mkdir -p forced && echo old >forced/stale.txt
expect_exit 0 "--force replaces a non-empty folder" -- "$BIN" export --run 1 --db ex.db --out forced --force
check "the old contents are gone" -- test ! -e forced/stale.txt -a -f forced/model.safetensors

# Standard-library checks of the files (no third-party Python).
cat >check_files.py <<'PY'
import json, struct, sys

def read_st(path):
    data = open(path, "rb").read()
    n = struct.unpack("<Q", data[:8])[0]
    assert n % 8 == 0, f"{path}: header length {n} is not 8-byte aligned"
    header = json.loads(data[8:8 + n].decode("utf-8"))
    buf = len(data) - 8 - n
    size = {"F32": 4, "F64": 8, "I64": 8, "F16": 2, "BF16": 2, "I32": 4, "U8": 1, "BOOL": 1}
    spans, tensors = [], {}
    for name, e in header.items():
        if name == "__metadata__":
            continue
        count = 1
        for d in e["shape"]:
            count *= d
        b, end = e["data_offsets"]
        assert end - b == count * size[e["dtype"]], f"{name}: offsets {b},{end} vs shape {e['shape']}"
        spans.append((b, end))
        tensors[name] = (e["dtype"], e["shape"], data[8 + n + b:8 + n + end])
    at = 0
    for b, end in sorted(spans):
        assert b == at, f"{path}: gap or overlap at {b}"
        at = end
    assert at == buf, f"{path}: tensors end at {at} of {buf}"
    return header.get("__metadata__", {}), tensors

def f32(raw):
    return list(struct.unpack(f"<{len(raw) // 4}f", raw))

kind, d = sys.argv[1], sys.argv[2]
meta, t = read_st(f"{d}/model.safetensors")
if kind == "gpt":
    cfg = json.load(open(f"{d}/config.json"))
    assert cfg["architectures"] == ["GPT2LMHeadModel"] and cfg["model_type"] == "gpt2"
    assert (cfg["vocab_size"], cfg["n_positions"], cfg["n_embd"], cfg["n_layer"], cfg["n_head"]) == (320, 48, 32, 2, 2), cfg
    assert cfg["activation_function"] == "gelu" and cfg["layer_norm_epsilon"] == 1e-5
    assert cfg["eos_token_id"] == 319 and cfg["bos_token_id"] == 319, cfg
    assert t["transformer.wte.weight"][1] == [320, 32], "padded rows cut to the tokenizer's 320"
    assert t["transformer.h.0.attn.c_attn.weight"][1] == [32, 96], "Conv1D layout (in, out)"
    assert t["transformer.h.1.mlp.c_proj.weight"][1] == [128, 32]
    assert set(f32(t["transformer.h.0.attn.c_attn.bias"][2])) == {0.0}, "bias = false: zero biases"
    assert "lm_head.weight" not in t and all(v[0] == "F32" for v in t.values())
    assert len(t) == 2 + 2 * 12 + 2, sorted(t)
    vocab = json.load(open(f"{d}/vocab.json"))
    assert len(vocab) == 320 and vocab["<|endoftext|>"] == 319 and vocab["Ġ"] == 32 and vocab["a"] == 97
    merges = open(f"{d}/merges.txt", encoding="utf-8").read().splitlines()
    assert merges[0].startswith("#version") and len(merges) == 1 + 320 - 256 - 1, len(merges)
    tc = json.load(open(f"{d}/tokenizer_config.json"))
    assert tc["tokenizer_class"] == "GPT2Tokenizer" and tc["added_tokens_decoder"]["319"]["content"] == "<|endoftext|>"
    _, ref = read_st(f"{d}/lmgrid_reference.safetensors")
    assert ref["input_ids"][0] == "I64" and ref["logits"][1][2] == 320, ref["logits"][1]
elif kind == "llama":
    cfg = json.load(open(f"{d}/config.json"))
    assert cfg["architectures"] == ["LlamaForCausalLM"]
    assert (cfg["hidden_size"], cfg["num_attention_heads"], cfg["num_key_value_heads"], cfg["head_dim"]) == (32, 4, 2, 8)
    assert cfg["rope_theta"] == 500.0 and cfg["tie_word_embeddings"] is False and cfg["max_position_embeddings"] == 48
    assert t["model.layers.0.self_attn.k_proj.weight"][1] == [16, 32] and t["lm_head.weight"][1][1] == 32
    a, b = t["model.layers.1.input_layernorm.weight"][2], t["model.layers.1.post_attention_layernorm.weight"][2]
    assert a == b, "shared_norm: one gain written twice"
    assert len(t) == 1 + 2 * 9 + 1 + 1, sorted(t)
    if __import__("os").environ["LLAMA_TOKENIZER"] == "sentencepiece":
        assert open(f"{d}/tokenizer.model", "rb").read(1) == b"\n", "a serialized SentencePiece ModelProto"
        assert json.load(open(f"{d}/tokenizer_config.json"))["tokenizer_class"] == "LlamaTokenizer"
elif kind == "raw":
    desc = json.load(open(f"{d}/lmgrid_config.json"))
    assert desc["format"] == "lmgrid-raw" and not __import__("os").path.exists(f"{d}/config.json")
    assert {k: [v["dtype"], v["shape"]] for k, v in desc["tensors"].items()} == {k: [v[0], v[1]] for k, v in t.items()}
    assert desc["arch"] == sys.argv[3] and desc["tokenizer"]["plugin"] in ("char", "bpe") and desc["run"]["step"] > 0
print(f"{kind}: {len(t)} tensors, header and offsets valid")
PY
for c in "gpt gpt-hf" "llama llama-hf" "raw mamba-hf mamba2" "raw gpt-raw gpt"; do
  set -- $c
  out=$(python3 check_files.py "$@" 2>&1) && pass "files of $2: $out" || fail "files of $2: $out"
done

if [ -z "$HFPY" ]; then
  echo "SKIP - transformers comparison: no Python with torch, transformers and safetensors" \
       "(LMGRID_TORCH_PYTHON, or tools/setup.sh's venv with LMGRID_TORCH=pip)"
  finish
  exit $?
fi
echo "transformers from $HFPY"
cat >hf_check.py <<'PY'
import json, sys
import torch
import transformers
from safetensors import safe_open
from safetensors.torch import load_file

kind, d = sys.argv[1], sys.argv[2]
# Python's safetensors reads every tensor lmgrid wrote, with the header's names and shapes.
with safe_open(f"{d}/model.safetensors", "pt") as f:
    names = sorted(f.keys())
    assert f.metadata()["format"] == "pt"
ref = load_file(f"{d}/lmgrid_reference.safetensors")
ids, want = ref["input_ids"], ref["logits"]
if kind == "raw":
    desc = json.load(open(f"{d}/lmgrid_config.json"))
    assert names == sorted(desc["tensors"])
    print(f"raw: {len(names)} tensors load in safetensors {__import__('safetensors').__version__}")
    sys.exit(0)
cls = {"gpt": transformers.GPT2LMHeadModel, "llama": transformers.LlamaForCausalLM}[kind]
model = cls.from_pretrained(d, torch_dtype=torch.float32).eval()
with torch.no_grad():
    got = model(ids).logits
diff = (got - want).abs().max().item()
# The tokenizer files: transformers' tokenizer gives lmgrid's ids for the reference text.
text = open(f"{d}/../{kind}.txt", encoding="utf-8").read()
lm_ids = ids[0].tolist()
extra, hf_ids = "", None
import importlib.util
import os
spm = kind == "llama" and os.environ["LLAMA_TOKENIZER"] == "sentencepiece"
if kind == "llama" and not spm:
    extra = " (SKIP tokenizer: the llama run used bpe, a sanitizer build)"
elif kind == "llama" and not (importlib.util.find_spec("sentencepiece") and importlib.util.find_spec("google.protobuf")):
    extra = " (SKIP tokenizer: transformers reads tokenizer.model with sentencepiece + protobuf, not installed)"
else:
    tok = transformers.AutoTokenizer.from_pretrained(d)
    hf_ids = tok(text, add_special_tokens=kind == "llama")["input_ids"]
    extra = f" {type(tok).__name__}_ids_equal={hf_ids == lm_ids}"
if spm and importlib.util.find_spec("sentencepiece"):
    import sentencepiece
    sp_ids = sentencepiece.SentencePieceProcessor(model_file=f"{d}/tokenizer.model").encode(text)
    assert sp_ids == lm_ids, f"sentencepiece {sp_ids} != lmgrid {lm_ids}"
    extra += " sentencepiece_ids_equal=True"
if kind == "llama":
    # The test can fail: without the per-head RoPE row order, transformers' logits are far off
    # (init_std = 0.2 makes attention sharp enough for positions to matter).
    D, sd = model.config.head_dim, model.state_dict()
    for k in sd:
        if k.endswith(("q_proj.weight", "k_proj.weight")):
            w = sd[k]
            sd[k] = w.reshape(w.shape[0] // D, 2, D // 2, -1).transpose(1, 2).reshape(w.shape)
    model.load_state_dict(sd)
    with torch.no_grad():
        unpermuted = (model(ids).logits - want).abs().max().item()
    assert unpermuted > 1e-2, f"the comparison cannot see the RoPE order ({unpermuted})"
    extra += f" unpermuted_rope_diff={unpermuted:.3g}"
print(f"PARITY {kind} transformers {transformers.__version__} {cls.__name__} max_abs_logit_diff={diff:.3g} "
      f"tokens={len(lm_ids)}{extra}")
assert hf_ids is None or hf_ids == lm_ids, f"tokenizer ids {hf_ids} != lmgrid {lm_ids}"
assert diff < 1e-4, diff
PY
printf '%s' "$TEXT" >gpt.txt
printf '%s' "$LTEXT" >llama.txt
for c in "gpt gpt-hf" "llama llama-hf" "raw mamba-hf"; do
  set -- $c
  out=$("$HFPY" hf_check.py "$@" 2>hf.err) && pass "transformers: $out" || { fail "transformers $2: $out"; tail -20 hf.err; }
done
finish
