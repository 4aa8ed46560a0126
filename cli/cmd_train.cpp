// nextvit train: trains a Next-ViT (default: a small one on Fashion-MNIST on the CPU) and prints
// the test accuracy after every epoch. nextvit eval: scores saved weights on a data set.

#include <cstdio>

#include "commands.h"
#include "core/args.h"
#include "core/threads.h"
#include "models/nextvit_config.h"
#include "train/trainer.h"
#include "train_options.h"

namespace nextvit::cli {

int run_train(int argc, char** argv) {
  int threads = 0;
  const TrainOptions o = parse_train_options(argc, argv, &threads);
  set_num_threads(threads);
  TrainResult r = train(o);
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
  EvalResult r =
      evaluate(a.str("model", ""), a.required("weights"), a.str("data", "fashion-mnist"),
               a.integer("img", 0, 1, kMaxImageSide), a.integer("batch", 256, 1, 1 << 20),
               parse_device(a.str("device", "cpu")), a.integer("limit", 0, 0, kMaxCount));
  std::printf("%lld images: top-1 %.2f%%, mean cross-entropy %.4f\n", (long long)r.images,
              100.0 * r.accuracy, r.loss);
  return 0;
}

}  // namespace nextvit::cli
