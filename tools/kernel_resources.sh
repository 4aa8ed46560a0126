#!/usr/bin/env bash
# Static resources of the four hand-written CUDA kernels' files on sm_90, from ptxas:
# registers, spills, stack, static shared memory per kernel instantiation, and the theoretical
# occupancy they allow on an H100/H200 SM. Writes a Markdown table and JSON to bench/results/.
#
#   tools/kernel_resources.sh [DATE]        (DATE defaults to today, YYYY-MM-DD)
#   tools/kernel_resources.sh --check       (CI: the table into a temporary folder; exit 1 if
#                                            any instantiation spills)
#
# Needs nvcc (/usr/local/cuda/bin/nvcc or on PATH), g++, c++filt and python3; no GPU. Compiles
# with the real build's CUDA flags (CMakeLists.txt): -std=c++17 --expt-relaxed-constexpr
# --extended-lambda -I<repo> -DNEXTVIT_WITH_CUDA=1, plus -arch=sm_90 -Xptxas -v. nvcc is slow
# (minutes for the four files); run it under `nice -n 10` on a shared machine.
#
# Block sizes and dynamic shared memory: kernels with dynamic shared memory (the grouped 3x3
# convolution and pooled attention) are sized by the launch code's own tiling functions
# (kernels/cuda/*_impl.h, compiled here into a small host program) at Next-ViT-S's shapes at
# 224x224; every other kernel's block size is the constant its launch uses.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
check=0
if [[ "${1:-}" == --check ]]; then check=1; shift; fi
date="${1:-$(date +%F)}"
out_dir="$root/bench/results"
nvcc="${NVCC:-}"
if [[ -z "$nvcc" ]]; then
  if [[ -x /usr/local/cuda/bin/nvcc ]]; then nvcc=/usr/local/cuda/bin/nvcc; else nvcc="$(command -v nvcc || true)"; fi
fi
[[ -n "$nvcc" ]] || { echo "kernel_resources: nvcc not found (/usr/local/cuda/bin or PATH)" >&2; exit 1; }
for tool in g++ c++filt python3; do
  command -v "$tool" >/dev/null || { echo "kernel_resources: $tool not found" >&2; exit 1; }
done

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
(( check )) && out_dir="$work/out"
files=(grouped_conv3x3.cu batch_norm.cu pooled_attention.cu softmax.cu)

# 1. The launch configurations of the dynamic-shared-memory kernels, from the launch code's own
#    tiling functions. One line per (kernel, scenario): file|kernel|scenario|threads|dynamic bytes
cat >"$work/launch_configs.cpp" <<'EOF'
#include <cstdio>
#include <initializer_list>

#include "kernels/cuda/grouped_conv3x3_impl.h"
#include "kernels/cuda/pooled_attention_impl.h"

using namespace nextvit::kernels::cuda;

// H200: 132 SMs (the launch code asks the device; the tiling's shared memory does not depend
// on it, only the grid does).
constexpr int kSMs = 132;

void conv_configs(int C) {
  // Next-ViT-S MHCA at 224: 56, 28, 14, 7 pixels square; training batch 128.
  for (int hw : {56, 28, 14, 7}) {
    const gconv::FwdTiling f = gconv::fwd_tiling(C, 3, hw, hw);
    for (const char* flip : {"false", "true"}) {
      std::printf("grouped_conv3x3.cu|fwd_kernel<%d, %s>|%dx%d|%d|%d\n", C, flip, hw, hw,
                  f.threads, f.smem_bytes());
    }
    const gconv::WgtTiling w = gconv::wgt_tiling(C, 3, 128, hw, hw, 4 * kSMs);
    std::printf("grouped_conv3x3.cu|wgt_kernel<%d>|%dx%d, batch 128|%d|%d\n", C, hw, hw,
                C == 32 ? gconv::WgtShape<32>::kThreads : gconv::WgtShape<16>::kThreads,
                w.smem_bytes());
  }
}

void attention_configs(int D, int kpl, int m, const char* why) {
  const pattn::FwdLayout f = pattn::fwd_layout(784, m, D);
  const pattn::BwdLayout b = pattn::bwd_layout(128 * 6, 784, m, D, 2 * kSMs);
  std::printf("pooled_attention.cu|forward_kernel<%d, %d>|%d keys, d %d%s|%d|%d\n", D, kpl, m, D,
              why, pattn::kThreads, f.smem_bytes());
  std::printf("pooled_attention.cu|backward_kernel<%d, %d>|%d keys, d %d%s|%d|%d\n", D, kpl, m, D,
              why, pattn::kThreads, b.smem_bytes());
}

int main() {
  conv_configs(32);
  conv_configs(16);
  for (int D : {32, 16}) {
    for (int kpl : {1, 2, 4, 8}) {
      // Next-ViT's E-MHSA always has 49 keys (KPL 2); other instantiations at their largest m.
      if (kpl == 2) attention_configs(D, kpl, 49, " (Next-ViT)");
      else attention_configs(D, kpl, 32 * kpl, " (largest m for KPL)");
    }
  }
}
EOF
g++ -std=c++17 -O0 -I"$root" "$work/launch_configs.cpp" -o "$work/launch_configs"
"$work/launch_configs" >"$work/launch_configs.txt"

# 2. ptxas's report for each file.
flags=(-std=c++17 --expt-relaxed-constexpr --extended-lambda -I"$root" -DNEXTVIT_WITH_CUDA=1
       -arch=sm_90 -Xptxas -v)
for f in "${files[@]}"; do
  echo "kernel_resources: compiling kernels/cuda/$f for sm_90 ..." >&2
  "$nvcc" "${flags[@]}" -c "$root/kernels/cuda/$f" -o "$work/${f%.cu}.o" >"$work/${f%.cu}.ptxas" 2>&1 ||
    { cat "$work/${f%.cu}.ptxas" >&2; exit 1; }
done
nvcc_version="$("$nvcc" --version | grep -E 'release' | sed 's/^.*release /release /')"

# 3. Parse, demangle, compute occupancy, write the table and JSON.
mkdir -p "$out_dir"
python3 - "$work" "$root" "$out_dir" "$date" "$nvcc_version" "${files[@]}" <<'EOF'
import json, math, re, subprocess, sys

work, root, out_dir, date, nvcc_version, *files = sys.argv[1:]

# sm_90 (H100/H200) per-SM limits.
REGS_PER_SM, THREADS_PER_SM, BLOCKS_PER_SM = 65536, 2048, 32
SMEM_PER_SM, SMEM_PER_BLOCK_MAX = 228 * 1024, 227 * 1024
REG_GRANULE, SMEM_GRANULE, SMEM_RESERVED_PER_BLOCK = 256, 128, 1024

def demangle(names):
    out = subprocess.run(["c++filt"], input="\n".join(names), capture_output=True, text=True,
                         check=True).stdout.splitlines()
    return dict(zip(names, out))

def short_name(full):
    """'void ns::(anonymous namespace)::fwd_kernel<32, false>(args)' -> 'fwd_kernel<32, false>'."""
    s = full[5:] if full.startswith("void ") else full
    depth, cut = 0, len(s)
    for i, ch in enumerate(s):  # the argument list starts at the first '(' outside <>
        if ch == "<": depth += 1
        elif ch == ">": depth -= 1
        elif ch == "(" and depth == 0 and not s.startswith("(anonymous", i):
            cut = i
            break
    s = s[:cut]
    depth, start = 0, 0
    for i in range(len(s) - 1):
        if s[i] == "<": depth += 1
        elif s[i] == ">": depth -= 1
        elif s[i:i + 2] == "::" and depth == 0: start = i + 2
    return s[start:]

def parse_ptxas(path):
    kernels, cur = [], None
    for line in open(path):
        m = re.search(r"Compiling entry function '([^']+)' for 'sm_90'", line)
        if m:
            cur = {"mangled": m.group(1), "registers": 0, "barriers": 0, "static_smem": 0,
                   "stack": 0, "spill_stores": 0, "spill_loads": 0}
            kernels.append(cur)
            continue
        if cur is None:
            continue
        m = re.search(r"(\d+) bytes stack frame, (\d+) bytes spill stores, (\d+) bytes spill loads",
                      line)
        if m:
            cur["stack"], cur["spill_stores"], cur["spill_loads"] = map(int, m.groups())
        m = re.search(r"Used (\d+) registers", line)
        if m:
            cur["registers"] = int(m.group(1))
            b = re.search(r"used (\d+) barriers", line)
            s = re.search(r"(\d+) bytes smem", line)
            cur["barriers"] = int(b.group(1)) if b else 0
            cur["static_smem"] = int(s.group(1)) if s else 0
    return kernels

def block_constant(src, name):
    m = re.search(r"constexpr int " + name + r" = (\d+);", src)
    return int(m.group(1)) if m else None

def static_threads(file, kernel):
    """Block size of kernels launched with a constant (see the launch code in each file)."""
    src = open(f"{root}/kernels/cuda/{file}").read()
    if kernel in ("stats_finish_kernel", "eval_prepare_kernel", "grad_finish_kernel"):
        return 128  # batch_norm.cu launches these per 128 channels
    if kernel in ("reduce_kernel", "wgt_reduce_kernel"):
        return 256  # grid_size(n, 256), 256 threads
    k = block_constant(src, "kBlock")
    if k is None:
        raise SystemExit(f"kernel_resources: no block size known for {kernel} in {file}")
    return k

def occupancy(regs, threads, smem):
    warps = math.ceil(threads / 32)
    regs_per_warp = math.ceil(max(regs, 1) * 32 / REG_GRANULE) * REG_GRANULE
    smem_alloc = math.ceil((smem + SMEM_RESERVED_PER_BLOCK) / SMEM_GRANULE) * SMEM_GRANULE
    limits = {
        "registers": REGS_PER_SM // (regs_per_warp * warps),
        "threads": (THREADS_PER_SM // 32) // warps,
        "blocks": BLOCKS_PER_SM,
        "shared memory": SMEM_PER_SM // smem_alloc if smem <= SMEM_PER_BLOCK_MAX else 0,
    }
    blocks = min(limits.values())
    limiter = ", ".join(k for k in limits if limits[k] == blocks)  # all that bind
    return blocks, blocks * warps / (THREADS_PER_SM // 32), limiter

configs = {}
for line in open(f"{work}/launch_configs.txt"):
    file, kernel, scenario, threads, dyn = line.rstrip("\n").split("|")
    configs.setdefault((file, kernel), []).append((scenario, int(threads), int(dyn)))

rows = []
for file in files:
    kernels = parse_ptxas(f"{work}/{file[:-3]}.ptxas")
    names = demangle([k["mangled"] for k in kernels])
    for k in kernels:
        k["demangled"] = names[k["mangled"]]
        k["kernel"] = short_name(k["demangled"])
        k["file"] = f"kernels/cuda/{file}"
        scenarios = configs.get((file, k["kernel"]))
        if scenarios is None:
            scenarios = [("any shape (no dynamic shared memory)", static_threads(file, k["kernel"]), 0)]
        for scenario, threads, dyn in scenarios:
            blocks, occ, limiter = occupancy(k["registers"], threads, k["static_smem"] + dyn)
            rows.append(dict(k, scenario=scenario, threads=threads, dynamic_smem=dyn,
                             blocks_per_sm=blocks, occupancy=round(occ, 4), limiter=limiter))

spills = [r for r in rows if r["spill_stores"] or r["spill_loads"]]
stem = f"{out_dir}/{date}-kernel-resources-sm90"
assumptions = [
    "sm_90 per SM: 65536 registers (allocated per warp in units of 256), 2048 threads, 32 blocks, "
    "228 KB shared memory (227 KB per block at most), 1 KB reserved by the system per block, "
    "shared memory allocated in 128-byte units; the carveout is assumed to give the kernel all "
    "228 KB",
    "dynamic shared memory and block sizes of grouped_conv3x3 and pooled_attention kernels: the "
    "launch code's tiling functions (kernels/cuda/*_impl.h) at Next-ViT-S 224x224 shapes: MHCA "
    "grouped 3x3 at 56/28/14/7 pixels square with 32 channels per group (16: same sizes, used "
    "by head_dim-16 models), backward-weight at batch 128; E-MHSA with 49 keys and d 32 (784 "
    "queries, 6 heads x batch 128 for the backward's split count); pooled-attention "
    "instantiations Next-ViT does not use at their largest key count (32 x keys per lane)",
    "132 SMs (H200) for the grids of backward-weight and attention backward (the shared memory "
    "does not depend on it)",
    "other kernels: the constant block size of their launch (256; 128 for BatchNorm's "
    "per-channel finish/prepare kernels)",
]
json.dump({"date": date, "nvcc": nvcc_version, "arch": "sm_90",
           "flags": "-std=c++17 --expt-relaxed-constexpr --extended-lambda -DNEXTVIT_WITH_CUDA=1 "
                    "-arch=sm_90 -Xptxas -v",
           "assumptions": assumptions, "kernels_with_spills": len(spills), "rows": rows},
          open(stem + ".json", "w"), indent=1)

with open(stem + ".md", "w") as md:
    md.write(f"# Static resources of the hand-written CUDA kernels on sm_90 ({date})\n\n")
    md.write(f"Generated by `tools/kernel_resources.sh` with nvcc {nvcc_version} "
             "(`-Xptxas -v`, the build's CUDA flags). No GPU was used: these are the compiler's "
             "figures and the occupancy they allow, not measurements.\n\n")
    md.write(f"**Spills: {'none' if not spills else str(len(spills)) + ' rows with spills'}** in "
             f"{', '.join(files)} ({len({r['mangled'] for r in rows})} kernel instantiations).\n\n")
    md.write("Assumptions:\n\n" + "".join(f"- {a}\n" for a in assumptions) + "\n")
    md.write("| file | kernel | shape assumed | threads | regs | spill st/ld (B) | stack (B) | "
             "static smem (B) | dynamic smem (B) | blocks/SM | occupancy | limited by |\n")
    md.write("|---|---|---|---|---|---|---|---|---|---|---|---|\n")
    for r in rows:
        md.write(f"| {r['file'].split('/')[-1]} | `{r['kernel']}` | {r['scenario']} | "
                 f"{r['threads']} | {r['registers']} | {r['spill_stores']}/{r['spill_loads']} | "
                 f"{r['stack']} | {r['static_smem']} | {r['dynamic_smem']} | "
                 f"{r['blocks_per_sm']} | {r['occupancy'] * 100:.1f} % | {r['limiter']} |\n")
print(f"kernel_resources: {len(rows)} rows, {len(spills)} with spills -> {stem}.md, {stem}.json")
for r in spills:
    print(f"kernel_resources: SPILLS in {r['file']} {r['kernel']}: {r['spill_stores']} bytes stored, "
          f"{r['spill_loads']} loaded", file=sys.stderr)
sys.exit(1 if spills else 0)
EOF
