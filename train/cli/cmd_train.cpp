// nextvit train: trains a Next-ViT (default: a small one on Fashion-MNIST on the CPU) and prints
// the test accuracy after every epoch. nextvit eval: scores saved weights on a data set.
#include <omp.h>

#include <cstdio>

#include "train/cli/args.h"
#include "train/cli/commands.h"
#include "train/trainer.h"

namespace nextvit::cli {

int run_train(int argc, char** argv) {
  Args a(argc, argv, 2,
         {{"model", 1},
          {"data", 1},
          {"out", 1},
          {"img", 1},
          {"epochs", 1},
          {"batch", 1},
          {"optimizer", 1},
          {"lr", 1},
          {"min-lr", 1},
          {"warmup-epochs", 1},
          {"weight-decay", 1},
          {"momentum", 1},
          {"label-smoothing", 1},
          {"drop-path", 1},
          {"clip-grad", 1},
          {"ema", 1},
          {"no-flip", 0},
          {"random-resized-crop", 0},
          {"workers", 1},
          {"threads", 1},
          {"device", 1},
          {"seed", 1},
          {"resume", 0},
          {"checkpoint-every", 1},
          {"stop-after-steps", 1},
          {"limit-train", 1},
          {"limit-eval", 1},
          {"log-every", 1},
          {"quiet", 0}},
         "train");
  TrainOptions o;
  o.model = a.str("model", o.model);
  o.data = a.str("data", o.data);
  o.out = a.str("out", o.out);
  o.img = a.integer("img", o.img);
  o.epochs = a.integer("epochs", o.epochs);
  o.batch = a.integer("batch", o.batch);
  o.optimizer = a.str("optimizer", o.optimizer);
  o.lr = a.number("lr", o.lr);
  o.min_lr = a.number("min-lr", o.min_lr);
  o.warmup_epochs = a.number("warmup-epochs", o.warmup_epochs);
  o.weight_decay = a.number("weight-decay", o.weight_decay);
  o.momentum = a.number("momentum", o.momentum);
  o.label_smoothing = a.number("label-smoothing", o.label_smoothing);
  o.drop_path = a.number("drop-path", o.drop_path);
  o.clip_grad = a.number("clip-grad", o.clip_grad);
  o.ema_decay = a.number("ema", o.ema_decay);
  o.flip = !a.has("no-flip");
  o.random_resized_crop = a.has("random-resized-crop");
  o.workers = static_cast<int>(a.integer("workers", o.workers));
  o.device = parse_device(a.str("device", "cpu"));
  o.seed = static_cast<uint64_t>(a.integer("seed", 0));
  o.resume = a.has("resume");
  o.checkpoint_every = a.integer("checkpoint-every", 0);
  o.stop_after_steps = a.integer("stop-after-steps", 0);
  o.limit_train = a.integer("limit-train", 0);
  o.limit_eval = a.integer("limit-eval", 0);
  o.log_every = a.integer("log-every", o.log_every);
  o.quiet = a.has("quiet");
  if (a.has("threads")) omp_set_num_threads(static_cast<int>(a.integer("threads", 1)));

  TrainResult r = train(o);
  if (r.interrupted) {
    std::printf("stopped after step %lld as asked; continue with --resume\n", (long long)r.steps);
    return 0;
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
      evaluate(a.str("model", "nextvit_fmnist"), a.required("weights"),
               a.str("data", "fashion-mnist"), a.integer("img", 28), a.integer("batch", 256),
               parse_device(a.str("device", "cpu")), a.integer("limit", 0));
  std::printf("%lld images: top-1 %.2f%%, mean cross-entropy %.4f\n", (long long)r.images,
              100.0 * r.accuracy, r.loss);
  return 0;
}

}  // namespace nextvit::cli
