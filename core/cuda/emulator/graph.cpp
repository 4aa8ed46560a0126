// Stream capture and CUDA graphs under the emulator: cudaStreamBeginCapture / EndCapture /
// IsCapturing, cudaThreadExchangeStreamCaptureMode, cudaGraphInstantiate / Launch / ExecDestroy
// / Destroy, with the real runtime's rules where they catch bugs:
//
// - While a stream captures, what is issued to it (kernel launches, cudaMemcpyAsync,
//   cudaMemsetAsync, cudaEventRecord, cuBLAS and cuDNN calls) is recorded as a node, not run.
//   A launch's configuration and pointer arguments are checked when it is recorded, as a real
//   launch reports them at capture. cudaGraphLaunch runs the nodes in order on its stream,
//   through the normal paths, so the race, barrier and bounds checkers see every replay.
// - Waiting for a capturing stream (cudaStreamSynchronize, cudaStreamQuery, a device-to-host
//   copy into pageable memory) or for the device (cudaDeviceSynchronize) is refused with
//   cudaErrorStreamCaptureUnsupported and invalidates the capture: cudaStreamEndCapture then
//   returns cudaErrorStreamCaptureInvalidated and no graph. So do the "potentially unsafe"
//   calls (cudaMalloc, cudaFree, cudaMallocHost, cudaFreeHost, synchronous cudaMemcpy and
//   cudaMemset) unless the calling thread's mode is cudaStreamCaptureModeRelaxed (how a
//   caching allocator takes memory during capture, as PyTorch's does).
// - An event recorded during capture cannot be queried or waited for (cudaErrorCapturedEvent,
//   runtime.cpp) until it is recorded again outside capture.
// Not emulated: capture across several streams (event joins), graph updates, child graphs.
#include <cstdio>
#include <map>
#include <set>
#include <thread>

#include "core/cuda/emulator/state.h"

namespace nvemu {
namespace {

struct Node {
  std::string what;
  std::function<void(cudaStream_t)> run;
};

struct Capture {
  cudaStreamCaptureMode mode = cudaStreamCaptureModeGlobal;
  std::thread::id thread;
  std::vector<Node> nodes;
  bool invalidated = false;
};

std::map<cudaStream_t, Capture>& captures() {
  static auto* c = new std::map<cudaStream_t, Capture>();
  return *c;
}

thread_local cudaStreamCaptureMode t_mode = cudaStreamCaptureModeGlobal;

std::string& message() {
  static auto* m = new std::string();
  return *m;
}

std::string stream_name(cudaStream_t s) {
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%p", static_cast<void*>(s));
  return buf;
}

// Invalidates `c` for `why` and returns the error the refused call gets.
cudaError_t invalidate(Capture& c, const std::string& why) {
  c.invalidated = true;
  message() = why;
  std::fprintf(stderr, "nvemu: stream capture invalidated: %s\n", why.c_str());
  std::fflush(stderr);
  return set_error(cudaErrorStreamCaptureUnsupported);
}

}  // namespace

}  // namespace nvemu

struct CUgraph_st {
  std::vector<nvemu::Node> nodes;
};
struct CUgraphExec_st {
  std::vector<nvemu::Node> nodes;
};

namespace nvemu {
namespace {
std::set<cudaGraph_t>& graphs() {
  static auto* g = new std::set<cudaGraph_t>();
  return *g;
}
std::set<cudaGraphExec_t>& execs() {
  static auto* e = new std::set<cudaGraphExec_t>();
  return *e;
}
}  // namespace

bool capturing(cudaStream_t stream) {
  return stream != nullptr && captures().count(stream) > 0;
}

cudaError_t record(cudaStream_t stream, std::string what, std::function<void(cudaStream_t)> run) {
  Capture& c = captures().at(stream);
  if (c.invalidated) return set_error(cudaErrorStreamCaptureInvalidated);
  c.nodes.push_back(Node{std::move(what), std::move(run)});
  return cudaSuccess;
}

cudaError_t enqueue(cudaStream_t stream, const char* what, std::function<void()> work) {
  if (!capturing(stream)) {
    work();
    return cudaSuccess;
  }
  return record(stream, what, [w = std::move(work)](cudaStream_t) { w(); });
}

cudaError_t refuse_wait_in_capture(cudaStream_t stream, const char* call) {
  for (auto& [s, c] : captures()) {
    if (stream != nullptr && s != stream) continue;
    return invalidate(c,
                      std::string(call) + " waits for " +
                          (stream ? "stream " + stream_name(stream) + ", which is capturing"
                                  : "the device while stream " + stream_name(s) + " is capturing") +
                          ": a host wait cannot be part of a graph (move it out of the "
                          "captured region)");
  }
  return cudaSuccess;
}

cudaError_t refuse_unsafe_in_capture(const char* call) {
  if (t_mode == cudaStreamCaptureModeRelaxed) return cudaSuccess;
  const std::thread::id me = std::this_thread::get_id();
  for (auto& [s, c] : captures()) {
    const bool mine = c.thread == me && c.mode != cudaStreamCaptureModeRelaxed;
    const bool global_elsewhere =
        t_mode == cudaStreamCaptureModeGlobal && c.mode == cudaStreamCaptureModeGlobal;
    if (mine || global_elsewhere) {
      return invalidate(c, std::string(call) + " during the capture of stream " + stream_name(s) +
                               ": not permitted unless the thread's capture mode is "
                               "cudaStreamCaptureModeRelaxed");
    }
  }
  return cudaSuccess;
}

const std::string& capture_message() {
  return message();
}

}  // namespace nvemu

using nvemu::device_mutex;
using nvemu::set_error;

cudaError_t cudaStreamBeginCapture(cudaStream_t stream, cudaStreamCaptureMode mode) {
  std::lock_guard<std::recursive_mutex> lock(device_mutex());
  if (stream == nullptr) {  // the legacy stream cannot capture
    nvemu::message() = "cudaStreamBeginCapture on the legacy (null) stream";
    return set_error(cudaErrorStreamCaptureUnsupported);
  }
  if (!nvemu::valid_stream(stream)) return set_error(cudaErrorInvalidResourceHandle);
  if (mode < cudaStreamCaptureModeGlobal || mode > cudaStreamCaptureModeRelaxed) {
    return set_error(cudaErrorInvalidValue);
  }
  if (nvemu::capturing(stream)) return set_error(cudaErrorIllegalState);
  if (cudaError_t e = nvemu::sticky_error()) return set_error(e);
  nvemu::Capture& c = nvemu::captures()[stream];
  c.mode = mode;
  c.thread = std::this_thread::get_id();
  return cudaSuccess;
}

cudaError_t cudaStreamEndCapture(cudaStream_t stream, cudaGraph_t* graph) {
  std::lock_guard<std::recursive_mutex> lock(device_mutex());
  if (graph == nullptr) return set_error(cudaErrorInvalidValue);
  *graph = nullptr;
  if (!nvemu::valid_stream(stream)) return set_error(cudaErrorInvalidResourceHandle);
  auto it = nvemu::captures().find(stream);
  if (stream == nullptr || it == nvemu::captures().end()) return set_error(cudaErrorIllegalState);
  if (it->second.mode != cudaStreamCaptureModeRelaxed &&
      it->second.thread != std::this_thread::get_id()) {
    return set_error(cudaErrorStreamCaptureWrongThread);
  }
  nvemu::Capture c = std::move(it->second);
  nvemu::captures().erase(it);  // the stream leaves capture mode, whatever the outcome
  if (c.invalidated) return set_error(cudaErrorStreamCaptureInvalidated);
  *graph = new CUgraph_st{std::move(c.nodes)};
  nvemu::graphs().insert(*graph);
  return cudaSuccess;
}

cudaError_t cudaStreamIsCapturing(cudaStream_t stream, cudaStreamCaptureStatus* status) {
  std::lock_guard<std::recursive_mutex> lock(device_mutex());
  if (status == nullptr) return set_error(cudaErrorInvalidValue);
  if (!nvemu::valid_stream(stream)) return set_error(cudaErrorInvalidResourceHandle);
  auto it = nvemu::captures().find(stream);
  *status = stream == nullptr || it == nvemu::captures().end() ? cudaStreamCaptureStatusNone
            : it->second.invalidated                           ? cudaStreamCaptureStatusInvalidated
                                                               : cudaStreamCaptureStatusActive;
  return cudaSuccess;
}

cudaError_t cudaThreadExchangeStreamCaptureMode(cudaStreamCaptureMode* mode) {
  if (mode == nullptr || *mode < cudaStreamCaptureModeGlobal ||
      *mode > cudaStreamCaptureModeRelaxed) {
    return set_error(cudaErrorInvalidValue);
  }
  std::swap(*mode, nvemu::t_mode);
  return cudaSuccess;
}

cudaError_t cudaGraphInstantiate(cudaGraphExec_t* exec, cudaGraph_t graph, unsigned long long) {
  std::lock_guard<std::recursive_mutex> lock(device_mutex());
  if (exec == nullptr) return set_error(cudaErrorInvalidValue);
  if (!nvemu::graphs().count(graph)) return set_error(cudaErrorInvalidValue);
  *exec = new CUgraphExec_st{graph->nodes};  // an executable graph is independent of its graph
  nvemu::execs().insert(*exec);
  return cudaSuccess;
}

cudaError_t cudaGraphLaunch(cudaGraphExec_t exec, cudaStream_t stream) {
  std::lock_guard<std::recursive_mutex> lock(device_mutex());
  if (!nvemu::execs().count(exec)) return set_error(cudaErrorInvalidResourceHandle);
  if (!nvemu::valid_stream(stream)) return set_error(cudaErrorInvalidResourceHandle);
  if (nvemu::capturing(stream)) {  // a child-graph node: not emulated
    nvemu::message() = "cudaGraphLaunch into a capturing stream (child graphs are not emulated)";
    return set_error(cudaErrorStreamCaptureUnsupported);
  }
  if (cudaError_t e = nvemu::sticky_error()) return set_error(e);
  for (const nvemu::Node& n : exec->nodes) {
    n.run(stream);
    if (cudaError_t e = nvemu::sticky_error()) return set_error(e);  // a node faulted
  }
  return cudaSuccess;
}

cudaError_t cudaGraphExecDestroy(cudaGraphExec_t exec) {
  std::lock_guard<std::recursive_mutex> lock(device_mutex());
  if (!nvemu::execs().erase(exec)) return set_error(cudaErrorInvalidValue);
  delete exec;
  return cudaSuccess;
}

cudaError_t cudaGraphDestroy(cudaGraph_t graph) {
  std::lock_guard<std::recursive_mutex> lock(device_mutex());
  if (!nvemu::graphs().erase(graph)) return set_error(cudaErrorInvalidValue);
  delete graph;
  return cudaSuccess;
}
