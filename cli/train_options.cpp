#include "train_options.h"

#include "core/args.h"
#include "models/nextvit_config.h"

namespace nextvit::cli {

TrainOptions parse_train_options(int argc, char** argv, int* threads, bool* distributed) {
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
          {"max-image-pixels", 1},
          {"quiet", 0},
          {"sync-bn", 0},
          {"distributed", 0}},
         "train");
  TrainOptions o;
  o.model = a.str("model", o.model);
  o.data = a.str("data", o.data);
  o.out = a.str("out", o.out);
  o.img = a.integer("img", o.img, 1, kMaxImageSide);
  o.epochs = a.integer("epochs", o.epochs, 1, 1000000);
  o.batch = a.integer("batch", o.batch, 1, 1 << 20);
  o.optimizer = a.str("optimizer", o.optimizer);
  o.lr = a.number("lr", o.lr, 0, 100);
  o.min_lr = a.number("min-lr", o.min_lr, 0, 100);
  o.warmup_epochs = a.number("warmup-epochs", o.warmup_epochs, 0, 1000000);
  o.weight_decay = a.number("weight-decay", o.weight_decay, 0, 100);
  o.momentum = a.number("momentum", o.momentum, 0, 1);
  o.label_smoothing = a.number("label-smoothing", o.label_smoothing, 0, 0.999);
  o.drop_path = a.number("drop-path", o.drop_path, 0, 0.999);
  o.clip_grad = a.number("clip-grad", o.clip_grad, 0, 1e30);
  o.ema_decay = a.number("ema", o.ema_decay, 0, 0.999999999);
  o.flip = !a.has("no-flip");
  o.random_resized_crop = a.has("random-resized-crop");
  o.workers = static_cast<int>(a.integer("workers", o.workers, 0, 256));
  o.device = parse_device(a.str("device", "cpu"));
  o.seed = static_cast<uint64_t>(a.integer("seed", 0, 0, std::numeric_limits<int64_t>::max()));
  o.resume = a.has("resume");
  o.checkpoint_every = a.integer("checkpoint-every", 0, 0, kMaxCount);
  o.stop_after_steps = a.integer("stop-after-steps", 0, 0, kMaxCount);
  o.limit_train = a.integer("limit-train", 0, 0, kMaxCount);
  o.limit_eval = a.integer("limit-eval", 0, 0, kMaxCount);
  o.log_every = a.integer("log-every", o.log_every, 0, kMaxCount);
  o.max_image_pixels = a.integer("max-image-pixels", o.max_image_pixels, 1, int64_t(1) << 31);
  o.quiet = a.has("quiet");
  o.sync_bn = a.has("sync-bn");
  if (distributed != nullptr) *distributed = a.has("distributed");
  *threads = static_cast<int>(a.integer("threads", 0, 1, 4096));
  return o;
}

}  // namespace nextvit::cli
