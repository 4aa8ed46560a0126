// cuda_rt::Graph (core/cuda_graph.h) on the CUDA runtime's stream capture of the current
// device's stream: capture in thread-local mode (this thread may not make unsafe calls such as
// cudaMalloc unless it says so: the caching allocator does, for its private pool), instantiate,
// launch, destroy.
#include <atomic>
#include <string>

#include "core/cuda/caching_allocator.h"
#include "core/cuda/check.h"
#include "core/cuda/device_errors.h"
#include "core/cuda/stream.h"
#include "core/cuda_graph.h"
#include "core/device_guard.h"

namespace nextvit::cuda_rt {

namespace {
std::atomic<bool> g_capturing{false};
std::atomic<int> g_capture_device{-1};  // the device whose stream the capture records

// Ends the capture on `stream` whatever happened: the graph, or null when CUDA invalidated it.
cudaGraph_t end_capture(cudaStream_t stream, cudaError_t* err) {
  cudaGraph_t graph = nullptr;
  *err = cudaStreamEndCapture(stream, &graph);
  if (*err != cudaSuccess) (void)cudaGetLastError();
  return graph;
}
}  // namespace

// A graph belongs to the device current at its capture: its stream, its allocator's private
// pool. Replay and destruction make that device current again.
struct Graph::State {
  cudaGraphExec_t exec = nullptr;
  int pool = 0;  // the caching allocator's private pool of this graph
  int device = 0;
};

Graph::Graph() = default;
Graph::Graph(Graph&& other) noexcept = default;
Graph& Graph::operator=(Graph&& other) noexcept {
  Graph old(std::move(*this));  // destroyed (graph and pool released) at the end of scope
  state_ = std::move(other.state_);
  return *this;
}

Graph::~Graph() {
  if (!state_) return;
  DeviceGuard guard(Device::cuda(state_->device));
  (void)cudaGraphExecDestroy(state_->exec);  // at teardown: nothing to report
  // Work already launched from the graph is ordered before anything later on the stream, so
  // the pool's blocks may go back to the cache now.
  release_capture_pool(state_->pool);
}

Graph Graph::capture(const std::function<void()>& work) {
  NV_CHECK(!g_capturing.exchange(true),
           "CUDA graph capture: a capture is already running "
           "(captures do not nest)");
  g_capture_device = current_device();
  cudaStream_t stream = current_stream();
  (void)device_index_error();  // made at first use, with cudaMalloc: not during the capture
  const cudaError_t begun = cudaStreamBeginCapture(stream, cudaStreamCaptureModeThreadLocal);
  if (begun != cudaSuccess) {
    g_capturing = false;
    g_capture_device = -1;
    NV_CUDA_CHECK(begun, "beginning a CUDA graph capture");
  }
  const int pool = begin_capture_pool();
  std::string failure;
  try {
    work();
  } catch (const std::exception& e) {
    failure = e.what();
  }
  end_capture_pool();
  g_capturing = false;
  g_capture_device = -1;
  cudaError_t ended = cudaSuccess;
  cudaGraph_t graph = end_capture(stream, &ended);
  if (failure.empty() && ended != cudaSuccess) {
    failure = fmt::format("CUDA error {} ({}) in cudaStreamEndCapture", int(ended),
                          cudaGetErrorString(ended));
  }
  cudaGraphExec_t exec = nullptr;
  if (failure.empty()) {
    const cudaError_t e = cudaGraphInstantiate(&exec, graph, 0);
    if (e != cudaSuccess) {
      (void)cudaGetLastError();
      failure =
          fmt::format("CUDA error {} ({}) in cudaGraphInstantiate", int(e), cudaGetErrorString(e));
    }
  }
  if (graph != nullptr) (void)cudaGraphDestroy(graph);  // the executable graph is independent
  if (!failure.empty()) {
    release_capture_pool(pool);
    NV_FAIL("CUDA graph capture failed: {}", failure);
  }
  Graph g;
  g.state_ = std::make_unique<State>();
  g.state_->exec = exec;
  g.state_->pool = pool;
  g.state_->device = current_device();
  return g;
}

void Graph::replay() const {
  NV_CHECK(state_ != nullptr, "replay of an empty CUDA graph");
  DeviceGuard guard(Device::cuda(state_->device));
  NV_CUDA_CHECK(cudaGraphLaunch(state_->exec, current_stream()), "launching a CUDA graph");
}

bool capturing() {
  return g_capturing.load();
}

int capture_device() {
  return g_capture_device.load();
}

}  // namespace nextvit::cuda_rt
