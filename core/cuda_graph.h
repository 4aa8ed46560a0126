#pragma once
// CUDA graphs behind a CUDA-free interface (core/cuda/graph.cpp; core/no_cuda.cpp without
// CUDA): the work a function issues to the stream, captured once and replayed with one launch.
// A replay re-issues the same kernels with the same arguments: the same device addresses, the
// same shapes, the same host scalars. So everything the captured work touches must stay alive
// and at its address while the graph exists, and new data goes in by copying into the buffers
// the capture read (models/captured_forward.h does this for a model's forward).
//
// Memory: blocks the caching allocator hands out during the capture come from a private pool
// (core/cuda/caching_allocator.h) that belongs to the graph: a replay writes them again, so no
// other work may get them while the graph exists. Blocks allocated before the capture and freed
// during it are likewise held back until the graph is destroyed (a replay still uses them).
// Destroying the graph returns all of them to the ordinary cache.
//
// The captured work must not make the host wait for the device (a read to the host,
// synchronize()): a graph cannot contain a host wait. Such a call throws during capture, and
// the capture fails with that message (cuda_rt::host_synchronizations() counts no wait).
#include <functional>
#include <memory>

namespace nextvit::cuda_rt {

class Graph {
 public:
  Graph();
  ~Graph();
  Graph(Graph&& other) noexcept;
  Graph& operator=(Graph&& other) noexcept;
  Graph(const Graph&) = delete;
  Graph& operator=(const Graph&) = delete;

  // Runs `work` with the current device's stream in capture mode (nothing runs on the device)
  // and returns the graph of what it issued. The graph belongs to that device: its private pool
  // comes from the device's allocator, replay runs there, and work for another device during the
  // capture is refused. Throws nextvit::Error when `work` throws or CUDA refuses the capture (the
  // message says why); the stream is then out of capture mode again.
  static Graph capture(const std::function<void()>& work);
  // Launches the graph on the stream; returns without waiting for it.
  void replay() const;
  bool empty() const { return state_ == nullptr; }

 private:
  struct State;
  std::unique_ptr<State> state_;
};

// True while Graph::capture runs its work (host waits refuse themselves then).
bool capturing();

}  // namespace nextvit::cuda_rt
