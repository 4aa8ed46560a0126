#pragma once
// How the BatchNorm kernels walk a thread's channels [lo, hi) of an (N, C, S) tensor: in blocks,
// each block image by image. A block is either a few whole consecutive channels, (c1 - c0) * S
// <= kMax positions, or, for a channel of more than kMax positions, one chunk [i0, i1) of a
// single channel. Either way the block is one contiguous run of len() floats per image, at
// offset(n), so each image's part is read front to back (whole cache lines, prefetcher-friendly
// streams) however small S is, and the per-position work vectorises over the run regardless of
// where channels begin. The block's data over all N images (N * len() floats per tensor) stays in
// the core's L2 cache between the kernels' two passes over it.
//
// A channel's blocks, and so the order of every per-channel sum, depend on S and kMax only: the
// results do not depend on [lo, hi), the thread count or the other channels of a block.
#include <algorithm>
#include <cstdint>

#include "kernels/batch_norm.h"

namespace nextvit::kernels::cpu {

struct ChannelBlock {
  int64_t c0, c1;  // channels [c0, c1)
  int64_t i0, i1;  // positions [i0, i1) of each channel: [0, S) unless the block is one chunk

  int64_t len() const { return (c1 - c0) * (i1 - i0); }
  int64_t channels() const { return c1 - c0; }
  // Where the block's run of image n starts.
  int64_t offset(const BatchNormShape& s, int64_t n) const {
    return (n * s.channels + c0) * s.spatial + i0;
  }
  // Where, in a run, the positions of channel c0 + k begin (they are i1 - i0 consecutive ones).
  int64_t first(int64_t k) const { return k * (i1 - i0); }
};

// Calls group(c0, c1) for consecutive groups of channels covering [lo, hi), each of at most
// max_positions positions (kMax above) or a single channel.
template <typename G>
void for_each_channel_group(int64_t lo, int64_t hi, int64_t spatial, int64_t max_positions,
                            const G& group) {
  const int64_t per_group = std::max<int64_t>(1, max_positions / std::max<int64_t>(1, spatial));
  for (int64_t c0 = lo; c0 < hi; c0 += per_group) group(c0, std::min(hi, c0 + per_group));
}

// Calls f(block) for the blocks of a group [c0, c1), in position order.
template <typename F>
void for_each_block(int64_t c0, int64_t c1, int64_t spatial, int64_t max_positions, const F& f) {
  // A group of several channels has (c1 - c0) * S <= kMax, so it is a single block; a single
  // channel is cut into chunks of kMax positions.
  for (int64_t i0 = 0; i0 < spatial; i0 += max_positions) {
    f(ChannelBlock{c0, c1, i0, std::min(spatial, i0 + max_positions)});
  }
}

}  // namespace nextvit::kernels::cpu
