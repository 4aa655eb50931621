#!/usr/bin/env bash
# lmgrid set-up for a fresh Debian 12 machine.
#   tools/setup.sh main   install what is missing, build, run experiments/quickstart.toml
#   tools/setup.sh test   install what is missing (plus test tools), build, run the tests (ctest)
#   tools/setup.sh build  install and build only
# Installs Debian packages with apt-get (as root, or through sudo), builds into build/ (host at
# build/bin/lmgrid, plugins in build/plugins/). Data sets resolve through LMGRID_DATA_PATH,
# which defaults here to ../shared/data when that folder exists.
set -euo pipefail
cd "$(dirname "$0")/.."
mode=${1:-main}

packages=(build-essential cmake ninja-build pkg-config libtorch-dev libboost-dev libtomlplusplus-dev libfmt-dev
          libsqlite3-dev catch2 libopenblas0-pthread libcurl4-openssl-dev libgloo-dev libcli11-dev
          nlohmann-json3-dev libssl-dev sqlite3)
# Test mode also renders reports in a real browser (tests/cli/test_report.sh) and checks the
# C++ formatting (tests/cli/test_format.sh).
[ "$mode" = test ] && packages+=(chromium fonts-dejavu-core clang-format)
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

if [ -z "${LMGRID_DATA_PATH:-}" ] && [ -d ../shared/data ]; then
  export LMGRID_DATA_PATH=$(cd ../shared/data && pwd)
fi
jobs=$(nproc)
if [ ! -f build/build.ninja ]; then
  cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release -DLMGRID_BUILD_TESTS=ON \
        ${LMGRID_DATA_PATH:+-DLMGRID_TEST_DATA_PATH=$LMGRID_DATA_PATH}
fi
cmake --build build -j "$jobs"

case "$mode" in
  main)  exec build/bin/lmgrid run experiments/quickstart.toml ;;
  test)  cd build && exec ctest --output-on-failure -j 1 ;;
  build) ;;
  *) echo "usage: tools/setup.sh main|test|build" >&2; exit 2 ;;
esac
