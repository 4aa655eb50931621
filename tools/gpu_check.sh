#!/usr/bin/env bash
# tools/gpu_check.sh: every check that needs a GPU, as one prepared command for a machine that has
# python3 with a CUDA torch, CMake, ninja and nvcc but no network (the lent H100/H200 machines).
#
#   tools/gpu_check.sh --prepare   here (Debian 12, network to Debian's mirror): download the Debian
#                                  -dev packages the build needs as .deb files into .gpu/debs and
#                                  copy the benchmark's data into .gpu/data (about 20 MB in all;
#                                  .gpu/ is git-ignored: name it in the device tool's `carry`)
#   tools/gpu_check.sh             on the GPU machine: unpack .gpu/debs into a private prefix, build
#                                  lmgrid against that python's torch (LMGRID_TORCH=pip, no libcurl),
#                                  run the CUDA tests ("[cuda]": parity of the CUDA paths against
#                                  the CPU/composite references), the GPT-2-124M-shaped training
#                                  benchmark (experiments/gpt124m_gpu.toml: tokens/s and MFU against
#                                  the measured bf16 peak) and the CUDA kernels against their
#                                  composites (bench_cuda_kernels: time, speed-up, bandwidth), and
#                                  print one summary table (also to $OUT/gpu_check.txt when OUT is set)
#   tools/gpu_check.sh --dry-run   here: --prepare when needed, then every step that needs no GPU
#                                  (unpack, build against the local torch wheel, the CUDA tests and
#                                  the kernel benchmark, which report that they skip, and a
#                                  20-step CPU run of the benchmark's grid at a small width)
# Environment: LMGRID_GPU_PYTHON (default python3; --dry-run: the set-up script's torch venv),
# LMGRID_GPU_BUILD (default build-gpu), LMGRID_GPU_PREFIX (default /tmp/lmgrid-gpu-prefix).
# The whole run takes about 5 minutes on a 16-core GPU machine (the build is most of it).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
mode=run
case "${1:-}" in
  --prepare) mode=prepare ;;
  --dry-run) mode=dry ;;
  "") ;;
  *) echo "usage: tools/gpu_check.sh [--prepare | --dry-run]" >&2; exit 2 ;;
esac

# The Debian 12 packages the build needs beyond a compiler, CMake, ninja and a CUDA torch (the
# sentencepiece tokenizer is left out: its plugin is skipped when libsentencepiece is missing).
debs=(libboost1.74-dev libtomlplusplus-dev libtomlplusplus3 libfmt-dev libfmt9 libsqlite3-dev libsqlite3-0
      catch2 libcli11-dev nlohmann-json3-dev libssl-dev libssl3 pkgconf pkgconf-bin libpkgconf3 libicu-dev libicu72)
gpu=$root/.gpu
build=${LMGRID_GPU_BUILD:-build-gpu}
prefix=${LMGRID_GPU_PREFIX:-/tmp/lmgrid-gpu-prefix}
summary=()
note() { summary+=("$1|${2//|//}"); }  # "|" separates the columns

prepare() {
  mkdir -p "$gpu/debs" "$gpu/data"
  local need=()
  for p in "${debs[@]}"; do ls "$gpu/debs/${p}_"*.deb >/dev/null 2>&1 || need+=("$p"); done
  if [ ${#need[@]} -gt 0 ]; then
    echo "gpu_check: downloading ${need[*]}"
    [ -n "$(ls /var/lib/apt/lists/*_Packages 2>/dev/null)" ] || apt-get update -qq
    (cd "$gpu/debs" && apt-get download -qq "${need[@]}")
  fi
  local data=${LMGRID_DATA_PATH:-$root/../shared/data}
  mkdir -p "$gpu/data/tinyshakespeare"
  cp -f "$data/tinyshakespeare/input.txt" "$gpu/data/tinyshakespeare/input.txt"
  echo "gpu_check: prepared $(du -sh "$gpu" | cut -f1) in .gpu/ (carry it: run(carry=[\".gpu\"]))"
}

unpack() {
  rm -rf "$prefix" && mkdir -p "$prefix"
  for f in "$gpu"/debs/*.deb; do
    if command -v dpkg-deb >/dev/null; then
      dpkg-deb -x "$f" "$prefix"
    else  # a .deb is an ar archive holding data.tar.*
      local t; t=$(mktemp -d)
      (cd "$t" && ar x "$f" && tar -xf data.tar.* -C "$prefix")
      rm -rf "$t"
    fi
  done
  # pkg-config files name /usr: point them at the prefix.
  find "$prefix" -name '*.pc' -exec sed -i "s|^prefix=/usr|prefix=$prefix/usr|" {} +
}

build_lmgrid() {
  local py=$1
  local lib=$prefix/usr/lib/x86_64-linux-gnu
  export PKG_CONFIG_PATH=$lib/pkgconfig:$prefix/usr/share/pkgconfig
  export PKG_CONFIG_LIBDIR=$PKG_CONFIG_PATH
  local t0=$SECONDS
  mkdir -p "$build"
  LD_LIBRARY_PATH=$lib cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DLMGRID_BUILD_TESTS=ON \
    -DLMGRID_TORCH=pip -DLMGRID_TORCH_PYTHON="$py" -DLMGRID_WITH_CURL=OFF \
    -DCMAKE_PREFIX_PATH="$prefix/usr" -DPKG_CONFIG_EXECUTABLE="$prefix/usr/bin/pkgconf" \
    -DLMGRID_TEST_DATA_PATH="$gpu/data" >"$build/configure.log" 2>&1 || { tail -40 "$build/configure.log"; exit 1; }
  grep "lmgrid: LibTorch" "$build/configure.log" || true
  cmake --build "$build" -j "$(nproc)" 2>&1 | tail -3
  note "build" "$(grep -o 'LibTorch [^;]*' "$build/configure.log" | head -1); $((SECONDS - t0)) s on $(nproc) cores"
}

# The CUDA tests: parity of the CUDA paths with their references ("[cuda]": model, attention,
# checkpoints; "[gpu]": the CUDA kernels); without a GPU each prints SKIP and passes.
cuda_tests() {
  local log=$build/cuda_tests.log
  set +e
  "$build/bin/lmgrid_tests" "[cuda],[gpu]" -s >"$log" 2>&1
  local rc=$?
  set -e
  grep -E "^ *(SKIP|PARITY) |CUDA .*: forward |test cases|FAILED" "$log" | sed 's/^ *//' | sort -u
  note "CUDA tests ([cuda],[gpu])" "$([ "$rc" = 0 ] && echo pass || echo "FAIL (rc $rc)"): $(grep -E 'test cases' "$log" | tail -1)"
  grep -E "^ *PARITY |CUDA .*: forward " "$log" | sed 's/^ *//; s/^PARITY //' | sort -u >"$build/parity.txt" || true
  while IFS= read -r l; do note "  ${l%%:*}" "${l#*: }"; done <"$build/parity.txt"
}

# The GPT-2-124M-shaped training run through the real trainer (lmgrid run); `extra` shrinks it.
train_bench() {
  local label=$1 db=$build/gpu_bench.db
  shift
  local extra=("$@")
  rm -f "$db"
  LMGRID_DATA_PATH=$gpu/data "$build/bin/lmgrid" run experiments/gpt124m_gpu.toml --db "$db" --no-report "${extra[@]}" \
    2>&1 | tail -4
  "$build/bin/lmgrid" sql --db "$db" \
    "SELECT (SELECT value FROM summaries WHERE key='tokens_per_s'), (SELECT value FROM summaries WHERE key='mfu'),
            (SELECT value FROM summaries WHERE key='peak_gflops'), (SELECT value FROM summaries WHERE key='n_params'),
            (SELECT value FROM summaries WHERE key='final_train_loss')" --format csv | tail -1 >"$build/bench.csv"
  IFS=, read -r toks mfu peak params loss <"$build/bench.csv"
  note "GPT-124M train (${label})" \
    "$(printf '%.0f tok/s, MFU %.3f of %.0f GFLOP/s, %.0f params, final train loss %.4f' "${toks:-0}" "${mfu:-0}" \
      "${peak:-0}" "${params:-0}" "${loss:-0}")"
}

kernel_bench() {
  if [ -x "$build/bin/bench_cuda_kernels" ]; then
    "$build/bin/bench_cuda_kernels" | tee "$build/kernels.txt"
    note "CUDA kernels vs composites" "$(tail -1 "$build/kernels.txt")"
  else
    note "CUDA kernels vs composites" "bench_cuda_kernels not built (no CUDA kernels in this build)"
  fi
}

report() {
  local out="lmgrid gpu_check ($mode) on $(hostname), $(date -u +%FT%TZ)"$'\n'
  out+=$(printf '%s\n' "${summary[@]}" | awk -F'|' '{printf "  %-38s %s\n", $1, $2}')
  echo "================================================================"
  echo "$out"
  if [ -n "${OUT:-}" ]; then echo "$out" >"$OUT/gpu_check.txt"; fi
}

case "$mode" in
  prepare) prepare ;;
  dry)
    prepare
    py=${LMGRID_GPU_PYTHON:-$HOME/.cache/lmgrid/torch-2.11.0/bin/python}
    note "mode" "dry run: no GPU steps (they skip), CPU-sized benchmark"
    unpack
    build_lmgrid "$py"
    cuda_tests
    train_bench "dry run: 2 x 64 wide, on the CPU" --set train.device=cpu --set train.dtype=float32 --set model.n_layer=2 --set model.d_model=64 \
      --set model.n_head=2 --set data.seq_len=64 --set train.batch_size=4 --set train.steps=20 --set train.eval_every=20 \
      --set model.vocab_size=0
    kernel_bench
    report
    ;;
  run)
    py=${LMGRID_GPU_PYTHON:-python3}
    "$py" -c "import torch; assert torch.cuda.is_available(), 'no CUDA device'; print('torch', torch.__version__, torch.cuda.get_device_name(0))"
    note "machine" "$("$py" -c "import torch; print(torch.__version__, torch.cuda.get_device_name(0))")"
    [ -d "$gpu/debs" ] || { echo "gpu_check: no .gpu/debs: run tools/gpu_check.sh --prepare where Debian's mirror is reachable and carry .gpu" >&2; exit 2; }
    unpack
    build_lmgrid "$py"
    "$build/bin/lmgrid" env | grep -E "libtorch|cuda" || true
    cuda_tests
    train_bench "bf16 autocast, 16 x 1024 tokens a step"
    kernel_bench
    report
    ;;
esac
