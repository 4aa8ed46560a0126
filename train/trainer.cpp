#include "train/trainer.h"

#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <optional>

#include "autograd/ops.h"
#include "core/cuda_runtime.h"
#include "core/threads.h"
#include "models/memory_estimate.h"
#include "models/saved_model.h"
#include "models/weights.h"
#include "train/checkpoint.h"
#include "train/data/data_sets.h"
#include "train/data/image_folder.h"
#include "train/data/preprocess.h"
#include "train/data/transforms.h"
#include "train/distributed/communicator.h"
#include "train/distributed/data_parallel.h"
#include "train/init_weights.h"
#include "train/interrupt.h"
#include "train/optim/adamw.h"
#include "train/optim/schedule.h"
#include "train/optim/sgd.h"
#include "train/progress_line.h"
#include "train/train_step.h"

namespace nextvit {
namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

namespace {

// Reads the device-side sums of the steps since the last read (train_step.h) into the epoch's
// loss sum, and stops a diverged run: its last good checkpoint was saved before this read.
// With several ranks the sums are averaged over them first, so that every rank logs the same
// loss and stops together.
void read_step_sums(StepSums& sums, DataParallel& dp, int64_t step, int64_t epoch,
                    const std::string& out, double& loss_sum, int64_t& loss_count) {
  const int64_t first = step - sums.steps() + 1;
  StepSums::Totals t = sums.take();
  if (t.steps == 0) return;
  std::vector<double> both{t.loss_sum, t.grad_norm_sum};
  dp.sum(both);
  t.loss_sum = both[0] / dp.size();
  t.grad_norm_sum = both[1] / dp.size();
  NV_CHECK(std::isfinite(t.loss_sum) && std::isfinite(t.grad_norm_sum),
           "training diverged: the {} is not finite ({}) at a step between {} and {} (epoch "
           "{}); the last good checkpoint is in {} (try a lower --lr or --clip-grad)",
           std::isfinite(t.loss_sum) ? "gradient norm" : "loss",
           std::isfinite(t.loss_sum) ? t.grad_norm_sum : t.loss_sum, first, step, epoch + 1, out);
  loss_sum += t.loss_sum;
  loss_count += t.steps;
}

NextViTConfig make_config(const std::string& model, int64_t classes, double drop_path) {
  NextViTConfig c = NextViTConfig::from_name(model);
  c.num_classes = classes;
  if (drop_path >= 0) c.drop_path = static_cast<float>(drop_path);
  c.validate();
  return c;
}

// Data-parallel: each rank scores its shard of every batch and the counts are summed.
EvalResult run_eval(NextViT& model, data::DataLoader& loader, Device device,
                    DataParallel* dp = nullptr) {
  model.eval();
  NoGradGuard no_grad;
  EvalResult r;
  double loss_sum = 0;
  int64_t correct = 0;
  data::Batch batch;
  while (loader.next(batch)) {
    if (batch.labels.numel() == 0) continue;  // this rank's shard of a short last batch
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
  if (dp != nullptr) {
    std::vector<double> sums{double(r.images), double(correct), loss_sum};
    dp->sum(sums);
    r.images = int64_t(sums[0]), correct = int64_t(sums[1]), loss_sum = sums[2];
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
          {"init", init},
          {"ranks", comm ? comm->size() : 1},
          {"sync_bn", sync_bn}};
}

namespace {

void check_options(const TrainOptions& o) {
  NV_CHECK(o.epochs > 0 && o.batch > 0 && o.img > 0, "train: epochs, batch and img must be > 0");
  NV_CHECK(o.lr > 0, "train: --lr must be positive");
  NV_CHECK(o.optimizer == "adamw" || o.optimizer == "sgd",
           "train: --optimizer must be adamw or sgd, got '{}'", o.optimizer);
}

std::unique_ptr<Optimizer> make_optimizer(NextViT& model, const TrainOptions& o) {
  auto groups = weight_decay_groups(model, o.weight_decay);
  if (o.optimizer == "adamw") {
    AdamWOptions a;
    a.lr = o.lr;
    return std::make_unique<AdamW>(groups, a);
  }
  SgdOptions s;
  s.lr = o.lr;
  s.momentum = o.momentum;
  return std::make_unique<Sgd>(groups, s);
}

CosineScheduleOptions schedule_options(const TrainOptions& o, int64_t steps_per_epoch) {
  CosineScheduleOptions s;
  s.base_lr = o.lr;
  s.min_lr = o.min_lr;
  s.warmup_lr = o.warmup_lr;
  s.warmup_steps = static_cast<int64_t>(o.warmup_epochs * steps_per_epoch);
  s.total_steps = steps_per_epoch * o.epochs;
  return s;
}

double seconds_since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

// The loss and throughput of the epoch in progress.
struct EpochStats {
  double loss_sum = 0;  // over the steps read back so far (read_step_sums)
  int64_t loss_count = 0;
  int64_t images = 0;  // trained, all ranks together
  Clock::time_point start = Clock::now();

  double mean_loss() const { return loss_count ? loss_sum / loss_count : 0.0; }
  double images_per_second() const { return images / std::max(seconds_since(start), 1e-9); }
};

// One call of train(): the constructor sets up data, model, optimizer and schedule (resuming
// from a checkpoint when asked), run() trains epoch after epoch. Every step is asynchronous on
// a GPU (train_step.h); the host reads the losses back only to log, checkpoint or end an epoch.
class TrainingRun {
 public:
  explicit TrainingRun(const TrainOptions& o);
  TrainResult run();

 private:
  bool resuming() const { return o_.resume && checkpoint_exists(o_.out); }
  void say(const std::string& s) {
    if (!o_.quiet && root_) printer_.line(s);
  }
  void build_model();
  void make_loaders();
  void resume_or_start();
  void print_summary();
  bool train_epoch(int64_t epoch);  // false: stopped by --stop-after-steps or a signal
  int agreed_signal();
  void read_sums(int64_t epoch, EpochStats& stats);
  void log_progress(int64_t epoch, int64_t in_epoch, const EpochStats& stats, double lr);
  void save_checkpoint_at(int64_t epoch);
  void finish_epoch(int64_t epoch, EpochStats& stats);
  EvalResult evaluate_model();
  void report_device_memory();

  const TrainOptions& o_;
  const bool root_;  // prints, logs and checkpoints
  // Progress lines redraw in place on a terminal and stay one a line in a file.
  ProgressLine printer_ = ProgressLine::for_stdout();
  data::TrainingSet train_set_;
  data::EvaluationSet eval_set_;
  NextViTConfig config_;
  std::unique_ptr<NextViT> model_;
  std::unique_ptr<DataParallel> dp_;
  std::unique_ptr<data::DataLoader> train_loader_, eval_loader_;
  int64_t steps_per_epoch_ = 0;
  std::unique_ptr<Optimizer> optimizer_;
  std::unique_ptr<CosineSchedule> schedule_;
  std::unique_ptr<ModelEma> ema_;
  CheckpointInfo info_;
  std::ofstream log_;
  StepSetup step_setup_;
  StepSums step_sums_;
  int64_t step_ = 0;
  double train_seconds_ = 0;  // in training steps and loss read-backs
  int64_t trained_images_ = 0;
  TrainResult result_;
};

TrainingRun::TrainingRun(const TrainOptions& o) : o_(o), root_(!o.comm || o.comm->rank() == 0) {
  check_options(o);
  if (root_) check_output_writable(o.out);
  train_set_ = data::training_set(o.data, o.img, o.flip, o.random_resized_crop, o.limit_train,
                                  o.max_image_pixels);
  eval_set_ = data::evaluation_set(o.data, o.img, o.limit_eval, o.max_image_pixels);
  data::check_same_classes(o.data, *train_set_.images, *eval_set_.images);
  build_model();
  make_loaders();
  optimizer_ = make_optimizer(*model_, o);
  schedule_ = std::make_unique<CosineSchedule>(schedule_options(o, steps_per_epoch_));
  if (o.ema_decay > 0) ema_ = std::make_unique<ModelEma>(*model_, o.ema_decay);
  resume_or_start();
  print_summary();
  if (root_) log_.open(fs::path(o.out) / "log.jsonl", std::ios::app);
  step_setup_ = {model_.get(),
                 optimizer_.get(),
                 ema_.get(),
                 model_->parameters(),
                 o.device,
                 static_cast<float>(o.label_smoothing),
                 static_cast<float>(o.clip_grad),
                 dp_.get()};
}

// The configuration (from --model, or from --init's weights), the model on its device, and the
// ranks checked to agree on all of it.
void TrainingRun::build_model() {
  config_ = make_config(o_.model, train_set_.images->num_classes(), o_.drop_path);
  std::optional<InitWeights> init;
  if (!o_.init.empty()) {
    init = read_init_weights(o_.init);
    config_ = init_config(*init, config_, o_.model != TrainOptions().model, o_.drop_path >= 0);
  }
  config_.validate_input(o_.img, o_.img);
  const int64_t ranks = o_.comm ? o_.comm->size() : 1;
  check_memory_fits(config_, o_.batch / ranks, o_.img, o_.img, true, "train");
  model_ = std::make_unique<NextViT>(config_, o_.seed);
  if (init && !resuming()) say(apply_init_weights(*model_, *init));
  init.reset();  // the file's tensors are no longer needed
  model_->to(o_.device);
  dp_ = std::make_unique<DataParallel>(o_.comm, *model_, o_.sync_bn);
  NV_CHECK(o_.batch % dp_->size() == 0, "train: --batch {} must be a multiple of the {} ranks",
           o_.batch, dp_->size());
  dp_->check_same_everywhere("configuration or data",
                             o_.to_json().dump() + config_.to_json().dump() +
                                 train_set_.images->describe() + eval_set_.images->describe() +
                                 train_set_.pipeline->describe());
}

// Each rank reads its shard of every batch; evaluation reads every image, in order.
void TrainingRun::make_loaders() {
  data::LoaderOptions t;
  t.shard = dp_->rank();
  t.shards = dp_->size();
  t.batch_size = o_.batch;
  t.seed = o_.seed;
  t.workers = o_.workers;
  train_loader_ = std::make_unique<data::DataLoader>(train_set_.images, train_set_.pipeline, t);
  steps_per_epoch_ = train_loader_->batches_per_epoch();
  NV_CHECK(steps_per_epoch_ > 0, "train: {} training images make no batch of {}",
           train_set_.images->size(), o_.batch);
  data::LoaderOptions e = t;
  e.shuffle = false;
  e.drop_last = false;
  e.batch_size = std::max<int64_t>(o_.batch, 256);
  eval_loader_ = std::make_unique<data::DataLoader>(eval_set_.images, eval_set_.pipeline, e);
}

// Loads the checkpoint of the same run in --out when resuming; then every rank starts from
// rank 0's weights. model.safetensors will describe itself (configuration, eval transform,
// class names: models/model_metadata.h).
void TrainingRun::resume_or_start() {
  info_.config = config_.to_json();
  info_.options = o_.to_json();
  if (resuming()) {
    check_resumable(read_checkpoint_info(o_.out), config_, o_);
    info_ = load_checkpoint(o_.out, *model_, *optimizer_, ema_.get());
    train_loader_->seek(info_.loader);
    say(fmt::format("resumed from {}: epoch {}, step {}", o_.out, info_.loader.epoch, info_.step));
  }
  ModelMetadata metadata;
  metadata.config = config_;
  metadata.preprocess = eval_set_.preprocess;
  metadata.classes = train_set_.images->class_names();
  info_.model_metadata = metadata_entries(metadata);
  dp_->broadcast_state();
  step_ = info_.step;
}

void TrainingRun::print_summary() {
  say(fmt::format("model {}: {:.3f} M parameters, {} on {}", config_.name,
                  model_->parameter_count() / 1e6, o_.img, o_.device.str()));
  say(fmt::format("train: {} | {}", train_set_.images->describe(),
                  train_set_.pipeline->describe()));
  say(fmt::format("eval:  {}", eval_set_.images->describe()));
  say(fmt::format("{} epochs x {} steps of {}, {} lr {:.2g} (cosine, {} warm-up steps), {} threads",
                  o_.epochs, steps_per_epoch_, o_.batch, o_.optimizer, o_.lr,
                  schedule_options(o_, steps_per_epoch_).warmup_steps, num_threads()));
  if (dp_->distributed()) {
    say(fmt::format("data-parallel: {}, {} images per rank per step, {} gradient buckets, {}",
                    o_.comm->describe(), o_.batch / dp_->size(), dp_->bucket_count(),
                    o_.sync_bn ? "synchronised BatchNorm" : "BatchNorm per rank"));
  }
}

TrainResult TrainingRun::run() {
  InterruptGuard interrupt_guard;
  const auto run_start = Clock::now();
  for (int64_t epoch = train_loader_->position().epoch; epoch < o_.epochs; ++epoch) {
    if (!train_epoch(epoch)) return result_;
  }
  result_.steps = step_;
  result_.seconds = seconds_since(run_start);
  result_.images_per_second = trained_images_ / std::max(train_seconds_, 1e-9);
  result_.train_seconds = train_seconds_;
  result_.communication_seconds = dp_->communication_seconds();
  if (o_.device.is_cuda()) report_device_memory();
  return result_;
}

bool TrainingRun::train_epoch(int64_t epoch) {
  model_->train();
  EpochStats stats;
  data::Batch batch;
  while (train_loader_->next(batch)) {
    const auto t0 = Clock::now();
    const double lr = schedule_->lr_at(step_);
    optimizer_->set_lr(lr);
    train_step(step_setup_, batch, step_sums_);  // no host wait: the loss stays on the device
    ++step_;
    dp_->fault_point(step_);
    const int signal = agreed_signal();
    const int64_t n = batch.labels.numel() * dp_->size();
    stats.images += n;
    trained_images_ += n;
    train_seconds_ += seconds_since(t0);

    const int64_t in_epoch = train_loader_->position().batch;
    const bool log_now =
        o_.log_every > 0 && (in_epoch % o_.log_every == 0 || in_epoch == steps_per_epoch_);
    const bool stop_now = (o_.stop_after_steps > 0 && step_ >= o_.stop_after_steps) || signal;
    const bool save_now = (o_.checkpoint_every > 0 && step_ % o_.checkpoint_every == 0) || stop_now;
    // The losses are read back only here (and at the end of the epoch), never saving a
    // diverged model.
    if (log_now || save_now) read_sums(epoch, stats);
    if (log_now) log_progress(epoch, in_epoch, stats, lr);
    if (save_now) save_checkpoint_at(epoch);
    if (stop_now) {
      result_.interrupted = true;
      result_.signal = signal;
      result_.steps = step_;
      result_.epochs_done = epoch;
      result_.communication_seconds = dp_->communication_seconds();
      return false;
    }
  }
  finish_epoch(epoch, stats);
  return true;
}

// The ranks agree on whether a signal stops them (a no-op in one process).
int TrainingRun::agreed_signal() {
  std::vector<double> agreed{double(InterruptGuard::requested() != 0),
                             double(InterruptGuard::requested())};
  dp_->sum(agreed);
  return agreed[0] > 0 ? int(agreed[1] / agreed[0]) : 0;
}

// Reads the loss sums; the wait for the device's queued steps counts as training time.
void TrainingRun::read_sums(int64_t epoch, EpochStats& stats) {
  const auto t0 = Clock::now();
  read_step_sums(step_sums_, *dp_, step_, epoch, o_.out, stats.loss_sum, stats.loss_count);
  train_seconds_ += seconds_since(t0);
}

// The progress line, and a step line in log.jsonl (no "eval_top1": what
// tools/plot_training.py draws within an epoch).
void TrainingRun::log_progress(int64_t epoch, int64_t in_epoch, const EpochStats& stats,
                               double lr) {
  const double rate = stats.images_per_second();
  const double remaining_images = double(steps_per_epoch_ * o_.epochs - step_) * o_.batch;
  if (!o_.quiet && root_) {
    printer_.progress(
        fmt::format("epoch {}/{} [{:>5}/{}]  loss {:.4f}  lr {:.3e}  {:.0f} img/s  ETA {}",
                    epoch + 1, o_.epochs, in_epoch, steps_per_epoch_, stats.mean_loss(), lr, rate,
                    format_eta(remaining_images / rate)));
  }
  const nlohmann::json line = {{"step", step_},
                               {"epoch", epoch + double(in_epoch) / double(steps_per_epoch_)},
                               {"train_loss", stats.mean_loss()},
                               {"lr", lr},
                               {"train_images_per_s", rate}};
  log_ << line.dump() << "\n";
  log_.flush();
}

void TrainingRun::save_checkpoint_at(int64_t epoch) {
  info_.step = step_;
  info_.loader = train_loader_->position();
  info_.epoch = epoch;
  if (root_) save_checkpoint_or_explain(o_.out, *model_, *optimizer_, ema_.get(), info_);
}

// After an epoch: evaluation, the epoch's line in log.jsonl, a checkpoint.
void TrainingRun::finish_epoch(int64_t epoch, EpochStats& stats) {
  read_sums(epoch, stats);
  const EvalResult ev = evaluate_model();
  const double epoch_seconds = seconds_since(stats.start);
  const int64_t replaced =
      train_set_.images->take_replaced_count() + eval_set_.images->take_replaced_count();
  if (replaced > 0) {
    say(
        fmt::format("epoch {}: {} sample(s) could not be decoded and were replaced by the next "
                    "image (paths reported above)",
                    epoch + 1, replaced));
  }
  const nlohmann::json line = {{"epoch", epoch + 1},
                               {"step", step_},
                               {"train_loss", stats.mean_loss()},
                               {"eval_loss", ev.loss},
                               {"eval_top1", ev.accuracy},
                               {"lr", schedule_->lr_at(step_)},
                               {"train_images_per_s", stats.images / std::max(epoch_seconds, 1e-9)},
                               {"epoch_seconds", epoch_seconds}};
  log_ << line.dump() << "\n";
  log_.flush();
  say(fmt::format(
      "epoch {}/{} done in {:.0f}s: train loss {:.4f}, test loss {:.4f}, "
      "test top-1 {:.2f}%",
      epoch + 1, o_.epochs, epoch_seconds, stats.mean_loss(), ev.loss, 100.0 * ev.accuracy));
  info_.history.push_back(line);
  save_checkpoint_at(epoch + 1);
  result_.final_accuracy = ev.accuracy;
  result_.epochs_done = epoch + 1;
}

// The EMA weights when there are some (what the checkpoint's model file holds).
EvalResult TrainingRun::evaluate_model() {
  if (!ema_) return run_eval(*model_, *eval_loader_, o_.device, dp_.get());
  NextViT averaged(config_, o_.seed);
  averaged.to(o_.device);
  ema_->copy_to(averaged);
  return run_eval(averaged, *eval_loader_, o_.device, dp_.get());
}

void TrainingRun::report_device_memory() {
  const cuda_rt::DeviceMemoryStats m = cuda_rt::device_memory_stats(o_.device.index);
  say(fmt::format(
      "device memory ({}): peak {:.1f} MiB allocated, {:.1f} MiB reserved at peak ({} "
      "cudaMalloc calls, {} blocks split); {} host synchronisations in all",
      o_.device.str(), m.peak_allocated_bytes / 1048576.0, m.peak_reserved_bytes / 1048576.0,
      m.cuda_malloc_calls, m.splits, cuda_rt::host_synchronizations()));
}

}  // namespace

TrainResult train(const TrainOptions& o) {
  return TrainingRun(o).run();
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
  data::EvaluationSet data =
      data::evaluation_set(data_name, img, limit, data::kDefaultMaxImagePixels);
  if (stored.preprocess && stored.preprocess->size == img) {  // the transform it was scored with
    data.pipeline = std::make_shared<data::Pipeline>(data::eval_pipeline(*stored.preprocess));
  }
  NV_CHECK(config.num_classes == data.images->num_classes(),
           "eval: the model has {} classes, the data set {}", config.num_classes,
           data.images->num_classes());
  NV_CHECK(stored.classes.empty() || stored.classes == data.images->class_names(),
           "eval: {} was trained on the classes ({}), the data set has ({})", weights_file,
           fmt::join(stored.classes, ", "), fmt::join(data.images->class_names(), ", "));
  check_memory_fits(config, batch, img, img, false, "eval");
  NextViT& model = *saved.model;
  model.to(device);
  data::LoaderOptions lo;
  lo.batch_size = batch;
  lo.shuffle = false;
  lo.drop_last = false;
  data::DataLoader loader(data.images, data.pipeline, lo);
  return run_eval(model, loader, device);
}

}  // namespace nextvit
