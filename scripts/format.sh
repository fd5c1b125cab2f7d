#!/usr/bin/env bash
# clang-format over our C++ sources. --check: fail on any difference (CI); otherwise rewrite in place.
set -euo pipefail
cd "$(dirname "$0")/.."
mapfile -t files < <(git ls-files '*.hpp' '*.cpp' '*.cu' '*.cuh' 2>/dev/null || true)
[ ${#files[@]} -eq 0 ] && mapfile -t files < <(find include tests examples simulator theory bench gpu \
  \( -name '*.hpp' -o -name '*.cpp' -o -name '*.cu' -o -name '*.cuh' \) 2>/dev/null)
if [ "${1:-}" = "--check" ]; then
  clang-format --dry-run --Werror "${files[@]}"
  echo "format: ${#files[@]} files clean"
else
  clang-format -i "${files[@]}"
fi
