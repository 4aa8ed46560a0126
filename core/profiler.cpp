#include "core/profiler.h"

#include <algorithm>
#include <chrono>
#include <mutex>
#include <unordered_map>

#include "core/cuda_runtime.h"
#include "core/error.h"

namespace nextvit::profiler {

const char* kind_name(OpKind kind) {
  switch (kind) {
    case OpKind::None:
      return "other";
    case OpKind::GroupedConv:
      return "grouped conv";
    case OpKind::PointwiseConv:
      return "1x1 conv";
    case OpKind::Conv:
      return "conv (dense)";
    case OpKind::BatchNorm:
      return "BN(+ReLU)";
    case OpKind::Attention:
      return "attention";
    case OpKind::Softmax:
      return "softmax";
    case OpKind::Gemm:
      return "GEMM";
    case OpKind::Pooling:
      return "pooling";
    case OpKind::Copies:
      return "copies";
    case OpKind::Elementwise:
      return "elementwise";
    case OpKind::Loss:
      return "loss";
    case OpKind::Count:
      break;
  }
  return "?";
}

OpKind conv_kind(int64_t groups, int64_t kernel_h, int64_t kernel_w) {
  if (groups > 1) return OpKind::GroupedConv;
  return kernel_h == 1 && kernel_w == 1 ? OpKind::PointwiseConv : OpKind::Conv;
}

// ---- module paths -------------------------------------------------------------------------------
namespace {

struct Names {
  std::mutex mutex;
  std::vector<std::string> paths;
  std::unordered_map<std::string, int> ids;
};

Names& names() {
  static Names* n = new Names();  // never destroyed: scopes may run during static teardown
  return *n;
}

int64_t host_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

}  // namespace

int intern(const std::string& path) {
  Names& n = names();
  std::lock_guard<std::mutex> lock(n.mutex);
  auto it = n.ids.find(path);
  if (it != n.ids.end()) return it->second;
  const int id = static_cast<int>(n.paths.size());
  n.paths.push_back(path);
  n.ids.emplace(path, id);
  return id;
}

std::string module_path(int id) {
  if (id < 0) return "";
  Names& n = names();
  std::lock_guard<std::mutex> lock(n.mutex);
  NV_CHECK(id < static_cast<int>(n.paths.size()), "profiler: unknown module id {}", id);
  return n.paths[id];
}

int module_count() {
  Names& n = names();
  std::lock_guard<std::mutex> lock(n.mutex);
  return static_cast<int>(n.paths.size());
}

// ---- recording ----------------------------------------------------------------------------------
namespace detail {

thread_local Session* active = nullptr;

void push(Context c) {
  Session& s = *active;
  s.stack_.push_back(c);
  s.cell_at(c).calls++;
  s.mark(c);
}

void pop() {
  Session& s = *active;
  s.stack_.pop_back();
  s.mark(s.stack_.back());  // the step's base context is never popped
}

}  // namespace detail

bool enabled() {
  return detail::active != nullptr;
}

Context current() {
  return detail::active->stack_.back();
}

void add_bytes(int64_t bytes) {
  if (enabled()) detail::active->cell_at(current()).bytes += bytes;
}

Session::Session(Clock clock, bool scopes) : clock_(clock), scopes_(scopes) {
  NV_CHECK(clock != Clock::CudaEvents || cuda_rt::available(),
           "profiler: CUDA event timing needs a CUDA device");
  stack_.reserve(64);
}

Session::~Session() {
  if (detail::active == this) detail::active = nullptr;
  for (void* e : event_pool_) cuda_rt::event_destroy(e);
}

Cell& Session::cell_at(const Context& c) {
  const size_t i = (static_cast<size_t>(c.module + 1) * kKinds + static_cast<size_t>(c.kind)) * 2 +
                   static_cast<size_t>(c.phase);
  if (i >= cells_.size()) cells_.resize((static_cast<size_t>(module_count()) + 1) * kKinds * 2);
  return cells_[i];
}

Cell Session::cell(int module, OpKind kind, Phase phase) const {
  const size_t i = (static_cast<size_t>(module + 1) * kKinds + static_cast<size_t>(kind)) * 2 +
                   static_cast<size_t>(phase);
  return i < cells_.size() ? cells_[i] : Cell{};
}

void Session::mark(const Context& after) {
  Mark m;
  m.after = after;
  if (clock_ == Clock::Host) {
    m.ns = host_ns();
  } else if (clock_ == Clock::Manual) {
    m.ns = manual_ns_;
  } else {
    const size_t used = marks_.size();
    if (used == event_pool_.size()) event_pool_.push_back(cuda_rt::event_create());
    m.event = event_pool_[used];
    cuda_rt::event_record(m.event);
  }
  marks_.push_back(m);
}

void Session::begin_step(Phase phase) {
  NV_CHECK(detail::active == nullptr, "profiler: a session is already recording on this thread");
  marks_.clear();
  stack_.assign(1, Context{-1, OpKind::None, phase});
  mark(stack_.back());
  if (scopes_) detail::active = this;
}

double Session::end_step() {
  if (scopes_) {
    NV_CHECK(detail::active == this, "profiler: end_step() without begin_step()");
    NV_CHECK(stack_.size() == 1, "profiler: {} scope(s) still open at the end of the step",
             stack_.size() - 1);
    detail::active = nullptr;
  }
  mark(stack_.back());
  if (clock_ == Clock::CudaEvents) cuda_rt::event_synchronize(marks_.back().event);
  double step_ms = 0;
  for (size_t i = 0; i + 1 < marks_.size(); ++i) {
    const double ms = clock_ == Clock::CudaEvents
                          ? cuda_rt::event_elapsed_ms(marks_[i].event, marks_[i + 1].event)
                          : (marks_[i + 1].ns - marks_[i].ns) * 1e-6;
    cell_at(marks_[i].after).ms += ms;
    step_ms += ms;
  }
  steps_++;
  marks_total_ += static_cast<int64_t>(marks_.size());
  total_ms_ += step_ms;
  return step_ms;
}

double Session::mark_cost_ns(Clock clock, int pairs) {
  // The least of ten rounds: on a shared machine one round may lose the CPU midway.
  const int id = intern("(profiler calibration)");
  const int round = std::max(1, pairs / 10);
  double best = 0;
  for (int r = 0; r < 10; ++r) {
    Session s(clock);
    s.begin_step();
    const int64_t start = host_ns();
    for (int i = 0; i < round; ++i) {
      ModuleScope scope(id);
    }
    const int64_t stop = host_ns();
    s.end_step();
    const double ns = static_cast<double>(stop - start) / (2.0 * round);
    best = r == 0 ? ns : std::min(best, ns);
  }
  return best;
}

}  // namespace nextvit::profiler
