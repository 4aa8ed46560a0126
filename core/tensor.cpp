#include "core/tensor.h"

#include <omp.h>

#include <algorithm>
#include <cstring>

#include "core/cuda_runtime.h"
#include "core/device_guard.h"
#include "core/half.h"
#include "core/profiler.h"

namespace nextvit {
namespace {

// Merges neighbouring dimensions that are laid out as one (stride[d] == shape[d+1] *
// stride[d+1]) and drops dimensions of size 1, so a contiguous tensor is one run and a
// transposed [N, C, H, W] view is three dimensions, not four with runs of W floats.
void collapse_dims(Shape& shape, Shape& strides) {
  Shape sh, st;
  for (size_t d = 0; d < shape.size(); ++d) {
    if (shape[d] == 1) continue;
    if (!sh.empty() && st.back() == shape[d] * strides[d]) {
      sh.back() *= shape[d];
      st.back() = strides[d];
    } else {
      sh.push_back(shape[d]);
      st.push_back(strides[d]);
    }
  }
  if (sh.empty()) sh = {1}, st = {1};
  shape = sh;
  strides = st;
}

// The two innermost dimensions of a transposed f32 view (stride 1 on the second-last), copied
// in 8 x 8 tiles: both the reads and the writes then touch a few cache lines per tile instead
// of one line per element on the strided side.
void transpose_plane(uint32_t* dst, const uint32_t* src, int64_t rows, int64_t cols,
                     int64_t col_stride) {
  constexpr int64_t T = 8;
  for (int64_t r0 = 0; r0 < rows; r0 += T) {
    const int64_t r1 = std::min(rows, r0 + T);
    for (int64_t c0 = 0; c0 < cols; c0 += T) {
      const int64_t c1 = std::min(cols, c0 + T);
      for (int64_t r = r0; r < r1; ++r) {
        for (int64_t c = c0; c < c1; ++c) dst[r * cols + c] = src[r + c * col_stride];
      }
    }
  }
}

// Copies items [lo, hi) of a collapsed strided layout (strided_copy_items): item k is the k-th
// run of `inner` elements in the output's order, found from k's digits in the outer dimensions.
struct StridedLayout {
  Shape shape, strides;
  size_t es;
  bool tiled;
  int outer_dims;
  int64_t inner;
};

void copy_items(char* dst, const char* src, const StridedLayout& l, int64_t lo, int64_t hi) {
  const int nd = static_cast<int>(l.shape.size());
  std::vector<int64_t> idx(nd, 0);
  for (int64_t d = l.outer_dims - 1, k = lo; d >= 0; --d) {
    idx[d] = k % l.shape[d];
    k /= l.shape[d];
  }
  const int64_t es = static_cast<int64_t>(l.es), inner_stride = l.strides[nd - 1];
  dst += lo * l.inner * es;
  for (int64_t item = lo; item < hi; ++item) {
    int64_t off = 0;
    for (int d = 0; d < l.outer_dims; ++d) off += idx[d] * l.strides[d];
    const char* s = src + off * es;
    if (l.tiled) {
      transpose_plane(reinterpret_cast<uint32_t*>(dst), reinterpret_cast<const uint32_t*>(s),
                      l.shape[nd - 2], l.shape[nd - 1], inner_stride);
    } else if (inner_stride == 1) {
      std::memcpy(dst, s, l.inner * es);
    } else if (es == 4) {  // f32, the common case: a typed gather the compiler can unroll
      const uint32_t* from = reinterpret_cast<const uint32_t*>(s);
      uint32_t* to = reinterpret_cast<uint32_t*>(dst);
      for (int64_t i = 0; i < l.inner; ++i) to[i] = from[i * inner_stride];
    } else {
      for (int64_t i = 0; i < l.inner; ++i)
        std::memcpy(dst + i * es, s + i * inner_stride * es, es);
    }
    dst += l.inner * es;
    for (int d = l.outer_dims - 1; d >= 0; --d) {
      if (++idx[d] < l.shape[d]) break;
      idx[d] = 0;
    }
  }
}

// Copies a strided host tensor into contiguous host memory, element by element of size `es`.
// The innermost dimension is copied in one loop so the common cases (a transpose of the last
// two dims, a narrow) stay cheap. Large copies (the transposes and permutes of the attention
// blocks' tokens) are split over the OpenMP threads by runs of the output: each thread writes
// its own part, so the result does not depend on the split.
void host_strided_copy(char* dst, const char* src, size_t es, Shape shape, Shape strides) {
  const int64_t n = shape_numel(shape);
  if (n == 0) return;
  if (shape.empty()) {
    std::memcpy(dst, src, es);
    return;
  }
  collapse_dims(shape, strides);
  const int nd = static_cast<int>(shape.size());
  StridedLayout l{shape, strides, es, false, 0, 0};
  // A transpose of the last two dims of f32: tiled, one plane per outer index.
  l.tiled = es == 4 && nd >= 2 && strides[nd - 2] == 1 && strides[nd - 1] != 1;
  l.inner = l.tiled ? shape[nd - 2] * shape[nd - 1] : shape[nd - 1];
  l.outer_dims = l.tiled ? nd - 2 : nd - 1;
  const int64_t items = n / l.inner;
  // Below ~128 KiB a copy costs less than waking the threads.
  constexpr int64_t kParallelBytes = 128 << 10;
  if (items < 2 || n * static_cast<int64_t>(es) < kParallelBytes || omp_in_parallel() ||
      omp_get_max_threads() == 1) {
    copy_items(dst, src, l, 0, items);
    return;
  }
#pragma omp parallel
  {
    const int64_t nt = omp_get_num_threads(), t = omp_get_thread_num();
    const int64_t chunk = (items + nt - 1) / nt;
    const int64_t lo = std::min(items, t * chunk), hi = std::min(items, lo + chunk);
    if (lo < hi) copy_items(dst, src, l, lo, hi);
  }
}

}  // namespace

// ---- creation --------------------------------------------------------------------------------

Tensor Tensor::empty(const Shape& shape, DType dtype, Device device) {
  for (int64_t d : shape) NV_CHECK(d >= 0, "Tensor::empty: negative size in {}", shape_str(shape));
  Tensor t;
  // Sizes and strides first, overflow-checked, so an absurd shape is refused before any
  // allocation is attempted.
  t.strides_ = contiguous_strides(shape);
  const int64_t bytes =
      checked_mul(shape_numel(shape), static_cast<int64_t>(dtype_size(dtype)), "Tensor::empty");
  t.storage_ = std::make_shared<Storage>(static_cast<size_t>(bytes), device);
  t.shape_ = shape;
  t.dtype_ = dtype;
  return t;
}

Tensor Tensor::zeros(const Shape& shape, DType dtype, Device device) {
  Tensor t = empty(shape, dtype, device);
  t.zero_();
  return t;
}

Tensor Tensor::ones(const Shape& shape, DType dtype, Device device) {
  NV_CHECK(dtype == DType::F32, "Tensor::ones: only f32 is supported, got {}", dtype_name(dtype));
  return full(shape, 1.0f, device);
}

Tensor Tensor::full(const Shape& shape, float value, Device device) {
  Tensor t = empty(shape, DType::F32, device);
  t.fill_(value);
  return t;
}

Tensor Tensor::from_vector(const std::vector<float>& values, const Shape& shape) {
  NV_CHECK(static_cast<int64_t>(values.size()) == shape_numel(shape),
           "Tensor::from_vector: {} values for shape {}", values.size(), shape_str(shape));
  Tensor t = empty(shape);
  if (!values.empty()) std::memcpy(t.raw_data(), values.data(), values.size() * sizeof(float));
  return t;
}

Tensor Tensor::from_vector_i64(const std::vector<int64_t>& values, const Shape& shape) {
  NV_CHECK(static_cast<int64_t>(values.size()) == shape_numel(shape),
           "Tensor::from_vector_i64: {} values for shape {}", values.size(), shape_str(shape));
  Tensor t = empty(shape, DType::I64);
  if (!values.empty()) std::memcpy(t.raw_data(), values.data(), values.size() * sizeof(int64_t));
  return t;
}

Tensor Tensor::scalar(float value, Device device) {
  return full({}, value, device);
}

// ---- properties ------------------------------------------------------------------------------

int64_t Tensor::size(int64_t d) const {
  return shape_[wrap_dim(d, shape_, "Tensor::size")];
}

bool Tensor::is_contiguous() const {
  int64_t expected = 1;
  for (size_t i = shape_.size(); i-- > 0;) {
    if (shape_[i] == 1) continue;
    if (strides_[i] != expected) return false;
    expected *= shape_[i];
  }
  return true;
}

std::string Tensor::str() const {
  if (!defined()) return "Tensor(undefined)";
  return fmt::format("Tensor({}, {}, {})", dtype_name(dtype_), device().str(), shape_str(shape_));
}

void* Tensor::raw_data() const {
  NV_CHECK(defined(), "raw_data() of an undefined tensor");
  return static_cast<char*>(storage_->data()) + offset_ * static_cast<int64_t>(dtype_size(dtype_));
}

// ---- views -----------------------------------------------------------------------------------

Tensor Tensor::view(const Shape& shape) const {
  NV_CHECK(is_contiguous(), "Tensor::view: {} is not contiguous; use reshape()", str());
  Tensor t = *this;
  t.shape_ = infer_shape(shape, shape_, "Tensor::view");
  t.strides_ = contiguous_strides(t.shape_);
  return t;
}

Tensor Tensor::reshape(const Shape& shape) const {
  return is_contiguous() ? view(shape) : contiguous().view(shape);
}

Tensor Tensor::transpose(int64_t a, int64_t b) const {
  a = wrap_dim(a, shape_, "Tensor::transpose");
  b = wrap_dim(b, shape_, "Tensor::transpose");
  Tensor t = *this;
  std::swap(t.shape_[a], t.shape_[b]);
  std::swap(t.strides_[a], t.strides_[b]);
  return t;
}

Tensor Tensor::permute(const std::vector<int64_t>& order) const {
  NV_CHECK(static_cast<int64_t>(order.size()) == dim(),
           "Tensor::permute: {} axes for a {}-d tensor", order.size(), dim());
  std::vector<bool> seen(order.size(), false);
  Tensor t = *this;
  for (size_t i = 0; i < order.size(); ++i) {
    int64_t src = wrap_dim(order[i], shape_, "Tensor::permute");
    NV_CHECK(!seen[src], "Tensor::permute: axis {} repeated", src);
    seen[src] = true;
    t.shape_[i] = shape_[src];
    t.strides_[i] = strides_[src];
  }
  return t;
}

Tensor Tensor::narrow(int64_t d, int64_t start, int64_t length) const {
  d = wrap_dim(d, shape_, "Tensor::narrow");
  NV_CHECK(start >= 0 && length >= 0 && start + length <= shape_[d],
           "Tensor::narrow: [{}, {}) out of range for dimension {} of size {}", start,
           start + length, d, shape_[d]);
  Tensor t = *this;
  t.offset_ += start * strides_[d];
  t.shape_[d] = length;
  return t;
}

Tensor Tensor::unsqueeze(int64_t d) const {
  Shape s = shape_;
  s.push_back(1);  // d indexes the result, one rank more than this tensor
  d = wrap_dim(d, s, "Tensor::unsqueeze");
  s.pop_back();
  s.insert(s.begin() + d, 1);
  return reshape(s);
}

// ---- copies ----------------------------------------------------------------------------------

Tensor Tensor::contiguous() const {
  if (is_contiguous()) return *this;
  return clone();
}

Tensor Tensor::clone() const {
  NV_CHECK(defined(), "clone() of an undefined tensor");
  profiler::OpScope scope(profiler::OpKind::Copies);  // contiguous() copies land here too
  profiler::add_bytes(2 * static_cast<int64_t>(nbytes()));
  Tensor out = empty(shape_, dtype_, device());
  out.copy_(*this);
  return out;
}

Tensor Tensor::to(Device target) const {
  NV_CHECK(defined(), "to() of an undefined tensor");
  if (device() == target) return *this;
  Tensor out = empty(shape_, dtype_, target);
  out.copy_(*this);
  return out;
}

Tensor Tensor::to(DType target) const {
  NV_CHECK(defined(), "to() of an undefined tensor");
  if (dtype_ == target) return *this;
  NV_CHECK(device().is_cpu(), "Tensor::to({}): dtype conversion runs on the CPU; {} is on {}",
           dtype_name(target), str(), device().str());
  Tensor src = contiguous();
  Tensor out = empty(shape_, target);
  const int64_t n = numel();
  // Go through float: every conversion we need (weights in f16/bf16, counters in i64) is exact
  // or rounds as PyTorch does.
  auto load = [&](int64_t i) -> double {
    switch (dtype_) {
      case DType::F32:
        return static_cast<const float*>(src.raw_data())[i];
      case DType::F16:
        return f16_to_float(static_cast<const uint16_t*>(src.raw_data())[i]);
      case DType::BF16:
        return bf16_to_float(static_cast<const uint16_t*>(src.raw_data())[i]);
      case DType::I64:
        return static_cast<double>(static_cast<const int64_t*>(src.raw_data())[i]);
    }
    return 0;
  };
  for (int64_t i = 0; i < n; ++i) {
    double v = load(i);
    switch (target) {
      case DType::F32:
        static_cast<float*>(out.raw_data())[i] = static_cast<float>(v);
        break;
      case DType::F16:
        static_cast<uint16_t*>(out.raw_data())[i] = float_to_f16(static_cast<float>(v));
        break;
      case DType::BF16:
        static_cast<uint16_t*>(out.raw_data())[i] = float_to_bf16(static_cast<float>(v));
        break;
      case DType::I64:
        static_cast<int64_t*>(out.raw_data())[i] = static_cast<int64_t>(v);
        break;
    }
  }
  return out;
}

void Tensor::copy_(const Tensor& src) const {
  NV_CHECK(defined() && src.defined(), "copy_ with an undefined tensor");
  NV_CHECK(shape_ == src.shape_, "copy_: destination {} and source {} differ in shape",
           shape_str(shape_), shape_str(src.shape_));
  NV_CHECK(dtype_ == src.dtype_, "copy_: destination is {}, source is {}", dtype_name(dtype_),
           dtype_name(src.dtype_));
  NV_CHECK(is_contiguous(), "copy_: the destination {} must be contiguous", str());
  const size_t es = dtype_size(dtype_);
  const bool src_dev = src.device().is_cuda(), dst_dev = device().is_cuda();
  if (!src_dev && !dst_dev) {
    host_strided_copy(static_cast<char*>(raw_data()), static_cast<const char*>(src.raw_data()), es,
                      src.shape_, src.strides_);
    return;
  }
  if (src_dev && dst_dev && src.device() != device()) {
    // Between two GPUs: contiguous on the source device, then one peer copy.
    Tensor s = src.contiguous();
    cuda_rt::copy_between_devices(raw_data(), device().index, s.raw_data(), src.device().index,
                                  nbytes());
    return;
  }
  // On the device of the one CUDA side (both sides' when they share it).
  DeviceGuard guard(dst_dev ? device() : src.device());
  if (src_dev && dst_dev && !src.is_contiguous()) {
    cuda_rt::strided_copy(raw_data(), src.raw_data(), es, static_cast<int>(src.dim()),
                          src.shape_.data(), src.strides_.data(), src.numel());
    return;
  }
  // Across devices: make the source contiguous on its own side, then one bulk transfer.
  Tensor s = src.contiguous();
  cuda_rt::copy_bytes(raw_data(), dst_dev, s.raw_data(), src_dev, nbytes());
}

const Tensor& Tensor::fill_(float value) const {
  NV_CHECK(dtype_ == DType::F32 || value == 0.0f, "fill_: non-zero fill needs f32, tensor is {}",
           dtype_name(dtype_));
  NV_CHECK(is_contiguous(), "fill_: {} must be contiguous", str());
  if (device().is_cuda()) {
    DeviceGuard guard(device());
    if (value == 0.0f) {
      cuda_rt::memset_zero(raw_data(), nbytes());
    } else {
      cuda_rt::fill_f32(static_cast<float*>(raw_data()), value, numel());
    }
    return *this;
  }
  if (value == 0.0f) {
    if (numel() > 0) std::memset(raw_data(), 0, nbytes());
  } else {
    std::fill_n(static_cast<float*>(raw_data()), numel(), value);
  }
  return *this;
}

const Tensor& Tensor::zero_() const {
  return fill_(0.0f);
}

// ---- host access -----------------------------------------------------------------------------

std::vector<float> Tensor::to_vector() const {
  NV_CHECK(dtype_ == DType::F32, "to_vector: tensor is {}, not f32", dtype_name(dtype_));
  Tensor c = cpu().contiguous();
  const float* p = c.numel() ? c.data<float>() : nullptr;
  return std::vector<float>(p, p + c.numel());
}

std::vector<int64_t> Tensor::to_vector_i64() const {
  NV_CHECK(dtype_ == DType::I64, "to_vector_i64: tensor is {}, not i64", dtype_name(dtype_));
  Tensor c = cpu().contiguous();
  const int64_t* p = c.numel() ? c.data<int64_t>() : nullptr;
  return std::vector<int64_t>(p, p + c.numel());
}

float Tensor::item() const {
  NV_CHECK(numel() == 1, "item(): tensor {} has {} elements, not 1", str(), numel());
  return to_vector()[0];
}

void check_shape(const Tensor& t, const Shape& expected, const char* what) {
  NV_CHECK(t.defined(), "{}: tensor is undefined, expected shape {}", what, shape_str(expected));
  NV_CHECK(t.shape() == expected, "{}: expected shape {}, got {}", what, shape_str(expected),
           shape_str(t.shape()));
}

}  // namespace nextvit
