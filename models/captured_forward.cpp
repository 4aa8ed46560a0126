#include "models/captured_forward.h"

#include "autograd/variable.h"
#include "core/cuda_runtime.h"
#include "core/device_guard.h"

namespace nextvit {

CapturedForward::CapturedForward(NextViT& model, const Shape& input_shape) : model_(model) {
  NV_CHECK(!model.is_training(), "captured forward: the model must be in eval mode");
  NV_CHECK(input_shape.size() == 4, "captured forward: the input must be (N, C, H, W), got {}",
           shape_str(input_shape));
  const std::vector<Variable> params = model.parameters();
  NV_CHECK(!params.empty() && params.front().device().is_cuda(),
           "captured forward: the model must be on a CUDA device");
  device_ = params.front().device();
  // The graph is captured on (and belongs to) the model's device: its stream, its allocator's
  // private pool.
  DeviceGuard guard(device_);
  input_ = Tensor::zeros(input_shape, DType::F32, device_);
  NoGradGuard no_grad;
  // Warm-up: whatever the first forward initialises (handles, the cuBLAS/cuDNN workspaces, the
  // device error record) must exist before the capture, which may not make such calls.
  (void)model_.forward(Variable(input_));
  graph_ = cuda_rt::Graph::capture([&] { output_ = model_.forward(Variable(input_)).data(); });
}

const Tensor& CapturedForward::run(const Tensor& x) {
  NV_CHECK(x.shape() == input_.shape(),
           "captured forward: input {} differs from the captured shape {} (capture again for a "
           "new shape)",
           shape_str(x.shape()), shape_str(input_.shape()));
  DeviceGuard guard(device_);
  input_.copy_(x);  // ordered on the stream before the replay
  graph_.replay();
  return output_;
}

}  // namespace nextvit
