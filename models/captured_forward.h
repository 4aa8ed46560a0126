#pragma once
// The eval-mode forward of a model on the CUDA device, captured once in a CUDA graph for one
// input shape and replayed (core/cuda_graph.h): at small batch the forward's hundreds of kernel
// launches cost more host time than the GPU spends on them, and a replay issues them all with
// one launch.
//
// How data moves: the graph reads its input from a static device buffer and writes its logits
// into a static device tensor, both made at capture and kept here. run() copies the new input
// into the buffer (on the stream, no wait), replays, and returns the output tensor; reading it
// to the host is the one wait. The model's parameters are read at their addresses, so the model
// must outlive this object and its weights must not be reallocated (loading weights in place
// with copy_ is fine: the replay reads the new values).
#include "core/cuda_graph.h"
#include "core/tensor.h"
#include "models/nextvit.h"

namespace nextvit {

class CapturedForward {
 public:
  // `model` on a CUDA device (cuda:N: the graph belongs to device N), in eval mode; `input_shape`
  // (N, C, H, W). Runs the forward once eagerly first (lazy initialisation: library handles,
  // workspaces, algorithm choices), then captures it. Throws nextvit::Error when the capture fails,
  // with CUDA's or nextvit's reason.
  CapturedForward(NextViT& model, const Shape& input_shape);

  // Logits for `x` (the captured shape, F32, on any device): the static output, overwritten by
  // the next run (clone() it to keep it).
  const Tensor& run(const Tensor& x);
  const Shape& input_shape() const { return input_.shape(); }

 private:
  NextViT& model_;
  Device device_;  // the model's: the graph is captured and replayed there
  Tensor input_;   // the static input buffer
  Tensor output_;  // the static output, allocated in the graph's memory pool
  cuda_rt::Graph graph_;
};

}  // namespace nextvit
