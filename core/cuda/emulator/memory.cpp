// Device memory of the emulated GPU: host heap allocations, one per cudaMalloc, so that
// AddressSanitizer sees a kernel's out-of-bounds access exactly as it would a host program's.
// Builds without AddressSanitizer put guard bytes before and after each allocation instead and
// check them after every launch. New memory is filled with 0xFF bytes (a NaN in every float)
// so that a kernel reading what nobody wrote produces NaN, not a plausible zero.
#include <cstdlib>
#include <cstring>
#include <map>

#include "core/cuda/emulator/state.h"

#if defined(__SANITIZE_ADDRESS__)
#define NVEMU_ASAN 1
#endif

namespace nvemu {
namespace {

constexpr size_t kAlignment = 256;  // cudaMalloc's alignment
#ifdef NVEMU_ASAN
constexpr size_t kGuard = 0;  // AddressSanitizer's redzones do the job, exactly
#else
constexpr size_t kGuard = 256;
#endif
constexpr unsigned char kGuardByte = 0xA5;

struct Memory {
  std::map<uintptr_t, Allocation> by_base;
  size_t in_use[kMaxDevices] = {};  // per device, each limited to options().memory_bytes
  uint64_t next_id = 1;
};

Memory& memory() {
  static Memory* m = new Memory();  // never destroyed: tensors may outlive static destructors
  return *m;
}

// Page-locked host memory from cudaMallocHost (base -> bytes): a device-to-host copy into it is
// asynchronous, into any other host memory it makes the host wait (as on a GPU).
std::map<uintptr_t, size_t>& pinned() {
  static auto* p = new std::map<uintptr_t, size_t>();
  return *p;
}

bool is_pinned(const void* p, size_t bytes) {
  const uintptr_t a = reinterpret_cast<uintptr_t>(p);
  auto it = pinned().upper_bound(a);
  if (it == pinned().begin()) return false;
  --it;
  return a + bytes <= it->first + it->second;
}

bool in_any_allocation(const void* p) {
  return find_allocation(p, 0) != nullptr;
}

// Checks a copy's arguments and, unless `dry`, copies.
cudaError_t copy_checked(void* dst, const void* src, size_t bytes, cudaMemcpyKind kind,
                         bool dry = false) {
  if (bytes == 0) return cudaSuccess;
  if (dst == nullptr || src == nullptr) return set_error(cudaErrorInvalidValue);
  if (kind == cudaMemcpyDefault) {
    const bool d = in_any_allocation(dst), s = in_any_allocation(src);
    kind = d ? (s ? cudaMemcpyDeviceToDevice : cudaMemcpyHostToDevice)
             : (s ? cudaMemcpyDeviceToHost : cudaMemcpyHostToHost);
  }
  const bool dst_dev = kind == cudaMemcpyHostToDevice || kind == cudaMemcpyDeviceToDevice;
  const bool src_dev = kind == cudaMemcpyDeviceToHost || kind == cudaMemcpyDeviceToDevice;
  if (int(kind) < 0 || int(kind) > 4) return set_error(cudaErrorInvalidValue);
  // A device side must lie inside one allocation; a host side must not be device memory (the
  // direction was given wrong).
  if (dst_dev ? find_allocation(dst, bytes) == nullptr : in_any_allocation(dst)) {
    return set_error(cudaErrorInvalidValue);
  }
  if (src_dev ? find_allocation(src, bytes) == nullptr : in_any_allocation(src)) {
    return set_error(cudaErrorInvalidValue);
  }
  if (!dry) std::memmove(dst, src, bytes);
  return cudaSuccess;
}

}  // namespace

const Allocation* find_allocation(const void* p, size_t bytes) {
  Memory& m = memory();
  const uintptr_t a = reinterpret_cast<uintptr_t>(p);
  auto it = m.by_base.upper_bound(a);
  if (it == m.by_base.begin()) return nullptr;
  --it;
  const Allocation& al = it->second;
  const uintptr_t base = reinterpret_cast<uintptr_t>(al.base);
  if (a < base || a > base + al.bytes) return nullptr;
  if (bytes > al.bytes - (a - base)) return nullptr;
  if (bytes > 0 && a == base + al.bytes) return nullptr;
  return &al;
}

namespace {

// core/cuda/launch.h's DeviceTable starts with this word: the two words after it are a device
// pointer and a byte count, and the allocations that table's words point into are reached too
// (a multi-tensor kernel writes through a table of pointers that it gets by one argument).
constexpr uint64_t kDeviceTableTag = 0x4e56454d55544142ull;

void scan_words(const char* p, size_t size, bool follow_tables,
                std::vector<const Allocation*>& out) {
  const uintptr_t start = (reinterpret_cast<uintptr_t>(p) + 7) & ~uintptr_t(7);
  const uintptr_t end = reinterpret_cast<uintptr_t>(p) + size;
  for (uintptr_t w = start; w + 8 <= end; w += 8) {
    void* v;
    std::memcpy(&v, reinterpret_cast<const void*>(w), 8);
    if (follow_tables && reinterpret_cast<uint64_t>(v) == kDeviceTableTag && w + 24 <= end) {
      void* table;
      uint64_t bytes;
      std::memcpy(&table, reinterpret_cast<const void*>(w + 8), 8);
      std::memcpy(&bytes, reinterpret_cast<const void*>(w + 16), 8);
      // Only a table that lies within one allocation is read (one level deep).
      if (find_allocation(table, bytes) != nullptr) {
        scan_words(static_cast<const char*>(table), bytes, false, out);
      }
    }
    const Allocation* a = find_allocation(v, 0);
    if (a == nullptr) continue;
    bool seen = false;
    for (const Allocation* b : out) seen = seen || b == a;
    if (!seen) out.push_back(a);
  }
}

}  // namespace

std::vector<const Allocation*> allocations_reached(const void* data, size_t size) {
  std::vector<const Allocation*> out;
  scan_words(static_cast<const char*>(data), size, true, out);
  return out;
}

std::string check_guards(const Allocation& a) {
  if (kGuard == 0) return {};
  const unsigned char* before = reinterpret_cast<const unsigned char*>(a.base) - kGuard;
  const unsigned char* after = reinterpret_cast<const unsigned char*>(a.base) + a.bytes;
  for (size_t i = kGuard; i-- > 0;) {
    if (before[i] != kGuardByte) {
      return "byte " + std::to_string(kGuard - i) + " before the start of allocation #" +
             std::to_string(a.id) + " (" + std::to_string(a.bytes) + " bytes) was overwritten";
    }
  }
  for (size_t i = 0; i < kGuard; ++i) {
    if (after[i] != kGuardByte) {
      return "byte " + std::to_string(i) + " past the end of allocation #" + std::to_string(a.id) +
             " (" + std::to_string(a.bytes) + " bytes) was overwritten";
    }
  }
  return {};
}

// Device memory is never poisoned (allocations are exact), so plain memcpy/memcmp are safe
// even under AddressSanitizer.
void raw_copy(void* dst, const void* src, size_t bytes) {
  std::memcpy(dst, src, bytes);
}

bool raw_equal(const void* a, const void* b, size_t bytes, size_t* first_difference) {
  if (std::memcmp(a, b, bytes) == 0) return true;
  const auto* x = static_cast<const unsigned char*>(a);
  const auto* y = static_cast<const unsigned char*>(b);
  size_t i = 0;
  while (x[i] == y[i]) ++i;
  *first_difference = i;
  return false;
}

}  // namespace nvemu

using nvemu::device_mutex;
using nvemu::set_error;

cudaError_t cudaMalloc(void** ptr, size_t bytes) {
  std::lock_guard<std::recursive_mutex> lock(device_mutex());
  if (ptr == nullptr) return set_error(cudaErrorInvalidValue);
  *ptr = nullptr;
  if (cudaError_t e = nvemu::refuse_unsafe_in_capture("cudaMalloc")) return e;
  if (cudaError_t e = nvemu::sticky_error()) return set_error(e);
  if (bytes == 0) return cudaSuccess;
  nvemu::Memory& m = nvemu::memory();
  const int device = nvemu::current_device();
  if (bytes > nvemu::options().memory_bytes - m.in_use[device]) {
    return set_error(cudaErrorMemoryAllocation);
  }
  void* raw = nullptr;
  if (posix_memalign(&raw, nvemu::kAlignment, bytes + 2 * nvemu::kGuard) != 0) {
    return set_error(cudaErrorMemoryAllocation);
  }
  char* base = static_cast<char*>(raw) + nvemu::kGuard;
  std::memset(base - nvemu::kGuard, nvemu::kGuardByte, nvemu::kGuard);
  std::memset(base + bytes, nvemu::kGuardByte, nvemu::kGuard);
  if (nvemu::options().poison) std::memset(base, 0xFF, bytes);
  nvemu::Allocation a;
  a.base = base;
  a.bytes = bytes;
  a.id = m.next_id++;
  a.device = device;
  m.by_base[reinterpret_cast<uintptr_t>(base)] = a;
  m.in_use[device] += bytes;
  *ptr = base;
  return cudaSuccess;
}

cudaError_t cudaFree(void* ptr) {
  std::lock_guard<std::recursive_mutex> lock(device_mutex());
  if (cudaError_t e = nvemu::refuse_unsafe_in_capture("cudaFree")) return e;
  if (ptr == nullptr) return cudaSuccess;
  nvemu::Memory& m = nvemu::memory();
  auto it = m.by_base.find(reinterpret_cast<uintptr_t>(ptr));
  if (it == m.by_base.end()) return set_error(cudaErrorInvalidValue);
  const std::string broken = nvemu::check_guards(it->second);
  if (!broken.empty()) {
    nvemu::fault(cudaErrorIllegalAddress, "cudaFree: " + broken + " by an earlier kernel or copy");
  }
  m.in_use[it->second.device] -= it->second.bytes;
  nvemu::count_host_synchronization();  // cudaFree waits for the device
  std::free(static_cast<char*>(ptr) - nvemu::kGuard);
  m.by_base.erase(it);
  if (cudaError_t e = nvemu::sticky_error()) return set_error(e);
  return cudaSuccess;
}

cudaError_t cudaMallocHost(void** ptr, size_t bytes) {
  std::lock_guard<std::recursive_mutex> lock(device_mutex());
  if (ptr == nullptr) return set_error(cudaErrorInvalidValue);
  if (cudaError_t e = nvemu::refuse_unsafe_in_capture("cudaMallocHost")) return e;
  *ptr = bytes ? std::malloc(bytes) : nullptr;
  if (bytes && *ptr == nullptr) return set_error(cudaErrorMemoryAllocation);
  if (*ptr) nvemu::pinned()[reinterpret_cast<uintptr_t>(*ptr)] = bytes;
  return cudaSuccess;
}

cudaError_t cudaFreeHost(void* ptr) {
  std::lock_guard<std::recursive_mutex> lock(device_mutex());
  if (cudaError_t e = nvemu::refuse_unsafe_in_capture("cudaFreeHost")) return e;
  if (ptr == nullptr) return cudaSuccess;
  if (!nvemu::pinned().erase(reinterpret_cast<uintptr_t>(ptr))) {
    return set_error(cudaErrorInvalidValue);
  }
  nvemu::count_host_synchronization();  // cudaFreeHost waits for the device
  std::free(ptr);
  return cudaSuccess;
}

cudaError_t cudaMemGetInfo(size_t* free_bytes, size_t* total_bytes) {
  std::lock_guard<std::recursive_mutex> lock(device_mutex());
  if (cudaError_t e = nvemu::sticky_error()) return set_error(e);
  const size_t in_use = nvemu::memory().in_use[nvemu::current_device()];
  if (free_bytes) *free_bytes = nvemu::options().memory_bytes - in_use;
  if (total_bytes) *total_bytes = nvemu::options().memory_bytes;
  return cudaSuccess;
}

cudaError_t cudaMemcpy(void* dst, const void* src, size_t bytes, cudaMemcpyKind kind) {
  std::lock_guard<std::recursive_mutex> lock(device_mutex());
  if (cudaError_t e = nvemu::refuse_unsafe_in_capture("cudaMemcpy")) return e;
  nvemu::count_host_synchronization();  // the synchronous copy returns when it is done
  if (cudaError_t e = nvemu::sticky_error()) return set_error(e);
  return nvemu::copy_checked(dst, src, bytes, kind);
}

cudaError_t cudaMemcpyAsync(void* dst, const void* src, size_t bytes, cudaMemcpyKind kind,
                            cudaStream_t stream) {
  std::lock_guard<std::recursive_mutex> lock(device_mutex());
  if (cudaError_t e = nvemu::sticky_error()) return set_error(e);
  if (!nvemu::valid_stream(stream)) return set_error(cudaErrorInvalidResourceHandle);
  // Into pageable host memory the copy returns only once it is complete: a hidden wait.
  const bool to_host = kind == cudaMemcpyDeviceToHost ||
                       (kind == cudaMemcpyDefault && !nvemu::find_allocation(dst, bytes));
  const bool from_host = kind == cudaMemcpyHostToDevice ||
                         (kind == cudaMemcpyDefault && !nvemu::find_allocation(src, bytes));
  if (nvemu::capturing(stream)) {
    // A graph copies between fixed addresses at each launch: host memory must be page-locked
    // (and the caller must keep it alive and filled), as a real capture requires.
    if ((to_host && !nvemu::is_pinned(dst, bytes)) ||
        (from_host && !nvemu::is_pinned(src, bytes))) {
      return nvemu::refuse_wait_in_capture(stream, "cudaMemcpyAsync with pageable host memory");
    }
    if (cudaError_t e = nvemu::copy_checked(dst, src, bytes, kind, true)) return e;
    return set_error(nvemu::record(stream, "cudaMemcpyAsync", [=](cudaStream_t s) {
      (void)cudaMemcpyAsync(dst, src, bytes, kind, s);  // errors land in the last error
    }));
  }
  if (to_host && !nvemu::is_pinned(dst, bytes)) nvemu::count_host_synchronization();
  return nvemu::copy_checked(dst, src, bytes, kind);
}

cudaError_t cudaMemset(void* dst, int value, size_t bytes) {
  std::lock_guard<std::recursive_mutex> lock(device_mutex());
  if (cudaError_t e = nvemu::refuse_unsafe_in_capture("cudaMemset")) return e;
  nvemu::count_host_synchronization();  // synchronous with respect to the host
  return cudaMemsetAsync(dst, value, bytes, nullptr);
}

cudaError_t cudaMemsetAsync(void* dst, int value, size_t bytes, cudaStream_t stream) {
  std::lock_guard<std::recursive_mutex> lock(device_mutex());
  if (cudaError_t e = nvemu::sticky_error()) return set_error(e);
  if (!nvemu::valid_stream(stream)) return set_error(cudaErrorInvalidResourceHandle);
  if (bytes == 0) return cudaSuccess;
  if (nvemu::find_allocation(dst, bytes) == nullptr) return set_error(cudaErrorInvalidValue);
  if (nvemu::capturing(stream)) {
    return set_error(nvemu::record(stream, "cudaMemsetAsync", [=](cudaStream_t s) {
      (void)cudaMemsetAsync(dst, value, bytes, s);
    }));
  }
  std::memset(dst, value, bytes);
  return cudaSuccess;
}
