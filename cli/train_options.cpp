#include "train_options.h"

namespace nextvit::cli {

void declare_train_options(Options& o, TrainValues& v) {
  TrainOptions& t = v.train;
  model_option(o, &t.model);
  o.text("data", &t.data, "fashion-mnist|DIR",
         "Fashion-MNIST ($NEXTVIT_FASHION_MNIST, else Debian's dataset-fashion-mnist), or a "
         "folder with train/ and val/ image folders, one sub-folder per class (JPEG/PNG/BMP)");
  o.text("out", &t.out, "DIR", "where the log, checkpoints and model.safetensors go");
  o.text("init", &t.init, "W.safetensors",
         "start from these weights (ours, official or timm); a classifier of another class count "
         "is re-initialised")
      .shown_default("a random initialisation");
  image_option(o, &t.img, &v.img_width, /*square_only=*/true);
  o.integer("epochs", &t.epochs, "E", 1, 1000000, "passes over the training set");
  o.integer("batch", &t.batch, "B", 1, 1 << 20, "images per step");
  o.choice("optimizer", &t.optimizer, {"adamw", "sgd"}, "the optimizer");
  o.number("lr", &t.lr, "LR", 0, 100, "peak learning rate (after warm-up; cosine decay follows)");
  o.number("min-lr", &t.min_lr, "LR", 0, 100, "learning rate at the end of the cosine decay");
  o.number("warmup-epochs", &t.warmup_epochs, "E", 0, 1000000,
           "epochs of linear warm-up (fractions allowed)");
  o.number("weight-decay", &t.weight_decay, "WD", 0, 100,
           "decoupled weight decay (none on BatchNorm parameters and biases)");
  o.number("momentum", &t.momentum, "M", 0, 1, "SGD momentum");
  o.number("label-smoothing", &t.label_smoothing, "S", 0, 0.999,
           "label smoothing of the cross-entropy");
  o.number("drop-path", &t.drop_path, "P", 0, 0.999, "stochastic depth rate")
      .shown_default("the model configuration's");
  o.number("clip-grad", &t.clip_grad, "NORM", 0, 1e30,
           "clip the global gradient norm to NORM (0: no clipping)");
  o.number("ema", &t.ema_decay, "DECAY", 0, 0.999999999,
           "keep an exponential moving average of the weights, evaluated and saved (0: none)");
  o.flag("no-flip", &t.flip, "no random horizontal flips on Fashion-MNIST", false);
  o.flag("random-resized-crop", &t.random_resized_crop,
         "random resized crops on Fashion-MNIST too (image folders always use them)");
  o.integer("workers", &t.workers, "N", 0, 256,
            "data-loading threads (0: load in the main thread)");
  o.integer("threads", &v.threads, "N", 1, 4096, "CPU threads of the kernels")
      .shown_default("OMP_NUM_THREADS, else one per core");
  device_option(o, &t.device);
  o.integer("seed", &t.seed, "N", 0, std::numeric_limits<int64_t>::max(),
            "seed of the weights' initialisation, shuffling and augmentation");
  o.flag("resume", &t.resume,
         "continue from the checkpoint in --out (same options); on the CPU the result is "
         "bit-identical to an uninterrupted run");
  o.integer("checkpoint-every", &t.checkpoint_every, "STEPS", 0, kMaxCount,
            "also write a checkpoint every STEPS steps (0: at the end of each epoch only)");
  o.integer("stop-after-steps", &t.stop_after_steps, "STEPS", 0, kMaxCount,
            "stop (with a checkpoint) after STEPS steps, as an interruption would (0: never)");
  o.integer("limit-train", &t.limit_train, "N", 0, kMaxCount,
            "train on the first N images only (0: all)");
  o.integer("limit-eval", &t.limit_eval, "N", 0, kMaxCount,
            "evaluate on the first N images only (0: all)");
  o.integer("log-every", &t.log_every, "STEPS", 0, kMaxCount,
            "steps between progress lines (0: none)");
  o.integer("max-image-pixels", &t.max_image_pixels, "N", 1, int64_t(1) << 31,
            "image-folder images with more pixels are skipped with a message");
  o.flag("quiet", &t.quiet, "print only the final result");
}

TrainOptions parse_train_options(int argc, char** argv, int* threads) {
  TrainValues v;
  Options o("nextvit train", "");
  declare_train_options(o, v);
  o.parse(argc, argv, 2);
  *threads = v.threads;
  return v.train;
}

}  // namespace nextvit::cli
