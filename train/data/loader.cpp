#include "train/data/loader.h"

#include <algorithm>
#include <numeric>

#include "core/error.h"

namespace nextvit::data {
namespace {

// splitmix64's finaliser: a bijection that spreads every input bit over the output.
uint64_t mix(uint64_t z) {
  z += 0x9e3779b97f4a7c15ull;
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

// Distinct streams for the shuffle and for each sample's augmentation.
uint64_t shuffle_seed(uint64_t seed, int64_t epoch) {
  return mix(mix(seed ^ 0x73687566666c65ull) ^ uint64_t(epoch));
}
uint64_t sample_seed(uint64_t seed, int64_t epoch, int64_t index) {
  return mix(mix(mix(seed) ^ uint64_t(epoch)) ^ uint64_t(index));
}

}  // namespace

DataLoader::DataLoader(std::shared_ptr<const Dataset> dataset,
                       std::shared_ptr<const Pipeline> pipeline, LoaderOptions options)
    : dataset_(std::move(dataset)), pipeline_(std::move(pipeline)), options_(options) {
  NV_CHECK(dataset_ != nullptr && pipeline_ != nullptr, "DataLoader: null dataset or pipeline");
  NV_CHECK(options_.batch_size > 0, "DataLoader: batch size {} must be positive",
           options_.batch_size);
  NV_CHECK(options_.workers >= 0, "DataLoader: {} workers", options_.workers);
  NV_CHECK(options_.shards >= 1 && options_.shard >= 0 && options_.shard < options_.shards,
           "DataLoader: shard {} of {}", options_.shard, options_.shards);
  NV_CHECK(options_.prefetch >= 1, "DataLoader: prefetch {} must be at least 1", options_.prefetch);
  const int64_t n = dataset_->size();
  batches_per_epoch_ = options_.drop_last ? n / options_.batch_size
                                          : (n + options_.batch_size - 1) / options_.batch_size;
  NV_CHECK(batches_per_epoch_ > 0,
           "DataLoader: {} has {} samples, fewer than one batch of {} (drop_last {})",
           dataset_->describe(), n, options_.batch_size, options_.drop_last);
}

DataLoader::~DataLoader() {
  stop_workers();
}

std::vector<int64_t> DataLoader::epoch_order(int64_t epoch) const {
  std::vector<int64_t> order(size_t(dataset_->size()));
  std::iota(order.begin(), order.end(), int64_t{0});
  if (options_.shuffle) {
    Generator g(shuffle_seed(options_.seed, epoch));
    for (size_t i = order.size(); i > 1; --i) {
      std::swap(order[i - 1], order[size_t(g.randint(int64_t(i)))]);
    }
  }
  return order;
}

std::shared_ptr<const std::vector<int64_t>> DataLoader::order_for(int64_t epoch) const {
  std::lock_guard<std::mutex> lock(order_mutex_);
  auto it = orders_.find(epoch);
  if (it != orders_.end()) return it->second;
  auto order = std::make_shared<const std::vector<int64_t>>(epoch_order(epoch));
  orders_[epoch] = order;
  // Workers stay within `prefetch` batches of the consumer, so only the newest few epochs are
  // in use; an evicted one would simply be recomputed.
  while (orders_.size() > 3) orders_.erase(orders_.begin());
  return order;
}

bool DataLoader::build(int64_t epoch, int64_t batch, const std::atomic<bool>* stop,
                       Batch& out) const {
  NV_CHECK(epoch >= 0 && batch >= 0 && batch < batches_per_epoch_,
           "DataLoader: batch {} of epoch {} does not exist ({} batches per epoch)", batch, epoch,
           batches_per_epoch_);
  const auto order = order_for(epoch);
  const int64_t B = options_.batch_size;
  const int64_t whole = std::min(B, dataset_->size() - batch * B);  // rows of the global batch
  const int64_t lo = whole * options_.shard / options_.shards;
  const int64_t first = batch * B + lo;
  const int64_t count = whole * (options_.shard + 1) / options_.shards - lo;

  out.epoch = epoch;
  out.index = batch;
  out.indices.assign(order->begin() + first, order->begin() + first + count);
  out.labels = Tensor::empty({count}, DType::I64);
  int64_t* labels = out.labels.data<int64_t>();
  float* images = nullptr;
  int C = 0, H = 0, W = 0;

  if (count == 0) out.images = Tensor::empty({0, 0, 0, 0});  // a shard of a short last batch
  Image img;
  for (int64_t i = 0; i < count; ++i) {
    if (stop != nullptr && stop->load(std::memory_order_relaxed)) return false;
    const int64_t index = out.indices[size_t(i)];
    labels[i] = dataset_->get(index, img);
    Generator g(sample_seed(options_.seed, epoch, index));
    pipeline_->augment(img, g);
    if (i == 0) {  // the first sample fixes the batch's image shape
      C = img.channels, H = img.height, W = img.width;
      out.images = Tensor::empty({count, C, H, W});
      images = out.images.data<float>();
    } else {
      NV_CHECK(img.channels == C && img.height == H && img.width == W,
               "DataLoader: sample {} is {}x{}x{} (HxWxC) after the transforms but the batch's "
               "first sample is {}x{}x{}; end the pipeline with a fixed-size Resize or crop",
               index, img.height, img.width, img.channels, H, W, C);
    }
    pipeline_->to_chw(img, images + i * C * H * W);
  }
  return true;
}

Batch DataLoader::make_batch(int64_t epoch, int64_t batch) const {
  Batch out;
  build(epoch, batch, nullptr, out);
  return out;
}

bool DataLoader::next(Batch& out) {
  if (batch_ == batches_per_epoch_) {
    ++epoch_;
    batch_ = 0;
    return false;
  }
  const int64_t epoch = epoch_, batch = batch_++;
  if (options_.workers == 0) {
    out = make_batch(epoch, batch);
    return true;
  }
  const int64_t job = epoch * batches_per_epoch_ + batch;
  if (threads_.empty()) start_workers(job);
  Slot slot;
  {
    std::unique_lock<std::mutex> lock(mutex_);
    ready_cv_.wait(lock, [&] { return ready_.count(job) > 0; });
    auto it = ready_.find(job);
    slot = std::move(it->second);
    ready_.erase(it);
    consumed_ = job + 1;
  }
  work_cv_.notify_all();  // one more job may be claimed
  if (slot.error) std::rethrow_exception(slot.error);
  out = std::move(slot.batch);
  return true;
}

void DataLoader::seek(LoaderPosition position) {
  NV_CHECK(position.epoch >= 0 && position.batch >= 0 && position.batch <= batches_per_epoch_,
           "DataLoader::seek: position (epoch {}, batch {}) is outside [0, {}] batches per epoch",
           position.epoch, position.batch, batches_per_epoch_);
  stop_workers();
  epoch_ = position.epoch;
  batch_ = position.batch;
}

void DataLoader::start_workers(int64_t first_job) {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    next_job_ = consumed_ = first_job;
    ready_.clear();
    stop_ = false;
  }
  for (int i = 0; i < options_.workers; ++i) threads_.emplace_back([this] { worker_loop(); });
}

void DataLoader::stop_workers() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stop_ = true;
  }
  work_cv_.notify_all();
  for (std::thread& t : threads_) t.join();
  threads_.clear();
  std::lock_guard<std::mutex> lock(mutex_);
  ready_.clear();
}

void DataLoader::worker_loop() {
  for (;;) {
    int64_t job;
    {
      std::unique_lock<std::mutex> lock(mutex_);
      work_cv_.wait(lock, [&] { return stop_ || next_job_ < consumed_ + options_.prefetch; });
      if (stop_) return;
      job = next_job_++;
    }
    Slot slot;
    try {
      if (!build(job / batches_per_epoch_, job % batches_per_epoch_, &stop_, slot.batch)) return;
    } catch (...) {
      slot.error = std::current_exception();
    }
    {
      std::lock_guard<std::mutex> lock(mutex_);
      ready_.emplace(job, std::move(slot));
    }
    ready_cv_.notify_all();
  }
}

}  // namespace nextvit::data
