#pragma once
// Philox4x32-10 (Salmon et al., "Parallel random numbers: as easy as 1, 2, 3", SC 2011; the
// generator behind cuRAND's and PyTorch's GPU randomness): a counter-based generator. The
// output is a pure function of a 64-bit key and a 128-bit counter, so a kernel thread can draw
// "number i of stream `key`" without any state, and the host computes the very same number.
// Drop path uses it to build its per-sample masks on the device (no upload, no host sync) that
// are bit-identical to the CPU's for the same seed.
#include <cstdint>

#if defined(__CUDACC__)
#define NV_PHILOX_HD __host__ __device__ __forceinline__
#else
#define NV_PHILOX_HD inline
#endif

namespace nextvit::philox {

struct Block {
  uint32_t v[4];
};

NV_PHILOX_HD void mulhilo(uint32_t a, uint32_t b, uint32_t& hi, uint32_t& lo) {
  const uint64_t p = uint64_t(a) * b;
  hi = uint32_t(p >> 32);
  lo = uint32_t(p);
}

// Ten rounds of the Philox S-box on the counter, bumping the key by the Weyl constants
// between rounds (the reference Random123 philox4x32_10).
NV_PHILOX_HD Block philox4x32_10(Block ctr, uint32_t key0, uint32_t key1) {
  for (int round = 0; round < 10; ++round) {
    if (round > 0) {
      key0 += 0x9E3779B9u;
      key1 += 0xBB67AE85u;
    }
    uint32_t hi0, lo0, hi1, lo1;
    mulhilo(0xD2511F53u, ctr.v[0], hi0, lo0);
    mulhilo(0xCD9E8D57u, ctr.v[2], hi1, lo1);
    ctr = Block{{hi1 ^ ctr.v[1] ^ key0, lo1, hi0 ^ ctr.v[3] ^ key1, lo0}};
  }
  return ctr;
}

// Uniform in [0, 1) with 24 random bits (as Generator::uniform) for element `index` of the
// stream `seed`.
NV_PHILOX_HD float uniform(uint64_t seed, uint64_t index) {
  const Block b = philox4x32_10(Block{{uint32_t(index), uint32_t(index >> 32), 0u, 0u}},
                                uint32_t(seed), uint32_t(seed >> 32));
  return float(b.v[0] >> 8) * (1.0f / 16777216.0f);
}

}  // namespace nextvit::philox
