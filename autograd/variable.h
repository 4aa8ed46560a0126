#pragma once
// Variable: a Tensor plus what reverse-mode differentiation needs -- whether it requires a
// gradient, the gradient itself once backward() has reached it, and, for the result of an op,
// its Node: the nodes of the inputs it was computed from and a closure that maps the output's
// gradient to theirs.
//
// The graph is recorded as ops run (a "tape" in the flashlight sense): every op in
// autograd/ops/ computes its forward with a kernel and hands make_result() the output, its
// inputs and its backward closure. backward() sorts the graph topologically from the root,
// walks it in reverse, and frees it as it goes. The graph is made of Nodes, which hold no values:
// the memory of a training step's graph is the tensors its closures saved, nothing more.
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

struct VariableImpl;

// The graph part of a variable: what backward() needs, without the value. Ops link nodes, not
// variables, so the graph keeps alive only what backward closures saved: an intermediate value
// no closure saved (a convolution's output that only a ReLU read, say) is freed as soon as the
// caller lets go of it, as in PyTorch, instead of living until backward() reaches it.
struct Node {
  Node() = default;
  Node(const Node&) = delete;
  Node& operator=(const Node&) = delete;
  ~Node();  // iterative: a dropped chain of a million ops must not recurse a million deep

  Tensor grad;
  // One per input of the op (nullptr for an input that needs no gradient); empty for leaves.
  std::vector<std::shared_ptr<Node>> inputs;
  BackwardFn backward;  // empty for leaves
  const char* op = "leaf";
  // The module and op kind the forward ran in, when a profiler was recording: the backward is
  // attributed to them (autograd runs it outside any module).
  profiler::Context profile;
  Shape shape;                       // of the value: every gradient is checked against it
  std::weak_ptr<VariableImpl> leaf;  // a leaf's variable, for backward_notifying()
};

struct VariableImpl {
  Tensor data;
  bool requires_grad = false;
  // Made when the variable first needs one: it requires a gradient, is an op's recorded
  // result, or is given a gradient.
  std::shared_ptr<Node> node;
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
  void set_requires_grad(bool r) const;
  bool is_leaf() const { return !impl_->node || !impl_->node->backward; }
  const char* op() const { return impl_->node ? impl_->node->op : "leaf"; }

  const Tensor& grad() const;
  void set_grad(const Tensor& g) const { node().grad = g; }
  void zero_grad() const {
    if (impl_->node) impl_->node->grad = Tensor();
  }

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
  // This variable's place in the graph (made for it if it has none yet: a leaf's).
  Node& node() const;

 private:
  explicit Variable(std::shared_ptr<VariableImpl> impl) : impl_(std::move(impl)) {}
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
