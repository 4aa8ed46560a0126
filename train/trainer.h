#pragma once
// The training loop: data, model, loss, optimizer, schedule, evaluation, logs, checkpoints.
//
// One step: the loader's next batch -> forward in train mode -> cross-entropy with label
// smoothing -> backward -> (clip the gradient norm) -> AdamW or SGD step with the scheduled lr
// -> (EMA update). After each epoch: top-1 on the evaluation set, a line in DIR/log.jsonl and a
// checkpoint. A loss or gradient norm that turns NaN/Inf stops training with a clear message
// and leaves the last good checkpoint in place.
#include <cstdint>
#include <memory>
#include <string>

#include <nlohmann/json.hpp>

#include "core/device.h"

namespace nextvit {

struct TrainOptions {
  std::string model = "nextvit_fmnist";  // a named model or a JSON configuration
  std::string data = "fashion-mnist";    // or an image-folder root with train/ and val/ inside
  std::string out = "runs/fmnist";
  std::string init;  // start from these weights (train/init_weights.h); "": random
  int64_t img = 28;
  int64_t epochs = 5;
  int64_t batch = 128;
  std::string optimizer = "adamw";  // adamw | sgd
  double lr = 2e-3;                 // peak learning rate
  double min_lr = 1e-5;
  double warmup_lr = 1e-5;
  double warmup_epochs = 0.2;
  double weight_decay = 0.05;
  double momentum = 0.9;  // SGD
  double label_smoothing = 0.1;
  double drop_path = -1;  // < 0: the model configuration's own
  double clip_grad = 0;   // 0: no clipping
  double ema_decay = 0;   // 0: no EMA
  bool flip = true;       // random horizontal flips
  bool random_resized_crop = false;
  int workers = 2;
  Device device;
  uint64_t seed = 0;
  bool resume = false;
  int64_t checkpoint_every = 0;  // steps; 0: at the end of each epoch only
  int64_t stop_after_steps = 0;  // 0: run to the end (a smaller value simulates an interruption)
  int64_t limit_train = 0;       // use only the first N training images (0: all)
  int64_t limit_eval = 0;        // likewise for evaluation
  int64_t log_every = 50;        // steps between progress lines
  int64_t max_image_pixels = int64_t(1) << 26;  // larger images are skipped (image folders)
  bool quiet = false;

  nlohmann::json to_json() const;
};

struct TrainResult {
  int64_t epochs_done = 0;
  int64_t steps = 0;
  double final_accuracy = 0;     // top-1 on the evaluation set after the last epoch, in [0, 1]
  double images_per_second = 0;  // training throughput over the whole run
  double seconds = 0;
  bool interrupted = false;  // stopped by stop_after_steps or a signal (checkpoint written)
  int signal = 0;            // SIGINT or SIGTERM when a signal stopped it
};

TrainResult train(const TrainOptions& options);

struct EvalResult {
  int64_t images = 0;
  double accuracy = 0;  // top-1 in [0, 1]
  double loss = 0;      // mean cross-entropy (no smoothing)
};

// Scores model weights (a model.safetensors or a checkpoint directory) on a data set. `model`
// ("": none) is needed only for a file that does not describe itself (models/saved_model.h);
// `img` 0 takes the size the file's preprocessing states (else 28).
EvalResult evaluate(const std::string& model, const std::string& weights, const std::string& data,
                    int64_t img, int64_t batch, Device device, int64_t limit = 0);

}  // namespace nextvit
