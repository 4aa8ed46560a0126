#include "autograd/variable.h"

#include <unordered_map>
#include <unordered_set>

#include "kernels/dispatch.h"
#include "kernels/elementwise.h"

namespace nextvit {
namespace {

thread_local bool g_grad_enabled = true;

// Sums the gradient g into a node's slot. Who owns what:
//  - an intermediate result's slot is only read (by its own backward closure) and then freed,
//    so the first gradient is taken as it is, without a copy, and a second one is added in
//    place when the slot's storage is referenced by nothing else (the common case: a residual
//    branch's gradient added to the shortcut's), else out of place (a closure may hand the same
//    tensor to two inputs, as add does, or keep it: such a tensor must never be modified);
//  - a leaf's slot (a parameter's gradient) is modified in place later (accumulation over
//    backward calls, clipping, optimizers), so it gets its own copy first.
void accumulate(Node& node, const Tensor& g, const char* op) {
  NV_CHECK(
      g.shape() == node.shape,
      "autograd: the backward of '{}' returned a gradient of shape {} for an input of shape {}", op,
      shape_str(g.shape()), shape_str(node.shape));
  Tensor& acc = node.grad;
  const bool leaf = !node.backward;
  if (!acc.defined()) {
    acc = leaf ? g.clone() : g.contiguous();
    return;
  }
  Tensor gc = g.contiguous();
  if (leaf) {
    NV_DISPATCH(acc.device(), axpy, acc.numel(), 1.0f, gc.data<float>(), acc.data<float>());
  } else if (acc.sole_owner() && acc.is_contiguous() && !acc.shares_storage(gc)) {
    // acc += gc: the same sum, elementwise, without a new buffer to fill.
    NV_DISPATCH(acc.device(), add, acc.numel(), acc.data<float>(), gc.data<float>(),
                acc.data<float>());
  } else {
    Tensor sum = Tensor::empty(acc.shape(), DType::F32, acc.device());
    NV_DISPATCH(acc.device(), add, acc.numel(), acc.data<float>(), gc.data<float>(),
                sum.data<float>());
    acc = sum;
  }
}

// Depth-first post-order from the root over nodes that need a gradient; iterative so a deep
// network (Next-ViT-L has thousands of ops) cannot overflow the stack. The order holds owning
// handles: backward frees each node's inputs as it goes, and a node must stay alive until its
// own turn comes.
std::vector<std::shared_ptr<Node>> topological_order(const std::shared_ptr<Node>& root) {
  std::vector<std::shared_ptr<Node>> order;
  std::unordered_set<Node*> visited{root.get()};
  std::vector<std::pair<std::shared_ptr<Node>, size_t>> stack{{root, 0}};
  while (!stack.empty()) {
    Node* node = stack.back().first.get();
    const size_t next_input = stack.back().second++;
    if (next_input < node->inputs.size()) {
      const std::shared_ptr<Node>& in = node->inputs[next_input];
      if (in != nullptr && visited.insert(in.get()).second) stack.push_back({in, 0});
    } else {
      order.push_back(std::move(stack.back().first));
      stack.pop_back();
    }
  }
  return order;  // inputs before the nodes that use them
}

// The least a backward reads and writes: the output's gradient and the inputs' gradients.
int64_t moved_bytes(const Tensor& grad_output, const std::vector<Tensor>& grads) {
  int64_t bytes = static_cast<int64_t>(grad_output.nbytes());
  for (const Tensor& g : grads) {
    if (g.defined()) bytes += static_cast<int64_t>(g.nbytes());
  }
  return bytes;
}

}  // namespace

// Each node owns its inputs, so letting the inputs go one by one would run the destructors of a
// whole chain nested inside each other. Instead the inputs this node was the last owner of hand
// over their own inputs first, and every destructor runs on a node with none left.
Node::~Node() {
  std::vector<std::shared_ptr<Node>> pending = std::move(inputs);
  while (!pending.empty()) {
    std::shared_ptr<Node> n = std::move(pending.back());
    pending.pop_back();
    if (n != nullptr && n.use_count() == 1) {
      for (std::shared_ptr<Node>& in : n->inputs) pending.push_back(std::move(in));
      n->inputs.clear();
    }
  }
}

Variable::Variable(Tensor data, bool requires_grad) : impl_(std::make_shared<VariableImpl>()) {
  impl_->data = std::move(data);
  set_requires_grad(requires_grad);
}

void Variable::set_requires_grad(bool r) const {
  impl_->requires_grad = r;
  if (r) node();
}

Node& Variable::node() const {
  if (!impl_->node) {
    impl_->node = std::make_shared<Node>();
    impl_->node->shape = impl_->data.shape();
    impl_->node->leaf = impl_;
  }
  return *impl_->node;
}

const Tensor& Variable::grad() const {
  static const Tensor none;
  return impl_->node ? impl_->node->grad : none;
}

void Variable::set_data(const Tensor& t) const {
  NV_CHECK(t.shape() == impl_->data.shape(), "set_data: new value {} has another shape than {}",
           t.str(), impl_->data.str());
  impl_->data = t;
}

void Variable::backward() const {
  NV_CHECK(numel() == 1, "backward() without a gradient needs a one-element result, got {}",
           impl_->data.str());
  backward(Tensor::full(shape(), 1.0f, device()));
}

void Variable::backward(const Tensor& grad_output) const {
  run_backward(grad_output, nullptr);
}

void Variable::backward_notifying(const LeafReady& leaf_ready) const {
  NV_CHECK(numel() == 1, "backward() without a gradient needs a one-element result, got {}",
           impl_->data.str());
  run_backward(Tensor::full(shape(), 1.0f, device()), &leaf_ready);
}

// The order is a post-order from the root, so walking it backwards reaches every node after all
// the nodes that use it: a leaf's gradient is complete when the walk reaches the leaf.
void Variable::run_backward(const Tensor& grad_output, const LeafReady* leaf_ready) const {
  NV_CHECK(requires_grad(),
           "backward(): this result does not require a gradient (no input "
           "required one, or it was computed under NoGradGuard)");
  NV_CHECK(grad_output.shape() == shape(), "backward(): gradient {} does not match result {}",
           grad_output.str(), impl_->data.str());
  NoGradGuard no_grad;  // backward closures run kernels, never record
  profiler::Scope backward_phase({-1, profiler::OpKind::None, profiler::Phase::Backward});
  std::vector<std::shared_ptr<Node>> order = topological_order(impl_->node);
  accumulate(*impl_->node, grad_output, op());
  for (size_t i = order.size(); i-- > 0;) {
    Node* node = order[i].get();
    if (!node->backward) {  // a leaf: its gradient stays for the optimizer
      if (leaf_ready == nullptr || !node->grad.defined()) continue;
      // A leaf whose variable is gone (a caller's temporary input) has nobody to tell.
      if (std::shared_ptr<VariableImpl> leaf = node->leaf.lock()) (*leaf_ready)(Variable(leaf));
      continue;
    }
    // The node's backward, the summing of its gradients and the freeing of its saved tensors
    // count for the module and op kind of its forward.
    profiler::Scope scope({node->profile.module, node->profile.kind, profiler::Phase::Backward});
    if (node->grad.defined()) {
      std::vector<Tensor> grads = node->backward(node->grad);
      if (profiler::enabled()) profiler::add_bytes(moved_bytes(node->grad, grads));
      NV_CHECK(grads.size() == node->inputs.size(),
               "autograd: backward of '{}' returned {} gradients for {} inputs", node->op,
               grads.size(), node->inputs.size());
      for (size_t k = 0; k < grads.size(); ++k) {
        Node* in = node->inputs[k].get();
        if (in == nullptr || !grads[k].defined()) continue;
        accumulate(*in, grads[k], node->op);
      }
    }
    // Free this node's part of the graph: its gradient, saved tensors and inputs.
    node->grad = Tensor();
    node->backward = nullptr;
    node->inputs.clear();
  }
}

bool grad_enabled() {
  return g_grad_enabled;
}

NoGradGuard::NoGradGuard() : previous_(g_grad_enabled) {
  g_grad_enabled = false;
}
NoGradGuard::~NoGradGuard() {
  g_grad_enabled = previous_;
}

Variable make_result(const Tensor& output, std::vector<Variable> inputs, const char* op,
                     BackwardFn backward) {
  if (profiler::enabled()) {
    int64_t bytes = static_cast<int64_t>(output.nbytes());
    for (const Variable& v : inputs) {
      if (v.defined()) bytes += static_cast<int64_t>(v.data().nbytes());
    }
    profiler::add_bytes(bytes);
  }
  Variable out(output, false);
  if (!g_grad_enabled) return out;
  bool any = false;
  for (const Variable& v : inputs) any = any || v.requires_grad();
  if (!any) return out;
  out.impl()->requires_grad = true;
  Node& node = out.node();
  node.leaf.reset();  // a result, not a leaf
  node.inputs.reserve(inputs.size());
  for (const Variable& v : inputs) {
    node.inputs.push_back(v.requires_grad() ? v.impl()->node : nullptr);
  }
  node.backward = std::move(backward);
  node.op = op;
  if (profiler::enabled()) node.profile = profiler::current();
  return out;
}

}  // namespace nextvit
