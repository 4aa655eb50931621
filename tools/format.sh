#!/usr/bin/env bash
# Formats lmgrid's C++ with clang-format (.clang-format at the top). --check: change nothing,
# exit 1 and list the files that are not formatted.
set -euo pipefail
cd "$(dirname "$0")/.."
mapfile -t files < <(git ls-files '*.cpp' '*.hpp' '*.cu' '*.cuh' | grep -v '^tests/fixtures/')
if [ "${1:-}" = --check ]; then
  bad=$(for f in "${files[@]}"; do clang-format --dry-run -Werror "$f" >/dev/null 2>&1 || echo "$f"; done)
  [ -z "$bad" ] && { echo "format: ${#files[@]} files follow .clang-format"; exit 0; }
  echo "format: not formatted (run tools/format.sh):"; echo "$bad"; exit 1
fi
clang-format -i "${files[@]}"
