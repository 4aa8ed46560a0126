#!/usr/bin/env bash
# tools/fuzz.sh [SECONDS]: builds the libFuzzer harnesses of tests/fuzz/ with clang
# (-fsanitize=fuzzer,address,undefined) and runs each for SECONDS (default 60), one per core at
# a time (single-threaded each). Exits non-zero when any harness finds a crash, a leak, a timeout or an out-of-memory,
# after printing the reproducer (its path, a hex dump and base64) and how to replay it.
#
# Environment: NEXTVIT_FUZZ_BUILD (build folder, default build/fuzz), NEXTVIT_FUZZ_ONLY (a
# space-separated subset of harness names), NEXTVIT_FUZZ_RSS_MB (default 2048),
# NEXTVIT_FUZZ_TIMEOUT (seconds for one input, default 10), NEXTVIT_FUZZ_JOBS (harnesses run at
# once, default nproc).
# Installs clang, libFuzzer's runtime and libomp from Debian when missing (as tools/setup.sh).
set -euo pipefail

seconds=${1:-60}
root=$(cd "$(dirname "$0")/.." && pwd)
build=${NEXTVIT_FUZZ_BUILD:-$root/build/fuzz}
rss_mb=${NEXTVIT_FUZZ_RSS_MB:-2048}
timeout_s=${NEXTVIT_FUZZ_TIMEOUT:-10}

"$root/tools/setup.sh"

# clang, the libFuzzer/sanitizer runtimes (libclang-rt-14-dev) and LLVM's OpenMP (libomp-dev).
missing=()
for p in clang libclang-rt-14-dev libomp-dev; do
  dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "fuzz: installing ${missing[*]}"
  sudo_cmd=()
  [ "$(id -u)" -eq 0 ] || sudo_cmd=(sudo)
  "${sudo_cmd[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends \
    "${missing[@]}" >/dev/null
fi

cmake -S "$root/tests/fuzz" -B "$build" -DCMAKE_CXX_COMPILER=clang++ >/dev/null
cmake --build "$build" -j"$(nproc)"

harnesses=(fuzz_safetensors_buffer fuzz_safetensors_file fuzz_weights fuzz_checkpoint
           fuzz_idx_gzip fuzz_image fuzz_config fuzz_cli_args fuzz_conv_winograd)
if [ -n "${NEXTVIT_FUZZ_ONLY:-}" ]; then read -r -a harnesses <<<"$NEXTVIT_FUZZ_ONLY"; fi

# One harness: its working corpus in the build folder, seeded from the committed one (runs build
# on each other without touching the repository); its exit status goes to $build/$h.status.
fuzz_one() {
  local h=$1 status=0
  local work="$build/corpus/$h" artifacts="$build/artifacts/$h"
  mkdir -p "$work" "$artifacts"
  rm -f "$artifacts"/*
  # One thread each: the harnesses run side by side, one per core.
  OMP_NUM_THREADS=1 "$build/$h" -max_total_time="$seconds" -rss_limit_mb="$rss_mb" \
    -timeout="$timeout_s" -print_final_stats=1 -artifact_prefix="$artifacts/" "$work" \
    "$root/tests/fuzz/corpus/$h" >"$build/$h.log" 2>&1 || status=$?
  echo "$status" >"$build/$h.status"
}

# Up to NEXTVIT_FUZZ_JOBS harnesses at a time (default: one per core).
jobs_max=${NEXTVIT_FUZZ_JOBS:-$(nproc)}
for h in "${harnesses[@]}"; do
  while (($(jobs -rp | wc -l) >= jobs_max)); do wait -n || true; done
  echo "fuzz: $h for ${seconds}s"
  rm -f "$build/$h.status"  # none from an earlier run: a harness that left none failed
  fuzz_one "$h" &
done
wait

failed=()
for h in "${harnesses[@]}"; do
  log="$build/$h.log"
  artifacts="$build/artifacts/$h"
  status=$(cat "$build/$h.status" 2>/dev/null || echo "no status")
  # The last status line: executions, coverage (cov: edges, ft: features), exec/s.
  stats=$(grep -E '^#[0-9]+' "$log" | tail -1 || true)
  echo "fuzz: $h: ${stats:-no status line}"
  grep -E 'stat::(number_of_executed_units|average_exec_per_sec|peak_rss_mb)' "$log" |
    sed "s/^/fuzz: $h: /" || true
  if [ "$status" != 0 ]; then
    failed+=("$h")
    echo "fuzz: $h FAILED (exit $status); the end of its log:"
    tail -60 "$log"
    for f in "$artifacts"/*; do
      [ -f "$f" ] || continue
      echo "fuzz: reproducer $f ($(stat -c %s "$f") bytes); replay with: $build/$h $f"
      od -A x -t x1z -v "$f" | head -40
      echo "fuzz: base64 of $f:"
      base64 -w 100 "$f" | head -200
    done
  fi
done

if ((${#failed[@]})); then
  echo "fuzz: FAILED: ${failed[*]}"
  exit 1
fi
echo "fuzz: all ${#harnesses[@]} harnesses ran ${seconds}s each without a finding"
