#include "core/cuda/host_staging.h"

#include <cstring>
#include <mutex>
#include <vector>

#include "core/cuda/check.h"
#include "core/cuda/per_device.h"

namespace nextvit::cuda_rt {

namespace {

// Beyond this much page-locked memory in flight the upload waits for the device (counted as a
// host synchronisation) and starts over with idle buffers: page-locked memory is taken from the
// OS and cannot be swapped, so it must stay bounded even if the host runs far ahead.
constexpr size_t kMaxStagingBytes = size_t{512} << 20;
constexpr size_t kMinBuffer = size_t{1} << 20;

struct Buffer {
  void* ptr = nullptr;
  size_t bytes = 0;
  cudaEvent_t done = nullptr;  // recorded after the buffer's last transfer
};

struct Pool {
  std::mutex mutex;
  std::vector<Buffer> buffers;
  size_t total = 0;
};

// One pool per device: a buffer's event belongs to the device it was made on, and an event is
// recorded only on a stream of its own device. Never destroyed: uploads may run during static
// destruction.
Pool& pool(int device) {
  static auto* pools = new PerDevice<Pool>([](Pool&) {});
  return pools->get(device);
}

bool idle(const Buffer& b) {
  const cudaError_t e = cudaEventQuery(b.done);
  if (e == cudaErrorNotReady) {
    (void)cudaGetLastError();
    return false;
  }
  NV_CUDA_CHECK(e, "querying a staging buffer's event");
  return true;
}

size_t buffer_size(size_t bytes) {
  size_t size = kMinBuffer;
  while (size < bytes) size *= 2;
  return size;
}

// The smallest idle buffer that holds `bytes`, else a new one.
Buffer& acquire(Pool& p, size_t bytes, cudaStream_t stream) {
  Buffer* best = nullptr;
  for (Buffer& b : p.buffers) {
    if (b.bytes >= bytes && (best == nullptr || b.bytes < best->bytes) && idle(b)) best = &b;
  }
  if (best != nullptr) return *best;
  const size_t size = buffer_size(bytes);
  if (p.total + size > kMaxStagingBytes && !p.buffers.empty()) {
    // Too much in flight: wait for the stream, then free every buffer (all idle now).
    NV_CUDA_CHECK(counted_stream_synchronize(stream), "waiting for staged uploads");
    for (Buffer& b : p.buffers) {
      NV_CUDA_CHECK(cudaEventDestroy(b.done), "releasing a staging buffer");
      NV_CUDA_CHECK(cudaFreeHost(b.ptr), "releasing a staging buffer");
    }
    p.buffers.clear();
    p.total = 0;
  }
  Buffer b;
  b.bytes = size;
  NV_CUDA_CHECK(cudaMallocHost(&b.ptr, size), "allocating {} bytes of page-locked memory", size);
  NV_CUDA_CHECK(cudaEventCreateWithFlags(&b.done, cudaEventDisableTiming),
                "creating a staging event");
  p.total += size;
  p.buffers.push_back(b);
  return p.buffers.back();
}

}  // namespace

void upload(void* dst, const void* src, size_t bytes, cudaStream_t stream) {
  if (bytes == 0) return;
  Pool& p = pool(current_device());
  std::lock_guard<std::mutex> lock(p.mutex);
  Buffer& b = acquire(p, bytes, stream);
  std::memcpy(b.ptr, src, bytes);
  NV_CUDA_CHECK(cudaMemcpyAsync(dst, b.ptr, bytes, cudaMemcpyHostToDevice, stream),
                "copying {} bytes to the device", bytes);
  NV_CUDA_CHECK(cudaEventRecord(b.done, stream), "recording a staging event");
}

size_t staging_bytes() {
  size_t total = 0;
  for (int d = 0; d < device_count(); ++d) {
    Pool& p = pool(d);
    std::lock_guard<std::mutex> lock(p.mutex);
    total += p.total;
  }
  return total;
}

}  // namespace nextvit::cuda_rt
