# llm.c token shards through the host: shards written by a 15-line numpy writer (both versions)
# are read by lmgrid token for token (`data inspect --dump`); shards lmgrid writes (`data tokenize`)
# are read back by a numpy reader and equal the tokenizer's ids (`lmgrid tokenize`); every
# malformed header and a token >= vocab exit 2 before anything runs, naming the file and the
# field; overwriting needs --force; training on shards runs, and a killed run resumes exactly.
# ctest: run alone (a run killed once it has a checkpoint: another test beside it on 2 cores shifts them)
. "$(dirname "$0")/lib.sh"
# A python3 with numpy: the first on PATH, else Debian's (python3-numpy, which tools/setup.sh test installs).
PY=""
for p in python3 /usr/bin/python3; do "$p" -c 'import numpy' 2>/dev/null && { PY=$p; break; }; done
[ -n "$PY" ] || { echo "FAIL - no python3 with numpy (tools/setup.sh test installs python3-numpy)"; exit 1; }

# The numpy writer of llm.c's format (dev/data/data_common.py's layout), and its reader.
cat >npshard.py <<'PY'
import json, sys, numpy as np
def write(path, toks, version=1, magic=None, ntok=None, dtype=None):
    h = np.zeros(256, dtype="<i4")
    h[0] = magic if magic is not None else (20240520 if version == 1 else 20240801)
    h[1], h[2] = version, len(toks) if ntok is None else ntok
    with open(path, "wb") as f:
        f.write(h.tobytes())
        f.write(np.asarray(toks, dtype=dtype or ("<u2" if version == 1 else "<u4")).tobytes())
def read(path):
    h = np.fromfile(path, dtype="<i4", count=256)
    assert h[0] in (20240520, 20240801) and h[1] == {20240520: 1, 20240801: 7}[h[0]], path
    t = np.fromfile(path, dtype="<u2" if h[1] == 1 else "<u4", offset=1024)
    assert len(t) == h[2], path
    return t
PY
cat >write.py <<'PY'
import json, numpy as np
from npshard import write
rng = np.random.default_rng(0)
v1 = rng.integers(0, 50257, 5000); v7 = rng.integers(0, 128256, 3000); v7[:3] = [65535, 65536, 128255]
write("np_v1.bin", v1, 1); write("np_v7.bin", v7, 7)
json.dump([int(x) for x in v1], open("np_v1.json", "w")); json.dump([int(x) for x in v7], open("np_v7.json", "w"))
small = rng.integers(0, 50257, 400)
write("bad_magic.bin", small, 1, magic=12345)
write("bad_version.bin", small, 3, magic=20240520)
write("mismatch.bin", small, 7, magic=20240520, dtype="<u4")
write("bad_ntok.bin", small, 1, ntok=401)
open("short.bin", "wb").write(b"\0" * 100)
big = small.copy(); big[17] = 50257
write("big_id.bin", big, 1)
write("ok_val.bin", small, 1)
PY
"$PY" write.py || fail "numpy writer"

"$BIN" data inspect --dump np_v1.bin >v1.out 2>&1
"$PY" -c 'import json,sys; a=json.load(open("v1.out")); b=json.load(open("np_v1.json")); sys.exit(a != b)' &&
  pass "numpy v1 shard (uint16, 5000 ids) read by lmgrid token for token" || { fail "v1 tokens differ"; head -c 300 v1.out; }
"$BIN" data inspect --dump np_v7.bin >v7.out 2>&1
"$PY" -c 'import json,sys; a=json.load(open("v7.out")); b=json.load(open("np_v7.json")); sys.exit(a != b)' &&
  pass "numpy v7 shard (uint32, ids up to 128255) read by lmgrid token for token" || { fail "v7 tokens differ"; head -c 300 v7.out; }
expect_exit 0 "data inspect prints the header fields" -- "$BIN" data inspect np_v1.bin np_v7.bin --format csv
expect_out '^np_v1.bin,20240520,1,uint16,5000,11024,' "v1 fields: magic, version, width, ntok, bytes"
expect_out '^np_v7.bin,20240801,7,uint32,3000,13024,128255$' "v7 fields and the largest id"

# Malformed shards: `data inspect` and a grid that uses them both exit 2 naming file and field.
for c in "bad_magic.bin|header\[0\] \(magic\) is 12345, expected 20240520 or 20240801" \
  "bad_version.bin|header\[1\] \(version\) is 3, expected 1 \(uint16 tokens\) or 7" \
  "mismatch.bin|header\[1\] \(version\) is 7, but magic 20240520 goes with version 1" \
  "bad_ntok.bin|header\[2\] \(ntok\) is 401, but the file holds 800 bytes after the header: 400 tokens" \
  "short.bin|the file is 100 bytes, shorter than the 1024-byte header"; do
  f=${c%%|*} msg=${c#*|}
  expect_exit 2 "data inspect $f" -- "$BIN" data inspect "$f"
  expect_out "error: $f: $msg" "data inspect names $f and the field"
  cat >bad.toml <<TOML
[experiment]
name = "bad"
[data]
plugin = "shards"
train = "$f"
val = "ok_val.bin"
seq_len = 16
vocab_size = 50257
[tokenizer]
plugin = "bpe"
pretrained = "gpt2"
[model]
plugin = "gpt"
[optim]
plugin = "adamw"
TOML
  expect_exit 2 "a grid on $f is refused before it runs" -- "$BIN" run bad.toml --db bad.db --dry-run
  expect_out "train shard $f: $msg" "the grid error names $f and the field"
done
sed -i 's/^train = .*/train = "big_id.bin"/' bad.toml
expect_exit 2 "a token >= vocab_size is refused before the run" -- "$BIN" run bad.toml --db bad.db --dry-run
expect_out "train shard big_id.bin: token 17 is 50257, not below the vocabulary size 50257" "names the file, index and id"
expect_exit 2 "data inspect --vocab checks the ids" -- "$BIN" data inspect big_id.bin --vocab 50257
sed -i 's/^train = .*/train = "nothing_*.bin"/' bad.toml
expect_exit 2 "a glob with no match" -- "$BIN" run bad.toml --db bad.db --dry-run
expect_out 'train = "nothing_\*.bin": no file matches nothing_\*.bin' "names the pattern"
check "nothing was written for refused grids" -- test ! -e bad.db

# data tokenize: a folder of documents (one per file), GPT-2 BPE, small shards.
# Six documents of about 4 KB of tiny Shakespeare, no whitespace around them (kept as is).
mkdir docs
"$PY" -c '
import sys
t = open(sys.argv[1]).read()
for k in range(6): open("docs/story_%02d" % k, "w").write(t[k * 4000:(k + 1) * 4000].strip())
' "$LMGRID_DATA_PATH/tinyshakespeare/input.txt" || fail "documents"
G=(--tokenizer bpe --set pretrained=gpt2)
expect_exit 2 "a tokenizer without a document marker is refused" -- "$BIN" data tokenize docs "${G[@]}" --out sh
expect_out 'specials="<\|endoftext\|>"' "says how to configure one"
"$BIN" data tokenize docs "${G[@]}" --set 'specials=<|endoftext|>' --out sh --shard-tokens 1000 >tok.out 2>tok.err ||
  { fail "data tokenize"; cat tok.out tok.err; }
check "shard 0 is val, the rest train ($(ls sh | tr '\n' ' '))" -- test -f sh/docs_val_000000.bin -a -f sh/docs_train_000001.bin -a -f sh/tokenizer.json
grep -q "tokenize: 6/6 documents" tok.err && pass "progress on stderr" || { fail "progress"; cat tok.err; }
grep -q '^plugin = "shards"$' tok.out && grep -q '^pretrained = "gpt2"$' tok.out && pass "prints the [data] and [tokenizer] config" || { fail "config"; cat tok.out; }
: >expected.txt
for d in docs/story_0*; do "$BIN" tokenize "${G[@]}" <"$d" >>expected.txt || fail "tokenize $d"; done
cat >readback.py <<'PY'
import glob, json, sys, numpy as np
from npshard import read
files = sorted(glob.glob("sh/docs_*.bin"), key=lambda f: int(f[-10:-4]))
got = np.concatenate([read(f) for f in files]).tolist()
want = []
for line in open("expected.txt"):
    want += [50256] + json.loads(line)
sizes = [len(read(f)) for f in files]
ok = got == want and all(s == 1000 for s in sizes[:-1]) and 0 < sizes[-1] <= 1000
print(len(got), len(want), sizes)
sys.exit(0 if ok else 1)
PY
"$PY" readback.py >rb.out 2>&1 && pass "numpy reads lmgrid's shards: <|endoftext|> + the tokenizer's ids per document, 1000 per shard ($(cat rb.out))" ||
  { fail "read back"; cat rb.out; }
check "gpt2 ids fit 16 bits: version 1" -- sh -c "'$BIN' data inspect sh/docs_val_000000.bin --format csv | grep -q ',20240520,1,uint16,1000,'"
"$BIN" data tokenize docs "${G[@]}" --set 'specials=<|endoftext|>' --out sh --shard-tokens 1000 --format v7 >/dev/null 2>&1
expect_exit 2 "existing shards are not overwritten without --force" -- "$BIN" data tokenize docs "${G[@]}" --set 'specials=<|endoftext|>' --out sh --shard-tokens 1000
expect_out "sh/docs_train_000001.bin exists: give --force" "names the file"
n_before=$(ls sh/*.bin | wc -l)
expect_exit 0 "--force overwrites (v7, larger shards)" -- "$BIN" data tokenize docs "${G[@]}" --set 'specials=<|endoftext|>' --out sh --shard-tokens 2500 --format v7 --force
check "the longer tokenization's extra shards are gone ($n_before -> $(ls sh/*.bin | wc -l))" -- test "$(ls sh/*.bin | wc -l)" -lt "$n_before"
"$PY" -c '
import glob, json, numpy as np
from npshard import read
files = sorted(glob.glob("sh/docs_*.bin"), key=lambda f: int(f[-10:-4]))
got = np.concatenate([read(f) for f in files]).tolist()
want = []
for line in open("expected.txt"): want += [50256] + json.loads(line)
assert got == want and np.fromfile(files[0], dtype="<i4", count=2).tolist() == [20240801, 7]
' && pass "v7 shards hold the same ids" || fail "v7 read back"
check "no temporary file is left" -- sh -c '! ls sh | grep -q tmp'

# Training on GPT-2 shards with the pretrained tokenizer: a few steps.
cat >g.toml <<TOML
[experiment]
name = "gpt2shards"
seeds = [1]
[data]
plugin = "shards"
train = "sh/docs_train_*.bin"
val = "sh/docs_val_*.bin"
seq_len = 32
[tokenizer]
plugin = "bpe"
pretrained = "gpt2"
specials = "<|endoftext|>"
[model]
plugin = "gpt"
n_layer = 1
n_head = 2
d_model = 16
[optim]
plugin = "adamw"
[train]
steps = 4
batch_size = 4
eval_every = 4
eval_batches = 2
checkpoint_every = 4
TOML
expect_exit 0 "a run on GPT-2 shards trains (vocab_size from tokenizer.json)" -- "$BIN" run g.toml --db g.db --no-report
sed -i 's/^pretrained = "gpt2"$//; s/^specials = .*$//; s/^plugin = "bpe"$/plugin = "byte"/' g.toml
# The tokenizer's vocabulary is known in the worker only: the run fails (exit 1) saying why.
expect_exit 1 "a tokenizer smaller than the shards' vocabulary fails the run" -- "$BIN" run g.toml --db g2.db --no-report
expect_out "run 1 failed: plugin data/shards: vocab_size: the shards' ids go up to 50256 but the tokenizer has 256 ids" "says which tokenizer to configure"

# A trained tokenizer: fitted on the train documents, its state in tokenizer.json, loaded by a run.
T=(--tokenizer bpe --set vocab_size=300 --set 'specials=<|endoftext|>')
"$BIN" data tokenize docs "${T[@]}" --out tr --shard-tokens 1500 >tr.out 2>tr.err || { fail "trained tokenize"; cat tr.err; }
grep -q "fitted on" tr.err && pass "the bpe was fitted first" || { fail "no fit"; cat tr.err; }
check "tokenizer.json holds the fitted state" -- "$PY" -c 'import json; j=json.load(open("tr/tokenizer.json")); assert j["plugin"]=="bpe" and j["vocab_size"]==300 and "merges" in j["state"]'
# 1500 steps (600 under the sanitizers, whose steps are ~3x slower): the kill at the first
# checkpoint past step 50 lands mid-run either way.
steps=$(sanitized_or 1500 600)
write_exp r.toml resume "steps = $steps
checkpoint_every = 25"
"$PY" - <<'PY'
import re
s = open("r.toml").read()
s = re.sub(r'\[data\].*?\[tokenizer\]\nplugin = "char"\n', '[data]\nplugin = "shards"\ntrain = "tr/docs_train_*.bin"\nval = "tr/docs_val_*.bin"\nseq_len = 32\n[tokenizer]\nplugin = "bpe"\nvocab_size = 300\nspecials = "<|endoftext|>"\n', s, flags=re.S)
s = s.replace("d_model = 32", "d_model = 16")
open("r.toml", "w").write(s)
PY
setsid "$BIN" run r.toml --db k.db --no-report >run1.log 2>&1 &
pid=$!
for i in $(seq 1 600); do
  st=$("$BIN" sql "SELECT count(*) FROM checkpoints WHERE step >= 50" --db k.db --format csv 2>/dev/null | tail -1)
  [ "${st:-0}" -ge 1 ] && break
  sleep 0.2
done
kill -9 -- -"$pid" 2>/dev/null
wait "$pid" 2>/dev/null
status=$("$BIN" sql "SELECT status FROM runs WHERE id = 1" --db k.db --format csv | tail -1)
check "the run on trained-bpe shards was killed while running (status $status)" -- test "$status" = "running"
"$BIN" run r.toml --db k.db --no-report >run2.log 2>&1 || { fail "rerun"; cat run2.log; }
grep -q "resuming from step" run2.log && pass "the killed run resumed from a checkpoint" || { fail "no resume"; cat run1.log run2.log; }
"$BIN" run r.toml --db ref.db --no-report >ref.log 2>&1 || { fail "reference run"; cat ref.log; }
tq="SELECT group_concat(printf('%d:%.17g', step, value), ' ') FROM (SELECT step, value FROM metrics WHERE run_id = 1 AND name IN ('train/loss', 'val/loss') ORDER BY name, step)"
t1=$("$BIN" sql "$tq" --db k.db --format csv | tail -1)
t2=$("$BIN" sql "$tq" --db ref.db --format csv | tail -1)
check "the resumed run's train and val losses equal the uninterrupted run's" -- test -n "$t1" -a "$t1" = "$t2"
"$BIN" sample --run 1 --db ref.db -n 20 --seed 1 --prompt "Once" >sample.txt 2>sample.err
check "sample of a shards run decodes with the saved bpe ($(head -c 50 sample.txt | tr -c '[:print:]' ' '))" -- test "$(wc -c <sample.txt)" -gt 10
finish
