#pragma once
// Variable: a Tensor plus what reverse-mode differentiation needs -- whether it requires a
// gradient, the gradient itself once backward() has reached it, and, for the result of an op,
// the inputs it was computed from and a closure that maps the output's gradient to theirs.
//
// The graph is recorded as ops run (a "tape" in the flashlight sense): every op in
// autograd/ops/ computes its forward with a kernel and hands make_result() the output, its
// inputs and its backward closure. backward() sorts the graph topologically from the root,
// walks it in reverse, and frees it as it goes.
//
// Who writes gradients: leaves (parameters, inputs created with requires_grad) accumulate
// (+=) across backward() calls until zero_grad(); intermediate results get their gradient
// summed over all their uses during one backward() and release it right after use.
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "core/profiler.h"
#include "core/tensor.h"

namespace nextvit {

class Variable;
// Maps d(loss)/d(output) to one gradient per input, in the order of the inputs; an undefined
// Tensor means "no gradient for this input" (it does not require one, or it is not
// differentiable, like integer labels).
using BackwardFn = std::function<std::vector<Tensor>(const Tensor& grad_output)>;

struct VariableImpl {
  Tensor data;
  Tensor grad;
  bool requires_grad = false;
  std::vector<Variable> inputs;  // empty for leaves
  BackwardFn backward;           // empty for leaves
  const char* op = "leaf";
  // The module and op kind the forward ran in, when a profiler was recording: the backward is
  // attributed to them (autograd runs it outside any module).
  profiler::Context profile;
};

class Variable {
 public:
  Variable() = default;
  explicit Variable(Tensor data, bool requires_grad = false);

  bool defined() const { return impl_ != nullptr; }
  const Tensor& data() const { return impl_->data; }
  // Replaces the value (same shape), e.g. when loading weights; keeps the gradient settings.
  void set_data(const Tensor& t) const;
  bool requires_grad() const { return impl_ && impl_->requires_grad; }
  void set_requires_grad(bool r) const { impl_->requires_grad = r; }
  bool is_leaf() const { return !impl_->backward; }
  const char* op() const { return impl_->op; }

  const Tensor& grad() const { return impl_->grad; }
  void set_grad(const Tensor& g) const { impl_->grad = g; }
  void zero_grad() const { impl_->grad = Tensor(); }

  // Back-propagates from this variable. Without an argument it must hold one element
  // (a loss), seeded with 1.
  void backward() const;
  void backward(const Tensor& grad_output) const;
  // backward() that calls leaf_ready(leaf) for each leaf as soon as its gradient is final (every
  // op that uses it has run its backward), while the rest of the graph is still being
  // differentiated: data-parallel training starts summing those gradients across processes then.
  using LeafReady = std::function<void(const Variable& leaf)>;
  void backward_notifying(const LeafReady& leaf_ready) const;

  // A new leaf sharing this variable's data, cut from the graph.
  Variable detach() const { return Variable(impl_->data, false); }

  // Shape conveniences.
  const Shape& shape() const { return impl_->data.shape(); }
  int64_t dim() const { return impl_->data.dim(); }
  int64_t size(int64_t d) const { return impl_->data.size(d); }
  int64_t numel() const { return impl_->data.numel(); }
  Device device() const { return impl_->data.device(); }

  VariableImpl* impl() const { return impl_.get(); }

 private:
  void run_backward(const Tensor& grad_output, const LeafReady* leaf_ready) const;

  std::shared_ptr<VariableImpl> impl_;
};

// Whether ops record the graph. Off inside a NoGradGuard (evaluation, weight updates).
bool grad_enabled();

class NoGradGuard {
 public:
  NoGradGuard();
  ~NoGradGuard();
  NoGradGuard(const NoGradGuard&) = delete;
  NoGradGuard& operator=(const NoGradGuard&) = delete;

 private:
  bool previous_;
};

// Called by every op: wraps the output and, if grad mode is on and any input requires a
// gradient, records the inputs and the backward closure.
Variable make_result(const Tensor& output, std::vector<Variable> inputs, const char* op,
                     BackwardFn backward);

}  // namespace nextvit
