#pragma once
// Bad input that only a kernel sees, reported without a host wait. Checking, say, that every
// cross-entropy target lies in [0, K) on the host would need the targets read back each step.
// Instead the kernel records the first bad entry in a small device-resident record and goes on
// safely (a NaN loss, no out-of-bounds read); the host copies the record back together with its
// next read from the device (Tensor::cpu(), item(), synchronize(): a wait it makes anyway) and
// throws the error there, naming the op, the entry and the limit.
#include <cstdint>

namespace nextvit::cuda_rt {

enum DeviceErrorOp : long long {
  kDeviceErrorNone = 0,
  kDeviceErrorCrossEntropyTarget = 1,  // a target outside [0, classes)
};

struct DeviceIndexError {
  // Minimum over the bad entries of (row << 32) | uint32(value clamped to int32), so the same
  // entry is reported whatever order threads run in; all ones when nothing is recorded.
  unsigned long long first;
  long long rows;   // the op's row count (the logits' N)
  long long limit;  // the exclusive upper bound (the logits' K)
  long long op;     // DeviceErrorOp
};

constexpr unsigned long long kNoDeviceError = ~0ull;

#if defined(__CUDACC__)
#define NV_DEVICE_ERRORS_HD __host__ __device__
#else
#define NV_DEVICE_ERRORS_HD
#endif

// The key a kernel passes to atomicMin(&record->first, key).
NV_DEVICE_ERRORS_HD inline unsigned long long device_error_key(long long row, long long value) {
  const long long v = value < INT32_MIN ? INT32_MIN : value > INT32_MAX ? INT32_MAX : value;
  return (static_cast<unsigned long long>(row) << 32) |
         static_cast<uint32_t>(static_cast<int32_t>(v));
}

// The record, in device memory (allocated with the stream; reset to "none").
DeviceIndexError* device_index_error();
// Throws the recorded error (and clears the record) if `seen`, a copy read back from the
// device, holds one.
void raise_device_error(const DeviceIndexError& seen);

}  // namespace nextvit::cuda_rt
