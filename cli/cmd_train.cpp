// nextvit train: trains a Next-ViT (default: a small one on Fashion-MNIST on the CPU) and prints
// the test accuracy after every epoch. nextvit eval: scores saved weights on a data set.

#include <algorithm>
#include <cstdio>

#include "commands.h"
#include "core/args.h"
#include "core/threads.h"
#include "models/nextvit_config.h"
#include "train/distributed/session.h"
#include "train/trainer.h"
#include "train_options.h"

namespace nextvit::cli {

int run_train(int argc, char** argv) {
  int threads = 0;
  bool distributed = false;
  TrainOptions o = parse_train_options(argc, argv, &threads, &distributed);
  set_num_threads(threads);
  // Under mpirun (or with --distributed): one rank of a data-parallel job. An error on any rank
  // ends them all (the others would wait for it in their next collective).
  DistributedSession session(distributed);
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
        "data-parallel: %.2f s of %.2f s of training steps blocked in communication (%.1f%%, rank "
        "0)\n",
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

int run_eval(int argc, char** argv) {
  Args a(argc, argv, 2,
         {{"model", 1},
          {"weights", 1},
          {"data", 1},
          {"img", 1},
          {"batch", 1},
          {"device", 1},
          {"limit", 1}},
         "eval");
  EvalResult r = evaluate(a.str("model", "nextvit_fmnist"), a.required("weights"),
                          a.str("data", "fashion-mnist"), a.integer("img", 28, 1, kMaxImageSide),
                          a.integer("batch", 256, 1, 1 << 20), parse_device(a.str("device", "cpu")),
                          a.integer("limit", 0, 0, kMaxCount));
  std::printf("%lld images: top-1 %.2f%%, mean cross-entropy %.4f\n", (long long)r.images,
              100.0 * r.accuracy, r.loss);
  return 0;
}

}  // namespace nextvit::cli
