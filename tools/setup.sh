#!/usr/bin/env bash
# lmgrid set-up for a fresh Debian 12 machine.
#   tools/setup.sh main   install what is missing, build, run experiments/quickstart.toml
#   tools/setup.sh test   install what is missing (plus test tools), build, run the tests (ctest)
#   tools/setup.sh build  install and build only
#   tools/setup.sh deps   install what is missing only (tools/fuzz.sh uses it)
# Installs Debian packages with apt-get (as root, or through sudo) and builds into build/ (host at
# build/bin/lmgrid, plugins in build/plugins/). Data sets resolve through LMGRID_DATA_PATH,
# which defaults here to ../shared/data when that folder exists.
#
# Which LibTorch (README, "LibTorch and GPUs", says why the default is Debian's):
#   LMGRID_TORCH=debian  (default) Debian's libtorch-dev (1.13, CPU only) with OpenBLAS
#   LMGRID_TORCH=pip     LibTorch 2.x from the pinned `torch` wheel, installed into a virtual
#                        environment (LMGRID_VENV, default ~/.cache/lmgrid/torch-<version>); a CUDA
#                        build: needs the CUDA toolkit's nvcc and headers (/usr/local/cuda)
# LMGRID_SANITIZE=address,undefined builds every lmgrid target with those sanitizers (gcc's
# AddressSanitizer + UBSan; .ci/run's first pass, into build-asan/); the tests then fail on any
# report (tests/CMakeLists.txt, tests/sanitizer.supp).
# The tests run one per core (LMGRID_TEST_JOBS overrides), except the scripts that depend on
# timing, which run alone (tests/CMakeLists.txt: "# ctest: run alone").
# LMGRID_BUILD_DIR (default build) is the build folder; a folder configured for the other LibTorch
# or other sanitizers is configured anew. Compiles go through ccache (cmake/Ccache.cmake), so a
# rebuild of unchanged sources, in any clone, is mostly cache hits.
set -euo pipefail
cd "$(dirname "$0")/.."
mode=${1:-main}
case "$mode" in main | test | build | deps) ;; *) echo "usage: tools/setup.sh main|test|build|deps" >&2; exit 2 ;; esac

torch=${LMGRID_TORCH:-debian}
sanitize=${LMGRID_SANITIZE:-}
torch_pin=2.11.0  # the wheel's LibTorch; CUDA 13.0, as the toolkit at /usr/local/cuda
build=${LMGRID_BUILD_DIR:-build}
case "$torch" in pip | debian) ;; *) echo "lmgrid setup: LMGRID_TORCH must be pip or debian, not '$torch'" >&2; exit 2 ;; esac

packages=(build-essential cmake ninja-build pkg-config libboost-dev libtomlplusplus-dev libfmt-dev
          libsqlite3-dev catch2 libcurl4-openssl-dev libgloo-dev libcli11-dev nlohmann-json3-dev libssl-dev sqlite3
          libicu-dev libsentencepiece-dev libarchive-dev ccache)  # ICU: the bpe tokenizer's Unicode classes; libarchive: data/babi reads .tar.xz
if [ "$torch" = debian ]; then packages+=(libtorch-dev libopenblas0-pthread); else packages+=(python3-venv); fi
# Test mode also renders reports in a real browser (tests/cli/test_report.sh), checks the C++
# formatting (tests/cli/test_format.sh), encodes with the reference SentencePiece (spm_encode,
# tests/cli/test_tokenize.sh) and runs a grid on a real Slurm (slurmctld, slurmd and munged started
# by tests/cli/test_slurm.sh itself, configured for localhost under its scratch folder; the
# packages' own services and /etc/slurm are not used).
[ "$mode" = test ] && packages+=(chromium fonts-dejavu-core clang-format sentencepiece python3-numpy  # numpy: tests/cli/test_shards.sh
                                 slurm-wlm munge)
# Callers may add packages of their own (tools/fuzz.sh: clang and libFuzzer's runtime).
# shellcheck disable=SC2206
packages+=(${LMGRID_EXTRA_PACKAGES:-})
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "lmgrid setup: installing ${missing[*]}"
  SUDO=""
  [ "$(id -u)" = 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

torch_args=(-DLMGRID_TORCH="$torch" -DLMGRID_SANITIZE="$sanitize")
if [ "$torch" = pip ]; then
  if ! command -v nvcc >/dev/null && [ ! -x /usr/local/cuda/bin/nvcc ]; then
    echo "lmgrid setup: LMGRID_TORCH=pip needs the CUDA toolkit (the torch wheel's LibTorch is a CUDA build and" \
         "its CMake files look for nvcc); none at /usr/local/cuda or on PATH. Use LMGRID_TORCH=debian." >&2
    exit 2
  fi
  venv=${LMGRID_VENV:-$HOME/.cache/lmgrid/torch-$torch_pin}
  py="$venv/bin/python"
  if ! "$py" -c "import torch, sys; sys.exit(torch.__version__.split('+')[0] != '$torch_pin')" 2>/dev/null; then
    echo "lmgrid setup: installing torch==$torch_pin into $venv (about 4.6 GB with its CUDA libraries)"
    /usr/bin/python3 -m venv "$venv"
    "$py" -m pip install --quiet --disable-pip-version-check "torch==$torch_pin"
  fi
  torch_args+=(-DLMGRID_TORCH_PYTHON="$py")
  # tests/cli/test_export.sh loads lmgrid's exports in transformers (small next to torch).
  if [ "$mode" = test ] && ! "$py" -c "import transformers, safetensors, sentencepiece, google.protobuf" 2>/dev/null; then
    echo "lmgrid setup: installing transformers, safetensors, sentencepiece and protobuf into $venv (export tests)"
    "$py" -m pip install --quiet --disable-pip-version-check transformers safetensors sentencepiece protobuf
  fi
fi

[ "$mode" = deps ] && exit 0

if [ -z "${LMGRID_DATA_PATH:-}" ] && [ -d ../shared/data ]; then
  export LMGRID_DATA_PATH=$(cd ../shared/data && pwd)
fi
# A build folder made for the other LibTorch starts again (its cached paths name that one).
if [ -f "$build/CMakeCache.txt" ] && { ! grep -q "^LMGRID_TORCH:STRING=$torch\$" "$build/CMakeCache.txt" ||
                                      ! grep -q "^LMGRID_SANITIZE:STRING=$sanitize\$" "$build/CMakeCache.txt"; }; then
  echo "lmgrid setup: $build/ was configured for another LibTorch or sanitizers; configuring it for" \
       "LMGRID_TORCH=$torch LMGRID_SANITIZE=$sanitize"
  rm -rf "$build/CMakeCache.txt" "$build/CMakeFiles"
fi
if [ ! -f "$build/build.ninja" ] || [ ! -f "$build/CMakeCache.txt" ]; then
  cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DLMGRID_BUILD_TESTS=ON "${torch_args[@]}" \
        ${LMGRID_DATA_PATH:+-DLMGRID_TEST_DATA_PATH=$LMGRID_DATA_PATH}
fi
cmake --build "$build" -j "$(nproc)"

case "$mode" in
  main) exec "$build/bin/lmgrid" run experiments/quickstart.toml ;;
  test) cd "$build" && exec ctest --output-on-failure -j "${LMGRID_TEST_JOBS:-$(nproc)}" ;;
  build) ;;
esac
