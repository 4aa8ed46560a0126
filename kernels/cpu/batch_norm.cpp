// CPU batch normalisation (kernels/batch_norm.h). Work is split over channels: each thread owns
// a contiguous range of channels, so no two threads touch the same output and no reduction
// crosses threads. A thread walks its channels in blocks (channel_blocks.h) of whole channels,
// image by image: each image's part of a block is one contiguous run, read front to back, and the
// per-position loops (batch_norm_passes.h) vectorise for any S. A block's statistics are complete
// after one pass over its N runs, so its second pass (the normalisation, or the backward's input
// gradient) rereads it from the L2 cache.
//
// Per-channel sums are accumulated in double, per position over the images and then over the
// channel's positions, in an order that depends on N and S alone (the same bits with any thread
// count).
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include "kernels/batch_norm.h"
#include "kernels/batch_norm_stats.h"
#include "kernels/cpu/batch_norm_passes.h"
#include "kernels/cpu/channel_blocks.h"
#include "kernels/cpu/parallel.h"

namespace nextvit::kernels::cpu {
namespace {

// Positions per block: the block's N runs of x (and of y, or of dy and the ReLU output in the
// backward) stay in L2 between the two passes: 128 images x 1024 floats = 512 KiB per tensor.
constexpr int64_t kBlockPositions = 1024;

// A thread's scratch. Per position of the current block: the sums over the images and per-channel
// constants expanded to the block's positions. Per channel of the current group (at most
// kBlockPositions channels): the channel sums and constants.
struct Scratch {
  std::vector<double> shift, a, b;
  std::vector<float> pos[4];
  std::vector<double> s1, s2;
  std::vector<float> chan[4];

  Scratch() : shift(kBlockPositions), a(kBlockPositions), b(kBlockPositions) {
    for (auto& v : pos) v.resize(kBlockPositions);
    for (auto& v : chan) v.resize(kBlockPositions);
    s1.resize(kBlockPositions);
    s2.resize(kBlockPositions);
  }
};

// Zeroes the channel sums of a group of G channels.
void zero_channel_sums(int64_t G, Scratch& w) {
  std::fill(w.s1.begin(), w.s1.begin() + G, 0.0);
  std::fill(w.s2.begin(), w.s2.begin() + G, 0.0);
}

// Adds the block's per-position sums a, b to its channels' sums s1, s2 (the group starting at
// channel group_c0), each channel's positions in order.
void add_channel_sums(const ChannelBlock& blk, int64_t group_c0, Scratch& w) {
  const int64_t width = blk.i1 - blk.i0;
  for (int64_t k = 0; k < blk.channels(); ++k) {
    double t1 = 0.0, t2 = 0.0;
    for (int64_t j = blk.first(k); j < blk.first(k) + width; ++j) {
      t1 += w.a[j];
      t2 += w.b[j];
    }
    w.s1[blk.c0 - group_c0 + k] += t1;
    w.s2[blk.c0 - group_c0 + k] += t2;
  }
}

// pos[q][j] = chan[q][channel of position j] for q < count, over the block's positions.
void expand_constants(const ChannelBlock& blk, int64_t group_c0, int count, Scratch& w) {
  const int64_t width = blk.i1 - blk.i0;
  for (int q = 0; q < count; ++q) {
    for (int64_t k = 0; k < blk.channels(); ++k) {
      auto first = w.pos[q].begin() + blk.first(k);
      std::fill(first, first + width, w.chan[q][blk.c0 - group_c0 + k]);
    }
  }
}

// Sums of d and d^2, d = x - shift, over channels [c0, c1) into w.s1, w.s2. The shift, the
// channel's first value, keeps E[d^2] - E[d]^2 free of cancellation when |mean| >> std.
void group_moments(const BatchNormShape& s, const float* x, int64_t c0, int64_t c1, Scratch& w) {
  zero_channel_sums(c1 - c0, w);
  for_each_block(c0, c1, s.spatial, kBlockPositions, [&](const ChannelBlock& blk) {
    const int64_t width = blk.i1 - blk.i0;
    for (int64_t k = 0; k < blk.channels(); ++k) {
      auto first = w.shift.begin() + blk.first(k);
      std::fill(first, first + width, double(x[(blk.c0 + k) * s.spatial]));
    }
    std::fill(w.a.begin(), w.a.begin() + blk.len(), 0.0);
    std::fill(w.b.begin(), w.b.begin() + blk.len(), 0.0);
    position_moments(x + blk.offset(s, 0), s.channels * s.spatial, s.batch, blk.len(),
                     w.shift.data(), w.a.data(), w.b.data());
    add_channel_sums(blk, c0, w);
  });
}

// Both forwards end alike once a channel's mean and 1/std are known: keep them for the backward
// and set chan[0] = alpha = gamma/std, chan[1] = beta = bias - mean alpha for channel c (index k
// in its group). PyTorch folds the affine map the same way, so results match bit for bit up to
// the statistics.
void set_channel_affine(int64_t c, int64_t k, double mean, double invstd, const float* weight,
                        const float* bias, float* save_mean, float* save_invstd, Scratch& w) {
  save_mean[c] = static_cast<float>(mean);
  save_invstd[c] = static_cast<float>(invstd);
  const BatchNormAffine a = batch_norm_affine(mean, invstd, weight, bias, c);
  w.chan[0][k] = a.alpha;
  w.chan[1][k] = a.beta;
}

// y = relu?(x * alpha + beta) over channels [c0, c1), alpha and beta from set_channel_affine.
void group_normalize(const BatchNormShape& s, const float* x, int64_t c0, int64_t c1, bool relu,
                     float* y, Scratch& w) {
  for_each_block(c0, c1, s.spatial, kBlockPositions, [&](const ChannelBlock& blk) {
    expand_constants(blk, c0, 2, w);
    const int64_t off = blk.offset(s, 0);
    position_affine(x + off, y + off, s.channels * s.spatial, s.batch, blk.len(), w.pos[0].data(),
                    w.pos[1].data(), relu);
  });
}

}  // namespace

void batch_norm_forward_train(const BatchNormShape& s, const float* x, const float* weight,
                              const float* bias, float momentum, float eps, float* running_mean,
                              float* running_var, bool relu, float* y, float* save_mean,
                              float* save_invstd) {
  const int64_t M = s.count();
  parallel_for(s.channels, grain_for(M), [&](int64_t lo, int64_t hi) {
    Scratch w;
    for_each_channel_group(lo, hi, s.spatial, kBlockPositions, [&](int64_t c0, int64_t c1) {
      group_moments(s, x, c0, c1, w);
      for (int64_t c = c0; c < c1; ++c) {
        const double shift = M > 0 ? double(x[c * s.spatial]) : 0.0;
        const BatchNormChannelStats st = finish_batch_norm_stats(
            shift, w.s1[c - c0], w.s2[c - c0], M, eps, momentum, running_mean, running_var, c);
        set_channel_affine(c, c - c0, st.mean, st.invstd, weight, bias, save_mean, save_invstd, w);
      }
      group_normalize(s, x, c0, c1, relu, y, w);
    });
  });
}

void batch_norm_forward_eval(const BatchNormShape& s, const float* x, const float* weight,
                             const float* bias, const float* running_mean, const float* running_var,
                             float eps, bool relu, float* y, float* save_mean, float* save_invstd) {
  parallel_for(s.channels, grain_for(s.count()), [&](int64_t lo, int64_t hi) {
    Scratch w;
    for_each_channel_group(lo, hi, s.spatial, kBlockPositions, [&](int64_t c0, int64_t c1) {
      for (int64_t c = c0; c < c1; ++c) {
        const double invstd = batch_norm_eval_invstd(running_var[c], eps);
        set_channel_affine(c, c - c0, running_mean[c], invstd, weight, bias, save_mean, save_invstd,
                           w);
      }
      group_normalize(s, x, c0, c1, relu, y, w);
    });
  });
}

namespace {

struct BackwardArgs {
  const float *x, *dy, *y_relu, *weight, *save_mean, *save_invstd;
  bool training;
  float *dx, *dweight, *dbias;
};

// Sums of g and g * (x - mean) over channels [c0, c1) into w.s1, w.s2, g the output gradient
// (masked where the ReLU output is zero, kRelu); chan[0] holds each channel's mean.
template <bool kRelu>
void group_grad_sums(const BatchNormShape& s, const BackwardArgs& p, int64_t c0, int64_t c1,
                     Scratch& w) {
  zero_channel_sums(c1 - c0, w);
  for_each_block(c0, c1, s.spatial, kBlockPositions, [&](const ChannelBlock& blk) {
    expand_constants(blk, c0, 1, w);
    std::fill(w.a.begin(), w.a.begin() + blk.len(), 0.0);
    std::fill(w.b.begin(), w.b.begin() + blk.len(), 0.0);
    const int64_t off = blk.offset(s, 0);
    position_grad_sums<kRelu>(p.x + off, p.dy + off, p.y_relu + off, s.channels * s.spatial,
                              s.batch, blk.len(), w.pos[0].data(), w.a.data(), w.b.data());
    add_channel_sums(blk, c0, w);
  });
}

// The backward of channels [c0, c1): the channel sums, dweight and dbias, then dx.
template <bool kRelu>
void group_backward(const BatchNormShape& s, const BackwardArgs& p, int64_t c0, int64_t c1,
                    Scratch& w) {
  const int64_t M = s.count();
  for (int64_t c = c0; c < c1; ++c) w.chan[0][c - c0] = p.save_mean[c];
  // The channel sums are needed by dweight and dbias, and by dx in training mode only.
  if (p.dweight != nullptr || p.dbias != nullptr || (p.training && p.dx != nullptr)) {
    group_grad_sums<kRelu>(s, p, c0, c1, w);
  } else {
    zero_channel_sums(c1 - c0, w);
  }
  for (int64_t c = c0; c < c1; ++c) {
    const int64_t k = c - c0;
    const double sum_dy = w.s1[k], sum_dy_xmu = w.s2[k];
    const double invstd = p.save_invstd[c];
    const double gamma = p.weight ? p.weight[c] : 1.0;
    if (p.dweight != nullptr) p.dweight[c] = static_cast<float>(sum_dy_xmu * invstd);
    if (p.dbias != nullptr) p.dbias[c] = static_cast<float>(sum_dy);
    // dx = gamma * invstd * (g - grad_mean - (x - mean) * proj): the mean terms of training
    // mode come from the batch statistics depending on every x of the channel.
    w.chan[1][k] = p.training ? static_cast<float>(sum_dy / double(M)) : 0.0f;
    w.chan[2][k] = p.training ? static_cast<float>(sum_dy_xmu / double(M) * invstd * invstd) : 0.0f;
    w.chan[3][k] = static_cast<float>(gamma * invstd);
  }
  if (p.dx == nullptr) return;
  for_each_block(c0, c1, s.spatial, kBlockPositions, [&](const ChannelBlock& blk) {
    expand_constants(blk, c0, 4, w);
    const int64_t off = blk.offset(s, 0);
    position_grad_input<kRelu>(
        p.x + off, p.dy + off, p.y_relu + off, p.dx + off, s.channels * s.spatial, s.batch,
        blk.len(), {w.pos[0].data(), w.pos[1].data(), w.pos[2].data(), w.pos[3].data()});
  });
}

}  // namespace

// Derivation: docs/derivations.md#batchnorm-backward-train-mode
void batch_norm_backward(const BatchNormShape& s, const float* x, const float* dy,
                         const float* y_relu, const float* weight, const float* save_mean,
                         const float* save_invstd, bool training, float* dx, float* dweight,
                         float* dbias) {
  // Without the fused ReLU, dy stands in for the y pointer that is then never read.
  const BackwardArgs p{
      x, dy, y_relu ? y_relu : dy, weight, save_mean, save_invstd, training, dx, dweight, dbias};
  parallel_for(s.channels, grain_for(s.count()), [&](int64_t lo, int64_t hi) {
    Scratch w;
    for_each_channel_group(lo, hi, s.spatial, kBlockPositions, [&](int64_t c0, int64_t c1) {
      if (y_relu != nullptr) {
        group_backward<true>(s, p, c0, c1, w);
      } else {
        group_backward<false>(s, p, c0, c1, w);
      }
    });
  });
}

}  // namespace nextvit::kernels::cpu
