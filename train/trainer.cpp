#include "train/trainer.h"

#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <optional>

#include "autograd/ops.h"
#include "core/threads.h"
#include "models/memory_estimate.h"
#include "models/saved_model.h"
#include "models/weights.h"
#include "train/checkpoint.h"
#include "train/data/fashion_mnist.h"
#include "train/data/image_folder.h"
#include "train/data/preprocess.h"
#include "train/data/transforms.h"
#include "train/init_weights.h"
#include "train/interrupt.h"
#include "train/optim/adamw.h"
#include "train/optim/grad_clip.h"
#include "train/optim/schedule.h"
#include "train/optim/sgd.h"
#include "train/progress_line.h"

namespace nextvit {
namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

namespace {

// The first `limit` samples of a data set (for quick runs and tests).
class Subset final : public data::Dataset {
 public:
  Subset(std::shared_ptr<const data::Dataset> base, int64_t limit)
      : base_(std::move(base)), size_(std::min(limit, base_->size())) {}
  int64_t size() const override { return size_; }
  int64_t num_classes() const override { return base_->num_classes(); }
  const std::vector<std::string>& class_names() const override { return base_->class_names(); }
  int64_t get(int64_t i, data::Image& out) const override { return base_->get(i, out); }
  std::string describe() const override {
    return base_->describe() + fmt::format(" (first {} used)", size_);
  }

 private:
  std::shared_ptr<const data::Dataset> base_;
  int64_t size_;
};

struct DataSets {
  std::shared_ptr<const data::Dataset> train, eval;
  std::shared_ptr<const data::Pipeline> train_pipeline, eval_pipeline;
  Preprocess eval_preprocess;  // eval_pipeline as data, stored in model.safetensors
};

std::shared_ptr<const data::Dataset> limited(std::shared_ptr<const data::Dataset> d,
                                             int64_t limit) {
  if (limit > 0 && limit < d->size()) return std::make_shared<Subset>(d, limit);
  return d;
}

// Fashion-MNIST: gray 28x28, resized only when another size is asked for, flipped in training,
// repeated to 3 channels and normalised with the training set's statistics. Image folders: the
// usual ImageNet recipes.
DataSets make_data(const std::string& data, int64_t img, bool flip, bool rrc, int64_t limit_train,
                   int64_t limit_eval, int64_t max_pixels = data::kDefaultMaxImagePixels) {
  DataSets d;
  const int size = static_cast<int>(img);
  if (data == "fashion-mnist") {
    d.train = std::make_shared<data::FashionMnist>(data::Split::Train);
    d.eval = std::make_shared<data::FashionMnist>(data::Split::Test);
    const std::vector<float> mean{data::FashionMnist::kMean}, std{data::FashionMnist::kStd};
    auto train = std::make_shared<data::Pipeline>();
    if (rrc) {
      train->add<data::RandomResizedCrop>(size, size, std::array<float, 2>{0.35f, 1.0f});
    } else if (size != 28) {
      train->add<data::Resize>(size, size);
    }
    if (flip) train->add<data::RandomHorizontalFlip>(0.5f);
    train->add<data::GrayToRgb>().normalize(mean, std);
    d.train_pipeline = train;
    d.eval_preprocess = data::fashion_mnist_preprocess(img);
  } else {
    const fs::path root(data);
    NV_CHECK(fs::is_directory(root / "train") && fs::is_directory(root / "val"),
             "--data {}: expected 'fashion-mnist' or a folder with train/ and val/ image folders",
             data);
    d.train = std::make_shared<data::ImageFolder>((root / "train").string(), true, max_pixels);
    d.eval = std::make_shared<data::ImageFolder>((root / "val").string(), true, max_pixels);
    // A folder that cannot teach anything is refused: with one class every prediction is
    // right, and val classes named otherwise than train's would score against wrong labels.
    NV_CHECK(d.train->num_classes() >= 2,
             "--data {}: {} has {} class folder(s); classification needs at least 2", data,
             (root / "train").string(), d.train->num_classes());
    NV_CHECK(d.eval->class_names() == d.train->class_names(),
             "--data {}: the class folders of {} ({}) differ from those of {} ({})", data,
             (root / "val").string(), fmt::join(d.eval->class_names(), ", "),
             (root / "train").string(), fmt::join(d.train->class_names(), ", "));
    const std::vector<float> mean(data::kImagenetMean.begin(), data::kImagenetMean.end());
    const std::vector<float> std(data::kImagenetStd.begin(), data::kImagenetStd.end());
    d.train_pipeline = std::make_shared<data::Pipeline>(data::train_pipeline(size, mean, std));
    d.eval_preprocess = data::imagenet_preprocess(img);
  }
  d.eval_pipeline = std::make_shared<data::Pipeline>(data::eval_pipeline(d.eval_preprocess));
  d.train = limited(d.train, limit_train);
  d.eval = limited(d.eval, limit_eval);
  return d;
}

NextViTConfig make_config(const std::string& model, int64_t classes, double drop_path) {
  NextViTConfig c = NextViTConfig::from_name(model);
  c.num_classes = classes;
  if (drop_path >= 0) c.drop_path = static_cast<float>(drop_path);
  c.validate();
  return c;
}

EvalResult run_eval(NextViT& model, data::DataLoader& loader, Device device) {
  model.eval();
  NoGradGuard no_grad;
  EvalResult r;
  double loss_sum = 0;
  int64_t correct = 0;
  data::Batch batch;
  while (loader.next(batch)) {
    Variable logits = model.forward(Variable(batch.images.to(device)));
    Tensor labels = batch.labels.to(device);
    loss_sum += ops::cross_entropy(logits, labels, 0.0f).data().item() * batch.labels.numel();
    std::vector<float> l = logits.data().to_vector();
    std::vector<int64_t> y = batch.labels.to_vector_i64();
    const int64_t k = logits.size(1);
    for (size_t i = 0; i < y.size(); ++i) {
      int64_t best = 0;
      for (int64_t c = 1; c < k; ++c) {
        if (l[i * k + c] > l[i * k + best]) best = c;
      }
      correct += best == y[i];
    }
    r.images += static_cast<int64_t>(y.size());
  }
  r.accuracy = r.images ? double(correct) / r.images : 0.0;
  r.loss = r.images ? loss_sum / r.images : 0.0;
  return r;
}

// A checkpoint that cannot be written (a full disk) must not lose the previous one: every file
// is written to a temporary name first, so the old files are intact; say so.
void save_checkpoint_or_explain(const std::string& out, const NextViT& model,
                                const Optimizer& optimizer, const ModelEma* ema,
                                const CheckpointInfo& info) {
  try {
    save_checkpoint(out, model, optimizer, ema, info);
  } catch (const std::exception& e) {
    NV_FAIL(
        "cannot write the checkpoint at step {} ({}); the previous checkpoint in {}, if any, "
        "is intact",
        info.step, e.what(), out);
  }
}

// Refuses an output folder that cannot be created or written before any work is done, rather
// than failing at the first checkpoint after an epoch of training.
void check_output_writable(const std::string& out) {
  std::error_code ec;
  fs::create_directories(out, ec);
  NV_CHECK(!ec && fs::is_directory(out), "--out {}: cannot create the output folder ({})", out,
           ec ? ec.message() : "not a directory");
  const fs::path probe = fs::path(out) / ".nextvit-write-test";
  {
    std::ofstream f(probe);
    f << "x";
    f.flush();
    NV_CHECK(f.good(), "--out {}: the output folder is not writable", out);
  }
  fs::remove(probe, ec);
}

std::string format_eta(double seconds) {
  if (!std::isfinite(seconds) || seconds < 0) return "?";
  const int64_t s = static_cast<int64_t>(seconds + 0.5);
  return s >= 60 ? fmt::format("{}m{:02d}s", s / 60, s % 60) : fmt::format("{}s", s);
}

// The fields of `now` whose value differs from `saved`'s, a field missing from `saved` (written
// before the field existed) counting as its default.
std::vector<std::string> changed_fields(const nlohmann::json& saved, const nlohmann::json& now,
                                        const nlohmann::json& defaults) {
  std::vector<std::string> changed;
  for (const auto& [key, value] : now.items()) {
    const nlohmann::json& before =
        saved.contains(key) ? saved.at(key) : (defaults.contains(key) ? defaults.at(key) : value);
    if (before != value)
      changed.push_back(fmt::format("{} ({} then, {} now)", key, before.dump(), value.dump()));
  }
  return changed;
}

// --resume continues only the run the checkpoint belongs to. Configurations and options are
// compared as values with defaults filled in, not as JSON text, so that a field added to
// either since the checkpoint was written does not make it un-resumable.
void check_resumable(const CheckpointInfo& saved, const NextViTConfig& config,
                     const TrainOptions& o) {
  const nlohmann::json saved_config = NextViTConfig::from_json(saved.config).to_json();
  std::vector<std::string> changed =
      changed_fields(saved_config, config.to_json(), NextViTConfig().to_json());
  for (std::string& c : changed) c = "model " + c;
  for (std::string& c : changed_fields(saved.options, o.to_json(), TrainOptions().to_json())) {
    changed.push_back(std::move(c));
  }
  NV_CHECK(changed.empty(),
           "--resume: the checkpoint in {} was made with other settings: {}; use another --out "
           "or the same settings",
           o.out, fmt::join(changed, ", "));
}

}  // namespace

nlohmann::json TrainOptions::to_json() const {
  return {{"model", model},
          {"data", data},
          {"img", img},
          {"epochs", epochs},
          {"batch", batch},
          {"optimizer", optimizer},
          {"lr", lr},
          {"min_lr", min_lr},
          {"warmup_lr", warmup_lr},
          {"warmup_epochs", warmup_epochs},
          {"weight_decay", weight_decay},
          {"momentum", momentum},
          {"label_smoothing", label_smoothing},
          {"drop_path", drop_path},
          {"clip_grad", clip_grad},
          {"ema_decay", ema_decay},
          {"flip", flip},
          {"random_resized_crop", random_resized_crop},
          {"seed", seed},
          {"limit_train", limit_train},
          {"limit_eval", limit_eval},
          {"init", init}};
}

TrainResult train(const TrainOptions& o) {
  NV_CHECK(o.epochs > 0 && o.batch > 0 && o.img > 0, "train: epochs, batch and img must be > 0");
  NV_CHECK(o.lr > 0, "train: --lr must be positive");
  NV_CHECK(o.optimizer == "adamw" || o.optimizer == "sgd",
           "train: --optimizer must be adamw or "
           "sgd, got '{}'",
           o.optimizer);
  // Progress lines redraw in place on a terminal and stay one a line in a file (progress_line.h).
  ProgressLine printer = ProgressLine::for_stdout();
  auto say = [&](const std::string& s) {
    if (!o.quiet) printer.line(s);
  };

  check_output_writable(o.out);
  DataSets data = make_data(o.data, o.img, o.flip, o.random_resized_crop, o.limit_train,
                            o.limit_eval, o.max_image_pixels);
  NextViTConfig config = make_config(o.model, data.train->num_classes(), o.drop_path);
  std::optional<InitWeights> init;
  if (!o.init.empty()) {
    init = read_init_weights(o.init);
    config = init_config(*init, config, o.model != TrainOptions().model, o.drop_path >= 0);
  }
  config.validate_input(o.img, o.img);
  check_memory_fits(config, o.batch, o.img, o.img, true, "train");
  NextViT model(config, o.seed);
  if (init && !(o.resume && checkpoint_exists(o.out))) say(apply_init_weights(model, *init));
  init.reset();  // the file's tensors are no longer needed
  model.to(o.device);

  data::LoaderOptions train_opts;
  train_opts.batch_size = o.batch;
  train_opts.seed = o.seed;
  train_opts.workers = o.workers;
  data::DataLoader train_loader(data.train, data.train_pipeline, train_opts);
  NV_CHECK(train_loader.batches_per_epoch() > 0, "train: {} training images make no batch of {}",
           data.train->size(), o.batch);
  data::LoaderOptions eval_opts = train_opts;
  eval_opts.shuffle = false;
  eval_opts.drop_last = false;
  eval_opts.batch_size = std::max<int64_t>(o.batch, 256);
  data::DataLoader eval_loader(data.eval, data.eval_pipeline, eval_opts);

  const int64_t steps_per_epoch = train_loader.batches_per_epoch();
  const int64_t total_steps = steps_per_epoch * o.epochs;
  std::unique_ptr<Optimizer> optimizer;
  auto groups = weight_decay_groups(model, o.weight_decay);
  if (o.optimizer == "adamw") {
    AdamWOptions a;
    a.lr = o.lr;
    optimizer = std::make_unique<AdamW>(groups, a);
  } else {
    SgdOptions s;
    s.lr = o.lr;
    s.momentum = o.momentum;
    optimizer = std::make_unique<Sgd>(groups, s);
  }
  CosineScheduleOptions sched;
  sched.base_lr = o.lr;
  sched.min_lr = o.min_lr;
  sched.warmup_lr = o.warmup_lr;
  sched.warmup_steps = static_cast<int64_t>(o.warmup_epochs * steps_per_epoch);
  sched.total_steps = total_steps;
  CosineSchedule schedule(sched);
  std::unique_ptr<ModelEma> ema;
  if (o.ema_decay > 0) ema = std::make_unique<ModelEma>(model, o.ema_decay);

  CheckpointInfo info;
  info.config = config.to_json();
  info.options = o.to_json();
  if (o.resume && checkpoint_exists(o.out)) {
    check_resumable(read_checkpoint_info(o.out), config, o);
    info = load_checkpoint(o.out, model, *optimizer, ema.get());
    train_loader.seek(info.loader);
    say(fmt::format("resumed from {}: epoch {}, step {}", o.out, info.loader.epoch, info.step));
  }
  // model.safetensors describes itself: configuration, eval transform, class names.
  ModelMetadata metadata;
  metadata.config = config;
  metadata.preprocess = data.eval_preprocess;
  metadata.classes = data.train->class_names();
  info.model_metadata = metadata_entries(metadata);

  say(fmt::format("model {}: {:.3f} M parameters, {} on {}", config.name,
                  model.parameter_count() / 1e6, o.img, o.device.str()));
  say(fmt::format("train: {} | {}", data.train->describe(), data.train_pipeline->describe()));
  say(fmt::format("eval:  {}", data.eval->describe()));
  say(fmt::format(
      "{} epochs x {} steps of {}, {} lr {:.2g} (cosine, {} warm-up steps), "
      "{} threads",
      o.epochs, steps_per_epoch, o.batch, o.optimizer, o.lr, sched.warmup_steps, num_threads()));

  fs::create_directories(o.out);
  std::ofstream log(fs::path(o.out) / "log.jsonl", std::ios::app);
  const std::vector<Variable> params = model.parameters();
  TrainResult result;
  const auto run_start = Clock::now();
  double train_seconds = 0;
  int64_t trained_images = 0;

  InterruptGuard interrupt_guard;
  int64_t step = info.step;
  for (int64_t epoch = train_loader.position().epoch; epoch < o.epochs; ++epoch) {
    model.train();
    double loss_sum = 0;
    int64_t loss_count = 0;
    auto epoch_start = Clock::now();
    int64_t epoch_images = 0;
    data::Batch batch;
    while (train_loader.next(batch)) {
      const auto t0 = Clock::now();
      const double lr = schedule.lr_at(step);
      optimizer->set_lr(lr);
      Variable logits = model.forward(Variable(batch.images.to(o.device)));
      Variable loss = ops::cross_entropy(logits, batch.labels.to(o.device),
                                         static_cast<float>(o.label_smoothing));
      const float loss_value = loss.data().item();
      NV_CHECK(std::isfinite(loss_value),
               "training diverged: the loss is {} at step {} (epoch {}, batch {}); the last good "
               "checkpoint is in {} (try a lower --lr or --clip-grad)",
               loss_value, step, epoch + 1, batch.index, o.out);
      optimizer->zero_grad();
      loss.backward();
      if (o.clip_grad > 0) {
        const float norm = clip_grad_norm(params, static_cast<float>(o.clip_grad));
        check_grad_norm_finite(norm, step);
      }
      optimizer->step();
      if (ema) ema->update(model);
      ++step;
      loss_sum += loss_value;
      ++loss_count;
      const int64_t n = batch.labels.numel();
      epoch_images += n;
      trained_images += n;
      train_seconds += std::chrono::duration<double>(Clock::now() - t0).count();

      const int64_t in_epoch = train_loader.position().batch;
      if (o.log_every > 0 && (in_epoch % o.log_every == 0 || in_epoch == steps_per_epoch)) {
        const double elapsed = std::chrono::duration<double>(Clock::now() - epoch_start).count();
        const double rate = epoch_images / std::max(elapsed, 1e-9);
        const double remaining_images = double(total_steps - step) * o.batch;  // of the whole run
        if (!o.quiet)
          printer.progress(
              fmt::format("epoch {}/{} [{:>5}/{}]  loss {:.4f}  lr {:.3e}  {:.0f} img/s  ETA {}",
                          epoch + 1, o.epochs, in_epoch, steps_per_epoch, loss_sum / loss_count, lr,
                          rate, format_eta(remaining_images / rate)));
        // A step line (no "eval_top1"): what tools/plot_training.py draws within an epoch.
        nlohmann::json step_line = {{"step", step},
                                    {"epoch", epoch + double(in_epoch) / double(steps_per_epoch)},
                                    {"train_loss", loss_sum / loss_count},
                                    {"lr", lr},
                                    {"train_images_per_s", rate}};
        log << step_line.dump() << "\n";
        log.flush();
      }
      const int signal = InterruptGuard::requested();
      const bool stop_now = (o.stop_after_steps > 0 && step >= o.stop_after_steps) || signal;
      if ((o.checkpoint_every > 0 && step % o.checkpoint_every == 0) || stop_now) {
        info.step = step;
        info.loader = train_loader.position();
        info.epoch = epoch;
        save_checkpoint_or_explain(o.out, model, *optimizer, ema.get(), info);
      }
      if (stop_now) {
        result.interrupted = true;
        result.signal = signal;
        result.steps = step;
        result.epochs_done = epoch;
        return result;
      }
    }

    // Evaluate the EMA weights when there are some (what the checkpoint's model file holds).
    EvalResult ev;
    if (ema) {
      NextViT averaged(config, o.seed);
      averaged.to(o.device);
      ema->copy_to(averaged);
      ev = run_eval(averaged, eval_loader, o.device);
    } else {
      ev = run_eval(model, eval_loader, o.device);
    }
    const double epoch_seconds = std::chrono::duration<double>(Clock::now() - epoch_start).count();
    const int64_t replaced = data.train->take_replaced_count() + data.eval->take_replaced_count();
    if (replaced > 0) {
      say(
          fmt::format("epoch {}: {} sample(s) could not be decoded and were replaced by the next "
                      "image (paths reported above)",
                      epoch + 1, replaced));
    }
    nlohmann::json line = {{"epoch", epoch + 1},
                           {"step", step},
                           {"train_loss", loss_count ? loss_sum / loss_count : 0.0},
                           {"eval_loss", ev.loss},
                           {"eval_top1", ev.accuracy},
                           {"lr", schedule.lr_at(step)},
                           {"train_images_per_s", epoch_images / std::max(epoch_seconds, 1e-9)},
                           {"epoch_seconds", epoch_seconds}};
    log << line.dump() << "\n";
    log.flush();
    say(
        fmt::format("epoch {}/{} done in {:.0f}s: train loss {:.4f}, test loss {:.4f}, "
                    "test top-1 {:.2f}%",
                    epoch + 1, o.epochs, epoch_seconds, line["train_loss"].get<double>(), ev.loss,
                    100.0 * ev.accuracy));
    info.history.push_back(line);
    info.epoch = epoch + 1;
    info.step = step;
    info.loader = train_loader.position();
    save_checkpoint_or_explain(o.out, model, *optimizer, ema.get(), info);
    result.final_accuracy = ev.accuracy;
    result.epochs_done = epoch + 1;
  }
  result.steps = step;
  result.seconds = std::chrono::duration<double>(Clock::now() - run_start).count();
  result.images_per_second = trained_images / std::max(train_seconds, 1e-9);
  return result;
}

EvalResult evaluate(const std::string& model_name, const std::string& weights,
                    const std::string& data_name, int64_t img, int64_t batch, Device device,
                    int64_t limit) {
  // A training output directory: its model.safetensors, and for an older run without metadata
  // the configuration its checkpoint records.
  const bool dir = fs::is_directory(weights);
  const std::string weights_file =
      dir ? (fs::path(weights) / "model.safetensors").string() : weights;
  std::optional<NextViTConfig> bare = NextViTConfig::from_name("nextvit_fmnist");
  if (dir && checkpoint_exists(weights)) {
    bare = NextViTConfig::from_json(read_checkpoint_info(weights).config,
                                    (fs::path(weights) / "checkpoint.safetensors").string());
  }
  SavedModel saved = load_saved_model(weights_file, model_name, 0, bare);
  const ModelMetadata& stored = saved.metadata;
  const NextViTConfig& config = saved.model->config();
  if (img == 0) img = stored.preprocess ? stored.preprocess->size : 28;
  DataSets data = make_data(data_name, img, false, false, 1, limit);
  if (stored.preprocess && stored.preprocess->size == img) {  // the transform it was scored with
    data.eval_pipeline = std::make_shared<data::Pipeline>(data::eval_pipeline(*stored.preprocess));
  }
  NV_CHECK(config.num_classes == data.eval->num_classes(),
           "eval: the model has {} classes, the data set {}", config.num_classes,
           data.eval->num_classes());
  NV_CHECK(stored.classes.empty() || stored.classes == data.eval->class_names(),
           "eval: {} was trained on the classes ({}), the data set has ({})", weights_file,
           fmt::join(stored.classes, ", "), fmt::join(data.eval->class_names(), ", "));
  check_memory_fits(config, batch, img, img, false, "eval");
  NextViT& model = *saved.model;
  model.to(device);
  data::LoaderOptions lo;
  lo.batch_size = batch;
  lo.shuffle = false;
  lo.drop_last = false;
  data::DataLoader loader(data.eval, data.eval_pipeline, lo);
  return run_eval(model, loader, device);
}

}  // namespace nextvit
