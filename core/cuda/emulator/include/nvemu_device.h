#pragma once
// Device-side CUDA for the emulator: what a .cu file sees of the GPU when it is compiled by the
// host compiler. Qualifiers become nothing (a kernel is a plain function), the built-in
// variables read the running emulated thread's registers, and barriers, warp shuffles and votes
// call the scheduler (core/cuda/emulator/scheduler.cpp), which runs the threads of a block as
// fibers and switches between them at exactly these points.
//
// __shared__ variables are function-local statics: the blocks of a launch run one at a time,
// so a static is per block, as shared memory is. Dynamic shared memory (extern __shared__) is
// declared with NV_DYNAMIC_SHARED (kernels/cuda/launch.cuh), which here asks the scheduler for
// the running block's buffer.
#include <cmath>
#include <cstdint>
#include <cstring>
#include <type_traits>

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __launch_bounds__(...)
#define __align__(n) __attribute__((aligned(n)))
#define __shared__ static
#define __constant__ static
// __restrict__ is already a keyword of GCC and Clang.

// ---- vector types ------------------------------------------------------------------------------

struct uint3 {
  unsigned x, y, z;
};
struct dim3 {
  unsigned x, y, z;
  constexpr dim3(unsigned vx = 1, unsigned vy = 1, unsigned vz = 1) : x(vx), y(vy), z(vz) {}
  constexpr dim3(uint3 v) : x(v.x), y(v.y), z(v.z) {}
  constexpr operator uint3() const { return {x, y, z}; }
};

struct __align__(8) float2 {
  float x, y;
};
struct __align__(16) float4 {
  float x, y, z, w;
};
struct __align__(16) double2 {
  double x, y;
};
struct __align__(8) int2 {
  int x, y;
};
struct __align__(16) int4 {
  int x, y, z, w;
};
inline float2 make_float2(float x, float y) {
  return {x, y};
}
inline float4 make_float4(float x, float y, float z, float w) {
  return {x, y, z, w};
}
inline double2 make_double2(double x, double y) {
  return {x, y};
}
inline int2 make_int2(int x, int y) {
  return {x, y};
}
inline int4 make_int4(int x, int y, int z, int w) {
  return {x, y, z, w};
}

// ---- built-in variables
// --------------------------------------------------------------------------

namespace nvemu {
struct ThreadRegs {
  uint3 thread_idx, block_idx;
  dim3 block_dim, grid_dim;
};
// The registers of the emulated thread running now (set by the scheduler at every switch).
extern const ThreadRegs* g_regs;
}  // namespace nvemu

#define threadIdx (::nvemu::g_regs->thread_idx)
#define blockIdx (::nvemu::g_regs->block_idx)
#define blockDim (::nvemu::g_regs->block_dim)
#define gridDim (::nvemu::g_regs->grid_dim)
constexpr int warpSize = 32;

// ---- barriers and warp collectives (scheduler.cpp) -------------------------------------------

namespace nvemu {
enum class Collective { Sync, ShflIdx, ShflUp, ShflDown, ShflXor, Ballot, Any, All };
void block_barrier(const char* file, int line);
uint64_t warp_collective(Collective op, unsigned mask, uint64_t value, int param, int width,
                         const char* file, int line);
void* dynamic_shared_memory();
[[noreturn]] void trap(const char* file, int line);

template <typename T>
T shuffle(Collective op, unsigned mask, T v, int param, int width, const char* file, int line) {
  static_assert(sizeof(T) <= 8 && std::is_trivially_copyable<T>::value,
                "warp shuffles move values of at most 8 bytes");
  uint64_t bits = 0;
  std::memcpy(&bits, &v, sizeof(T));
  bits = warp_collective(op, mask, bits, param, width, file, line);
  T out;
  std::memcpy(&out, &bits, sizeof(T));
  return out;
}
}  // namespace nvemu

inline void __syncthreads(const char* file = __builtin_FILE(), int line = __builtin_LINE()) {
  ::nvemu::block_barrier(file, line);
}
inline void __syncwarp(unsigned mask = 0xffffffffu, const char* file = __builtin_FILE(),
                       int line = __builtin_LINE()) {
  ::nvemu::warp_collective(::nvemu::Collective::Sync, mask, 0, 0, 32, file, line);
}
template <typename T>
T __shfl_sync(unsigned mask, T v, int src_lane, int width = 32, const char* file = __builtin_FILE(),
              int line = __builtin_LINE()) {
  return ::nvemu::shuffle(::nvemu::Collective::ShflIdx, mask, v, src_lane, width, file, line);
}
template <typename T>
T __shfl_up_sync(unsigned mask, T v, unsigned delta, int width = 32,
                 const char* file = __builtin_FILE(), int line = __builtin_LINE()) {
  return ::nvemu::shuffle(::nvemu::Collective::ShflUp, mask, v, int(delta), width, file, line);
}
template <typename T>
T __shfl_down_sync(unsigned mask, T v, unsigned delta, int width = 32,
                   const char* file = __builtin_FILE(), int line = __builtin_LINE()) {
  return ::nvemu::shuffle(::nvemu::Collective::ShflDown, mask, v, int(delta), width, file, line);
}
template <typename T>
T __shfl_xor_sync(unsigned mask, T v, int lane_mask, int width = 32,
                  const char* file = __builtin_FILE(), int line = __builtin_LINE()) {
  return ::nvemu::shuffle(::nvemu::Collective::ShflXor, mask, v, lane_mask, width, file, line);
}
inline unsigned __ballot_sync(unsigned mask, int pred, const char* file = __builtin_FILE(),
                              int line = __builtin_LINE()) {
  return unsigned(
      ::nvemu::warp_collective(::nvemu::Collective::Ballot, mask, pred != 0, 0, 32, file, line));
}
inline int __any_sync(unsigned mask, int pred, const char* file = __builtin_FILE(),
                      int line = __builtin_LINE()) {
  return int(
      ::nvemu::warp_collective(::nvemu::Collective::Any, mask, pred != 0, 0, 32, file, line));
}
inline int __all_sync(unsigned mask, int pred, const char* file = __builtin_FILE(),
                      int line = __builtin_LINE()) {
  return int(
      ::nvemu::warp_collective(::nvemu::Collective::All, mask, pred != 0, 0, 32, file, line));
}
inline void __threadfence() {}
inline void __threadfence_block() {}
inline void __trap(const char* file = __builtin_FILE(), int line = __builtin_LINE()) {
  ::nvemu::trap(file, line);
}

// ---- atomics: fibers switch only at barriers and collectives, so a read-modify-write is atomic

template <typename T>
T atomicAdd(T* p, T v) {
  const T old = *p;
  *p = old + v;
  return old;
}
template <typename T>
T atomicMax(T* p, T v) {
  const T old = *p;
  *p = old < v ? v : old;
  return old;
}
template <typename T>
T atomicMin(T* p, T v) {
  const T old = *p;
  *p = v < old ? v : old;
  return old;
}
template <typename T>
T atomicExch(T* p, T v) {
  const T old = *p;
  *p = v;
  return old;
}
template <typename T>
T atomicCAS(T* p, T compare, T v) {
  const T old = *p;
  if (old == compare) *p = v;
  return old;
}

// ---- math: CUDA's device functions the kernels use that are not in <cmath> ---------------------

inline int min(int a, int b) {
  return a < b ? a : b;
}
inline int max(int a, int b) {
  return a < b ? b : a;
}
inline unsigned min(unsigned a, unsigned b) {
  return a < b ? a : b;
}
inline unsigned max(unsigned a, unsigned b) {
  return a < b ? b : a;
}
inline long long min(long long a, long long b) {
  return a < b ? a : b;
}
inline long long max(long long a, long long b) {
  return a < b ? b : a;
}
inline long min(long a, long b) {
  return a < b ? a : b;
}
inline long max(long a, long b) {
  return a < b ? b : a;
}
inline float min(float a, float b) {
  return fminf(a, b);
}
inline float max(float a, float b) {
  return fmaxf(a, b);
}
inline double min(double a, double b) {
  return fmin(a, b);
}
inline double max(double a, double b) {
  return fmax(a, b);
}
inline float rsqrtf(float x) {
  return 1.0f / sqrtf(x);
}
inline double rsqrt(double x) {
  return 1.0 / sqrt(x);
}
inline float __expf(float x) {
  return expf(x);
}
inline float __logf(float x) {
  return logf(x);
}
inline float __fdividef(float a, float b) {
  return a / b;
}
inline float __frcp_rn(float x) {
  return 1.0f / x;
}
inline float __fmaf_rn(float a, float b, float c) {
  return fmaf(a, b, c);
}
inline float __saturatef(float x) {
  return x < 0.0f ? 0.0f : (x > 1.0f ? 1.0f : x);
}
inline int __float_as_int(float x) {
  int i;
  std::memcpy(&i, &x, 4);
  return i;
}
inline float __int_as_float(int i) {
  float x;
  std::memcpy(&x, &i, 4);
  return x;
}
inline unsigned __float_as_uint(float x) {
  unsigned i;
  std::memcpy(&i, &x, 4);
  return i;
}
inline float __uint_as_float(unsigned i) {
  float x;
  std::memcpy(&x, &i, 4);
  return x;
}
inline int __popc(unsigned x) {
  return __builtin_popcount(x);
}
inline int __ffs(int x) {
  return __builtin_ffs(x);
}
inline int __clz(int x) {
  return x == 0 ? 32 : __builtin_clz(unsigned(x));
}
template <typename T>
T __ldg(const T* p) {
  return *p;
}
