#!/usr/bin/env bash
# Data-parallel training on one machine: 2 MPI ranks x 1 thread against 1 rank x 2 threads,
# the same global batch, model and data (nextvit train on Fashion-MNIST), in one run. Prints a
# table with the ratio and the share of rank 0's step time blocked in communication, and
# records it in bench/results/DATE-cpu-mpi-2x1-vs-1x2.{txt,json}.
#
#   bench/bench_mpi.sh [BUILD_DIR=build] [STEPS=30] [BATCH=64] [REPEATS=2]
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build}
steps=${2:-30}
batch=${3:-64}
repeats=${4:-2}
nextvit="$build/nextvit"
[ -x "$nextvit" ] || { echo "bench_mpi: $nextvit not built" >&2; exit 1; }
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
common=(train --batch "$batch" --epochs 1 --limit-train $((steps * batch)) --limit-eval 64
        --workers 1 --log-every 0 --seed 3)

# images/s and communication share from a run's final lines
run() {
  local label=$1
  shift
  local log="$out/$label.log"
  "$@" >"$log" 2>&1 || { cat "$log" >&2; exit 1; }
  local ips comm
  ips=$(sed -n 's/.* \([0-9.]*\) training images\/s.*/\1/p' "$log")
  comm=$(sed -n 's/.*blocked in communication (\([0-9.]*\)%.*/\1/p' "$log")
  echo "$label ${ips:-?} ${comm:-0}"
}

results=()
for ((r = 1; r <= repeats; r++)); do
  results+=("$(OMP_NUM_THREADS=2 run 1x2 "$nextvit" "${common[@]}" --threads 2 --out "$out/a$r")")
  results+=("$(OMP_NUM_THREADS=1 run 2x1 mpirun --oversubscribe --allow-run-as-root -np 2 \
    --bind-to none "$nextvit" "${common[@]}" --threads 1 --sync-bn --out "$out/b$r")")
done

best() { printf '%s\n' "${results[@]}" | awk -v k="$1" '$1 == k && $2 > m { m = $2; c = $3 } END { print m, c }'; }
read -r ips12 _ <<<"$(best 1x2)"
read -r ips21 comm21 <<<"$(best 2x1)"
ratio=$(awk -v a="$ips21" -v b="$ips12" 'BEGIN { printf "%.2f", a / b }')
cpu=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1)
date=$(date -u +%Y-%m-%d)
table=$(cat <<TABLE
Data-parallel training, nextvit_fmnist on Fashion-MNIST 28x28, global batch $batch, $steps steps,
AdamW (the trainer's default), best of $repeats runs each; $(nproc) cores: $cpu
$(date -u '+%Y-%m-%d %H:%M UTC'), load average $(cut -d' ' -f1-3 /proc/loadavg) (other processes share the cores)

| configuration                       | images/s | communication share (rank 0) |
|-------------------------------------|---------:|-----------------------------:|
| 1 rank x 2 threads                  | $(printf '%8s' "$ips12") |                          n/a |
| 2 ranks x 1 thread (MPI, sync BN)   | $(printf '%8s' "$ips21") | $(printf '%27s%%' "$comm21") |
| ratio 2x1 / 1x2                     | $(printf '%8s' "$ratio") |                              |
TABLE
)
echo "$table"
mkdir -p bench/results
echo "$table" >"bench/results/$date-cpu-mpi-2x1-vs-1x2.txt"
cat >"bench/results/$date-cpu-mpi-2x1-vs-1x2.json" <<JSON
{"date": "$date", "cpu": "$cpu", "cores": $(nproc), "model": "nextvit_fmnist", "img": 28,
 "global_batch": $batch, "steps": $steps, "repeats": $repeats,
 "images_per_s_1rank_2threads": $ips12, "images_per_s_2ranks_1thread": $ips21,
 "ratio": $ratio, "communication_share_percent_rank0": $comm21,
 "runs": "$(printf '%s; ' "${results[@]}")"}
JSON
