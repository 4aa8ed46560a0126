#pragma once
// A seeded, serialisable random generator (xoshiro256**, seeded through splitmix64). Its whole
// state is four 64-bit words, which checkpoints save so that a resumed run draws the same
// numbers (augmentations, drop-path masks) as an uninterrupted one.
#include <array>
#include <cstdint>

namespace nextvit {

class Tensor;

class Generator {
 public:
  explicit Generator(uint64_t seed = 0x5eed);
  void seed(uint64_t seed);
  uint64_t next_u64();
  float uniform();                                    // [0, 1), 24 random bits
  float uniform(float lo, float hi);                  // [lo, hi)
  float normal(float mean = 0.0f, float std = 1.0f);  // Box-Muller, one value per call
  int64_t randint(int64_t n);                         // [0, n), unbiased
  std::array<uint64_t, 4> state() const { return s_; }
  void set_state(const std::array<uint64_t, 4>& s) { s_ = s; }

 private:
  std::array<uint64_t, 4> s_;
};

// The process-wide generator used when none is passed explicitly.
Generator& default_generator();

// Fill a CPU f32 tensor (contiguous) in place.
void fill_uniform(const Tensor& t, Generator& g, float lo, float hi);
void fill_normal(const Tensor& t, Generator& g, float mean, float std);
// Normal(mean, std) redrawn until inside [a, b] (absolute bounds, as timm's trunc_normal_).
void fill_trunc_normal(const Tensor& t, Generator& g, float std, float a = -2.0f, float b = 2.0f);

}  // namespace nextvit
