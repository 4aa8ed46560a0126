// The emulated device's identity (an sm_90 part, named as emulated), its error state, options,
// streams and events. Work runs when it is issued, so a stream is always idle and an event is
// complete once recorded; what remains of stream semantics is handle validity and the error a
// call returns.
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <set>
#include <string>

#include "core/cuda/emulator/include/nvemu.h"
#include "core/cuda/emulator/state.h"

struct CUstream_st {
  unsigned flags;
  int device;  // current at creation (devices.cpp)
};
struct CUevent_st {
  unsigned flags;
  int device = 0;  // current at creation
  bool recorded = false;
  bool captured = false;  // last recorded during a capture: not to be queried or waited for
  std::chrono::steady_clock::time_point when;
};

namespace nvemu {
namespace {

struct ErrorState {
  cudaError_t last = cudaSuccess;
  cudaError_t sticky = cudaSuccess;
  std::string message;    // the fault's description
  std::string described;  // cudaGetErrorString's text for the sticky error
};

ErrorState& errors() {
  static ErrorState e;
  return e;
}

std::set<cudaStream_t>& streams() {
  static std::set<cudaStream_t>* s = new std::set<cudaStream_t>();
  return *s;
}
std::set<cudaEvent_t>& events() {
  static std::set<cudaEvent_t>* s = new std::set<cudaEvent_t>();
  return *s;
}
std::map<const void*, int>& max_dynamic_shared() {
  static std::map<const void*, int>* m = new std::map<const void*, int>();
  return *m;
}

// H100 SXM figures: the emulator promises sm_90's limits, not its speed.
constexpr int kSms = 132;
constexpr int kSharedPerBlock = 48 * 1024;
constexpr int kSharedOptin = 227 * 1024;
constexpr int kSharedPerSm = 228 * 1024;

Order parse_order(const std::string& s) {
  if (s == "forward") return Order::Forward;
  if (s == "reverse") return Order::Reverse;
  if (s == "shuffle") return Order::Shuffle;
  std::fprintf(stderr, "nvemu: unknown schedule '%s' (forward, reverse or shuffle)\n", s.c_str());
  std::exit(2);
}

std::vector<Order> parse_orders(const std::string& list) {
  std::vector<Order> s;
  size_t start = 0;
  while (start <= list.size()) {
    const size_t comma = list.find(',', start);
    const std::string item =
        list.substr(start, comma == std::string::npos ? std::string::npos : comma - start);
    if (!item.empty()) s.push_back(parse_order(item));
    if (comma == std::string::npos) break;
    start = comma + 1;
  }
  if (s.empty()) s.push_back(Order::Forward);
  return s;
}

Options read_options() {
  Options o;
  const char* sched = std::getenv("NVEMU_SCHEDULES");
  o.schedules = parse_orders(sched && *sched ? sched : "forward");
  if (const char* s = std::getenv("NVEMU_SEED")) o.seed = std::strtoull(s, nullptr, 10);
  if (const char* s = std::getenv("NVEMU_RACECHECK_LIMIT")) o.racecheck_limit = std::atoi(s);
  double gib = 4.0;
  if (const char* s = std::getenv("NVEMU_MEMORY_GIB")) gib = std::strtod(s, nullptr);
  o.memory_bytes = static_cast<size_t>(gib * 1024.0 * 1024.0 * 1024.0);
  if (const char* s = std::getenv("NVEMU_POISON")) o.poison = std::strcmp(s, "0") != 0;
  if (const char* s = std::getenv("NVEMU_ABORT_ON_FAULT")) o.abort_on_fault = std::strcmp(s, "0");
  if (const char* s = std::getenv("NVEMU_COVERAGE_FILE")) o.coverage_file = s;
  if (const char* s = std::getenv("NVEMU_DEVICES")) {
    o.devices = std::atoi(s);
    if (o.devices < 1 || o.devices > kMaxDevices) {
      std::fprintf(stderr, "nvemu: NVEMU_DEVICES must be 1 to %d, got '%s'\n", kMaxDevices, s);
      std::exit(2);
    }
  }
#if defined(__SANITIZE_ADDRESS__)
  o.stack_bytes = 512 * 1024;  // instrumented frames are several times larger
#else
  o.stack_bytes = 128 * 1024;
#endif
  return o;
}

bool sticky_code(cudaError_t e) {
  return e == cudaErrorIllegalAddress || e == cudaErrorLaunchFailure || e == cudaErrorAssert ||
         e == cudaErrorLaunchOutOfResources;
}

}  // namespace

std::recursive_mutex& device_mutex() {
  static std::recursive_mutex* m = new std::recursive_mutex();
  return *m;
}

Options& mutable_options() {
  static Options o = read_options();
  return o;
}
const Options& options() {
  return mutable_options();
}

cudaError_t set_error(cudaError_t e) {
  if (e != cudaSuccess) errors().last = e;
  return e;
}

void fault(cudaError_t code, const std::string& message) {
  ErrorState& es = errors();
  std::fprintf(stderr, "nvemu: %s\n", message.c_str());
  std::fflush(stderr);
  if (options().abort_on_fault) std::abort();
  if (es.sticky != cudaSuccess) return;  // the first fault is the one that counts
  es.sticky = sticky_code(code) ? code : cudaErrorLaunchFailure;
  es.last = es.sticky;
  es.message = message;
}

cudaError_t sticky_error() {
  return errors().sticky;
}
const std::string& fault_message() {
  return errors().message;
}

bool valid_stream(cudaStream_t s) {
  return s == nullptr || streams().count(s) > 0;
}

int stream_device(cudaStream_t s) {
  return s == nullptr ? current_device() : s->device;
}

int max_dynamic_shared_bytes(const void* kernel) {
  auto it = max_dynamic_shared().find(kernel);
  return it == max_dynamic_shared().end() ? kSharedPerBlock : it->second;
}

void set_schedules(const std::string& list) {
  std::lock_guard<std::recursive_mutex> lock(device_mutex());
  mutable_options().schedules = parse_orders(list);
}

namespace {
int64_t g_host_synchronizations = 0;
}
bool g_events_held = false;
void hold_events_for_testing(bool hold) {
  std::lock_guard<std::recursive_mutex> lock(device_mutex());
  g_events_held = hold;
}
void count_host_synchronization() {
  ++g_host_synchronizations;
}
int64_t host_synchronizations() {
  std::lock_guard<std::recursive_mutex> lock(device_mutex());
  return g_host_synchronizations;
}

// Test hook (tests/test_cuda_emulator.cpp): forget a fault, as a fresh process would.
void clear_fault_for_testing() {
  std::lock_guard<std::recursive_mutex> lock(device_mutex());
  errors() = ErrorState();
}

}  // namespace nvemu

using nvemu::device_mutex;
using nvemu::set_error;

cudaError_t cudaGetDeviceProperties(cudaDeviceProp* p, int device) {
  if (p == nullptr) return set_error(cudaErrorInvalidValue);
  if (device < 0 || device >= nvemu::device_count()) return set_error(cudaErrorInvalidDevice);
  std::memset(p, 0, sizeof(*p));
  std::snprintf(p->name, sizeof(p->name), "nextvit emulated GPU %d (sm_90 limits, runs on the CPU)",
                device);
  p->totalGlobalMem = nvemu::options().memory_bytes;
  p->sharedMemPerBlock = nvemu::kSharedPerBlock;
  p->regsPerBlock = 65536;
  p->warpSize = 32;
  p->maxThreadsPerBlock = 1024;
  p->maxThreadsDim[0] = 1024;
  p->maxThreadsDim[1] = 1024;
  p->maxThreadsDim[2] = 64;
  p->maxGridSize[0] = 0x7fffffff;
  p->maxGridSize[1] = 65535;
  p->maxGridSize[2] = 65535;
  p->totalConstMem = 65536;
  p->major = 9;
  p->minor = 0;
  p->multiProcessorCount = nvemu::kSms;
  p->l2CacheSize = 50 * 1024 * 1024;
  p->maxThreadsPerMultiProcessor = 2048;
  p->sharedMemPerMultiprocessor = nvemu::kSharedPerSm;
  p->sharedMemPerBlockOptin = nvemu::kSharedOptin;
  p->memoryBusWidth = 5120;
  p->regsPerMultiprocessor = 65536;
  return cudaSuccess;
}

cudaError_t cudaDeviceGetAttribute(int* value, cudaDeviceAttr attr, int device) {
  if (value == nullptr) return set_error(cudaErrorInvalidValue);
  cudaDeviceProp p;
  if (cudaError_t e = cudaGetDeviceProperties(&p, device)) return e;
  switch (attr) {
    case cudaDevAttrMaxThreadsPerBlock:
      *value = p.maxThreadsPerBlock;
      break;
    case cudaDevAttrMaxBlockDimX:
      *value = p.maxThreadsDim[0];
      break;
    case cudaDevAttrMaxBlockDimY:
      *value = p.maxThreadsDim[1];
      break;
    case cudaDevAttrMaxBlockDimZ:
      *value = p.maxThreadsDim[2];
      break;
    case cudaDevAttrMaxGridDimX:
      *value = p.maxGridSize[0];
      break;
    case cudaDevAttrMaxGridDimY:
      *value = p.maxGridSize[1];
      break;
    case cudaDevAttrMaxGridDimZ:
      *value = p.maxGridSize[2];
      break;
    case cudaDevAttrMaxSharedMemoryPerBlock:
      *value = int(p.sharedMemPerBlock);
      break;
    case cudaDevAttrWarpSize:
      *value = 32;
      break;
    case cudaDevAttrClockRate:
      *value = 1980000;
      break;  // kHz
    case cudaDevAttrMultiProcessorCount:
      *value = p.multiProcessorCount;
      break;
    case cudaDevAttrMemoryClockRate:
      *value = 2619000;
      break;  // kHz
    case cudaDevAttrGlobalMemoryBusWidth:
      *value = p.memoryBusWidth;
      break;
    case cudaDevAttrL2CacheSize:
      *value = p.l2CacheSize;
      break;
    case cudaDevAttrMaxThreadsPerMultiProcessor:
      *value = p.maxThreadsPerMultiProcessor;
      break;
    case cudaDevAttrComputeCapabilityMajor:
      *value = p.major;
      break;
    case cudaDevAttrComputeCapabilityMinor:
      *value = p.minor;
      break;
    case cudaDevAttrMaxSharedMemoryPerMultiprocessor:
      *value = int(p.sharedMemPerMultiprocessor);
      break;
    case cudaDevAttrMaxRegistersPerMultiprocessor:
      *value = p.regsPerMultiprocessor;
      break;
    case cudaDevAttrMaxSharedMemoryPerBlockOptin:
      *value = int(p.sharedMemPerBlockOptin);
      break;
    default:
      return set_error(cudaErrorInvalidValue);
  }
  return cudaSuccess;
}

cudaError_t cudaDriverGetVersion(int* version) {
  if (version == nullptr) return set_error(cudaErrorInvalidValue);
  *version = CUDART_VERSION;
  return cudaSuccess;
}

cudaError_t cudaRuntimeGetVersion(int* version) {
  return cudaDriverGetVersion(version);
}

cudaError_t cudaDeviceSynchronize() {
  std::lock_guard<std::recursive_mutex> lock(device_mutex());
  if (cudaError_t e = nvemu::refuse_wait_in_capture(nullptr, "cudaDeviceSynchronize")) return e;
  nvemu::count_host_synchronization();
  return set_error(nvemu::sticky_error());
}

cudaError_t cudaDeviceReset() {
  std::lock_guard<std::recursive_mutex> lock(device_mutex());
  nvemu::clear_fault_for_testing();
  return cudaSuccess;
}

cudaError_t cudaGetLastError() {
  std::lock_guard<std::recursive_mutex> lock(device_mutex());
  nvemu::ErrorState& es = nvemu::errors();
  const cudaError_t e = es.last;
  es.last = es.sticky;  // a sticky error cannot be cleared
  return e;
}

cudaError_t cudaPeekAtLastError() {
  std::lock_guard<std::recursive_mutex> lock(device_mutex());
  return nvemu::errors().last;
}

const char* cudaGetErrorName(cudaError_t e) {
  switch (e) {
    case cudaSuccess:
      return "cudaSuccess";
    case cudaErrorInvalidValue:
      return "cudaErrorInvalidValue";
    case cudaErrorMemoryAllocation:
      return "cudaErrorMemoryAllocation";
    case cudaErrorInitializationError:
      return "cudaErrorInitializationError";
    case cudaErrorInvalidConfiguration:
      return "cudaErrorInvalidConfiguration";
    case cudaErrorInvalidPitchValue:
      return "cudaErrorInvalidPitchValue";
    case cudaErrorInvalidDeviceFunction:
      return "cudaErrorInvalidDeviceFunction";
    case cudaErrorNoDevice:
      return "cudaErrorNoDevice";
    case cudaErrorInvalidDevice:
      return "cudaErrorInvalidDevice";
    case cudaErrorInvalidResourceHandle:
      return "cudaErrorInvalidResourceHandle";
    case cudaErrorPeerAccessAlreadyEnabled:
      return "cudaErrorPeerAccessAlreadyEnabled";
    case cudaErrorPeerAccessNotEnabled:
      return "cudaErrorPeerAccessNotEnabled";
    case cudaErrorNotReady:
      return "cudaErrorNotReady";
    case cudaErrorIllegalAddress:
      return "cudaErrorIllegalAddress";
    case cudaErrorLaunchOutOfResources:
      return "cudaErrorLaunchOutOfResources";
    case cudaErrorAssert:
      return "cudaErrorAssert";
    case cudaErrorLaunchFailure:
      return "cudaErrorLaunchFailure";
    case cudaErrorStreamCaptureUnsupported:
      return "cudaErrorStreamCaptureUnsupported";
    case cudaErrorStreamCaptureInvalidated:
      return "cudaErrorStreamCaptureInvalidated";
    case cudaErrorIllegalState:
      return "cudaErrorIllegalState";
    case cudaErrorStreamCaptureUnmatched:
      return "cudaErrorStreamCaptureUnmatched";
    case cudaErrorCapturedEvent:
      return "cudaErrorCapturedEvent";
    case cudaErrorStreamCaptureWrongThread:
      return "cudaErrorStreamCaptureWrongThread";
    default:
      return "cudaErrorUnknown";
  }
}

const char* cudaGetErrorString(cudaError_t e) {
  const char* text = nullptr;
  switch (e) {
    case cudaSuccess:
      text = "no error";
      break;
    case cudaErrorInvalidValue:
      text = "invalid argument";
      break;
    case cudaErrorMemoryAllocation:
      text = "out of memory";
      break;
    case cudaErrorInitializationError:
      text = "initialization error";
      break;
    case cudaErrorInvalidConfiguration:
      text = "invalid configuration argument";
      break;
    case cudaErrorInvalidPitchValue:
      text = "invalid pitch argument";
      break;
    case cudaErrorInvalidDeviceFunction:
      text = "invalid device function";
      break;
    case cudaErrorNoDevice:
      text = "no CUDA-capable device is detected";
      break;
    case cudaErrorInvalidDevice:
      text = "invalid device ordinal";
      break;
    case cudaErrorInvalidResourceHandle:
      text = "invalid resource handle";
      break;
    case cudaErrorPeerAccessAlreadyEnabled:
      text = "peer access is already enabled";
      break;
    case cudaErrorPeerAccessNotEnabled:
      text = "peer access has not been enabled";
      break;
    case cudaErrorNotReady:
      text = "device not ready";
      break;
    case cudaErrorIllegalAddress:
      text = "an illegal memory access was encountered";
      break;
    case cudaErrorLaunchOutOfResources:
      text = "too many resources requested for launch";
      break;
    case cudaErrorAssert:
      text = "device-side assert triggered";
      break;
    case cudaErrorLaunchFailure:
      text = "unspecified launch failure";
      break;
    case cudaErrorStreamCaptureUnsupported:
      text = "operation not permitted when stream is capturing";
      break;
    case cudaErrorStreamCaptureInvalidated:
      text = "operation failed due to a previous error during capture";
      break;
    case cudaErrorIllegalState:
      text = "the operation cannot be performed in the present state";
      break;
    case cudaErrorStreamCaptureUnmatched:
      text = "capture was not ended in the same stream as it began";
      break;
    case cudaErrorCapturedEvent:
      text = "operation not permitted on an event last recorded in a capturing stream";
      break;
    case cudaErrorStreamCaptureWrongThread:
      text = "attempt to terminate a thread-local capture sequence from another thread";
      break;
    default:
      text = "unknown error";
      break;
  }
  // The sticky fault's code also carries what the emulator saw, so that an error message built
  // from this string (NV_CUDA_CHECK) names the kernel and the rule it broke.
  nvemu::ErrorState& es = nvemu::errors();
  if (e != cudaSuccess && e == es.sticky && !es.message.empty()) {
    es.described = std::string(text) + " [emulator: " + es.message + "]";
    return es.described.c_str();
  }
  // A capture error carries what broke the capture, too (graph.cpp).
  if ((e == cudaErrorStreamCaptureUnsupported || e == cudaErrorStreamCaptureInvalidated ||
       e == cudaErrorCapturedEvent) &&
      !nvemu::capture_message().empty()) {
    es.described = std::string(text) + " [emulator: " + nvemu::capture_message() + "]";
    return es.described.c_str();
  }
  return text;
}

cudaError_t cudaStreamCreate(cudaStream_t* stream) {
  return cudaStreamCreateWithFlags(stream, cudaStreamDefault);
}

cudaError_t cudaStreamCreateWithFlags(cudaStream_t* stream, unsigned flags) {
  std::lock_guard<std::recursive_mutex> lock(device_mutex());
  if (stream == nullptr || flags > cudaStreamNonBlocking) return set_error(cudaErrorInvalidValue);
  *stream = new CUstream_st{flags, nvemu::current_device()};
  nvemu::streams().insert(*stream);
  return cudaSuccess;
}

cudaError_t cudaStreamDestroy(cudaStream_t stream) {
  std::lock_guard<std::recursive_mutex> lock(device_mutex());
  if (stream == nullptr || !nvemu::streams().erase(stream)) {
    return set_error(cudaErrorInvalidResourceHandle);
  }
  delete stream;
  return cudaSuccess;
}

cudaError_t cudaStreamSynchronize(cudaStream_t stream) {
  std::lock_guard<std::recursive_mutex> lock(device_mutex());
  if (cudaError_t e = nvemu::refuse_wait_in_capture(stream, "cudaStreamSynchronize")) return e;
  nvemu::count_host_synchronization();
  if (!nvemu::valid_stream(stream)) return set_error(cudaErrorInvalidResourceHandle);
  return set_error(nvemu::sticky_error());
}

// Work runs when it is issued, so a stream or event is always complete: asking does not wait.
cudaError_t cudaStreamQuery(cudaStream_t stream) {
  std::lock_guard<std::recursive_mutex> lock(device_mutex());
  if (stream != nullptr && nvemu::capturing(stream)) {
    return nvemu::refuse_wait_in_capture(stream, "cudaStreamQuery");
  }
  if (!nvemu::valid_stream(stream)) return set_error(cudaErrorInvalidResourceHandle);
  return set_error(nvemu::sticky_error());
}

cudaError_t cudaStreamWaitEvent(cudaStream_t stream, cudaEvent_t event, unsigned) {
  std::lock_guard<std::recursive_mutex> lock(device_mutex());
  if (!nvemu::valid_stream(stream) || !nvemu::events().count(event)) {
    return set_error(cudaErrorInvalidResourceHandle);
  }
  return set_error(nvemu::sticky_error());
}

cudaError_t cudaEventCreate(cudaEvent_t* event) {
  return cudaEventCreateWithFlags(event, cudaEventDefault);
}

cudaError_t cudaEventCreateWithFlags(cudaEvent_t* event, unsigned flags) {
  std::lock_guard<std::recursive_mutex> lock(device_mutex());
  if (event == nullptr) return set_error(cudaErrorInvalidValue);
  *event = new CUevent_st();
  (*event)->flags = flags;
  (*event)->device = nvemu::current_device();
  nvemu::events().insert(*event);
  return cudaSuccess;
}

cudaError_t cudaEventDestroy(cudaEvent_t event) {
  std::lock_guard<std::recursive_mutex> lock(device_mutex());
  if (!nvemu::events().erase(event)) return set_error(cudaErrorInvalidResourceHandle);
  delete event;
  return cudaSuccess;
}

cudaError_t cudaEventRecord(cudaEvent_t event, cudaStream_t stream) {
  std::lock_guard<std::recursive_mutex> lock(device_mutex());
  if (!nvemu::events().count(event) || !nvemu::valid_stream(stream)) {
    return set_error(cudaErrorInvalidResourceHandle);
  }
  // CUDA: "cudaEventRecord() will fail if the input event and input stream are associated to
  // different devices" (waiting on another device's event is fine: cudaStreamWaitEvent).
  if (event->device != nvemu::stream_device(stream)) {
    return set_error(cudaErrorInvalidResourceHandle);
  }
  if (nvemu::capturing(stream)) {
    event->captured = true;
    return set_error(nvemu::record(stream, "cudaEventRecord", [event](cudaStream_t) {
      if (!nvemu::events().count(event)) return;  // destroyed since: nothing to mark
      event->recorded = true;
      event->when = std::chrono::steady_clock::now();
    }));
  }
  event->captured = false;
  event->recorded = true;
  event->when = std::chrono::steady_clock::now();
  return set_error(nvemu::sticky_error());
}

cudaError_t cudaEventSynchronize(cudaEvent_t event) {
  std::lock_guard<std::recursive_mutex> lock(device_mutex());
  if (!nvemu::events().count(event)) return set_error(cudaErrorInvalidResourceHandle);
  if (event->captured) return set_error(cudaErrorCapturedEvent);
  nvemu::count_host_synchronization();
  return set_error(nvemu::sticky_error());
}

cudaError_t cudaEventQuery(cudaEvent_t event) {
  std::lock_guard<std::recursive_mutex> lock(device_mutex());
  if (!nvemu::events().count(event)) return set_error(cudaErrorInvalidResourceHandle);
  if (event->captured) return set_error(cudaErrorCapturedEvent);
  if (event->recorded && nvemu::g_events_held) return cudaErrorNotReady;
  return set_error(nvemu::sticky_error());
}

cudaError_t cudaEventElapsedTime(float* ms, cudaEvent_t start, cudaEvent_t end) {
  std::lock_guard<std::recursive_mutex> lock(device_mutex());
  if (ms == nullptr) return set_error(cudaErrorInvalidValue);
  if (!nvemu::events().count(start) || !nvemu::events().count(end)) {
    return set_error(cudaErrorInvalidResourceHandle);
  }
  if ((start->flags | end->flags) & cudaEventDisableTiming) {
    return set_error(cudaErrorInvalidResourceHandle);
  }
  if (!start->recorded || !end->recorded) return set_error(cudaErrorInvalidResourceHandle);
  if (start->device != end->device) return set_error(cudaErrorInvalidResourceHandle);
  *ms = std::chrono::duration<float, std::milli>(end->when - start->when).count();
  return cudaSuccess;
}

cudaError_t cudaFuncSetAttribute(const void* func, cudaFuncAttribute attr, int value) {
  std::lock_guard<std::recursive_mutex> lock(device_mutex());
  if (func == nullptr) return set_error(cudaErrorInvalidDeviceFunction);
  if (attr == cudaFuncAttributeMaxDynamicSharedMemorySize) {
    if (value < 0 || value > nvemu::kSharedOptin) return set_error(cudaErrorInvalidValue);
    nvemu::max_dynamic_shared()[func] = value;
    return cudaSuccess;
  }
  if (attr == cudaFuncAttributePreferredSharedMemoryCarveout) {
    return value >= -1 && value <= 100 ? cudaSuccess : set_error(cudaErrorInvalidValue);
  }
  return set_error(cudaErrorInvalidValue);
}
