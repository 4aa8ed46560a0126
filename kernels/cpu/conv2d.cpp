// CPU conv2d: every pass is a matrix product per (chunk of output positions, group) on top of
// kernels::cpu::gemm.
//
// How data moves. For group g and a chunk of output positions, let col be the (Cin_g*kh*kw,
// width) matrix whose column q holds the input patch that output position q sees (im2col; zero
// where the patch hangs over the padding). Then
//
//   forward          y_g[:, chunk]   = W_g (Cout_g, Cin_g*kh*kw)  x  col
//   backward data    dcol            = W_g^T  x  dy_g[:, chunk],   then dx += col2im(dcol)
//   backward weight  dW_g           += dy_g[:, chunk]  x  col^T
//
// Forward convolutions at stride 1 or 2 with small groups (a multiple of 8 and at most 64
// output channels per group; on AVX2 at stride 1, 32: Next-ViT's MHCA, the stem's 64 -> 64 at
// stride 2) and more than 16 output positions take the direct kernel of
// kernels/cpu/conv_direct.cpp instead, on the AVX-512 and AVX2 families; what follows describes
// every other case.
//
// One-pixel maps (1 x 1 in and out: the last stage of a small model) take the matrix products
// of kernels/cpu/conv_one_pixel.cpp in every direction instead, and the other stride-1 forward
// convolutions with output rows at least 28 wide, on AVX-512, read the input rows in place
// instead of building col (the implicit GEMM of kernels/cpu/conv_implicit.cpp).
//
// A 1x1 kernel with stride 1 and no padding needs no im2col: col is the input itself, read in
// place with leading dimension H*W (and dx is written in place the same way). With stride 1 the
// input gradient is computed as the forward convolution of dy with the flipped kernel instead
// of through col2im (see conv2d_backward_data).
//
// Chunks. The im2col buffer is bounded (kColFloats) so it stays in L2 between being written and
// being packed by the GEMM: a large image is cut into column ranges of one image. Small images
// (late stages, or the small inputs of CPU training) are instead grouped several whole images to
// a chunk, so that each GEMM still sees hundreds of columns; their number is a multiple of the
// thread count and their sizes equal, so that every thread gets the same work. Such a chunk is
// not copied together here: the GEMM's packers read its images' planes where they lie (column
// blocks of one image's span: GemmColumnBlocks; in the weight gradient, where the images are
// summed over, K in blocks: gemm_nt_k_blocks, which copies blocks of 2 x 2 images together
// itself), and the product is scattered into the images by
// the GEMM's row pass as it finishes each run of a row (gemm_scattered). Narrow images build
// their im2col through zero-padded copies (14 x 14, stride 1) or through a table of input
// offsets and masked gathers (7 x 7 and below; with AVX-512, images of at most 16 pixels by
// one vector permutation per channel and kernel offset) rather than row by row
// (kernels/cpu/conv_im2col.cpp, which also holds col2im). What these files share (the derived
// sizes, the chunks, the threads' items, the scratch buffers): kernels/cpu/conv_geometry.h.
//
// Threads. The (chunk, group) items are spread over the OpenMP threads when there are enough of
// them to keep every thread busy; each item then runs its products on its own thread (the GEMM
// sees omp_in_parallel() and stays single-threaded). With few items (batch 1, one group) the
// items run in turn and each GEMM, im2col and col2im is split across the threads instead. Never
// both. The weight gradient sums over items: in the threaded form each thread accumulates into
// a private copy, added up at the end.
#include "kernels/conv2d.h"

#include <omp.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <vector>

#include "core/error.h"
#include "kernels/cpu/conv_direct.h"
#include "kernels/cpu/conv_geometry.h"
#include "kernels/cpu/conv_im2col.h"
#include "kernels/cpu/conv_implicit.h"
#include "kernels/cpu/conv_one_pixel.h"
#include "kernels/cpu/conv_output_pass.h"
#include "kernels/cpu/conv_winograd.h"
#include "kernels/cpu/lane_sums.h"
#include "kernels/cpu/parallel.h"
#include "kernels/gemm.h"

namespace nextvit::kernels::cpu {

using namespace conv_detail;

namespace conv_detail {

// Per-thread scratch buffers (conv_geometry.h).
float* scratch(int slot, int64_t floats) {
  thread_local std::vector<float> buffers[3];
  std::vector<float>& b = buffers[slot];
  if (static_cast<int64_t>(b.size()) < floats) b.resize(static_cast<size_t>(floats));
  return b.data();
}

}  // namespace conv_detail

namespace {

// Floats of im2col buffer per chunk (512 KiB: a quarter of this machine's L2).
constexpr int64_t kColFloats = 128 * 1024;
// Chunk widths: never below one micro-tile row of work, never beyond what helps.
constexpr int64_t kMinCols = 64, kMaxCols = 4096;
// An image with at least this many output positions gets chunks of its own (read in place);
// smaller ones are grouped with their neighbours.
constexpr int64_t kInPlaceCols = 256;

std::vector<Chunk> plan_chunks(const Geometry& g) {
  const int64_t P = g.p, N = g.s.batch;
  // Columns per chunk: as many as the im2col budget allows. A 1x1 kernel reads a
  // large image in place, with nothing to bound: one chunk per image.
  const int64_t budget = kColFloats / g.kg / 16 * 16;
  const int64_t target = g.pointwise ? std::max(P, std::clamp(budget, kInPlaceCols, kMaxCols))
                                     : std::clamp(budget, kMinCols, kMaxCols);
  std::vector<Chunk> chunks;
  if (P >= std::min(target, kInPlaceCols) || N == 1) {
    const int64_t pieces = (P + target - 1) / target;
    const int64_t step = std::min(P, ((P + pieces - 1) / pieces + 15) / 16 * 16);
    for (int64_t n = 0; n < N; ++n) {
      for (int64_t p0 = 0; p0 < P; p0 += step) chunks.push_back({n, 1, p0, std::min(P, p0 + step)});
    }
  } else {
    // As few chunks as the budget allows, all of nearly the same size and, when there are
    // several, a multiple of the thread count: 128 images of 7 x 7 at 41 per chunk would be
    // 41 + 41 + 41 + 5, and the thread taking the first and third would work 82 images to the
    // other's 46. A single chunk stays one: its GEMM splits across the threads itself (two
    // chunks would each pack the whole weight).
    const int64_t per = std::max<int64_t>(1, target / P), threads = available_threads();
    int64_t count = (N + per - 1) / per;
    if (count > 1 && threads > 1 && N >= threads) {
      count = (count + threads - 1) / threads * threads;
    }
    for (int64_t i = 0; i < count; ++i) {
      const int64_t n0 = N * i / count, n1 = N * (i + 1) / count;
      chunks.push_back({n0, n1 - n0, 0, P});
    }
  }
  return chunks;
}

// The product of a chunk of several images, scattered: buf (rows, width) = op(a) x b, and each
// run of a row, once the GEMM has finished it and while it is in L1, put through the output
// pass into the images' planes of t (channels c0 + row). A scatter after the product would read
// all of buf again, from L2, in a parallel pass of its own: in CPU training (batch 128, maps of
// 14 x 14 and below) the separate gather and scatter passes took 15 % of the step.
void gemm_scattered(const Geometry& g, const Chunk& ch, bool trans_a, int64_t rows, int64_t K,
                    const float* a, int64_t lda, const float* b, int64_t ldb,
                    const GemmRowAffine& b_map, const GemmColumnBlocks& b_blocks, int64_t channels,
                    int64_t c0, const ConvOutputPass& pass, float* buf, float* t) {
  struct Target {
    const Geometry* g;
    const Chunk* ch;
    const ConvOutputPass* pass;
    const float* buf;
    float* t;
    int64_t channels, c0, width;
  } target{&g, &ch, &pass, buf, t, channels, c0, ch.width()};
  GemmRowPass row_pass;
  row_pass.ctx = &target;
  row_pass.fn = [](const void* ctx, int64_t row, float* c, int64_t n) {
    const Target& s = *static_cast<const Target*>(ctx);
    const int64_t span = s.ch->span(), image = s.channels * s.g->p;
    // Column j of buf is position p0 + j % span of image n0 + j / span: the run's first image
    // and offset, then whole images from offset 0.
    const int64_t j = (c - s.buf) - row * s.width;
    int64_t q = j % span;
    float* dst = s.t + ((s.ch->n0 + j / span) * s.channels + s.c0 + row) * s.g->p + s.ch->p0;
    for (const float* end = c + n; c < end; dst += image, q = 0) {
      const int64_t len = std::min(span - q, int64_t(end - c));
      s.pass->run(s.c0 + row, c, dst + q, len);
      c += len;
    }
  };
  gemm_with_pass(trans_a, false, rows, ch.width(), K, 1.0f, a, lda, b, ldb, 0.0f, buf, ch.width(),
                 row_pass, b_map, b_blocks);
}

// Rows [c0, c0 + rows) of a chunk of an (N, C, P) tensor as the right-hand matrix of a product,
// read where they lie: in place for one image (leading dimension P), else as column blocks of
// one image's span each (GemmColumnBlocks), C * P floats apart. *ld and *blocks describe it.
const float* chunk_matrix(const Geometry& g, const float* t, int64_t channels, int64_t c0,
                          const Chunk& ch, int64_t* ld, GemmColumnBlocks* blocks) {
  *ld = g.p;
  *blocks = ch.in_place() ? GemmColumnBlocks{} : GemmColumnBlocks{ch.span(), channels * g.p};
  return t + (ch.n0 * channels + c0) * g.p + ch.p0;
}

// y (rows, ld) = w (rows, K) x b (K, cols), output channels [c0, c0 + rows), each run of a row
// put through the output pass by the GEMM as soon as it is complete, while it is in cache. (A
// pass after the product would read and write all of y again, from memory: 3.6 MB for the
// 96 -> 288 1x1 convolution at 56 x 56.)
void gemm_finished(const ConvOutputPass& pass, int64_t c0, int64_t rows, int64_t cols, int64_t K,
                   const float* w, const float* b, int64_t ldb, float* y, int64_t ld,
                   const GemmRowAffine& b_map) {
  struct Channels {
    const ConvOutputPass* pass;
    int64_t c0;
  } channels{&pass, c0};
  GemmRowPass row_pass;
  if (pass.needed()) {
    row_pass.fn = [](const void* ctx, int64_t row, float* c, int64_t n) {
      const Channels& ch = *static_cast<const Channels*>(ctx);
      ch.pass->run(ch.c0 + row, c, c, n);
    };
    row_pass.ctx = &channels;
  }
  gemm_with_pass(false, false, rows, cols, K, 1.0f, w, K, b, ldb, 0.0f, y, ld, row_pass, b_map);
}

// dw = sum over (chunk, group) items of dy_g[:, chunk] x col^T.
void weight_gradient(const Geometry& g, const float* x, const float* dy, float* dw) {
  const Conv2dShape& s = g.s;
  const std::vector<Chunk> chunks = plan_chunks(g);
  const int64_t G = s.groups, cin = s.in_channels, cout = s.out_channels;
  const int64_t items = int64_t(chunks.size()) * G, dw_size = cout * g.kg;
  const bool spread = spread_items(items);
  // In the threaded form thread t accumulates into partial[t] (thread 0 into dw itself).
  const int threads = spread ? available_threads() : 1;
  std::vector<float> partial(static_cast<size_t>((threads - 1) * dw_size), 0.0f);
  std::fill(dw, dw + dw_size, 0.0f);

  for_items(items, spread, [&](int64_t item) {
    const Chunk& ch = chunks[item / G];
    const int64_t grp = item % G, width = ch.width();
    const int t = spread ? omp_get_thread_num() : 0;
    float* acc = (t == 0 ? dw : partial.data() + (t - 1) * dw_size) + grp * g.cout_g * g.kg;
    // dy chunk (cout_g, width) and col chunk (kg, width), used transposed: for a 1x1 kernel the
    // input itself, read where it lies; else im2col.
    GemmColumnBlocks dy_blocks, x_blocks;
    int64_t lddy, ldcol;
    const float* dym = chunk_matrix(g, dy, cout, grp * g.cout_g, ch, &lddy, &dy_blocks);
    const float* colm;
    if (g.pointwise) {
      colm = chunk_matrix(g, x, cin, grp * g.cin_g, ch, &ldcol, &x_blocks);
    } else {
      float* col = scratch(0, g.kg * width);
      build_col(g, x, grp, ch, col);
      colm = col;
      ldcol = width;
      x_blocks = {ch.span(), ch.span()};  // contiguous: block b starts b spans on
    }
    if (ch.in_place()) {
      gemm(false, true, g.cout_g, g.kg, width, 1.0f, dym, lddy, colm, ldcol, 1.0f, acc, g.kg);
    } else {
      // Summed over the chunk's images, K in blocks of one image's span.
      gemm_nt_k_blocks(g.cout_g, g.kg, width, 1.0f, dym, lddy, colm, ldcol, 1.0f, acc, g.kg,
                       {ch.span(), dy_blocks.stride, x_blocks.stride});
    }
  });
  for (int t = 1; t < threads; ++t) {
    const float* p = partial.data() + (t - 1) * dw_size;
    parallel_for(dw_size, kElementwiseGrain, [&](int64_t lo, int64_t hi) {
      for (int64_t i = lo; i < hi; ++i) dw[i] += p[i];
    });
  }
}

void bias_gradient(const Geometry& g, const float* dy, float* db) {
  const Conv2dShape& s = g.s;
  const int64_t cout = s.out_channels;
  // db[c] = sum over images and positions of dy[n, c, :], in double lanes kept across the
  // images (lane_sums.h), so that small maps (7x7, 4x4) need no reduction per image.
  parallel_for(cout, 1, [&](int64_t c0, int64_t c1) {
    for (int64_t c = c0; c < c1; ++c) {
      LaneSums2 acc;
      for (int64_t n = 0; n < s.batch; ++n) {
        const float* row = dy + (n * cout + c) * g.p;
        acc.add_run(g.p, [&](int64_t q, double& u, double& v) {
          u = row[q];
          v = 0.0;
        });
      }
      const double total = acc.sum_a();
      db[c] = static_cast<float>(total);
    }
  });
}

}  // namespace

void conv2d_workspace_floats(const Conv2dShape&, int64_t* floats) {
  *floats = 0;
}

void conv2d_forward(const Conv2dShape& s, const float* x, const float* w, const float* b, float* y,
                    float* /*workspace*/) {
  conv2d_forward_fused(s, x, w, b, Conv2dEpilogue{}, y);
}

void conv2d_forward_fused(const Conv2dShape& s, const float* x, const float* w, const float* b,
                          const Conv2dEpilogue& epilogue, float* y,
                          const Conv2dPrologue& prologue) {
  const Geometry g(s);
  const ConvOutputPass pass(b, epilogue, y);
  NV_CHECK((prologue.scale == nullptr) == (prologue.shift == nullptr),
           "conv2d_forward_fused: the input map needs both scale and shift, or neither");
  NV_CHECK(prologue.scale == nullptr || g.pointwise,
           "conv2d_forward_fused: an input map needs a 1x1 convolution with stride 1 and no "
           "padding, got kernel {}x{}, stride {}x{}, padding {}x{}",
           s.kernel_h, s.kernel_w, s.stride_h, s.stride_w, s.pad_h, s.pad_w);
  if (conv_one_pixel_applies(s) && prologue.scale == nullptr) {
    conv_one_pixel_forward(s, x, w, pass, y);
    return;
  }
  if (conv_winograd_applies(s)) {
    conv_winograd_forward(s, x, w, pass, y);
    return;
  }
  if (conv_direct_applies(s)) {
    conv_direct_forward(s, x, w, pass, y);
    return;
  }
  if (use_implicit(g)) {
    forward_implicit(g, x, w, pass, y);
    return;
  }
  const std::vector<Chunk> chunks = plan_chunks(g);
  const int64_t G = s.groups, cout = s.out_channels, items = int64_t(chunks.size()) * G;
  for_items(items, spread_items(items), [&](int64_t item) {
    const Chunk& ch = chunks[item / G];
    const int64_t grp = item % G, width = ch.width();
    const float* wg = w + grp * g.cout_g * g.kg;
    // The input map of the group's channels, applied by the GEMM's packers (rows of bmat are
    // the group's input channels, for a 1x1 kernel read in place: one image, or column blocks).
    GemmRowAffine map;
    if (prologue.scale != nullptr) {
      map.scale = prologue.scale + grp * g.cin_g;
      map.shift = prologue.shift + grp * g.cin_g;
    }
    // The right-hand matrix: the input itself for a 1x1 kernel, read where it lies, else
    // im2col.
    const float* bmat;
    int64_t ldb;
    GemmColumnBlocks blocks;
    if (g.pointwise) {
      bmat = chunk_matrix(g, x, s.in_channels, grp * g.cin_g, ch, &ldb, &blocks);
    } else {
      float* col = scratch(0, g.kg * width);
      build_col(g, x, grp, ch, col);
      bmat = col;
      ldb = width;
    }
    if (ch.in_place()) {
      float* yc = y + (ch.n0 * cout + grp * g.cout_g) * g.p + ch.p0;
      gemm_finished(pass, grp * g.cout_g, g.cout_g, width, g.kg, wg, bmat, ldb, yc, g.p, map);
    } else {
      gemm_scattered(g, ch, false, g.cout_g, g.kg, wg, g.kg, bmat, ldb, map, blocks, cout,
                     grp * g.cout_g, pass, scratch(1, g.cout_g * width), y);
    }
  });
}

namespace {

// The three algorithms of conv2d_backward_data, chosen in that function.

// The transposed convolution applies when it needs no negative padding.
bool backward_data_is_convolution(const Geometry& g) {
  const Conv2dShape& s = g.s;
  return !g.pointwise && s.stride_h == 1 && s.stride_w == 1 && s.pad_h < s.kernel_h &&
         s.pad_w < s.kernel_w;
}

// With stride 1 the input gradient is itself a convolution: of dy, zero-padded by k-1-p,
// with the kernel flipped and the channel roles swapped,
//   dx[ci, ih, iw] = sum_{co, i, j} dy[co, ih + ph - i, iw + pw - j] w[co, ci, i, j].
// Running it through the forward path replaces the scatter-adds of col2im (a read-modify-
// write of dx per im2col element) by im2col's plain reads.
void backward_data_by_convolution(const Geometry& g, const float* dy, const float* w, float* dx,
                                  float* workspace) {
  const Conv2dShape& s = g.s;
  Conv2dShape t = s;
  t.in_channels = s.out_channels;
  t.in_h = g.ho;
  t.in_w = g.wo;
  t.out_channels = s.in_channels;
  t.pad_h = s.kernel_h - 1 - s.pad_h;
  t.pad_w = s.kernel_w - 1 - s.pad_w;
  const int64_t kk = s.kernel_h * s.kernel_w;
  // wt[g * cin_g + ci, co, i, j] = w[g * cout_g + co, ci, kh - 1 - i, kw - 1 - j]
  std::vector<float> wt(static_cast<size_t>(s.in_channels * g.cout_g * kk));
  for (int64_t grp = 0; grp < s.groups; ++grp) {
    for (int64_t co = 0; co < g.cout_g; ++co) {
      for (int64_t ci = 0; ci < g.cin_g; ++ci) {
        const float* src = w + ((grp * g.cout_g + co) * g.cin_g + ci) * kk;
        float* dst = wt.data() + ((grp * g.cin_g + ci) * g.cout_g + co) * kk;
        for (int64_t k = 0; k < kk; ++k) dst[k] = src[kk - 1 - k];
      }
    }
  }
  conv2d_forward(t, dy, wt.data(), nullptr, dx, workspace);
}

// 1x1 kernel: dx_g[:, chunk] = W_g^T dy_g[:, chunk]; every dx element is written by exactly
// one item.
void backward_data_pointwise(const Geometry& g, const std::vector<Chunk>& chunks, const float* dy,
                             const float* w, float* dx) {
  const int64_t G = g.s.groups, cin = g.s.in_channels;
  const int64_t items = int64_t(chunks.size()) * G;
  for_items(items, spread_items(items), [&](int64_t item) {
    const Chunk& ch = chunks[item / G];
    const int64_t grp = item % G, width = ch.width();
    const float* wg = w + grp * g.cout_g * g.cin_g;
    int64_t lddy;
    GemmColumnBlocks blocks;
    const float* dym = chunk_matrix(g, dy, g.s.out_channels, grp * g.cout_g, ch, &lddy, &blocks);
    if (ch.in_place()) {
      float* dxc = dx + (ch.n0 * cin + grp * g.cin_g) * g.hw + ch.p0;
      gemm(true, false, g.cin_g, width, g.cout_g, 1.0f, wg, g.cin_g, dym, lddy, 0.0f, dxc, g.hw);
    } else {
      gemm_scattered(g, ch, true, g.cin_g, g.cout_g, wg, g.cin_g, dym, lddy, {}, blocks, cin,
                     grp * g.cin_g, ConvOutputPass(nullptr, {}), scratch(0, g.cin_g * width), dx);
    }
  });
}

// General kernel: dcol = W_g^T dy_g, then col2im adds dcol into dx. col2im of neighbouring
// chunks of one image overlap (the patches of the rows at a chunk border share input rows), so
// one item owns whole images: all chunks of one image, or one multi-image chunk. Items then
// write disjoint parts of dx.
void backward_data_col2im(const Geometry& g, const std::vector<Chunk>& chunks, const float* dy,
                          const float* w, float* dx) {
  const int64_t G = g.s.groups, cin = g.s.in_channels;
  std::vector<std::pair<size_t, size_t>> owners;  // chunk ranges [first, last)
  for (size_t c = 0; c < chunks.size();) {
    size_t e = c + 1;
    while (e < chunks.size() && chunks[e].in_place() && chunks[e].n0 == chunks[c].n0) ++e;
    owners.push_back({c, e});
    c = e;
  }
  const int64_t items = int64_t(owners.size()) * G;
  for_items(items, spread_items(items), [&](int64_t item) {
    const auto [first, last] = owners[item / G];
    const int64_t grp = item % G;
    const float* wg = w + grp * g.cout_g * g.kg;
    // This item's dx planes start at zero; col2im adds into them.
    const Chunk& c0 = chunks[first];
    for (int64_t k = 0; k < c0.images; ++k) {
      float* dxg = dx + ((c0.n0 + k) * cin + grp * g.cin_g) * g.hw;
      std::fill(dxg, dxg + g.cin_g * g.hw, 0.0f);
    }
    for (size_t c = first; c < last; ++c) {
      const Chunk& ch = chunks[c];
      const int64_t width = ch.width();
      int64_t lddy;
      GemmColumnBlocks blocks;
      const float* dym = chunk_matrix(g, dy, g.s.out_channels, grp * g.cout_g, ch, &lddy, &blocks);
      float* dcol = scratch(0, g.kg * width);
      gemm_with_pass(true, false, g.kg, width, g.cout_g, 1.0f, wg, g.kg, dym, lddy, 0.0f, dcol,
                     width, GemmRowPass{}, {}, blocks);
      for (int64_t k = 0; k < ch.images; ++k) {
        float* dxg = dx + ((ch.n0 + k) * cin + grp * g.cin_g) * g.hw;
        col2im(g, dcol + k * ch.span(), width, ch.p0, ch.p1, dxg);
      }
    }
  });
}

}  // namespace

// Derivation: docs/derivations.md#grouped-convolution-backward
void conv2d_backward_data(const Conv2dShape& s, const float* dy, const float* w, float* dx,
                          float* workspace) {
  const Geometry g(s);
  if (conv_one_pixel_applies(s)) {
    conv_one_pixel_backward_data(s, dy, w, dx);
  } else if (backward_data_is_convolution(g)) {
    backward_data_by_convolution(g, dy, w, dx, workspace);
  } else if (g.pointwise) {
    backward_data_pointwise(g, plan_chunks(g), dy, w, dx);
  } else {
    backward_data_col2im(g, plan_chunks(g), dy, w, dx);
  }
}

// Derivation: docs/derivations.md#grouped-convolution-backward
void conv2d_backward_weight(const Conv2dShape& s, const float* x, const float* dy, float* dw,
                            float* db, float* /*workspace*/) {
  const Geometry g(s);
  if (dw && conv_one_pixel_applies(s)) {
    conv_one_pixel_backward_weight(s, x, dy, dw);
  } else if (dw) {
    weight_gradient(g, x, dy, dw);
  }
  if (db) bias_gradient(g, dy, db);
}

}  // namespace nextvit::kernels::cpu
