#!/usr/bin/env bash
# The one-shot GPU check (issue 10 item 9): everything a GPU machine lent for a few minutes
# should tell us, in one run of at most 8 minutes, written as JSON.
#
# Two halves, because the GPU machine has nothing of ours installed (it has the NVIDIA driver,
# the CUDA runtime and PyTorch with its pip NVIDIA libraries, none of our Debian packages) and
# the device tool carries at most 64 MiB of ignored files to it:
#
#   here:   tools/gpu_check.sh --bundle BUILD [--into DIR]
#           copies BUILD's test and benchmark programs, stripped, into DIR (default
#           build-gpu-bundle/, ignored by git) with the shared libraries they need that are not
#           CUDA's or the C library's (OpenMP, fmt, libjpeg, libpng, ...: what Debian provided
#           here), and prints the bundle's size (it must stay under the 64 MiB carry limit).
#   there:  tools/gpu_check.sh [--from DIR] [--out DIR] [--emulated]
#           runs, from the bundle: the environment record (GPU, driver, PyTorch, which libraries
#           resolve), the CUDA tests, the same tests under compute-sanitizer memcheck, the four
#           hand-written kernels' tests under racecheck, bench_cuda_kernels, and bench_cuda_model
#           (Next-ViT-S inference at batch 8 and training at batch 128 against PyTorch eager in
#           the same run), and bench_train_memory on the device (the bytes a Next-ViT-S training
#           step's autograd graph keeps there, against PyTorch's count). Results go to --out (default $OUT, else bench/results/gpu-check-DATE/):
#           gpu-check.json (environment, each step's status, time and log tail, the benchmarks'
#           JSON), one log per step, the tests' JUnit XML.
#
# --emulated rehearses the same script on this machine against a bundle of an emulated build
# (-DNEXTVIT_CUDA=EMULATE): the same steps with small sizes, the emulator's own checkers standing
# in for compute-sanitizer (its bounds checks are always on: "memcheck"; NVEMU_SCHEDULES=
# forward,reverse: "racecheck"), no PyTorch baseline. README ("A GPU check") shows how the lead
# runs it with the device tool.
#
# Exit status: 0 when every step that ran passed (a step that could not run, e.g. no
# compute-sanitizer on the machine, is recorded as "unavailable", not failed), 1 otherwise.
set -uo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bundle=""
from="$root/build-gpu-bundle"
out="${OUT:-}"
emulated=0
into="$root/build-gpu-bundle"
budget=${GPU_CHECK_BUDGET:-470}  # seconds for everything, under the 8 minutes asked for

die() { echo "gpu_check: $*" >&2; exit 2; }

while [[ $# -gt 0 ]]; do
  case "$1" in
    --bundle) bundle="$2"; shift 2 ;;
    --into) into="$2"; shift 2 ;;
    --from) from="$2"; shift 2 ;;
    --out) out="$2"; shift 2 ;;
    --emulated) emulated=1; shift ;;
    -h|--help) sed -n '2,32p' "$0"; exit 0 ;;
    *) die "unknown argument '$1' (see --help)" ;;
  esac
done

programs=(nextvit_tests bench/bench_cuda_kernels bench/bench_cuda_model bench/bench_train_memory)

# ---- here: pack a build ------------------------------------------------------------------------
if [[ -n "$bundle" ]]; then
  [[ -d "$bundle" ]] || die "no build folder '$bundle'"
  rm -rf "$into" && mkdir -p "$into/bin" "$into/lib"
  emulated_build=0
  grep -qs '^NEXTVIT_CUDA:STRING=EMULATE' "$bundle/CMakeCache.txt" && emulated_build=1
  for p in "${programs[@]}"; do
    # The emulated build has no bench_cuda_kernels (its cuDNN batch-norm baseline is not emulated).
    if (( emulated_build )) && [[ "$p" == bench/bench_cuda_kernels ]]; then continue; fi
    [[ -x "$bundle/$p" ]] || die "$bundle/$p is missing: build the targets nextvit_tests bench_cuda_kernels bench_cuda_model bench_train_memory"
    cp "$bundle/$p" "$into/bin/"
    strip --strip-unneeded "$into/bin/$(basename "$p")" 2>/dev/null || true
  done
  # Shared libraries from this machine's packages. CUDA's own (cudart is static; cuBLAS, cuDNN
  # and NCCL, 218 MB alone, come from the GPU machine's PyTorch: its pip nvidia-* packages) and
  # the C runtime (libc, libm, libstdc++, libgcc_s: on every Linux) are left out.
  for b in "$into"/bin/*; do
    ldd "$b" | awk '/=> \// {print $3}'
  done | sort -u | while read -r lib; do
    case "$(basename "$lib")" in
      libc.so*|libm.so*|libdl.so*|librt.so*|libpthread.so*|ld-linux*|libstdc++.so*|libgcc_s.so*) ;;
      libcuda.so*|libcudart*|libcublas*|libcudnn*|libnvrtc*|libnvJitLink*|libnccl*) ;;
      *) cp -L "$lib" "$into/lib/" ;;
    esac
  done
  # The first 1000 images of each Fashion-MNIST split (0.9 MB; the whole set would not fit
  # beside the programs): the CUDA trainer test (checkpoint and exact resume) needs the files.
  fmnist="${NEXTVIT_FASHION_MNIST:-/usr/share/datasets/fashion-mnist}"
  if [[ -f "$fmnist/train-images-idx3-ubyte.gz" ]]; then
    python3 - "$fmnist" "$into/fashion-mnist" <<'EOF_PY' || die "could not subset Fashion-MNIST"
import gzip, os, struct, sys
src, dst, n = sys.argv[1], sys.argv[2], 1000
os.makedirs(dst, exist_ok=True)
for split in ("train", "t10k"):
    images = gzip.open(os.path.join(src, split + "-images-idx3-ubyte.gz")).read()
    magic, _, rows, cols = struct.unpack(">IIII", images[:16])
    with gzip.open(os.path.join(dst, split + "-images-idx3-ubyte.gz"), "wb") as f:
        f.write(struct.pack(">IIII", magic, n, rows, cols) + images[16:16 + n * rows * cols])
    labels = gzip.open(os.path.join(src, split + "-labels-idx1-ubyte.gz")).read()
    with gzip.open(os.path.join(dst, split + "-labels-idx1-ubyte.gz"), "wb") as f:
        f.write(struct.pack(">II", struct.unpack(">I", labels[:4])[0], n) + labels[8:8 + n])
EOF_PY
  fi
  if (( emulated_build )); then
    echo emulated > "$into/KIND"
  else
    echo cuda > "$into/KIND"
  fi
  git -C "$root" rev-parse HEAD > "$into/COMMIT" 2>/dev/null || true
  echo "$root" > "$into/SOURCE"  # where the tests were built to find tests/data
  echo "gpu_check: bundle $into ($(cat "$into/KIND") build): $(du -sh "$into" | cut -f1)"
  ls -l "$into/bin" "$into/lib" | sed 's/^/  /'
  size=$(du -sb "$into" | cut -f1)
  (( size < 64 * 1024 * 1024 )) || die "the bundle is $size bytes, over the device tool's 64 MiB carry limit"
  exit 0
fi

# ---- there: run everything ---------------------------------------------------------------------
[[ -d "$from/bin" ]] || die "no bundle at '$from' (make one with --bundle BUILD)"
from="$(cd "$from" && pwd)"
[[ -n "$out" ]] || out="$root/bench/results/gpu-check-$(date -u +%F)"
mkdir -p "$out"
start=$(date +%s)
kind=$(cat "$from/KIND" 2>/dev/null || echo unknown)
if (( emulated )) && [[ "$kind" != emulated ]]; then die "--emulated needs a bundle of an emulated build (this one is '$kind')"; fi
if (( !emulated )) && [[ "$kind" == emulated ]]; then die "this bundle is of an emulated build: add --emulated"; fi

# Libraries: the bundle's, then the pip NVIDIA libraries and torch/lib of the machine's Python
# (cuBLAS, cuBLASLt, cuDNN), then the system's.
pylibs=""
if command -v python3 >/dev/null; then
  pylibs=$(python3 - <<'EOF' 2>/dev/null
import glob, os, site, sys
dirs = []
for sp in site.getsitepackages() + [site.getusersitepackages()]:
    dirs += sorted(glob.glob(os.path.join(sp, "nvidia", "*", "lib")))
    dirs += glob.glob(os.path.join(sp, "torch", "lib"))
print(":".join(d for d in dirs if os.path.isdir(d)))
EOF
)
fi
export LD_LIBRARY_PATH="$from/lib${pylibs:+:$pylibs}${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
[[ -d "$from/fashion-mnist" ]] && export NEXTVIT_FASHION_MNIST="$from/fashion-mnist"
# The tests read tests/data at the path of the checkout they were built in: where this checkout
# lies elsewhere (the GPU machine's copy), that path becomes a link to it.
built_in=$(cat "$from/SOURCE" 2>/dev/null || true)
if [[ -n "$built_in" && ! -e "$built_in" ]]; then
  mkdir -p "$(dirname "$built_in")" && ln -s "$root" "$built_in" ||
    echo "gpu_check: could not link $built_in to $root: tests that read tests/data will fail"
fi
bin="$from/bin"

steps_file="$out/steps.tsv"
: > "$steps_file"
failed=0

# step NAME BUDGET_SECONDS COMMAND...: runs COMMAND with a timeout of at most BUDGET seconds and
# what is left of the total, logs to NAME.log, records status and time.
step() {
  local name="$1" limit="$2"; shift 2
  local left=$(( budget - ($(date +%s) - start) - 10 ))
  (( limit > left )) && limit=$left
  if (( limit < 5 )); then
    printf '%s\tskipped\t0\tno time left\n' "$name" >> "$steps_file"
    return
  fi
  local t0=$(date +%s) status
  echo "gpu_check: $name (up to ${limit}s)"
  timeout --kill-after=5 "$limit" "$@" > "$out/$name.log" 2>&1
  local rc=$?
  local dt=$(( $(date +%s) - t0 ))
  case $rc in
    0) status=passed ;;
    124|137) status=timeout; failed=1 ;;
    *) status="failed($rc)"; failed=1 ;;
  esac
  printf '%s\t%s\t%s\t%s\n' "$name" "$status" "$dt" "$*" >> "$steps_file"
  echo "gpu_check: $name $status in ${dt}s"
}

unavailable() {  # NAME WHY
  printf '%s\tunavailable\t0\t%s\n' "$1" "$2" >> "$steps_file"
  echo "gpu_check: $1 unavailable: $2"
}

# 1. Environment, and whether every program's libraries resolve.
{
  echo "kind=$kind"
  echo "commit=$(cat "$from/COMMIT" 2>/dev/null)"
  echo "date=$(date -u +%FT%TZ)"
  echo "host=$(hostname)"
  echo "cpu=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')"
  echo "nvidia_smi=$(nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv,noheader 2>&1 | head -1)"
  echo "python_torch=$(python3 -c 'import torch; print(torch.__version__, "cuda", torch.version.cuda, "cudnn", torch.backends.cudnn.version())' 2>&1 | tail -1)"
  echo "timm=$(python3 -c 'import timm; print(timm.__version__)' 2>&1 | tail -1)"
  echo "ld_library_path=$LD_LIBRARY_PATH"
  missing=""
  for b in "$bin"/*; do
    m=$(ldd "$b" 2>&1 | awk '/not found/ {print $1}' | tr '\n' ' ')
    [[ -n "$m" ]] && missing+="$(basename "$b"): $m; "
  done
  echo "missing_libraries=$missing"
} > "$out/environment.txt"
cat "$out/environment.txt" | sed 's/^/  /'
if grep -q '^missing_libraries=.\+' "$out/environment.txt"; then
  printf 'libraries\tfailed\t0\t%s\n' "$(grep '^missing_libraries=' "$out/environment.txt" | cut -d= -f2-)" >> "$steps_file"
  failed=1
else
  # 2. The CUDA tests ([cuda]: every test that touches the device; each skips itself without one).
  if (( emulated )); then
    # The rehearsal: the fast half of them (the whole set runs in CI).
    step cuda_tests 300 "$bin/nextvit_tests" "[cuda]~[model]~[conv]~[trainer]" -r junit -o "$out/cuda-tests.xml"
  else
    step cuda_tests 150 "$bin/nextvit_tests" "[cuda]" -r junit -o "$out/cuda-tests.xml"
  fi

  # 3. The memory and race checkers (in the rehearsal, the emulator's, over the four
  #    hand-written kernels' tests: they are slow there).
  four="cuda: grouped 3x3 kernels are deterministic,cuda: batch norm kernels match the CPU*,cuda: softmax kernels match the CPU,cuda: pooled attention kernels match the CPU"
  if (( emulated )); then
    step memcheck 200 "$bin/nextvit_tests" "$four"
    step racecheck 300 env NVEMU_SCHEDULES=forward,reverse "$bin/nextvit_tests" "$four"
  else
    sanitizer=$(command -v compute-sanitizer || ls /usr/local/cuda*/bin/compute-sanitizer 2>/dev/null | head -1 ||
                true)
    if [[ -z "$sanitizer" ]]; then
      sanitizer=$(python3 -c 'import glob, site; print(next(iter(sorted(glob.glob(site.getsitepackages()[0] + "/nvidia/*/compute-sanitizer/compute-sanitizer"))), ""))' 2>/dev/null)
    fi
    # memcheck takes the whole CUDA suite (5 s on an H200, 2026-12-04), all but the
    # out-of-memory test, whose failing cudaMalloc it would report as an API error by design;
    # racecheck the four kernels' tests (20 s; the whole suite ran past 120 s there).
    all_cuda='[cuda]~"cuda: out of memory is a clear error"'
    if [[ -n "$sanitizer" ]]; then
      step memcheck 80 "$sanitizer" --tool memcheck --error-exitcode 99 "$bin/nextvit_tests" "$all_cuda"
      step racecheck 100 "$sanitizer" --tool racecheck --error-exitcode 99 "$bin/nextvit_tests" "$four"
    else
      unavailable memcheck "compute-sanitizer not found (PATH, /usr/local/cuda*/bin, pip nvidia packages)"
      unavailable racecheck "compute-sanitizer not found"
    fi
  fi

  # 4. Kernel benchmarks, 5. the model against PyTorch eager, 6. the graph's bytes on the device
  #    (PyTorch's count from the CPU: what autograd saves does not depend on the device).
  if (( emulated )); then
    unavailable bench_kernels "not built in the emulated build (its cuDNN batch-norm baseline is not emulated)"
    step bench_model 240 "$bin/bench_cuda_model" --model "$root/tests/data/nextvit_tiny_config.json" --img 64 --infer-batch 2 --train-batch 2 --runs 1 --warmup 0 --no-torch --json "$out/bench_cuda_model.json"
    step bench_memory 120 "$bin/bench_train_memory" --device cuda --model "$root/tests/data/nextvit_tiny_config.json" --img 64 --batch 2 --no-torch --json "$out/bench_train_memory.json"
  else
    step bench_kernels 90 "$bin/bench_cuda_kernels" --runs 20 --warmup 5 --json "$out/bench_cuda_kernels.json"
    step bench_model 150 "$bin/bench_cuda_model" --infer-batch 8 --train-batch 128 --runs 10 --warmup 3 --json "$out/bench_cuda_model.json"
    step bench_memory 60 "$bin/bench_train_memory" --device cuda --batch 8 --img 224 --json "$out/bench_train_memory.json"
  fi
fi

# The summary, one JSON file.
python3 - "$out" "$emulated" "$(( $(date +%s) - start ))" <<'EOF'
import json, os, sys
out, emulated, seconds = sys.argv[1], sys.argv[2] == "1", int(sys.argv[3])
env = {}
for line in open(os.path.join(out, "environment.txt")):
    k, _, v = line.rstrip("\n").partition("=")
    env[k] = v
steps = []
for line in open(os.path.join(out, "steps.tsv")):
    name, status, secs, what = (line.rstrip("\n").split("\t") + [""] * 4)[:4]
    log = os.path.join(out, name + ".log")
    tail = open(log, errors="replace").read()[-2000:] if os.path.exists(log) else ""
    steps.append({"step": name, "status": status, "seconds": int(secs), "command": what,
                  "log_tail": tail})
bench = {}
for name in ("bench_cuda_kernels", "bench_cuda_model", "bench_train_memory"):
    p = os.path.join(out, name + ".json")
    if os.path.exists(p):
        try:
            bench[name] = json.load(open(p))
        except ValueError as e:
            bench[name] = {"error": str(e)}
summary = {"check": "tools/gpu_check.sh", "emulated": emulated, "seconds": seconds,
           "environment": env, "steps": steps, "benchmarks": bench,
           "passed": all(s["status"] in ("passed", "unavailable") for s in steps)}
json.dump(summary, open(os.path.join(out, "gpu-check.json"), "w"), indent=2)
print("gpu_check: %s in %d s -> %s" % ("passed" if summary["passed"] else "FAILED", seconds,
                                       os.path.join(out, "gpu-check.json")))
EOF
# The device tool brings back at most 8 files from $OUT: the logs, the environment record, the
# step table and the tests' JUnit XML travel as one archive beside gpu-check.json and the
# benchmarks' JSON (unpack with tar -xzf gpu-check-logs.tar.gz).
if [[ -n "${OUT:-}" && "$out" -ef "$OUT" ]]; then
  (cd "$out" && shopt -s nullglob && files=(*.log *.txt *.tsv *.xml) &&
   tar -czf gpu-check-logs.tar.gz --remove-files -- "${files[@]}")
  ls "$out" | sed 's/^/  /'
fi
exit $failed
