#pragma once
// Shared by all tests: random inputs, tensor comparison with a stated tolerance, the
// central-difference gradient check, and the CUDA-vs-CPU op check.
#include <catch2/catch.hpp>

#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <functional>
#include <string>
#include <vector>

#include "autograd/ops.h"
#include "autograd/variable.h"
#include "core/allocator.h"
#include "core/device.h"
#include "core/rng.h"
#include "core/tensor.h"
#include "models/nextvit_config.h"

namespace nextvit::test {

// A fresh directory under the system's temporary folder, removed with everything in it when the
// object goes: per process and per object, so that tests running at once never share one.
struct TempDir {
  std::filesystem::path path;
  explicit TempDir(const std::string& tag = "test") {
    static int counter = 0;
    path = std::filesystem::temp_directory_path() /
           ("nextvit_" + tag + "_" + std::to_string(::getpid()) + "_" + std::to_string(counter++));
    std::filesystem::remove_all(path);
    std::filesystem::create_directories(path);
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  std::string file(const std::string& name) const { return (path / name).string(); }
};

// Counts the bytes of storage alive on one device type from its construction on, by standing in
// for that type's allocator until it goes: the tests of what the autograd graph keeps. Construct
// it before the tensors it should count, so that they are freed before it.
class LiveBytes final : public Allocator {
 public:
  explicit LiveBytes(DeviceType type = DeviceType::CPU)
      : type_(type),
        inner_(allocator_for(type == DeviceType::CPU ? Device::cpu() : Device::cuda())),
        previous_(set_allocator(type_, this)) {}
  ~LiveBytes() override { set_allocator(type_, previous_); }
  LiveBytes(const LiveBytes&) = delete;
  LiveBytes& operator=(const LiveBytes&) = delete;
  void* allocate(size_t bytes) override {
    live_ += static_cast<int64_t>(bytes);
    return inner_->allocate(bytes);
  }
  void deallocate(void* ptr, size_t bytes) override {
    live_ -= static_cast<int64_t>(bytes);
    inner_->deallocate(ptr, bytes);
  }
  const char* name() const override { return "live-bytes"; }
  int64_t live() const { return live_; }

 private:
  DeviceType type_;
  Allocator* inner_;
  Allocator* previous_;  // the slot's value before (null for CUDA: each device's own)
  int64_t live_ = 0;
};

// A reduced Next-ViT with every block kind (NCB; NTB with a spatial reduction and without),
// small enough for quick tests and for the emulated GPU.
inline NextViTConfig reduced_config(const std::string& name, int64_t in_channels, int64_t classes) {
  NextViTConfig c;
  c.name = name;
  c.in_channels = in_channels;
  c.stem_channels = {16, 16, 32};
  c.head_dim = 16;
  c.stage_channels = {{32}, {32, 64}, {64, 96}, {96, 128}};
  c.stage_types = {{BlockType::NCB},
                   {BlockType::NCB, BlockType::NTB},
                   {BlockType::NCB, BlockType::NTB},
                   {BlockType::NCB, BlockType::NTB}};
  c.num_classes = classes;
  return c;
}

// Uniform values in [lo, hi) on the CPU.
inline Tensor random_tensor(const Shape& shape, Generator& g, float lo = -1.0f, float hi = 1.0f) {
  Tensor t = Tensor::empty(shape);
  fill_uniform(t, g, lo, hi);
  return t;
}

// random_tensor with its own generator: the same seed gives the same tensor in every test.
inline Tensor seeded_tensor(const Shape& shape, uint64_t seed, float lo = -1.0f, float hi = 1.0f) {
  Generator g(seed);
  return random_tensor(shape, g, lo, hi);
}

// The largest |value| of a tensor: the scale for an absolute tolerance.
inline double max_abs(const Tensor& t) {
  double m = 0;
  for (float v : t.to_vector()) m = std::max(m, double(std::fabs(v)));
  return m;
}

// Element-wise |actual - expected| <= atol + rtol * |expected|. On failure reports the count of
// mismatches, the first few, the largest error and the normalised error of the whole tensor.
struct Comparison {
  bool ok = true;
  std::string report;
};

inline Comparison compare(const Tensor& actual, const Tensor& expected, double rtol, double atol) {
  Comparison c;
  if (actual.shape() != expected.shape()) {
    c.ok = false;
    c.report = "shape " + shape_str(actual.shape()) + " != expected " + shape_str(expected.shape());
    return c;
  }
  std::vector<float> a = actual.to_vector(), e = expected.to_vector();
  size_t bad = 0;
  double max_err = 0, num = 0, den = 0;
  std::string first;
  for (size_t i = 0; i < a.size(); ++i) {
    double err = std::fabs(double(a[i]) - double(e[i]));
    num += err * err;
    den += double(e[i]) * e[i];
    max_err = std::max(max_err, err);
    if (!(err <= atol + rtol * std::fabs(double(e[i])))) {  // NaN counts as a mismatch
      if (bad < 5) first += fmt::format("  [{}] got {:.7g} expected {:.7g}\n", i, a[i], e[i]);
      ++bad;
    }
  }
  c.ok = bad == 0;
  c.report = fmt::format(
      "{} of {} elements outside atol={} rtol={}; max abs error {:.3g}; "
      "normalised error {:.3g}\n{}",
      bad, a.size(), atol, rtol, max_err, den > 0 ? std::sqrt(num / den) : num, first);
  return c;
}

#define NV_REQUIRE_CLOSE(actual, expected, rtol, atol)                             \
  do {                                                                             \
    auto nv_cmp_ = ::nextvit::test::compare((actual), (expected), (rtol), (atol)); \
    INFO(#actual " vs " #expected ": " << nv_cmp_.report);                         \
    REQUIRE(nv_cmp_.ok);                                                           \
  } while (0)

// ---- CUDA against CPU -------------------------------------------------------------------------
// The CUDA backend against the CPU backend, op by op (as ggml's test-backend-ops): each op's test
// file holds its "cuda: ..." case, so `ctest -R <op>` runs it with the op's other tests.

// True (with a warning) when there is no CUDA device: a CUDA test then returns early.
inline bool skip_without_gpu() {
  if (cuda_available()) return false;
  WARN("skipped: no CUDA device (or a build without CUDA)");
  return true;
}

// f builds the op's output from its inputs on one device. `device` lets f create per-device
// state (BatchNorm running statistics).
using BackendOp = std::function<Variable(const std::vector<Variable>&, Device)>;

// The same inputs go through f on both devices; the outputs and every f32 input's gradient (for
// the same random output gradient; tolerance x10) must agree.
inline void check_backends(const std::string& what, const BackendOp& f,
                           const std::vector<Tensor>& inputs, double rtol = 1e-4,
                           double atol = 1e-5, bool backward = true) {
  INFO(what);
  Generator g(99);
  std::vector<Variable> cpu_in, gpu_in;
  for (const Tensor& t : inputs) {
    const bool grad = backward && t.dtype() == DType::F32;
    cpu_in.emplace_back(t.clone(), grad);
    gpu_in.emplace_back(t.to(Device::cuda()), grad);
  }
  Variable yc = f(cpu_in, Device::cpu());
  Variable yg = f(gpu_in, Device::cuda());
  REQUIRE(yg.device().is_cuda());
  NV_REQUIRE_CLOSE(yg.data().cpu(), yc.data(), rtol, atol);
  if (!backward) return;
  Tensor gy = random_tensor(yc.shape(), g);
  yc.backward(gy);
  yg.backward(gy.to(Device::cuda()));
  for (size_t k = 0; k < inputs.size(); ++k) {
    if (!cpu_in[k].requires_grad()) continue;
    INFO("gradient of input " << k);
    NV_REQUIRE_CLOSE(gpu_in[k].grad().cpu(), cpu_in[k].grad(), rtol * 10, atol * 10);
  }
}

// Gradient check. For an op f and inputs x_i, takes L = sum(f(x) * w) with fixed random w and
// compares dL/dx_i from backward() with the central difference (L(x + eps e_j) -
// L(x - eps e_j)) / 2 eps for every element j (or `max_elements` sampled ones), L summed in
// double so only the op's own float error remains. Inputs must keep away from kinks (ReLU at
// 0, pooling ties) by more than eps.
struct GradCheckOptions {
  float eps = 1e-2f;
  double rtol = 1e-2;
  double atol = 1e-3;
  int64_t max_elements = 64;  // per input; 0 = all
  std::vector<bool> check;    // which inputs to check (default: all)
};

inline void check_gradients(const std::function<Variable(const std::vector<Variable>&)>& f,
                            const std::vector<Tensor>& inputs, GradCheckOptions opt = {}) {
  Generator g(1234);
  std::vector<Variable> vars;
  for (const Tensor& t : inputs) vars.emplace_back(t.clone(), true);
  Variable out = f(vars);
  Tensor w = random_tensor(out.shape(), g);
  std::vector<float> wv = w.to_vector();
  out.backward(w);

  auto loss = [&](const std::vector<Variable>& xs) {
    NoGradGuard ng;
    std::vector<float> o = f(xs).data().to_vector();
    double s = 0;
    for (size_t i = 0; i < o.size(); ++i) s += double(o[i]) * wv[i];
    return s;
  };

  for (size_t k = 0; k < inputs.size(); ++k) {
    if (!opt.check.empty() && !opt.check[k]) continue;
    INFO("input " << k << " of shape " << shape_str(inputs[k].shape()));
    REQUIRE(vars[k].grad().defined());
    std::vector<float> analytic = vars[k].grad().to_vector();
    const int64_t n = inputs[k].numel();
    std::vector<int64_t> idx;
    if (opt.max_elements == 0 || n <= opt.max_elements) {
      for (int64_t j = 0; j < n; ++j) idx.push_back(j);
    } else {
      for (int64_t j = 0; j < opt.max_elements; ++j) idx.push_back(g.randint(n));
    }
    for (int64_t j : idx) {
      std::vector<Variable> xs;
      for (const Tensor& t : inputs) xs.emplace_back(t.clone(), false);
      float* p = xs[k].data().data<float>();
      const float x0 = p[j];
      p[j] = x0 + opt.eps;
      double lp = loss(xs);
      p[j] = x0 - opt.eps;
      double lm = loss(xs);
      double numeric = (lp - lm) / (2.0 * opt.eps);
      INFO("element " << j << ": analytic " << analytic[j] << " numeric " << numeric);
      REQUIRE(std::fabs(analytic[j] - numeric) <= opt.atol + opt.rtol * std::fabs(numeric));
    }
  }
}

}  // namespace nextvit::test
