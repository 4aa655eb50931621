#!/usr/bin/env bash
# Where a training step's time goes (issue 15, item 1), for architectures at the quickstart size
# (experiments/quickstart.toml's variants, one learning rate):
#   1. phases, wall time: `LMGRID_PROFILE=phases` makes the trainer time data, forward, backward,
#      optimizer (with clipping), evaluation, logging and checkpoints;
#   2. operations, CPU samples: `perf record` (Debian's linux-perf) of the whole process, every
#      sample's function classified by its library and name into matmul (BLAS), elementwise and
#      reductions (LibTorch's kernels), lmgrid's kernels, framework overhead (dispatch, autograd,
#      tensor allocation), memory (malloc, memcpy), thread synchronisation (OpenMP, futexes) and
#      the rest of the kernel (system calls, page faults), and lmgrid's own code and SQLite.
#   3. with --ops, operators: a second, 25-step run with `LMGRID_PROFILE=ops:TRACE` (LibTorch's
#      profiler over steps 11-20) summed per operator by tools/bench/trace_ops.py (self time).
# Prints one table of each per architecture. Without perf (or with --no-perf) no operation classes.
#
#   tools/bench/profile_step.sh [--steps 250] [--threads 2] [--no-perf] [--ops] [VARIANT ...]
#   VARIANT: a [[variant]] name of experiments/quickstart.toml (default: gpt mamba2 ttt-mlp)
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
BIN=${LMGRID_BIN:-$ROOT/build/bin/lmgrid}
STEPS=250 THREADS=2 PERF=1 OPS=0 VARIANTS=()
while [ $# -gt 0 ]; do
  case $1 in
    --steps) STEPS=$2; shift 2 ;;
    --threads) THREADS=$2; shift 2 ;;
    --no-perf) PERF=0; shift ;;
    --ops) OPS=1; shift ;;
    -*) echo "$0: unknown option $1" >&2; exit 2 ;;
    *) VARIANTS+=("$1"); shift ;;
  esac
done
[ ${#VARIANTS[@]} -gt 0 ] || VARIANTS=(gpt mamba2 ttt-mlp)
[ -x "$BIN" ] || { echo "$0: $BIN not built" >&2; exit 2; }
if [ "$PERF" = 1 ] && ! perf stat -e task-clock true >/dev/null 2>&1; then
  echo "$0: perf is missing or not allowed here (apt-get install linux-perf; kernel.perf_event_paranoid); phases only" >&2
  PERF=0
fi
export LMGRID_DATA_PATH=${LMGRID_DATA_PATH:-$ROOT/../shared/data}
WORK=$(mktemp -d "${TMPDIR:-/tmp}/lmgrid-profile.XXXXXX")
[ -n "${PROFILE_KEEP:-}" ] || trap 'rm -rf "$WORK"' EXIT

echo "# $(date -u +%F) $(lscpu | sed -n 's/^Model name: *//p'), $(nproc) cores; $STEPS steps, $THREADS threads, 1 worker"
for v in "${VARIANTS[@]}"; do
  # One run of the variant: the quickstart's sections, its overrides, lr 1e-3, no grid, one
  # evaluation and one checkpoint at the end (as the quickstart's last step has).
  make_config() {  # make_config STEPS: the run's TOML on stdout
  python3 - "$ROOT/experiments/quickstart.toml" "$v" "$1" <<'PY'
import sys, tomllib
src, name, steps = sys.argv[1], sys.argv[2], int(sys.argv[3])
q = tomllib.load(open(src, "rb"))
variants = {x["name"]: x for x in q.get("variant", [])}
if name not in variants:
    sys.exit(f"no [[variant]] named {name!r} in {src} (there are: {', '.join(variants)})")
cfg = {k: dict(q[k]) for k in ("data", "tokenizer", "optim", "train")}
cfg["model"] = {k: (dict(v) if isinstance(v, dict) else v) for k, v in q["model"].items()}
cfg["optim"]["lr"] = 1e-3
cfg["train"].update(steps=steps, eval_every=steps, checkpoint_every=steps)
cfg["train"]["warmup"] = min(cfg["train"].get("warmup", 0), steps // 10)
for key, value in variants[name].items():
    if key == "name":
        continue
    *path, last = key.split(".")
    d = cfg
    for p in path:
        d = d.setdefault(p, {})
    d[last] = value
def lit(v):
    if isinstance(v, bool): return "true" if v else "false"
    if isinstance(v, str): return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return repr(v)
out = [f'[experiment]\nname = "profile-{name}"\nseeds = [1]']
for section, body in cfg.items():
    out.append(f"[{section}]")
    out += [f"{k} = {lit(v)}" for k, v in body.items() if not isinstance(v, dict)]
    for sub, inner in body.items():
        if isinstance(inner, dict):
            out.append(f"[{section}.{sub}]")
            out += [f"{k} = {lit(x)}" for k, x in inner.items()]
print("\n".join(out))
PY
  }
  make_config "$STEPS" >"$WORK/$v.toml"
  run=("$BIN" run "$WORK/$v.toml" --db "$WORK/$v.db" --workers 1 --threads "$THREADS" --no-report)
  [ "$PERF" = 1 ] && run=(perf record -q -F 499 -o "$WORK/$v.perf" -- "${run[@]}")
  LMGRID_PROFILE=phases "${run[@]}" >"$WORK/$v.out" 2>"$WORK/$v.err" ||
    { echo "$0: $v failed:" >&2; tail -20 "$WORK/$v.err" >&2; exit 1; }
  : >"$WORK/$v.report"
  [ "$PERF" = 1 ] && perf report -i "$WORK/$v.perf" --no-children --sort dso,sym -g none --stdio 2>/dev/null >"$WORK/$v.report"
  python3 - "$v" "$WORK/$v.err" "$WORK/$v.report" <<'PY'
import re, sys
name, err, report = sys.argv[1:]
line = next((l for l in open(err, errors="replace") if "profile (LMGRID_PROFILE=phases)" in l), None)
if line is None:
    sys.exit(f"{name}: the run printed no profile line (see {err})")
head, phases = line.split("profile (LMGRID_PROFILE=phases): ", 1)[1].split(":", 1)
print(f"\n## {name}: {head.strip()}\n\n| phase | seconds | share of the loop |\n|---|---:|---:|")
for part in phases.split(","):
    m = re.match(r"\s*(\w+) ([\d.]+) s \(([\d.]+)%\)", part)
    if m:
        print(f"| {m[1]} | {m[2]} | {m[3]}% |")
rules = [  # (category, library pattern, function pattern): the first that matches wins
    ("matmul (BLAS)", r"openblas|libblas|mkl|cublas", r""),
    ("matmul (BLAS)", r"", r"gemm|gemv|mkldnn|brgemm|dnnl"),
    ("matmul (oneDNN JIT code)", r"\[JIT\]", r""),
    ("lmgrid kernels (attention, SSD, TTT)", r"lmgrid_kernels", r""),
    ("LibTorch kernels, symbols stripped (elementwise, reductions)", r"libtorch_cpu", r"^0x"),
    ("LibTorch kernels (elementwise, reductions)", r"sleef", r""),
    ("LibTorch kernels (elementwise, reductions)", r"libtorch_cpu",
     r"at::native::|at::vec::|Vectorized|cpu_kernel|vectorized_loop|reduce|softmax|_vml|loop2d|binary_kernel|unary_kernel"),
    ("thread synchronisation (sched_yield spin, OpenMP, futex)", r"gomp|pthreadpool|libpthread", r""),
    ("thread synchronisation (sched_yield spin, OpenMP, futex)", r"libc", r"sched_yield|pthread_cond|futex"),
    ("thread synchronisation (sched_yield spin, OpenMP, futex)", r"kernel",
     r"futex|sched|schedule|switch|yield|hrtimer|nanosleep|pick_next|idle|do_syscall_64|x64_sys_call|entry_SYSCALL|syscall_return|spin_unlock_irq"),
    ("process start (dynamic linking)", r"ld-linux", r""),
    ("memory (malloc, memcpy, page faults)", r"libc\.so|libc-", r""),
    ("memory (malloc, memcpy, page faults)", r"kernel", r"fault|clear_page|memcg|page|mm_|copy_|mmap|munmap|alloc"),
    ("kernel (other system time)", r"kernel", r""),
    ("framework overhead (dispatch, autograd, tensors)", r"libtorch|libc10", r""),
    ("lmgrid host, plugins and SQLite", r"lmgrid|sqlite|lib(arch|data|optim|tokenizer)_", r""),
]
shares = {}
for l in open(report, errors="replace"):
    m = re.match(r"\s*([\d.]+)%\s+(\S+)\s+\[[.k]\]\s+(.*)", l)
    if not m:
        continue
    pct, dso, sym = float(m[1]), m[2], m[3]
    cat = "other"
    for c, dpat, spat in rules:
        if (not dpat or re.search(dpat, dso)) and (not spat or re.search(spat, sym)):
            cat = c
            break
    shares[cat] = shares.get(cat, 0.0) + pct
if shares:
    print(f"\n| operations (perf, CPU samples of the whole process) | share |\n|---|---:|")
    for c, p in sorted(shares.items(), key=lambda kv: -kv[1]):
        print(f"| {c} | {p:.1f}% |")
PY
  if [ "$OPS" = 1 ]; then
    make_config 25 >"$WORK/$v-ops.toml"
    LMGRID_PROFILE=ops:$WORK/$v.trace.json "$BIN" run "$WORK/$v-ops.toml" --db "$WORK/$v-ops.db" --workers 1 \
      --threads "$THREADS" --no-report >"$WORK/$v-ops.out" 2>&1 ||
      { echo "$0: $v (--ops) failed:" >&2; tail -20 "$WORK/$v-ops.out" >&2; exit 1; }
    echo; echo "$v, operators over 10 steps (LibTorch profiler, self time):"; echo
    python3 "$ROOT/tools/bench/trace_ops.py" "$WORK/$v.trace.json" --top 25
  fi
done
