// Optimizer kernels on the GPU, multi-tensor: one launch updates every tensor of a list, as
// PyTorch's multi_tensor_apply (and apex's) does, instead of one launch per parameter (a
// Next-ViT has hundreds of small ones, BatchNorm weights and biases, whose launches would cost
// more than their arithmetic).
//
// How data moves: the host cuts every tensor into chunks of kChunk elements and writes a table,
//   [TensorRef x count][ChunkRef x chunks]  (+ one double per chunk for the norm's partial sums)
// where a TensorRef holds the tensor's size, its buffers' pointers and its scalars, and ChunkRef
// b names the (tensor, chunk) that block b updates. The table goes to the device through the
// runtime's page-locked staging (cuda_rt::copy_bytes: queued on the stream, no host wait) into
// a block of the caching allocator, which is handed back right after the launch: the single
// stream orders any later use of that memory after this kernel. The kernel gets the table as one
// DeviceTable argument (core/cuda/launch.h), which also lets the emulator's checkers follow it.
//
// The per-element arithmetic is the CPU kernels' (kernels/cpu/optim.cpp), written in the same
// order with the same roundings, so the two devices agree to the last bit or two (fmaf
// contraction is the only difference, and -fmad is nvcc's default). Element i of a tensor gets
// the same operations whichever list it is in, so a list and its tensors one call each give the
// same bits. All memory-bound.
#include <cstring>
#include <vector>

#include "core/cuda_runtime.h"
#include "kernels/cuda/launch.cuh"
#include "kernels/optim.h"

namespace nextvit::kernels::cuda {
namespace {

using cuda_rt::DeviceTable;

constexpr int kBlock = 256;
constexpr int64_t kChunk = 32768;  // elements per block: 128 per thread

// Tensor k's entry: its size, its Depth buffers (param, grad, state...) and its scalars.
template <int Depth, typename Hyper>
struct TensorRef {
  int64_t n;
  float* ptr[Depth];
  Hyper hyper;
};
struct ChunkRef {
  int32_t tensor, chunk;
};
struct NoHyper {};

// The table of one call in host memory, then on the device (see the top of the file).
template <typename Entry>
class Table {
 public:
  // entries[k].n must be set; `partials` reserves one double per chunk after the chunk list.
  Table(const std::vector<Entry>& entries, bool partials) {
    std::vector<ChunkRef> chunks;
    for (size_t k = 0; k < entries.size(); ++k) {
      const int64_t n_chunks = (entries[k].n + kChunk - 1) / kChunk;
      NV_CHECK(n_chunks < (int64_t(1) << 31), "multi-tensor apply: a tensor of {} elements",
               entries[k].n);
      for (int64_t c = 0; c < n_chunks; ++c) chunks.push_back({int32_t(k), int32_t(c)});
    }
    blocks_ = static_cast<int64_t>(chunks.size());
    if (blocks_ == 0) return;
    const size_t entry_bytes = sizeof(Entry) * entries.size();
    const size_t chunk_bytes = (sizeof(ChunkRef) * chunks.size() + 7) / 8 * 8;
    bytes_ = entry_bytes + chunk_bytes + (partials ? sizeof(double) * chunks.size() : 0);
    std::vector<unsigned char> host(entry_bytes + chunk_bytes, 0);
    std::memcpy(host.data(), entries.data(), entry_bytes);
    std::memcpy(host.data() + entry_bytes, chunks.data(), sizeof(ChunkRef) * chunks.size());
    device_ = static_cast<unsigned char*>(cuda_rt::device_allocator()->allocate(bytes_));
    cuda_rt::copy_bytes(device_, true, host.data(), false, host.size());
    table_.data = device_;
    table_.bytes = bytes_;
    partials_ = partials ? reinterpret_cast<double*>(device_ + entry_bytes + chunk_bytes) : nullptr;
  }
  ~Table() {
    if (device_ != nullptr) cuda_rt::device_allocator()->deallocate(device_, bytes_);
  }
  Table(const Table&) = delete;
  Table& operator=(const Table&) = delete;

  int64_t blocks() const { return blocks_; }
  const DeviceTable& table() const { return table_; }
  double* partials() const { return partials_; }

 private:
  int64_t blocks_ = 0;
  size_t bytes_ = 0;
  unsigned char* device_ = nullptr;
  DeviceTable table_;
  double* partials_ = nullptr;
};

// Block b applies op to every element of its chunk.
template <typename Entry, typename Op>
__global__ void multi_tensor_kernel(DeviceTable table, int64_t count, Op op) {
  const Entry* entries = static_cast<const Entry*>(table.data);
  const ChunkRef c = reinterpret_cast<const ChunkRef*>(entries + count)[blockIdx.x];
  const Entry& e = entries[c.tensor];
  const int64_t begin = int64_t(c.chunk) * kChunk;
  const int64_t end = begin + kChunk < e.n ? begin + kChunk : e.n;
  for (int64_t i = begin + threadIdx.x; i < end; i += blockDim.x) op(e, i);
}

template <typename Entry, typename Op>
void launch_multi(const Table<Entry>& t, int64_t count, const Op& op, const char* what) {
  if (t.blocks() == 0) return;
  NV_LAUNCH(static_cast<unsigned>(t.blocks()), kBlock, 0, stream(), multi_tensor_kernel<Entry, Op>)
  (t.table(), count, op);
  NV_CUDA_CHECK_LAUNCH("{} over {} tensors in {} chunks", what, count, t.blocks());
}

using SgdRef = TensorRef<3, SgdHyper>;  // param, grad, momentum buffer
struct SgdOp {
  __device__ void operator()(const SgdRef& e, int64_t i) const {
    const SgdHyper& h = e.hyper;
    float* param = e.ptr[0];
    const float* grad = e.ptr[1];
    float d = h.weight_decay != 0.0f ? grad[i] + h.weight_decay * param[i] : grad[i];
    if (h.momentum != 0.0f) {
      float* buf = e.ptr[2];
      const float b = h.init_buffer ? d : buf[i] * h.momentum + h.one_minus_dampening * d;
      buf[i] = b;
      d = h.nesterov ? d + h.momentum * b : b;
    }
    param[i] = param[i] + (-h.lr) * d;
  }
};

using AdamWRef = TensorRef<4, AdamWHyper>;  // param, grad, exp_avg, exp_avg_sq
struct AdamWOp {
  __device__ void operator()(const AdamWRef& e, int64_t i) const {
    const AdamWHyper& h = e.hyper;
    // torch's lerp switches formula at weight 0.5 (see the CPU kernel).
    const float w = h.one_minus_beta1;
    const float g = e.ptr[1][i];
    const float p = e.ptr[0][i] * h.decay_factor;
    const float m_old = e.ptr[2][i];
    const float m = fabsf(w) < 0.5f ? m_old + w * (g - m_old) : g - (g - m_old) * (1.0f - w);
    const float v = e.ptr[3][i] * h.beta2 + h.one_minus_beta2 * g * g;
    // sqrtf and the divisions are IEEE-exact in CUDA unless -use_fast_math, as on the CPU.
    const float denom = sqrtf(v) / h.bias_correction2_sqrt + h.eps;
    e.ptr[2][i] = m;
    e.ptr[3][i] = v;
    e.ptr[0][i] = p + (-h.step_size) * m / denom;
  }
};

using EmaRef = TensorRef<2, NoHyper>;  // value, ema
struct EmaOp {
  float decay, one_minus_decay;
  __device__ void operator()(const EmaRef& e, int64_t i) const {
    e.ptr[1][i] = decay * e.ptr[1][i] + one_minus_decay * e.ptr[0][i];
  }
};

using NormRef = TensorRef<1, NoHyper>;
// Scales by *coef when clipping: coef < 1, or NaN (c != c), the same test for every thread.
struct ClipScaleOp {
  const float* coef;
  __device__ void operator()(const NormRef& e, int64_t i) const {
    const float c = *coef;
    if (c < 1.0f || c != c) e.ptr[0][i] *= c;
  }
};

// Pass 1 of the norm: block b writes the sum of squares of its chunk, in double.
__global__ void chunk_sum_squares_kernel(DeviceTable table, int64_t count,
                                         double* __restrict__ partial) {
  const NormRef* entries = static_cast<const NormRef*>(table.data);
  const ChunkRef c = reinterpret_cast<const ChunkRef*>(entries + count)[blockIdx.x];
  const NormRef& e = entries[c.tensor];
  const int64_t begin = int64_t(c.chunk) * kChunk;
  const int64_t end = begin + kChunk < e.n ? begin + kChunk : e.n;
  double acc = 0.0;
  for (int64_t i = begin + threadIdx.x; i < end; i += blockDim.x) {
    const double x = e.ptr[0][i];
    acc += x * x;
  }
  acc = block_sum(acc);
  if (threadIdx.x == 0) partial[blockIdx.x] = acc;
}

// Pass 2, one warp: lane l adds partials l, l + 32, ... in order, the shuffle tree adds the
// lanes in a fixed order; then the norm and the clipping coefficient (torch's float formula).
__global__ void norm_finish_kernel(int64_t blocks, const double* __restrict__ partial,
                                   float max_norm, float* __restrict__ norm,
                                   float* __restrict__ coef) {
  double acc = 0.0;
  for (int64_t b = threadIdx.x; b < blocks; b += 32) acc += partial[b];
  acc = warp_sum(acc);
  if (threadIdx.x != 0) return;
  const float nrm = static_cast<float>(sqrt(acc));
  norm[0] = nrm;
  if (max_norm > 0.0f) coef[0] = max_norm / (nrm + 1e-6f);
}

}  // namespace

void sgd_step(int64_t count, const int64_t* sizes, const SgdHyper* hyper, float* const* param,
              const float* const* grad, float* const* momentum_buffer) {
  std::vector<SgdRef> refs(static_cast<size_t>(count));
  for (int64_t k = 0; k < count; ++k) {
    refs[k] =
        SgdRef{sizes[k], {param[k], const_cast<float*>(grad[k]), momentum_buffer[k]}, hyper[k]};
  }
  const Table<SgdRef> t(refs, false);
  launch_multi(t, count, SgdOp{}, "sgd_step");
}

void adamw_step(int64_t count, const int64_t* sizes, const AdamWHyper* hyper, float* const* param,
                const float* const* grad, float* const* exp_avg, float* const* exp_avg_sq) {
  std::vector<AdamWRef> refs(static_cast<size_t>(count));
  for (int64_t k = 0; k < count; ++k) {
    refs[k] = AdamWRef{
        sizes[k], {param[k], const_cast<float*>(grad[k]), exp_avg[k], exp_avg_sq[k]}, hyper[k]};
  }
  const Table<AdamWRef> t(refs, false);
  launch_multi(t, count, AdamWOp{}, "adamw_step");
}

void ema_update(int64_t count, const int64_t* sizes, float decay, float one_minus_decay,
                const float* const* value, float* const* ema) {
  std::vector<EmaRef> refs(static_cast<size_t>(count));
  for (int64_t k = 0; k < count; ++k) {
    refs[k] = EmaRef{sizes[k], {const_cast<float*>(value[k]), ema[k]}, {}};
  }
  const Table<EmaRef> t(refs, false);
  launch_multi(t, count, EmaOp{decay, one_minus_decay}, "ema_update");
}

void global_norm(int64_t count, const int64_t* sizes, float* const* x, float max_norm, float* norm,
                 float* coef) {
  std::vector<NormRef> refs(static_cast<size_t>(count));
  for (int64_t k = 0; k < count; ++k) refs[k] = NormRef{sizes[k], {x[k]}, {}};
  const Table<NormRef> t(refs, true);
  if (t.blocks() == 0) {  // nothing to sum: norm 0, coefficient max_norm / 1e-6
    NV_LAUNCH(1, 32, 0, stream(), norm_finish_kernel)(0, nullptr, max_norm, norm, coef);
    NV_CUDA_CHECK_LAUNCH("global_norm of empty tensors");
    return;
  }
  NV_LAUNCH(static_cast<unsigned>(t.blocks()), kBlock, 0, stream(), chunk_sum_squares_kernel)
  (t.table(), count, t.partials());
  NV_CUDA_CHECK_LAUNCH("global_norm: sums of squares of {} tensors in {} chunks", count,
                       t.blocks());
  NV_LAUNCH(1, 32, 0, stream(), norm_finish_kernel)(t.blocks(), t.partials(), max_norm, norm, coef);
  NV_CUDA_CHECK_LAUNCH("global_norm: the sum of {} partials", t.blocks());
  if (max_norm > 0.0f) launch_multi(t, count, ClipScaleOp{coef}, "clip_scale");
}

}  // namespace nextvit::kernels::cuda
