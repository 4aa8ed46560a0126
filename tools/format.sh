#!/usr/bin/env bash
# Formats every C++/CUDA source of the repository with clang-format (Debian's clang-format 14,
# the repository's .clang-format).
#   tools/format.sh          rewrite the files in place
#   tools/format.sh --check  change nothing; list the files that are not formatted and fail
set -euo pipefail
cd "$(dirname "$0")/.."
command -v clang-format >/dev/null || {
  echo "format: clang-format not found (apt-get install clang-format)" >&2
  exit 2
}
mapfile -t files < <(git ls-files '*.h' '*.cpp' '*.cu' '*.cuh')
if [ "${1:-}" = "--check" ]; then
  bad=()
  for f in "${files[@]}"; do
    clang-format --dry-run -Werror "$f" >/dev/null 2>&1 || bad+=("$f")
  done
  if ((${#bad[@]})); then
    echo "format: ${#bad[@]} file(s) need tools/format.sh:"
    printf '  %s\n' "${bad[@]}"
    exit 1
  fi
  echo "format: ${#files[@]} files formatted"
else
  clang-format -i "${files[@]}"
fi
