#include "core/rng.h"

#include <cmath>

#include "core/tensor.h"

namespace nextvit {
namespace {

uint64_t splitmix64(uint64_t& x) {
  uint64_t z = (x += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

uint64_t rotl(uint64_t x, int k) {
  return (x << k) | (x >> (64 - k));
}

float* host_f32(const Tensor& t, const char* what) {
  NV_CHECK(t.device().is_cpu() && t.dtype() == DType::F32 && t.is_contiguous(),
           "{}: needs a contiguous f32 CPU tensor, got {}", what, t.str());
  return t.data<float>();
}

}  // namespace

Generator::Generator(uint64_t s) {
  seed(s);
}

void Generator::seed(uint64_t s) {
  for (auto& w : s_) w = splitmix64(s);
}

uint64_t Generator::next_u64() {
  const uint64_t result = rotl(s_[1] * 5, 7) * 9;
  const uint64_t t = s_[1] << 17;
  s_[2] ^= s_[0];
  s_[3] ^= s_[1];
  s_[1] ^= s_[2];
  s_[0] ^= s_[3];
  s_[2] ^= t;
  s_[3] = rotl(s_[3], 45);
  return result;
}

float Generator::uniform() {
  return static_cast<float>(next_u64() >> 40) * (1.0f / 16777216.0f);
}

float Generator::uniform(float lo, float hi) {
  return lo + (hi - lo) * uniform();
}

float Generator::normal(float mean, float std) {
  // Box-Muller; u1 in (0, 1] so the log is finite.
  double u1 = (static_cast<double>(next_u64() >> 11) + 1.0) * (1.0 / 9007199254740992.0);
  double u2 = static_cast<double>(next_u64() >> 11) * (1.0 / 9007199254740992.0);
  double z = std::sqrt(-2.0 * std::log(u1)) * std::cos(2.0 * M_PI * u2);
  return mean + std * static_cast<float>(z);
}

int64_t Generator::randint(int64_t n) {
  NV_CHECK(n > 0, "randint: n must be positive, got {}", n);
  const uint64_t un = static_cast<uint64_t>(n);
  const uint64_t limit = UINT64_MAX - UINT64_MAX % un;  // reject the uneven tail
  uint64_t x;
  do {
    x = next_u64();
  } while (x >= limit);
  return static_cast<int64_t>(x % un);
}

Generator& default_generator() {
  static Generator g(0x5eed);
  return g;
}

void fill_uniform(const Tensor& t, Generator& g, float lo, float hi) {
  float* p = host_f32(t, "fill_uniform");
  for (int64_t i = 0; i < t.numel(); ++i) p[i] = g.uniform(lo, hi);
}

void fill_normal(const Tensor& t, Generator& g, float mean, float std) {
  float* p = host_f32(t, "fill_normal");
  for (int64_t i = 0; i < t.numel(); ++i) p[i] = g.normal(mean, std);
}

void fill_trunc_normal(const Tensor& t, Generator& g, float std, float a, float b) {
  NV_CHECK(a < b && std > 0, "fill_trunc_normal: need a < b and std > 0");
  float* p = host_f32(t, "fill_trunc_normal");
  for (int64_t i = 0; i < t.numel(); ++i) {
    float v;
    do {
      v = g.normal(0.0f, std);
    } while (v < a || v > b);
    p[i] = v;
  }
}

}  // namespace nextvit
