// Synchronised BatchNorm: the training forward and backward of batch_norm when the statistics
// are those of the union of every process's batch (data-parallel training with --sync-bn).
//
// Only per-channel vectors cross processes; the (N, C, S) tensors stay where they are and the
// existing kernels do all the work on them:
//   forward   the training kernel gives this process's mean and invstd; from them each process
//             forms n, n * mean and n * (var + mean^2) in double, and one sum over processes
//             gives the global count M, mean and biased variance. The eval kernel, handed those
//             as its "running" statistics, then writes y (and the ReLU when fused).
//   backward  the eval-mode backward kernel gives dx0 = gamma * invstd * dy and this process's
//             sum(dy) and sum(dy * xhat); one sum over processes gives the global ones, and the
//             training formula's remaining term
//               dx = dx0 - gamma * invstd / M * (sum(dy) + xhat * sum(dy * xhat))
//             is an affine map of xhat per channel: the eval forward kernel again, with weight
//             and bias set to its coefficients, added to dx0.
// dweight and dbias stay this process's sums: data-parallel training averages the parameters'
// gradients over processes afterwards, as for every other parameter.
// Derivation: docs/derivations.md#batchnorm-backward-train-mode
#include <algorithm>
#include <cmath>

#include "autograd/op_utils.h"
#include "autograd/ops.h"
#include "autograd/ops/batch_norm_impl.h"
#include "kernels/batch_norm.h"
#include "kernels/dispatch.h"
#include "kernels/elementwise.h"

namespace nextvit::ops::detail {
namespace {

const float* ptr_or_null(const Tensor& t) {
  return t.defined() ? t.data<float>() : nullptr;
}

Tensor per_channel(const std::vector<float>& v, Device dev) {
  return Tensor::from_vector(v, {int64_t(v.size())}).to(dev);
}

struct GlobalStats {
  std::vector<float> mean, var;  // biased variance
  double count = 0;              // M, values per channel over all processes
};

// This process's statistics, summed over processes.
GlobalStats global_statistics(const kernels::BatchNormShape& s, const Tensor& tx, float eps,
                              const BatchNormOptions& options, Device dev) {
  const int64_t C = s.channels;
  Tensor scratch = new_f32(tx.shape(), dev);
  Tensor mean = new_f32({C}, dev), invstd = new_f32({C}, dev);
  NV_DISPATCH(dev, batch_norm_forward_train, s, tx.data<float>(), nullptr, nullptr, 0.0f, eps,
              nullptr, nullptr, false, scratch.data<float>(), mean.data<float>(),
              invstd.data<float>());
  const std::vector<float> m = mean.to_vector(), inv = invstd.to_vector();
  const double n = double(s.count());
  std::vector<double> sums(size_t(2 * C + 1));
  for (int64_t c = 0; c < C; ++c) {
    const double var = std::max(0.0, 1.0 / (double(inv[c]) * inv[c]) - eps);
    sums[c] = n * m[c];
    sums[C + c] = n * (var + double(m[c]) * m[c]);
  }
  sums[2 * C] = n;
  options.sum_across_processes(sums);

  GlobalStats g;
  g.count = sums[2 * C];
  NV_CHECK(g.count > 1,
           "sync batch_norm: expected more than 1 value per channel over all "
           "processes, got {}",
           g.count);
  g.mean.resize(size_t(C));
  g.var.resize(size_t(C));
  for (int64_t c = 0; c < C; ++c) {
    const double mu = sums[c] / g.count;
    g.mean[c] = float(mu);
    g.var[c] = float(std::max(0.0, sums[C + c] / g.count - mu * mu));
  }
  return g;
}

// running = (1 - momentum) * running + momentum * batch, unbiased variance (PyTorch's rule).
void update_running(const Tensor& running_mean, const Tensor& running_var, const GlobalStats& g,
                    float momentum) {
  if (!running_mean.defined()) return;
  std::vector<float> rm = running_mean.to_vector(), rv = running_var.to_vector();
  const double unbias = g.count / (g.count - 1);
  for (size_t c = 0; c < rm.size(); ++c) {
    rm[c] = float((1.0 - momentum) * rm[c] + momentum * double(g.mean[c]));
    rv[c] = float((1.0 - momentum) * rv[c] + momentum * double(g.var[c]) * unbias);
  }
  running_mean.copy_(per_channel(rm, running_mean.device()));
  running_var.copy_(per_channel(rv, running_var.device()));
}

}  // namespace

Variable sync_batch_norm_train(const Variable& x, const Variable& weight, const Variable& bias,
                               const Tensor& tw, const Tensor& tb, const Tensor& running_mean,
                               const Tensor& running_var, const BatchNormOptions& options,
                               bool relu, const char* op) {
  Tensor tx = f32_input(x, op, "x");
  const Device dev = tx.device();
  kernels::BatchNormShape s;
  s.batch = tx.size(0);
  s.channels = tx.size(1);
  s.spatial = tx.numel() / (s.batch * s.channels > 0 ? s.batch * s.channels : 1);
  const int64_t C = s.channels;
  const float eps = options.eps;

  const GlobalStats g = global_statistics(s, tx, eps, options, dev);
  update_running(running_mean, running_var, g, options.momentum);
  const Tensor gmean = per_channel(g.mean, dev), gvar = per_channel(g.var, dev);
  Tensor y = new_f32(tx.shape(), dev);
  Tensor save_mean = new_f32({C}, dev), save_invstd = new_f32({C}, dev);
  NV_DISPATCH(dev, batch_norm_forward_eval, s, tx.data<float>(), ptr_or_null(tw), ptr_or_null(tb),
              gmean.data<float>(), gvar.data<float>(), eps, relu, y.data<float>(),
              save_mean.data<float>(), save_invstd.data<float>());

  const bool need_dx = x.requires_grad(), need_dw = weight.requires_grad(),
             need_db = bias.requires_grad();
  const Tensor y_relu = relu ? y : Tensor();
  const double M = g.count;
  const auto sum_across = options.sum_across_processes;
  return make_result(y, {x, weight, bias}, op, [=](const Tensor& grad) {
    Tensor gc = grad.contiguous();
    Tensor dx = new_f32(tx.shape(), dev), dw = new_f32({C}, dev), db = new_f32({C}, dev);
    NV_DISPATCH(dev, batch_norm_backward, s, tx.data<float>(), gc.data<float>(),
                ptr_or_null(y_relu), ptr_or_null(tw), save_mean.data<float>(),
                save_invstd.data<float>(), /*training=*/false, dx.data<float>(), dw.data<float>(),
                db.data<float>());
    const std::vector<float> lw = dw.to_vector(), lb = db.to_vector();
    const std::vector<float> inv = save_invstd.to_vector();
    const std::vector<float> gamma = tw.defined() ? tw.to_vector() : std::vector<float>(C, 1.0f);
    std::vector<double> sums(size_t(2 * C));
    for (int64_t c = 0; c < C; ++c) sums[c] = lb[c], sums[C + c] = lw[c];
    sum_across(sums);  // every process, even one that needs no dx: the others wait for it
    if (need_dx) {
      std::vector<float> a(static_cast<size_t>(C)), b(static_cast<size_t>(C));
      for (int64_t c = 0; c < C; ++c) {
        const double k = double(gamma[c]) * inv[c] / M;
        a[c] = float(-k * sums[C + c]);
        b[c] = float(-k * sums[c]);
      }
      const Tensor ta = per_channel(a, dev), tb2 = per_channel(b, dev);
      Tensor correction = new_f32(tx.shape(), dev), unused_mean = new_f32({C}, dev),
             unused_invstd = new_f32({C}, dev);
      NV_DISPATCH(dev, batch_norm_forward_eval, s, tx.data<float>(), ta.data<float>(),
                  tb2.data<float>(), gmean.data<float>(), gvar.data<float>(), eps, false,
                  correction.data<float>(), unused_mean.data<float>(), unused_invstd.data<float>());
      NV_DISPATCH(dev, axpy, dx.numel(), 1.0f, correction.data<float>(), dx.data<float>());
    }
    return std::vector<Tensor>{need_dx ? dx : Tensor(), need_dw ? dw : Tensor(),
                               need_db ? db : Tensor()};
  });
}

}  // namespace nextvit::ops::detail
