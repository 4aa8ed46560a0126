#!/usr/bin/env python3
"""Draws the tiling figures of docs/kernels/ and prints the numbers those pages quote.

    python tools/draw_kernel_figures.py [--out docs/kernels/figures] [--tables]

Needs matplotlib (pip install matplotlib). Without --tables it writes the PNG figures; with
--tables it prints, for Next-ViT-S at 224x224, the tile shapes, grids, shared-memory sizes,
bank-conflict counts and the back-of-envelope FLOP / byte / time estimates of each kernel.

The tiling functions below are transcriptions of the host code that sizes the CUDA launches:

  fwd_tiling, wgt_tiling        kernels/cuda/grouped_conv3x3_impl.h
  splits_for, the small path    kernels/cuda/batch_norm.cu
  fwd_layout, bwd_layout        kernels/cuda/pooled_attention_impl.h
  with_vpl, blocks_for          kernels/cuda/softmax.cu, kernels/cuda/launch.cuh

If you change one of those, change it here too and rerun both modes. The GPU figures are an
H100/H200-class part (132 SMs; see GPU below): they are estimates for orientation, not
measurements.
"""

import argparse
import math
import os


def cdiv(a, b):
    return (a + b - 1) // b


# ---- the GPU the estimates assume ---------------------------------------------------------------
GPU = dict(
    sms=132,
    clock_ghz=1.78,  # 132 SMs x 128 FP32 lanes x 2 flops x 1.78 GHz = 60 TFLOP/s
    fp32_lanes=128,  # per SM per clock (4 warp-wide FFMA instructions)
    hbm_tbs=3.35,  # H100 SXM; an H200 has 4.8
    hbm_tbs_h200=4.8,
    smem_per_sm=228 * 1024,
    smem_per_block_optin=227 * 1024,
    regs_per_sm=65536,
    threads_per_sm=2048,
    blocks_per_sm=32,
)
FLOPS = GPU["sms"] * GPU["fp32_lanes"] * 2 * GPU["clock_ghz"] * 1e9  # ~60e12
HBM = GPU["hbm_tbs"] * 1e12
RIDGE = FLOPS / HBM  # FLOP per byte where the two limits meet

# Registers per thread reported by ptxas (CUDA 13.0, -arch=sm_90, no spills) for the kernels as
# committed; `nvcc -cubin -arch=sm_90 -Xptxas -v kernels/cuda/<file>.cu` reprints them.
REGS = {
    "gconv_fwd": 80,  # fwd_kernel<16|32, false|true>
    "gconv_wgt32": 117,
    "gconv_wgt16": 72,
    "pattn_fwd_32": 32,  # forward_kernel<32, KPL> for every KPL
    "pattn_bwd_32_2": 64,  # backward_kernel<32, 2> (m = 33..64)
    "bn_small_fwd": 63,
    "bn_small_bwd": 68,
    "softmax_fwd_2": 21,
    "softmax_bwd_2": 23,
}


def resident_blocks(threads, regs, smem):
    """Blocks of one kernel an SM can hold (registers rounded per warp to 256, as on sm_90)."""
    warps = cdiv(threads, 32)
    regs_per_warp = cdiv(regs * 32, 256) * 256
    by_regs = GPU["regs_per_sm"] // (regs_per_warp * warps)
    by_threads = GPU["threads_per_sm"] // (warps * 32)
    by_smem = GPU["smem_per_sm"] // (smem + 1024) if smem else GPU["blocks_per_sm"]
    return min(by_regs, by_threads, by_smem, GPU["blocks_per_sm"])


# ---- grouped 3x3 convolution (grouped_conv3x3_impl.h) --------------------------------------------
K_CO_PER_THREAD, K_PX_PER_THREAD, K_CI_CHUNK, K_MAX_THREADS = 8, 4, 8, 256


def weight_chunk_floats(C):
    return K_CI_CHUNK * 9 * (C + 4)


def fwd_tiling(C, groups, H, W):
    t = dict(C=C, groups=groups, H=H, W=W)
    across = cdiv(W, 32)
    sw = cdiv(cdiv(W, across), K_PX_PER_THREAD)
    t["sw"] = sw
    t["tile_w"] = K_PX_PER_THREAD * sw
    t["tiles_x"] = cdiv(W, t["tile_w"])
    co_groups = C // K_CO_PER_THREAD
    max_rows = K_MAX_THREADS // (co_groups * sw)
    max_rows = max(1, min(32, max_rows))
    tiles_y = cdiv(H, max_rows)
    t["tile_h"] = cdiv(H, tiles_y)
    t["tiles_y"] = cdiv(H, t["tile_h"])
    t["threads"] = co_groups * t["tile_h"] * sw
    need = t["tile_w"] + 2
    t["row_stride"] = sw + 32 * cdiv(need - sw, 32)
    t["plane"] = (t["tile_h"] + 2) * t["row_stride"]
    t["input_floats"] = cdiv(K_CI_CHUNK * t["plane"], 4) * 4
    t["weight_floats"] = weight_chunk_floats(C)
    t["smem"] = (t["input_floats"] + t["weight_floats"]) * 4
    t["tiles"] = t["tiles_x"] * t["tiles_y"]
    return t


def fwd_thread(t, tid):
    strips = t["tile_h"] * t["sw"]
    s = tid % strips
    return tid // strips, s // t["sw"], s % t["sw"]  # cog, row, col


def fwd_input_wavefronts(t):
    """Per warp: shared-memory wavefronts of one input load (fixed ci, kh, kw, i) of
    fwd_accumulate, i.e. the most distinct words any one bank must serve."""
    out = []
    for w0 in range(0, t["threads"], 32):
        banks = {}
        for tid in range(w0, min(w0 + 32, t["threads"])):
            _, row, col = fwd_thread(t, tid)
            word = row * t["row_stride"] + col
            banks.setdefault(word % 32, set()).add(word)
        out.append(max(len(v) for v in banks.values()))
    return out


class WgtShape:
    def __init__(self, C):
        self.co_t = 4 if C == 32 else 2
        self.ci_t = 2
        self.threads = (C // self.co_t) * (C // self.ci_t)


def wgt_tiling(C, groups, N, H, W, target_blocks):
    t = dict(C=C, groups=groups, N=N, H=H, W=W)
    t["tile_w"] = 4 if (W % 8 != 0 and W % 4 == 0) else 8
    t["tiles_x"] = cdiv(W, t["tile_w"])
    t["tiles_y"] = cdiv(H, 8)
    t["tile_h"] = cdiv(H, t["tiles_y"])
    t["items"] = N * t["tiles_y"] * t["tiles_x"]
    per_group = max(1, cdiv(target_blocks, groups))
    t["blocks"] = min(per_group, t["items"])
    t["x_row"] = t["tile_w"] + 2
    t["x_plane"] = ((t["tile_h"] + 2) * t["x_row"]) | 1
    t["dy_plane"] = (t["tile_h"] * t["tile_w"]) | 1
    t["smem"] = C * (t["x_plane"] + t["dy_plane"]) * 4
    t["partial_floats"] = groups * t["blocks"] * C * C * 9
    return t


# ---- batch norm (batch_norm.cu) -----------------------------------------------------------------
BN_BLOCK, BN_REG_VALUES = 256, 16
BN_SMALL_M = BN_BLOCK * BN_REG_VALUES


def bn_splits(C, M):
    target = cdiv(8 * GPU["sms"], C)
    most = cdiv(M, 2048)
    return max(1, min(target, most))


# ---- pooled attention (pooled_attention_impl.h) -------------------------------------------------
PA_THREADS, PA_WARPS, PA_ROWS_PER_BLOCK, PA_TILE_ROWS = 256, 8, 64, 32


def pa_fwd_layout(n, m, d):
    smem = 2 * m * (d + 1) + PA_WARPS * d
    return dict(row_blocks=cdiv(n, PA_ROWS_PER_BLOCK), smem=smem * 4)


def pa_bwd_layout(heads, n, m, d, target_blocks):
    tiles = cdiv(n, PA_TILE_ROWS)
    splits = min(max(1, cdiv(target_blocks, heads)), tiles)
    p_row = m + 1
    smem = 2 * m * (d + 1) + 2 * PA_TILE_ROWS * (d + 1) + 2 * PA_TILE_ROWS * p_row
    return dict(tiles=tiles, splits=splits, smem=smem * 4,
                elems_per_thread=cdiv(m * d, PA_THREADS),
                partial_floats=2 * splits * heads * m * d if splits > 1 else 0)


def kpl_of(m):
    k = cdiv(m, 32)
    return 1 if k <= 1 else 2 if k <= 2 else 4 if k <= 4 else 8


# ---- softmax (softmax.cu, launch.cuh) -----------------------------------------------------------
def grid_size(n, block):
    return max(1, min(cdiv(n, block), 132 * 32))


def vpl_of(cols):
    for v in (1, 2, 4, 8, 16, 32):
        if cols <= 32 * v:
            return v
    return None  # online path


# ---- Next-ViT-S at 224x224 ----------------------------------------------------------------------
# MHCA grouped convolutions (C = 32 channels per group): (channels, H = W, how many blocks).
# NCBs at 96/192/384/768 channels; the NTBs' MHCA paths take out - make_divisible(0.75 out, 32):
# 256 -> 64, 512 -> 128, 1024 -> 256 channels.
NEXTVIT_S_MHCA = [(96, 56, 3), (192, 28, 3), (64, 28, 1), (384, 14, 8), (128, 14, 2),
                  (768, 7, 2), (256, 7, 1)]
# BN+ReLU sites: the stem's four ConvBNReLU and every MHCA's norm: (channels, H = W, count).
NEXTVIT_S_BNRELU = [(64, 112, 1), (32, 112, 1), (64, 112, 1), (64, 56, 1)] + NEXTVIT_S_MHCA
# E-MHSA (head_dim 32): (heads per image, query tokens n, pooled keys m, how many NTBs).
NEXTVIT_S_EMHSA = [(6, 784, 49, 1), (12, 196, 49, 2), (24, 49, 49, 1)]


def us(seconds):
    return seconds * 1e6


def print_tables():
    print(f"GPU assumed: {GPU['sms']} SMs, {FLOPS / 1e12:.0f} TFLOP/s FP32 FMA, "
          f"{GPU['hbm_tbs']} TB/s HBM, ridge {RIDGE:.1f} FLOP/byte\n")

    print("== grouped 3x3 forward / backward-data tiling (C = 32 and C = 16)")
    for C in (32, 16):
        for H in (56, 28, 14, 7):
            t = fwd_tiling(C, 1, H, H)
            wf = fwd_input_wavefronts(t)
            occ = resident_blocks(t["threads"], REGS["gconv_fwd"], t["smem"])
            print(f"C={C} {H}x{H}: tile {t['tile_h']}x{t['tile_w']} ({t['tiles_y']}x{t['tiles_x']}"
                  f" tiles), SW={t['sw']}, {t['threads']} threads, row_stride {t['row_stride']},"
                  f" plane {t['plane']}, smem {t['input_floats']}+{t['weight_floats']} floats ="
                  f" {t['smem']} B, {occ} blocks/SM, input-load wavefronts per warp {wf}")
    print()
    for N in (1, 32):
        print(f"-- Next-ViT-S MHCA grouped conv, batch {N}")
        for ch, H, count in NEXTVIT_S_MHCA:
            C, G = 32, ch // 32
            t = fwd_tiling(C, G, H, H)
            blocks = t["tiles"] * G * N
            occ = resident_blocks(t["threads"], REGS["gconv_fwd"], t["smem"])
            flops = 2 * N * ch * H * H * C * 9
            byts = 4 * (2 * N * ch * H * H + ch * C * 9)
            useful = H * H / (t["tiles_y"] * t["tile_h"] * t["tiles_x"] * t["tile_w"])
            print(f"{ch}@{H} x{count}: grid {t['tiles']}x{G}x{N} = {blocks} blocks"
                  f" ({blocks / (GPU['sms'] * occ):.2f} waves of {GPU['sms']}x{occ}),"
                  f" {flops / 1e9:.3f} GFLOP, {byts / 1e6:.1f} MB, AI {flops / byts:.0f},"
                  f" FMA-limit {us(flops / FLOPS / useful):.1f} us, HBM-limit {us(byts / HBM):.1f} us,"
                  f" useful lanes {useful:.3f}")
            S = WgtShape(C)
            w = wgt_tiling(C, G, N, H, H, 4 * GPU["sms"])
            wocc = resident_blocks(S.threads, REGS["gconv_wgt32"], w["smem"])
            pbytes = w["partial_floats"] * 4
            wbytes = 4 * 2 * N * ch * H * H + 2 * pbytes + ch * C * 9 * 4
            print(f"    backward-weight: item {w['tile_h']}x{w['tile_w']}, {w['items']} items/group,"
                  f" {w['blocks']} blocks/group x {G} = {w['blocks'] * G} blocks"
                  f" ({wocc} blocks/SM), smem {w['smem']} B, partials {pbytes / 1e6:.1f} MB,"
                  f" bytes {wbytes / 1e6:.1f} MB, AI {flops / wbytes:.0f},"
                  f" HBM-limit {us(wbytes / HBM):.1f} us")
    print()

    print("== BatchNorm(+ReLU) paths, Next-ViT-S BN+ReLU sites")
    for N in (1, 32):
        for ch, H, count in NEXTVIT_S_BNRELU:
            M = N * H * H
            elems = N * ch * H * H
            if M <= BN_SMALL_M:
                fwd, bwd = 8 * elems, 16 * elems
                desc = f"small path: {ch} blocks, {cdiv(M, 256)} of 16 register slots used"
            else:
                sp = bn_splits(ch, M)
                fwd, bwd = 12 * elems, 28 * elems
                desc = f"multi-block: splits {sp}, grid {sp}x{ch} = {sp * ch} blocks," \
                       f" {cdiv(cdiv(M, sp), 256)} values/thread"
            print(f"N={N} {ch}@{H} x{count}: M={M}, {desc}; fwd {fwd / 1e6:.1f} MB"
                  f" ({us(fwd / HBM):.1f} us), bwd {bwd / 1e6:.1f} MB ({us(bwd / HBM):.1f} us)")
    print()

    print("== pooled attention (d = 32), Next-ViT-S E-MHSA")
    for N in (1, 32):
        for h, n, m, count in NEXTVIT_S_EMHSA:
            heads = N * h
            f = pa_fwd_layout(n, m, 32)
            b = pa_bwd_layout(heads, n, m, 32, 2 * GPU["sms"])
            rows = heads * n
            fbytes = rows * (2 * 32 + m) * 4 + f["row_blocks"] * heads * 2 * m * 32 * 4
            bbytes = rows * (3 * 32 + m) * 4 + heads * 2 * m * 32 * 4 * (1 + b["splits"])
            flops = 4 * rows * m * 32
            print(f"N={N} heads {heads} n {n} m {m} x{count}: fwd grid {f['row_blocks']}x{heads},"
                  f" smem {f['smem']} B; bwd splits {b['splits']} (tiles {b['tiles']}), smem"
                  f" {b['smem']} B, elems/thread {b['elems_per_thread']}, partials"
                  f" {b['partial_floats'] * 4 / 1e6:.2f} MB; rows {rows}, fwd {flops / 1e9:.3f} GFLOP"
                  f" {fbytes / 1e6:.1f} MB AI {flops / fbytes:.1f} HBM-limit {us(fbytes / HBM):.1f} us;"
                  f" bwd {2 * flops / 1e9:.3f} GFLOP {bbytes / 1e6:.1f} MB"
                  f" HBM-limit {us(bbytes / HBM):.1f} us")
    print()

    print("== softmax rows of the unfused E-MHSA path (cols = 49)")
    for N in (1, 32):
        for h, n, m, count in NEXTVIT_S_EMHSA:
            rows = N * h * n
            blocks = grid_size(rows * 32, 256)
            print(f"N={N} rows {rows} x{count}: VPL {vpl_of(m)}, {blocks} blocks,"
                  f" {rows / (blocks * 8):.2f} rows per warp, fwd {rows * m * 8 / 1e6:.1f} MB"
                  f" ({us(rows * m * 8 / HBM):.1f} us), bwd {rows * m * 12 / 1e6:.1f} MB"
                  f" ({us(rows * m * 12 / HBM):.1f} us)")

# ---- figures ------------------------------------------------------------------------------------
def _plt():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle
    plt.rcParams.update({"font.size": 9, "axes.titlesize": 10, "figure.dpi": 110})
    return plt, Rectangle


CMAP = ["#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948", "#b07aa1", "#ff9da7",
        "#9c755f", "#bab0ac"]


def _grid_axes(ax, w, h, title, xlabel, ylabel):
    ax.set_xlim(0, w)
    ax.set_ylim(h, 0)
    ax.set_aspect("equal")
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)


def fig_gconv_forward(out):
    plt, Rect = _plt()
    t = fwd_tiling(32, 3, 56, 56)
    fig = plt.figure(figsize=(14, 10))
    gs = fig.add_gridspec(2, 3, height_ratios=[1, 0.75], width_ratios=[0.8, 1, 1])
    # (a) the output plane cut into tiles
    ax = fig.add_subplot(gs[0, 0])
    _grid_axes(ax, 56, 56, f"(a) an output plane 56x56 (stage 1):\n{t['tiles_y']} x {t['tiles_x']} "
               f"tiles of {t['tile_h']} rows x {t['tile_w']} cols;\nblock = (tile, group, image)",
               "output column w", "output row h")
    for ty in range(t["tiles_y"]):
        for tx in range(t["tiles_x"]):
            hl = (ty, tx) == (1, 0)
            ax.add_patch(Rect((tx * t["tile_w"], ty * t["tile_h"]), t["tile_w"], t["tile_h"],
                              fc="#f28e2b" if hl else "#dde6f0", ec="k", lw=0.8))
            ax.text(tx * t["tile_w"] + t["tile_w"] / 2, ty * t["tile_h"] + t["tile_h"] / 2,
                    f"tile {ty * t['tiles_x'] + tx}", ha="center", va="center", fontsize=8)
    # (c1) shared memory: input planes
    rows, rs = t["tile_h"] + 2, t["row_stride"]
    ax = fig.add_subplot(gs[0, 1])
    _grid_axes(ax, rs, rows, f"(c) in_s: one of the 8 staged input planes\n{rows} rows (tile + halo) "
               f"x row_stride {rs} floats\nblue = tile, grey = halo, white = padding",
               "float within a staged row", "staged row")
    ax.set_yticks(range(0, rows + 1, 2))
    for r in range(rows):
        for c in range(rs):
            used = c < t["tile_w"] + 2
            halo = r in (0, rows - 1) or c in (0, t["tile_w"] + 1)
            fc = "#ffffff" if not used else ("#bbbbbb" if halo else "#a6c8e8")
            ax.add_patch(Rect((c, r), 1, 1, fc=fc, ec="#999999", lw=0.3))
    # (c2) shared memory: weights
    ax = fig.add_subplot(gs[0, 2])
    wr = 36
    _grid_axes(ax, wr, 9, "(d) w_s rows of one staged input channel ci\n[ci][tap][co]: 32 + 4 floats "
               f"per row; 8 x 9 rows in all\norange = cog 0's two 16-byte loads per tap",
               "output channel co (float within the row)", "tap kh*3+kw")
    for k in range(9):
        for c in range(wr):
            fc = "#ffffff" if c >= 32 else ("#f28e2b" if c < 8 else "#fbd7b5")
            ax.add_patch(Rect((c, k), 1, 1, fc=fc, ec="#999999", lw=0.3))
    ax.set_yticks(range(0, 9, 2))
    fig.suptitle(f"Grouped 3x3 forward, C = 32, 56x56: shared memory per block = 8 x {t['plane']} "
                 f"+ 8 x 9 x 36 floats = {t['smem']} bytes", fontsize=11)
    # (b) one tile: which thread owns which pixel
    ax = fig.add_subplot(gs[1, :])
    sw = t["sw"]
    _grid_axes(ax, t["tile_w"], t["tile_h"],
               f"(b) tile 2, output channels 0-7 (cog 0). Number = thread. Thread s = row*{sw} + col "
               f"owns pixels col, col+{sw}, col+{2 * sw}, col+{3 * sw} of its row (shade = pixel i)",
               f"tile column.  Threads {t['tile_h'] * sw}-{2 * t['tile_h'] * sw - 1} own the same "
               f"pixels for channels 8-15, and so on: {t['threads']} threads, 8 x 4 = 32 "
               "accumulators each", "tile row")
    for r in range(t["tile_h"]):
        for c in range(t["tile_w"]):
            col, i = c % sw, c // sw
            s_ = r * sw + col
            ax.add_patch(Rect((c, r), 1, 1, fc=CMAP[col % len(CMAP)], ec="w", lw=0.5,
                              alpha=0.35 + 0.2 * i))
            ax.text(c + 0.5, r + 0.5, str(s_), ha="center", va="center", fontsize=8)
    for i in range(1, 4):
        ax.axvline(i * sw, color="k", lw=1.5)
    fig.tight_layout()
    fig.savefig(os.path.join(out, "grouped_conv3x3_forward.png"))
    plt.close(fig)


def fig_gconv_backward_data(out):
    plt, Rect = _plt()
    fig, axs = plt.subplots(1, 2, figsize=(11, 4.2))
    for ax, flip in zip(axs, (False, True)):
        ax.set_xlim(-0.5, 11)
        ax.set_ylim(4.2, -1.2)
        ax.set_aspect("equal")
        ax.axis("off")
        for k in range(9):
            kh, kw = divmod(k, 3)
            ax.add_patch(Rect((kw, kh), 1, 1, fc="#a6c8e8", ec="k"))
            ax.text(kw + 0.5, kh + 0.5, f"{k}", ha="center", va="center")
            src = 8 - k if flip else k
            sh, swc = divmod(src, 3)
            ax.add_patch(Rect((7 + swc, sh), 1, 1, fc="#fbd7b5", ec="k"))
            ax.text(7 + swc + 0.5, sh + 0.5, f"{k}", ha="center", va="center")
        ax.annotate("", xy=(6.8, 1.5), xytext=(3.2, 1.5), arrowprops=dict(arrowstyle="->"))
        ax.text(1.5, -0.5, "staged tap k of w_s[i][k][o]", ha="center")
        if flip:
            ax.set_title("backward-data (Flip = true): w_s[i][k][o] = w[ci0+i][o][8-k]\n"
                         "taps rotated 180 degrees, input/output channels swapped")
            ax.text(8.5, -0.5, "read from w[ci0+i][o][.]", ha="center")
        else:
            ax.set_title("forward (Flip = false): w_s[ci][k][co] = w[co][ci0+ci][k]")
            ax.text(8.5, -0.5, "read from w[co][ci0+ci][.]", ha="center")
        ax.text(5, 3.9, "the same fwd_accumulate then runs on dy instead of x", ha="center",
                fontsize=8)
    fig.tight_layout()
    fig.savefig(os.path.join(out, "grouped_conv3x3_backward_data.png"))
    plt.close(fig)


def fig_gconv_backward_weight(out):
    plt, Rect = _plt()
    fig, axs = plt.subplots(1, 3, figsize=(15, 5.4), gridspec_kw={"width_ratios": [1.2, 1, 1]})
    # (a) work items over images, dealt round-robin to blocks
    ax = axs[0]
    nb = 5  # illustrative blocks per group
    _grid_axes(ax, 2 * 56 + 4, 56, f"(a) work items: 8x8 pixel tiles of every image (here 2 images "
               f"of 56x56)\nblock b of a group takes items b, b + blocks, ... (colour = block, "
               f"{nb} blocks shown)", "image 0                         image 1", "")
    ax.set_xticks([])
    item = 0
    for n in range(2):
        for ty in range(7):
            for tx in range(7):
                b = item % nb
                ax.add_patch(Rect((n * 60 + tx * 8, ty * 8), 8, 8, fc=CMAP[b], ec="w", lw=0.8,
                                  alpha=0.8))
                ax.text(n * 60 + tx * 8 + 4, ty * 8 + 4, str(item), ha="center", va="center",
                        fontsize=6)
                item += 1
    # (b) the C x C weight matrix of a group: who owns what
    ax = axs[1]
    S = WgtShape(32)
    _grid_axes(ax, 32, 32, f"(b) dw of one group: 32 x 32 (x 9 taps)\nthread t = a*16 + b owns "
               f"co a*4..a*4+3, ci 2b..2b+1, all 9 taps:\n{S.threads} threads x 72 accumulators",
               "input channel ci", "output channel co")
    for a in range(8):
        for b in range(16):
            tid = a * 16 + b
            ax.add_patch(Rect((b * 2, a * 4), 2, 4, fc=CMAP[(a + b) % len(CMAP)], ec="w", lw=0.6,
                              alpha=0.75))
            ax.text(b * 2 + 1, a * 4 + 2, str(tid), ha="center", va="center", fontsize=5.5,
                    rotation=90)
    # (c) one 4-pixel segment
    ax = axs[2]
    ax.set_xlim(-1, 11)
    ax.set_ylim(7.5, -2.5)
    ax.set_aspect("equal")
    ax.axis("off")
    ax.set_title("(c) one segment: 4 adjacent output pixels of a tile row\n"
                 "x tile (halo'd, 10 wide) vs dy tile (8 wide)")
    for r in range(3):
        for c in range(10):
            used = 0 <= c - 0 < 6
            ax.add_patch(Rect((c, r), 1, 1, fc="#a6c8e8" if used else "#eeeeee", ec="k", lw=0.5))
        ax.text(10.3, r + 0.6, f"kh={r}: 6 loads", fontsize=7)
    for c in range(8):
        ax.add_patch(Rect((c + 1, 4.5), 1, 1, fc="#fbd7b5" if c < 4 else "#eeeeee", ec="k", lw=0.5))
    ax.text(9.3, 5.1, "dy: 4 loads\nper co", fontsize=7)
    ax.text(5, 7.2, "acc[o][i][kh*3+kw] += sum_p dy[o][p] * x[i][kh][p + kw]\n"
            "C = 32: (4 co x 4 + 2 ci x 3 x 6) = 52 loads feed 4 x 2 x 9 x 4 = 288 FMAs",
            ha="center", fontsize=7.5)
    fig.tight_layout()
    fig.savefig(os.path.join(out, "grouped_conv3x3_backward_weight.png"))
    plt.close(fig)


def fig_batch_norm(out):
    plt, Rect = _plt()
    fig, axs = plt.subplots(2, 1, figsize=(13, 7.2))
    # (a) layout and the multi-block path
    ax = axs[0]
    N, C, S = 3, 4, 12
    ax.set_xlim(-1, N * C * S + 1)
    ax.set_ylim(4.8, -2.2)
    ax.axis("off")
    ax.set_title("(a) memory (N, C, S): channel c = N runs of S contiguous values; "
                 "multi-block path: grid (splits, C), block (split, c) reduces a 1/splits slice "
                 "of channel c's M = N*S values")
    for n in range(N):
        for c in range(C):
            x0 = (n * C + c) * S
            ax.add_patch(Rect((x0, 0), S, 1, fc=CMAP[c], ec="k", lw=0.6, alpha=0.85))
            ax.text(x0 + S / 2, 0.55, f"n{n} c{c}", ha="center", va="center", fontsize=7)
    splits = 3
    M = N * S
    chunk = cdiv(M, splits)
    for q in range(M):
        n, p = divmod(q, S)
        x0 = (n * C + 1) * S + p
        sp = q // chunk
        ax.add_patch(Rect((x0, 1.4), 1, 1, fc=["#59a14f", "#edc948", "#b07aa1"][sp], ec="w", lw=0.3))
    ax.text(0, 2.0, "channel 1,\nsplit 0/1/2:", fontsize=7.5, va="center")
    ax.text(N * C * S / 2, 3.6, "pass 1 stats_partial_kernel: sums of d and d^2 (d = x - x[c, first]) "
            "in double -> stats_finish_kernel (one thread per channel) -> pass 2 apply_kernel: "
            "y = max(x*alpha + beta, 0), float4 when S % 4 == 0", ha="center", fontsize=8)
    # (b) the small path
    ax = axs[1]
    ax.set_xlim(-3, 68)
    ax.set_ylim(5.5, -1.8)
    ax.axis("off")
    ax.set_title("(b) small path (M <= 4096): one block of 256 threads per channel; thread t holds "
                 "values q = t + 256k, k < 16, in registers (v[16])")
    for k in range(4):
        for t in range(64):
            ax.add_patch(Rect((t, k), 1, 1, fc=CMAP[t % 8], ec="w", lw=0.3, alpha=0.3 + 0.15 * k))
        ax.text(-0.5, k + 0.6, f"k={k}", ha="right", fontsize=7)
    ax.text(32, 4.6, "q = 0..63 of 256 per row shown; colour = thread; a block reads the channel "
            "once, reduces (warp shuffles + 8-slot shared array),\nthread 0 computes the affine map, "
            "one __syncthreads(), then each thread writes its own values from registers",
            ha="center", fontsize=8)
    fig.tight_layout()
    fig.savefig(os.path.join(out, "batch_norm_relu.png"))
    plt.close(fig)


def _smem_bar(ax, parts, title):
    """A horizontal bar of shared-memory regions: parts = [(label, floats, colour)]."""
    x = 0
    total = sum(p[1] for p in parts)
    for label, floats, colour in parts:
        ax.add_patch(__import__("matplotlib").patches.Rectangle((x, 0), floats, 1, fc=colour,
                                                                  ec="k"))
        ax.text(x + floats / 2, 0.5, f"{label}\n{floats} floats\n@{x * 4} B", ha="center",
                va="center", fontsize=7.5)
        x += floats
    ax.set_xlim(0, total)
    ax.set_ylim(0, 1)
    ax.set_yticks([])
    ax.set_xlabel("float offset in dynamic shared memory")
    ax.set_title(title)


def fig_pooled_attention_forward(out):
    plt, Rect = _plt()
    m, d = 49, 32
    fig = plt.figure(figsize=(14, 7.5))
    gs = fig.add_gridspec(2, 2, height_ratios=[1, 0.28], width_ratios=[0.7, 1.3])
    ax = fig.add_subplot(gs[0, 0])
    _grid_axes(ax, 8, 8, "(a) a block: 64 query rows of one head.\nColumn = warp; warp w takes rows "
               "w, w+8, ..., w+56\n(number = row within the block)", "warp", "iteration of the row loop")
    for w in range(8):
        for k in range(8):
            ax.add_patch(Rect((w, k), 1, 1, fc=CMAP[w], ec="w", alpha=0.75))
            ax.text(w + 0.5, k + 0.5, str(w + 8 * k), ha="center", va="center")
    ax = fig.add_subplot(gs[0, 1])
    _grid_axes(ax, 32, 2, f"(b) one warp on one query row, m = {m} keys, KPL = 2 slots per lane.\n"
               "Cell = key j held by lane l in slot t (grey: j >= m, score -inf, probability 0)",
               "lane l", "slot t")
    for t_ in range(2):
        for lane in range(32):
            j = lane + 32 * t_
            ax.add_patch(Rect((lane, t_), 1, 1, fc=CMAP[lane % 10] if j < m else "#e8e8e8",
                              ec="w", alpha=0.8))
            ax.text(lane + 0.5, t_ + 0.5, str(j), ha="center", va="center", fontsize=8)
    ax.set_yticks([0.5, 1.5])
    ax.set_yticklabels(["0", "1"])
    ax.text(16, 4.0, "score s_j = scale * (q . K[j]): lane l reads K[j][0..31] (row stride 33 "
            "floats), q[c] broadcast;\nbank of K[j][c] = (33 j + c) mod 32 = (l + c) mod 32 "
            "-> the 32 lanes hit 32 different banks.\nThen max and sum: 5 + 5 xor-shuffles; "
            "probabilities stored to global (lane l writes key l + 32t: coalesced).\n"
            "Output: lane c sums p_j V[j][c] over j, taking p_j from lane j mod 32 by "
            "__shfl_sync:\n1 SHFL + 1 LDS + 1 FMA per key; lanes read one V row = 32 "
            "consecutive words.", ha="center", va="top", fontsize=8.5)
    ax = fig.add_subplot(gs[1, :])
    _smem_bar(ax, [("K: 49 x (32+1)", m * (d + 1), "#a6c8e8"),
                   ("V: 49 x (32+1)", m * (d + 1), "#c9e3c2"),
                   ("q: 8 x 32", 8 * d, "#fbd7b5")],
              f"(c) shared memory of a forward block, m = 49, d = 32: {(2 * m * (d + 1) + 8 * d) * 4}"
              " bytes")
    fig.tight_layout()
    fig.savefig(os.path.join(out, "pooled_attention_forward.png"))
    plt.close(fig)


def fig_pooled_attention_backward(out):
    plt, Rect = _plt()
    fig, axs = plt.subplots(1, 3, figsize=(15, 5.0), gridspec_kw={"width_ratios": [0.9, 1.1, 1.2]})
    ax = axs[0]
    tiles, splits = 25, 2
    _grid_axes(ax, 5, 5, f"(a) n = 784 query rows = {tiles} tiles of 32\n(N = 32: {splits} splits). "
               "Block s of a head takes\ntiles s, s + splits, ... (colour = block)", "", "")
    ax.set_xticks([])
    ax.set_yticks([])
    for t in range(tiles):
        ax.add_patch(Rect((t % 5, t // 5), 1, 1, fc=CMAP[t % splits], ec="w", alpha=0.8))
        ax.text(t % 5 + 0.5, t // 5 + 0.5, f"tile {t}\nblock {t % splits}", ha="center",
                va="center", fontsize=7.5)
    ax = axs[1]
    ax.set_xlim(0, 60)
    ax.set_ylim(34, -4)
    ax.set_title("(b) phase A, per tile: warp w takes rows w, w+8, w+16, w+24\n"
                 "and writes the row's p and dS (49 + 1 floats) to shared memory")
    for r in range(32):
        ax.add_patch(Rect((0, r), 50, 1, fc=CMAP[r % 8], ec="w", lw=0.3, alpha=0.6))
        ax.add_patch(Rect((50, r), 1, 1, fc="#ffffff", ec="#999999", lw=0.3, hatch="///"))
    ax.text(25, -1.2, "p_s and ds_s: 32 rows x p_row = m + 1 = 50 floats (each)", ha="center",
            fontsize=7.5)
    ax.text(54, 16, "dq row:\nsum_j dS_j k_j\n(shuffles)", fontsize=7, va="center")
    ax.set_xlabel("key j")
    ax.set_ylabel("row of the tile")
    ax = axs[2]
    m, d = 49, 32
    _grid_axes(ax, d, m, "(c) phase B (after __syncthreads): thread t owns dK/dV\nelements e = t + "
               "256u, j = e / 32, c = e % 32 (7 rows of 32 per 256)", "channel c", "key j")
    for j in range(m):
        for c in range(d):
            e = j * d + c
            u = e // 256
            ax.add_patch(Rect((c, j), 1, 1, fc=CMAP[u], ec="w", lw=0.2, alpha=0.8))
    for u in range(7):
        ax.text(d + 0.5, (u * 256 + 128) / d, f"u={u}", fontsize=7, va="center")
    fig.text(0.5, 0.01, "phase B: dK[j,c] += sum_r dS[r,j] q[r,c];  dV[j,c] += sum_r p[r,j] dout[r,c] "
             "over the tile's 32 rows r (accumulators stay in registers until the block's last tile)",
             ha="center", fontsize=9)
    fig.tight_layout(rect=(0, 0.04, 1, 1))
    fig.savefig(os.path.join(out, "pooled_attention_backward.png"))
    plt.close(fig)


def fig_softmax(out):
    plt, Rect = _plt()
    fig, ax = plt.subplots(1, 1, figsize=(13, 4.2))
    ax.set_xlim(-6, 66)
    ax.set_ylim(9.5, -2.5)
    ax.axis("off")
    ax.set_title("softmax: one warp per row; lane l holds columns l, l + 32, ... in registers "
                 "(VPL = 2 for E-MHSA's 49 columns)")
    for row in range(3):
        for j in range(64):
            valid = j < 49
            ax.add_patch(Rect((j, row * 2.2), 1, 1.6, fc=CMAP[(j % 32) % 10] if valid else "#eeeeee",
                              ec="w", lw=0.3, alpha=0.85 if valid else 1))
        ax.text(-1, row * 2.2 + 0.9, f"row {row}:\nwarp {row}", ha="right", va="center", fontsize=7)
    for j in range(0, 64, 8):
        ax.text(j + 0.5, -0.6, f"{j}", ha="center", fontsize=7)
    ax.text(32, 7.6, "v[0] = x[lane], v[1] = x[lane + 32] (-inf past column 48: lanes 17..31 idle in "
            "slot 1); max and sum by 5 shuffles each; each load/store instruction covers\n"
            "32 consecutive floats. Grid: min(ceil(rows / 8), 4224) blocks of 8 warps, rows "
            "r, r + 8 * gridDim.x, ...", ha="center", fontsize=8)
    ax.text(-5.5, -1.0, "column:", fontsize=7)
    fig.tight_layout()
    fig.savefig(os.path.join(out, "softmax.png"))
    plt.close(fig)


def draw_all(out):
    os.makedirs(out, exist_ok=True)
    fig_gconv_forward(out)
    fig_gconv_backward_data(out)
    fig_gconv_backward_weight(out)
    fig_batch_norm(out)
    fig_pooled_attention_forward(out)
    fig_pooled_attention_backward(out)
    fig_softmax(out)
    print(f"wrote 7 figures to {out}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default=os.path.join("docs", "kernels", "figures"))
    ap.add_argument("--tables", action="store_true", help="print the numbers, draw nothing")
    a = ap.parse_args()
    if a.tables:
        print_tables()
        return
    draw_all(a.out)


if __name__ == "__main__":
    main()
