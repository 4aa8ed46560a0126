// core/: tensors, views, copies, dtype conversion, the RNG.
#include <omp.h>

#include <algorithm>

#include "core/cuda_runtime.h"
#include "core/half.h"
#include "core/rng.h"
#include "core/tensor.h"
#include "kernels/dispatch.h"
#include "test_util.h"

using namespace nextvit;

// A kernel with a return value, declared on both devices as every kernel is.
namespace nextvit::kernels::cpu {
int64_t dispatch_probe(int64_t n) {
  return n + 1;
}
}  // namespace nextvit::kernels::cpu
namespace nextvit::kernels::cuda {
[[maybe_unused]] int64_t dispatch_probe(int64_t n) {
  return n + 2;
}
}  // namespace nextvit::kernels::cuda

TEST_CASE("dispatch: a kernel may return a value", "[core]") {
  REQUIRE(NV_DISPATCH(Device::cpu(), dispatch_probe, 40) == 41);
#ifdef NEXTVIT_WITH_CUDA
  REQUIRE(NV_DISPATCH(Device::cuda(), dispatch_probe, 40) == 42);
#else
  REQUIRE_THROWS_WITH(NV_DISPATCH(Device::cuda(), dispatch_probe, 40),
                      Catch::Contains("dispatch_probe: the tensor is on a CUDA device but nextvit "
                                      "was built without CUDA"));
#endif
}

TEST_CASE("tensor: creation, shape and contiguous strides", "[core]") {
  Tensor t = Tensor::zeros({2, 3, 4});
  REQUIRE(t.dim() == 3);
  REQUIRE(t.numel() == 24);
  REQUIRE(t.strides() == Shape{12, 4, 1});
  REQUIRE(t.is_contiguous());
  REQUIRE(t.size(-1) == 4);
  for (float v : t.to_vector()) REQUIRE(v == 0.0f);
  REQUIRE(Tensor::full({3}, 2.5f).to_vector() == std::vector<float>{2.5f, 2.5f, 2.5f});
  REQUIRE(reinterpret_cast<uintptr_t>(t.raw_data()) % 64 == 0);
  REQUIRE_THROWS_WITH(Tensor::from_vector({1, 2, 3}, {2, 2}),
                      Catch::Contains("3 values for shape (2, 2)"));
  REQUIRE_THROWS_WITH(t.size(3), Catch::Contains("out of range"));
}

TEST_CASE("tensor: views share storage, transpose and permute move strides", "[core]") {
  std::vector<float> v(6);
  for (int i = 0; i < 6; ++i) v[i] = float(i);
  Tensor t = Tensor::from_vector(v, {2, 3});
  Tensor tt = t.transpose(0, 1);
  REQUIRE(tt.shape() == Shape{3, 2});
  REQUIRE_FALSE(tt.is_contiguous());
  REQUIRE(tt.shares_storage(t));
  REQUIRE(tt.contiguous().to_vector() == std::vector<float>{0, 3, 1, 4, 2, 5});
  REQUIRE_THROWS_WITH(tt.view({6}), Catch::Contains("not contiguous"));
  REQUIRE(tt.reshape({6}).to_vector() == std::vector<float>{0, 3, 1, 4, 2, 5});
  REQUIRE(t.view({3, -1}).shape() == Shape{3, 2});
  REQUIRE_THROWS(t.view({4, -1}));

  Tensor n = t.narrow(1, 1, 2);  // columns 1..2
  REQUIRE(n.to_vector() == std::vector<float>{1, 2, 4, 5});
  n.contiguous();  // no throw

  Tensor p = Tensor::from_vector(std::vector<float>(24, 0), {2, 3, 4});
  float* pd = p.data<float>();
  for (int i = 0; i < 24; ++i) pd[i] = float(i);
  Tensor q = p.permute({2, 0, 1}).contiguous();  // q[k][i][j] = p[i][j][k]
  REQUIRE(q.shape() == Shape{4, 2, 3});
  REQUIRE(q.to_vector()[1 * 6 + 1 * 3 + 2] == pd[1 * 12 + 2 * 4 + 1]);
  REQUIRE(t.unsqueeze(0).shape() == Shape{1, 2, 3});
}

// The host copy collapses dimensions laid out as one and copies transposes of the last two
// dims in 8 x 8 tiles: every permutation of an odd-sized 4-D tensor (tiles with remainders,
// a size-1 dim, narrowed views) must come out element for element.
TEST_CASE("tensor: contiguous() of permuted and narrowed views, element by element", "[core]") {
  const Shape shape{3, 1, 11, 13};
  std::vector<float> v(3 * 11 * 13);
  for (size_t i = 0; i < v.size(); ++i) v[i] = float(i);
  const Tensor base = Tensor::from_vector(v, shape);
  std::vector<int64_t> order{0, 1, 2, 3};
  do {
    for (int64_t cut : {0, 1}) {
      // Narrowed on the last source dim (cut = 1): runs no longer line up.
      const Tensor src = base.narrow(3, cut, 13 - 2 * cut);
      const Tensor c = src.permute(order).contiguous();
      const Shape& s = src.shape();
      std::vector<float> got = c.to_vector();
      int64_t k = 0, idx[4];
      for (idx[0] = 0; idx[0] < s[order[0]]; ++idx[0])
        for (idx[1] = 0; idx[1] < s[order[1]]; ++idx[1])
          for (idx[2] = 0; idx[2] < s[order[2]]; ++idx[2])
            for (idx[3] = 0; idx[3] < s[order[3]]; ++idx[3], ++k) {
              int64_t at[4];
              for (int d = 0; d < 4; ++d) at[order[d]] = idx[d];
              const float want = v[((at[0] * 1 + at[1]) * 11 + at[2]) * 13 + at[3] + cut];
              REQUIRE(got[k] == want);
            }
      REQUIRE(k == int64_t(got.size()));
    }
  } while (std::next_permutation(order.begin(), order.end()));
}

TEST_CASE("tensor: large contiguous() copies split over threads, element by element", "[core]") {
  // 5 x 7 x 33 x 37 floats (167 KiB): above the size from which the copy uses every thread;
  // the run counts (5 * 7 * 33, 5 * 7, 5, ...) do not split evenly between two threads.
  const Shape shape{5, 7, 33, 37};
  std::vector<float> v(shape_numel(shape));
  for (size_t i = 0; i < v.size(); ++i) v[i] = float(i);
  const Tensor base = Tensor::from_vector(v, shape);
  const int saved = omp_get_max_threads();
  for (int threads : {1, 2}) {
    omp_set_num_threads(threads);
    std::vector<int64_t> order{0, 1, 2, 3};
    do {
      INFO("threads " << threads << " order " << order[0] << order[1] << order[2] << order[3]);
      const Tensor c = base.permute(order).contiguous();
      std::vector<float> got = c.to_vector();
      int64_t k = 0, idx[4], mismatches = 0;
      for (idx[0] = 0; idx[0] < shape[order[0]]; ++idx[0])
        for (idx[1] = 0; idx[1] < shape[order[1]]; ++idx[1])
          for (idx[2] = 0; idx[2] < shape[order[2]]; ++idx[2])
            for (idx[3] = 0; idx[3] < shape[order[3]]; ++idx[3], ++k) {
              int64_t at[4];
              for (int d = 0; d < 4; ++d) at[order[d]] = idx[d];
              mismatches += got[k] != v[((at[0] * 7 + at[1]) * 33 + at[2]) * 37 + at[3]];
            }
      REQUIRE(mismatches == 0);
    } while (std::next_permutation(order.begin(), order.end()));
  }
  omp_set_num_threads(saved);
}

TEST_CASE("tensor: writes through a view reach the base, a clone does not", "[core]") {
  Tensor t = Tensor::zeros({4});
  Tensor c = t.clone();
  t.narrow(0, 1, 2).fill_(7.0f);
  REQUIRE(t.to_vector() == std::vector<float>{0, 7, 7, 0});
  REQUIRE(c.to_vector() == std::vector<float>{0, 0, 0, 0});
}

TEST_CASE("tensor: dtype conversions round to nearest even", "[core]") {
  Tensor t = Tensor::from_vector({1.0f, -2.5f, 65504.0f, 1e-8f, 0.1f}, {5});
  Tensor h = t.to(DType::F16).to(DType::F32);
  std::vector<float> hv = h.to_vector();
  REQUIRE(hv[0] == 1.0f);
  REQUIRE(hv[1] == -2.5f);
  REQUIRE(hv[2] == 65504.0f);
  REQUIRE(hv[3] == 0.0f);  // below the smallest f16 subnormal
  REQUIRE(hv[4] == Approx(0.0999755859375f).epsilon(0));
  Tensor b = t.to(DType::BF16).to(DType::F32);
  REQUIRE(b.to_vector()[4] == 0.10009765625f);
  REQUIRE(f16_to_float(0x0001) == Approx(5.960464477539063e-08));  // smallest subnormal
  Tensor i = Tensor::from_vector_i64({3, -4}, {2}).to(DType::F32);
  REQUIRE(i.to_vector() == std::vector<float>{3, -4});
  REQUIRE_THROWS_WITH(t.data<int64_t>(), Catch::Contains("holds f32"));
}

TEST_CASE("tensor: CUDA tensors fail clearly when there is no CUDA device", "[core]") {
  if (cuda_available())
    SUCCEED("a CUDA device is present; covered by the CUDA tests");
  else
    REQUIRE_THROWS_WITH(Tensor::zeros({2}, DType::F32, Device::cuda()), Catch::Contains("CUDA"));
  REQUIRE(parse_device("cuda:0").index == 0);
  // cuda:N names a device that is present, or is refused (never silently run on device 0);
  // tests/test_multi_device.cpp covers the devices that are there.
  const int n = cuda_rt::device_count();
  REQUIRE_THROWS_WITH(parse_device(fmt::format("cuda:{}", std::max(n, 1))),
                      Catch::Contains(n == 0 ? "CUDA" : fmt::format("{} CUDA device", n)));
  REQUIRE_THROWS_WITH(parse_device("cuda:99999999999"), Catch::Contains("expected cpu, cuda"));
  REQUIRE_THROWS_WITH(parse_device("gpu"), Catch::Contains("expected cpu, cuda or cuda:N"));
}

TEST_CASE("rng: seeded, reproducible, restorable, with the right moments", "[core]") {
  Generator a(42), b(42);
  for (int i = 0; i < 10; ++i) REQUIRE(a.next_u64() == b.next_u64());
  auto st = a.state();
  float x = a.normal();
  a.set_state(st);
  REQUIRE(a.normal() == x);
  Tensor t = Tensor::empty({100000});
  fill_normal(t, a, 1.0f, 2.0f);
  double s = 0, s2 = 0;
  for (float v : t.to_vector()) {
    s += v;
    s2 += double(v) * v;
  }
  double m = s / 1e5, var = s2 / 1e5 - m * m;
  REQUIRE(m == Approx(1.0).margin(0.03));
  REQUIRE(var == Approx(4.0).epsilon(0.03));
  fill_trunc_normal(t, a, 1.0f, -0.5f, 0.5f);
  for (float v : t.to_vector()) REQUIRE((v >= -0.5f && v <= 0.5f));
  for (int i = 0; i < 1000; ++i) {
    int64_t r = a.randint(7);
    REQUIRE((r >= 0 && r < 7));
  }
}

// The CUDA backend against the CPU (test::check_backends).
TEST_CASE("cuda: tensors move between host and device unchanged", "[cuda]") {
  if (test::skip_without_gpu()) return;
  Tensor a = test::seeded_tensor({3, 5, 7}, 1);
  Tensor d = a.to(Device::cuda());
  REQUIRE(d.device().is_cuda());
  REQUIRE(d.cpu().to_vector() == a.to_vector());
  // A non-contiguous device tensor made contiguous on the device.
  REQUIRE(d.permute({2, 0, 1}).contiguous().cpu().to_vector() ==
          a.permute({2, 0, 1}).contiguous().to_vector());
  Tensor z = Tensor::zeros({1000}, DType::F32, Device::cuda());
  REQUIRE(z.cpu().to_vector() == std::vector<float>(1000, 0.0f));
  REQUIRE(Tensor::full({33}, 1.5f, Device::cuda()).cpu().to_vector() ==
          std::vector<float>(33, 1.5f));
}
