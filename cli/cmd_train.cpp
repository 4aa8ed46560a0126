// nextvit train: trains a Next-ViT (default: a small one on Fashion-MNIST on the CPU) and prints
// the test accuracy after every epoch. nextvit eval: scores saved weights on a data set.

#include <algorithm>
#include <cstdio>

#include <fmt/format.h>

#include "commands.h"
#include "core/device_guard.h"
#include "core/threads.h"
#include "train/distributed/session.h"
#include "train_options.h"

namespace nextvit::cli {
namespace {

int run_train(const TrainValues& v) {
  TrainOptions o = v.train;
  set_num_threads(v.threads);
  // Under mpirun (or with --distributed): one rank of a data-parallel job. An error on any rank
  // ends them all (the others would wait for it in their next collective).
  DistributedSession session(v.distributed);
  // The run's device is this thread's current one (a no-op on the CPU): what runs outside the
  // ops (the NCCL communicator's stream, synchronisations, profiler events) goes there too.
  DeviceGuard device_guard(o.device);
  o.comm = session.communicator(o.device);
  NV_CHECK(!o.sync_bn || o.comm, "--sync-bn: needs a data-parallel run (mpirun -np N, N > 1)");
  TrainResult r;
  try {
    r = train(o);
  } catch (const std::exception& e) {
    if (o.comm) session.abort(fmt::format("train failed: {}; ending every rank", e.what()));
    throw;
  }
  if (session.rank() != 0) return 0;  // rank 0 reports
  if (o.comm && !r.interrupted) {
    std::printf(
        "data-parallel: %.2f s of %.2f s of training steps blocked in communication (%.1f%%, "
        "rank 0)\n",
        r.communication_seconds, r.train_seconds,
        100.0 * r.communication_seconds / std::max(r.train_seconds, 1e-9));
  }
  if (r.interrupted) {
    std::printf(
        "%s after step %lld; checkpoint written to %s; continue with the same options "
        "and --resume\n",
        r.signal ? "interrupted" : "stopped as asked", (long long)r.steps, o.out.c_str());
    return r.signal ? 128 + r.signal : 0;
  }
  std::printf(
      "\nfinal test accuracy: %.2f%% after %lld epochs (%lld steps), %.0f s, "
      "%.0f training images/s; checkpoint and model.safetensors in %s\n",
      100.0 * r.final_accuracy, (long long)r.epochs_done, (long long)r.steps, r.seconds,
      r.images_per_second, o.out.c_str());
  return 0;
}

struct EvalValues {
  std::string model, weights, data = "fashion-mnist";
  int64_t height = 0, width = 0;  // 0: the size the weights' metadata states, else 28
  int64_t batch = 256, limit = 0;
  Device device;
};

void declare_eval(Options& o, EvalValues& v) {
  o.text("weights", &v.weights, "DIR|W.safetensors",
         "a training run's folder (its model.safetensors) or a weights file")
      .required();
  model_option(o, &v.model)
      .note("(only for weights without metadata; older run folders use their checkpoint's)")
      .shown_default("the file's own, else nextvit_fmnist");
  o.text("data", &v.data, "fashion-mnist|DIR",
         "Fashion-MNIST's test set, or a folder with train/ and val/ image folders (val/ is "
         "scored)");
  image_option(o, &v.height, &v.width, /*square_only=*/true)
      .shown_default("the size the weights' metadata states, else 28");
  o.integer("batch", &v.batch, "B", 1, 1 << 20, "images per forward pass");
  device_option(o, &v.device);
  o.integer("limit", &v.limit, "N", 0, kMaxCount, "score the first N images only (0: all)");
}

int run_eval(const EvalValues& v) {
  EvalResult r = evaluate(v.model, v.weights, v.data, v.height, v.batch, v.device, v.limit);
  std::printf("%lld images: top-1 %.2f%%, mean cross-entropy %.4f\n", (long long)r.images,
              100.0 * r.accuracy, r.loss);
  return 0;
}

}  // namespace

Command train_command() {
  return make_command<TrainValues>(
      "train", "train a Next-ViT (default: a small one on Fashion-MNIST, on the CPU)",
      declare_train_options, run_train);
}

Command eval_command() {
  return make_command<EvalValues>("eval", "top-1 accuracy of saved weights on a data set",
                                  declare_eval, run_eval);
}

}  // namespace nextvit::cli
