// core/'s CUDA services (core/cuda_runtime.h): device presence, the stream (the math libraries'
// handles bound to it are in kernels/cuda/library_handles.h), copies, fills and the strided gather
// behind Tensor::contiguous() on the device.
#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <string>

#include "core/cuda/caching_allocator.h"
#include "core/cuda/check.h"
#include "core/cuda/device_errors.h"
#include "core/cuda/host_staging.h"
#include "core/cuda/launch.h"
#include "core/cuda/per_device.h"
#include "core/cuda/stream.h"
#include "core/cuda_graph.h"
#include "core/cuda_runtime.h"
#include "core/device_guard.h"

namespace nextvit::cuda_rt {

bool sync_after_launch() {
  static const bool sync = [] {
    const char* v = std::getenv("NEXTVIT_CUDA_SYNC");
    return v != nullptr && std::string(v) != "0";
  }();
  return sync;
}

bool available() {
  static const bool present = [] {
    int n = 0;
    if (cudaGetDeviceCount(&n) != cudaSuccess) {
      (void)cudaGetLastError();
      return false;
    }
    return n > 0;
  }();
  return present;
}

int device_count() {
  static const int count = [] {
    int n = 0;
    if (cudaGetDeviceCount(&n) != cudaSuccess) {
      (void)cudaGetLastError();
      return 0;
    }
    return std::min(n, kMaxDevices);
  }();
  return count;
}

int current_device() {
  int device = 0;
  NV_CUDA_CHECK(cudaGetDevice(&device), "reading the current device");
  return device;
}

void set_device(int device) {
  NV_CHECK(device >= 0 && device < device_count(), "CUDA device {} is not present ({} device{})",
           device, device_count(), device_count() == 1 ? "" : "s");
  NV_CUDA_CHECK(cudaSetDevice(device), "selecting CUDA device {}", device);
}

namespace {
// Each device's stream and the library scratch on it, made at first use.
struct StreamState {
  cudaStream_t stream = nullptr;
  void* workspace = nullptr;
  size_t workspace_bytes = 0;
  cudaEvent_t peer_event = nullptr;  // orders copies between devices (copy_between_devices)
};

StreamState& stream_state() {
  static auto* states = new PerDevice<StreamState>([](StreamState& h) {
    NV_CHECK(available(), "no CUDA device is present (cudaGetDeviceCount found none)");
    NV_CUDA_CHECK(cudaStreamCreateWithFlags(&h.stream, cudaStreamNonBlocking), "creating a stream");
    NV_CUDA_CHECK(cudaEventCreateWithFlags(&h.peer_event, cudaEventDisableTiming),
                  "creating an event");
  });
  return states->current();
}
}  // namespace

namespace {
std::atomic<int64_t> g_host_synchronizations{0};

// The device error record (core/cuda/device_errors.h) and its page-locked host copy, made at
// first use (not with the stream: an allocation must not depend on them).
struct ErrorRecord {
  DeviceIndexError* device = nullptr;
  DeviceIndexError* seen = nullptr;  // the record as of the last read-back
};

// One per device: a kernel may only write its own device's memory.
ErrorRecord& error_record() {
  static auto* records = new PerDevice<ErrorRecord>([](ErrorRecord& r) {
    cudaStream_t s = current_stream();
    NV_CUDA_CHECK(cudaMalloc(&r.device, sizeof(DeviceIndexError)),
                  "allocating the device error record");
    NV_CUDA_CHECK(cudaMemsetAsync(r.device, 0xFF, sizeof(DeviceIndexError), s),
                  "clearing the device error record");
    NV_CUDA_CHECK(cudaMallocHost(reinterpret_cast<void**>(&r.seen), sizeof(DeviceIndexError)),
                  "allocating the device error record's host copy");
    *r.seen = DeviceIndexError{kNoDeviceError, 0, 0, 0};
  });
  return records->current();
}

// After the host has waited for the stream: was bad input recorded on the device meanwhile?
void check_device_errors() {
  raise_device_error(*error_record().seen);
}

// Queues the copy of the device error record to its page-locked host copy (read after the
// next wait).
void queue_device_error_copy() {
  ErrorRecord& r = error_record();
  NV_CUDA_CHECK(cudaMemcpyAsync(r.seen, r.device, sizeof(DeviceIndexError), cudaMemcpyDeviceToHost,
                                current_stream()),
                "reading the device error record");
}
}  // namespace

namespace {
// A graph cannot hold a host wait (core/cuda_graph.h): say which rule broke, before CUDA
// invalidates the capture with a bare error code.
void refuse_host_wait_in_capture() {
  NV_CHECK(!capturing(),
           "a host synchronisation (a read from the device, synchronize()) inside a CUDA graph "
           "capture: the captured work must not wait for the device");
}
}  // namespace

cudaError_t counted_stream_synchronize(cudaStream_t stream) {
  refuse_host_wait_in_capture();
  ++g_host_synchronizations;
  return cudaStreamSynchronize(stream);
}

int64_t host_synchronizations() {
  return g_host_synchronizations.load();
}

DeviceMemoryStats device_memory_stats() {
  return allocator_stats();
}

DeviceMemoryStats device_memory_stats(int device) {
  return allocator_stats(device);
}

DeviceIndexError* device_index_error() {
  return error_record().device;
}

void raise_device_error(const DeviceIndexError& seen) {
  if (seen.first == kNoDeviceError) return;
  const DeviceIndexError e = seen;
  ErrorRecord& r = error_record();
  *r.seen = DeviceIndexError{kNoDeviceError, 0, 0, 0};
  NV_CUDA_CHECK(cudaMemsetAsync(r.device, 0xFF, sizeof(DeviceIndexError), current_stream()),
                "clearing the device error record");
  const long long row = static_cast<long long>(e.first >> 32);
  const long long value = static_cast<int32_t>(static_cast<uint32_t>(e.first));
  NV_CHECK(e.op != kDeviceErrorCrossEntropyTarget,
           "cross_entropy: target {} of sample {} is out of range for {} classes (logits ({}, "
           "{})); found on the device and reported at the next read from it",
           value, row, e.limit, e.rows, e.limit);
  NV_FAIL("a kernel recorded an unknown error (op {}, entry {}, value {})", e.op, row, value);
}

cudaStream_t current_stream() {
  const int capture = capture_device();
  if (capture >= 0) {
    const int device = current_device();
    NV_CHECK(device == capture,
             "CUDA graph capture on cuda:{}: work for cuda:{} was issued during the capture (a "
             "graph records one device's stream: capture with the tensors' device current)",
             capture, device);
  }
  return stream_state().stream;
}

void* workspace(size_t bytes) {
  StreamState& h = stream_state();
  if (bytes > h.workspace_bytes) {
    if (h.workspace) caching_allocator()->deallocate(h.workspace, h.workspace_bytes);
    h.workspace = caching_allocator()->allocate(bytes);
    h.workspace_bytes = bytes;
  }
  return h.workspace;
}

Allocator* device_allocator() {
  return device_allocator(current_device());
}

Allocator* device_allocator(int device) {
  NV_CHECK(available(), "CUDA tensor requested but no CUDA device is present");
  NV_CHECK(device >= 0 && device < device_count(), "cuda:{} requested, but there {} {} device{}",
           device, device_count() == 1 ? "is" : "are", device_count(),
           device_count() == 1 ? "" : "s");
  return caching_allocator(device);
}

namespace {
// Makes `waiter`'s stream wait for the work queued so far on `device`'s stream (no host wait).
void stream_wait(int waiter, int device) {
  cudaEvent_t e;
  {
    DeviceGuard guard(Device::cuda(device));
    e = stream_state().peer_event;
    NV_CUDA_CHECK(cudaEventRecord(e, current_stream()), "recording a cross-device event");
  }
  DeviceGuard guard(Device::cuda(waiter));
  NV_CUDA_CHECK(cudaStreamWaitEvent(current_stream(), e, 0), "waiting for device {}", device);
}
}  // namespace

// The copy runs on the source device's stream, after the destination's earlier work (the
// destination block may still be read or written there), and the destination's later work
// waits for it. The source block is freed on its own stream, after the copy; the destination's,
// on its stream, after the wait. CUDA copies between devices by unified addressing (through
// NVLink or PCIe peer access where present, else staged by the driver).
void copy_between_devices(void* dst, int dst_device, const void* src, int src_device,
                          size_t bytes) {
  if (bytes == 0) return;
  NV_CHECK(!capturing(), "a copy between devices inside a CUDA graph capture");
  stream_wait(src_device, dst_device);
  {
    DeviceGuard guard(Device::cuda(src_device));
    NV_CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, current_stream()),
                  "copying {} bytes from cuda:{} to cuda:{}", bytes, src_device, dst_device);
  }
  stream_wait(dst_device, src_device);
}

void copy_bytes(void* dst, bool dst_on_device, const void* src, bool src_on_device, size_t bytes) {
  if (bytes == 0) return;
  cudaMemcpyKind kind = dst_on_device
                            ? (src_on_device ? cudaMemcpyDeviceToDevice : cudaMemcpyHostToDevice)
                            : (src_on_device ? cudaMemcpyDeviceToHost : cudaMemcpyHostToHost);
  if (kind == cudaMemcpyHostToHost) {
    std::memcpy(dst, src, bytes);
    return;
  }
  if (kind == cudaMemcpyDeviceToHost) refuse_host_wait_in_capture();
  // An upload goes through a reused page-locked buffer: a replay would copy whatever the buffer
  // then holds. Inputs go into static device buffers before a replay instead.
  NV_CHECK(kind != cudaMemcpyHostToDevice || !capturing(),
           "a copy from the host inside a CUDA graph capture: a replay would not copy the same "
           "data (copy into a device buffer before capturing or replaying)");
  cudaStream_t s = current_stream();
  if (kind == cudaMemcpyHostToDevice) {
    upload(dst, src, bytes, s);  // through page-locked staging: no wait
    return;
  }
  NV_CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, kind, s), "copying {} bytes", bytes);
  if (kind == cudaMemcpyDeviceToDevice) return;  // ordered on the stream like a kernel
  // Device to host: the caller reads `dst` as soon as we return, so wait for the copy. The
  // device error record rides along in the same wait.
  queue_device_error_copy();
  NV_CUDA_CHECK(counted_stream_synchronize(s), "copying {} bytes", bytes);
  check_device_errors();
}

namespace {
__global__ void fill_kernel(float* dst, float value, int64_t n) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x) {
    dst[i] = value;
  }
}

constexpr int kMaxDims = 8;
struct StridedLayout {
  int ndim;
  int64_t shape[kMaxDims];
  int64_t strides[kMaxDims];
};

// One thread per destination element: decompose its linear index into coordinates (row-major
// over `shape`) and gather from the source's strides. Writes are coalesced; reads follow the
// source layout (a transpose reads with a stride, which the L2 cache absorbs at these sizes).
template <typename T>
__global__ void strided_copy_kernel(T* dst, const T* src, StridedLayout layout, int64_t n) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x) {
    int64_t rem = i, off = 0;
    for (int d = layout.ndim - 1; d >= 0; --d) {
      const int64_t c = rem % layout.shape[d];
      rem /= layout.shape[d];
      off += c * layout.strides[d];
    }
    dst[i] = src[off];
  }
}

int grid_for(int64_t n, int block) {
  return static_cast<int>(std::min<int64_t>((n + block - 1) / block, 65535 * 8));
}
}  // namespace

void fill_f32(float* dst, float value, int64_t count) {
  if (count == 0) return;
  NV_LAUNCH(grid_for(count, 256), 256, 0, current_stream(), fill_kernel)(dst, value, count);
  NV_CUDA_CHECK_LAUNCH("fill of {} floats", count);
}

void memset_zero(void* dst, size_t bytes) {
  if (bytes == 0) return;
  NV_CUDA_CHECK(cudaMemsetAsync(dst, 0, bytes, current_stream()), "zeroing {} bytes", bytes);
}

void strided_copy(void* dst, const void* src, size_t elem_size, int ndim, const int64_t* shape,
                  const int64_t* src_strides, int64_t numel) {
  if (numel == 0) return;
  NV_CHECK(ndim <= kMaxDims, "strided copy on the GPU supports up to {} dimensions, got {}",
           kMaxDims, ndim);
  StridedLayout layout{};
  layout.ndim = ndim;
  for (int d = 0; d < ndim; ++d) {
    layout.shape[d] = shape[d];
    layout.strides[d] = src_strides[d];
  }
  const int grid = grid_for(numel, 256);
  cudaStream_t s = current_stream();
  switch (elem_size) {
    case 4:
      NV_LAUNCH(grid, 256, 0, s, strided_copy_kernel<float>)
      (static_cast<float*>(dst), static_cast<const float*>(src), layout, numel);
      break;
    case 8:
      NV_LAUNCH(grid, 256, 0, s, strided_copy_kernel<int64_t>)
      (static_cast<int64_t*>(dst), static_cast<const int64_t*>(src), layout, numel);
      break;
    case 2:
      NV_LAUNCH(grid, 256, 0, s, strided_copy_kernel<uint16_t>)
      (static_cast<uint16_t*>(dst), static_cast<const uint16_t*>(src), layout, numel);
      break;
    default:
      NV_FAIL("strided copy: unsupported element size {}", elem_size);
  }
  NV_CUDA_CHECK_LAUNCH("strided copy of {} elements", numel);
}

void synchronize() {
  if (!available()) return;
  refuse_host_wait_in_capture();
  queue_device_error_copy();
  NV_CUDA_CHECK(counted_stream_synchronize(current_stream()), "synchronising the stream");
  check_device_errors();
}

void* event_create() {
  cudaEvent_t e = nullptr;
  NV_CUDA_CHECK(cudaEventCreate(&e), "creating a timing event");
  return e;
}
void event_destroy(void* event) {
  (void)cudaEventDestroy(static_cast<cudaEvent_t>(event));  // at teardown: nothing to report
}
void event_record(void* event) {
  NV_CUDA_CHECK(cudaEventRecord(static_cast<cudaEvent_t>(event), current_stream()),
                "recording a timing event");
}
void event_synchronize(void* event) {
  NV_CUDA_CHECK(cudaEventSynchronize(static_cast<cudaEvent_t>(event)), "waiting for an event");
}
float event_elapsed_ms(void* start, void* end) {
  float ms = 0;
  NV_CUDA_CHECK(
      cudaEventElapsedTime(&ms, static_cast<cudaEvent_t>(start), static_cast<cudaEvent_t>(end)),
      "reading the time between two events");
  return ms;
}

}  // namespace nextvit::cuda_rt
