#pragma once
// The emulated device's state, shared by the emulator's parts: device memory (memory.cpp), the
// error state and the options (runtime.cpp), read by the scheduler and the library emulations
// (cublas.cpp, cudnn.cpp). Internal to core/cuda/emulator/; kernels see only include/.
#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>
#include <functional>
#include <mutex>
#include <string>
#include <vector>

namespace nvemu {

// Every emulator entry point holds this: the emulated device does one thing at a time, as the
// single stream nextvit uses would.
std::recursive_mutex& device_mutex();

// ---- options, read once from the environment (docs/cuda-emulator.md) -------------------------
enum class Order { Forward, Reverse, Shuffle };
struct Options {
  std::vector<Order> schedules;  // one: run each launch so; more: race check, compare outputs
  int racecheck_limit = 0;       // race-check only the first N launches of each kernel (0: all)
  uint64_t seed = 1;             // for Order::Shuffle
  size_t memory_bytes = 0;       // the emulated device's memory
  bool poison = true;            // fill new device memory and shared memory with NaN bytes
  bool abort_on_fault = false;   // print the fault and abort (to get a core or a debugger stop)
  std::string coverage_file;     // append "file:kernel" of each kernel's first launch
  size_t stack_bytes = 0;        // per emulated thread
  int devices = 1;               // NVEMU_DEVICES: how many identical devices (devices.cpp)
};
const Options& options();
Options& mutable_options();  // tests: choose schedules for the next launches

// ---- errors --------------------------------------------------------------------------------
// A failed call's error becomes the last error (cudaGetLastError). A fault (a kernel that
// broke a rule: out-of-bounds write, divergent barrier, race) is sticky, as a real kernel fault
// is: every later call returns it. Returns `e`.
cudaError_t set_error(cudaError_t e);
void fault(cudaError_t code, const std::string& message);
cudaError_t sticky_error();
const std::string& fault_message();

// ---- devices (devices.cpp) -----------------------------------------------------------------
// NVEMU_DEVICES identical devices (1 unless set, at most kMaxDevices), each with its own memory
// limit. Each host thread has a current device (cudaSetDevice; 0 at start); memory, streams,
// events and library handles belong to the device current when they were made.
constexpr int kMaxDevices = 8;
int device_count();
int current_device();
// The device `stream` belongs to (the null stream: the current device's).
int stream_device(cudaStream_t stream);
// Whether kernels on `device` may access memory of `peer` (cudaDeviceEnablePeerAccess).
bool peer_access(int device, int peer);

// ---- device memory -------------------------------------------------------------------------
struct Allocation {
  char* base = nullptr;  // what cudaMalloc returned
  size_t bytes = 0;
  uint64_t id = 0;  // counts allocations, for messages
  int device = 0;   // the device current at cudaMalloc
};
// "" when work on `device` may touch every allocation in `reached` (its own memory, or a peer's
// after cudaDeviceEnablePeerAccess), else which allocation of which device it may not.
std::string foreign_memory(const std::vector<const Allocation*>& reached, int device);
// The allocation containing [p, p + bytes), or null. p may be one past the end when bytes is 0.
const Allocation* find_allocation(const void* p, size_t bytes = 0);
// Allocations that any 8-byte-aligned word of [data, data + size) points into (conservatively:
// how a kernel's arguments reach memory, through pointers or structs holding them), and those
// that a DeviceTable argument's table points into (core/cuda/launch.h).
std::vector<const Allocation*> allocations_reached(const void* data, size_t size);
// Checks the guard bytes around an allocation (builds without AddressSanitizer); empty when
// intact, else what was overwritten.
std::string check_guards(const Allocation& a);
// Copies and comparisons of device memory (race-check snapshots).
void raw_copy(void* dst, const void* src, size_t bytes);
bool raw_equal(const void* a, const void* b, size_t bytes, size_t* first_difference);

bool valid_stream(cudaStream_t s);
// Each call that makes the host wait for the device (synchronise, synchronous copies and
// memsets, device-to-host copies into pageable memory, cudaFree, cudaFreeHost) counts one:
// host_synchronizations() in nvemu.h. Called with device_mutex() held.
void count_host_synchronization();
// hold_events_for_testing (nvemu.h): recorded events report "not ready" to cudaEventQuery.
extern bool g_events_held;
// Dynamic shared memory a launch of `kernel` may request: 48 KB, or what cudaFuncSetAttribute
// granted.
int max_dynamic_shared_bytes(const void* kernel);

// ---- stream capture (graph.cpp) -----------------------------------------------------------
// While `stream` is being captured, work issued to it is recorded as a node of the graph, to run
// when the graph is launched (on the launch's stream), instead of running now. record() returns
// cudaErrorStreamCaptureInvalidated once the capture was invalidated. enqueue() runs `work` now
// when the stream is not capturing (the library emulations: cuBLAS, cuDNN).
bool capturing(cudaStream_t stream);
cudaError_t record(cudaStream_t stream, std::string what, std::function<void(cudaStream_t)> run);
cudaError_t enqueue(cudaStream_t stream, const char* what, std::function<void()> work);
// A call that waits for `stream` (cudaStreamSynchronize, cudaStreamQuery, a copy into pageable
// memory): refused with cudaErrorStreamCaptureUnsupported, and the capture invalidated, when
// `stream` is capturing. With a null stream: a device-wide wait, refused during any capture.
cudaError_t refuse_wait_in_capture(cudaStream_t stream, const char* call);
// A "potentially unsafe" call (cudaMalloc, cudaFree, cudaMallocHost, cudaFreeHost, cudaMemcpy,
// cudaMemset): refused, invalidating the capture, when the calling thread's capture mode forbids
// it (CUDA's rules: cudaThreadExchangeStreamCaptureMode, cudaStreamBeginCapture's mode).
cudaError_t refuse_unsafe_in_capture(const char* call);
// Why the last capture error happened (cudaGetErrorString appends it), or "".
const std::string& capture_message();

}  // namespace nvemu
