#include "train/train_step.h"

#include "autograd/ops.h"
#include "train/optim/grad_clip.h"

namespace nextvit {

void StepSums::add(const Tensor& loss, const Tensor& grad_norm) {
  const Device dev = loss.device();
  const Tensor norm = grad_norm.defined() && grad_norm.device() == dev
                          ? grad_norm
                          : Tensor::zeros({}, DType::F32, dev);  // no clipping (or no gradient)
  // Stays on the device: a concatenation and an addition, no read-back.
  Variable step = ops::concat({Variable(loss.reshape({1})), Variable(norm.reshape({1}))}, 0);
  sums_ = sums_.defined() ? ops::add(Variable(sums_), step).data() : step.data().clone();
  ++steps_;
}

StepSums::Totals StepSums::take() {
  Totals t;
  t.steps = steps_;
  if (steps_ > 0) {
    const std::vector<float> v = sums_.to_vector();  // the one host wait
    t.loss_sum = v[0];
    t.grad_norm_sum = v[1];
  }
  sums_ = Tensor();
  steps_ = 0;
  return t;
}

void train_step(const StepSetup& s, const data::Batch& batch, StepSums& sums) {
  Variable logits = s.model->forward(Variable(batch.images.to(s.device)));
  Variable loss = ops::cross_entropy(logits, batch.labels.to(s.device), s.label_smoothing);
  s.optimizer->zero_grad();
  if (s.data_parallel != nullptr) {
    s.data_parallel->backward(loss);  // gradients averaged over the ranks
  } else {
    loss.backward();
  }
  Tensor norm;
  if (s.clip_grad > 0) norm = clip_grad_norm_on_device(s.params, s.clip_grad);
  s.optimizer->step();
  if (s.ema) s.ema->update(*s.model);
  sums.add(loss.data(), norm);
}

}  // namespace nextvit
