// Issue 10 item 4: no batch size is refused for the CUDA grid's sake. The kernels whose grid y or
// z extent counts heads (pooled attention) or images (grouped 3x3 convolution) launch at most
// 65535 there and loop over the rest. Running 65536 heads on the emulator would take minutes,
// so the tests lower the limit the launches use (set_grid_yz_limit_for_testing) to 3 and run 7
// heads / images: the same loop, each block covering several.
#include "kernels/pooled_attention.h"
#include "test_util.h"

#ifdef NEXTVIT_WITH_CUDA
#include "kernels/cuda/device_props.h"
#endif

using namespace nextvit;

namespace {

#ifdef NEXTVIT_WITH_CUDA
// Lowers the grid's y/z limit for the scope of a test.
struct GridLimit {
  explicit GridLimit(int limit) { kernels::cuda::set_grid_yz_limit_for_testing(limit); }
  ~GridLimit() { kernels::cuda::set_grid_yz_limit_for_testing(0); }
};
#endif

// f on the CPU and on the device with the same inputs: outputs and input gradients agree.
#ifdef NEXTVIT_WITH_CUDA
void check_devices(const std::function<Variable(const std::vector<Variable>&)>& f,
                   const std::vector<Tensor>& inputs, double tol) {
  std::vector<Variable> c, d;
  for (const Tensor& t : inputs) {
    c.emplace_back(t.clone(), true);
    d.emplace_back(t.to(Device::cuda()), true);
  }
  Variable yc = f(c), yd = f(d);
  NV_REQUIRE_CLOSE(yd.data().cpu(), yc.data(), tol, tol);
  Generator g(4);
  const Tensor gy = test::random_tensor(yc.shape(), g);
  yc.backward(gy);
  yd.backward(gy.to(Device::cuda()));
  for (size_t i = 0; i < inputs.size(); ++i) {
    INFO("gradient of input " << i);
    NV_REQUIRE_CLOSE(d[i].grad().cpu(), c[i].grad(), 10 * tol, 10 * tol);
  }
}
#endif

}  // namespace

TEST_CASE("pooled attention: any number of heads is taken on the device", "[attention]") {
  // Batch 4096 x 16 heads (Next-ViT-S's last stage) is past the grid's 65535 rows.
  REQUIRE(kernels::pooled_attention_cuda_supported(4096 * 16, 49, 49, 32));
  REQUIRE(kernels::pooled_attention_cuda_supported(int64_t(1) << 20, 49, 49, 32));
}

TEST_CASE("cuda: heads and images beyond the grid's y/z limit are looped over", "[cuda]") {
  if (!cuda_available()) return;
#ifdef NEXTVIT_WITH_CUDA
  const GridLimit limit(3);
  Generator g(2);
  // Pooled attention, forward and backward: 7 heads on 3 grid rows.
  check_devices(
      [](const std::vector<Variable>& v) { return ops::pooled_attention(v[0], v[1], v[2], 0.25f); },
      {test::random_tensor({7, 5, 16}, g), test::random_tensor({7, 9, 16}, g),
       test::random_tensor({7, 9, 16}, g)},
      1e-5);
  // The grouped 3x3 convolution (16 channels a group), forward and backward: 7 images on 3
  // grid slices.
  check_devices(
      [](const std::vector<Variable>& v) {
        return ops::conv2d(v[0], v[1], Variable(), ops::Conv2dOptions::make(1, 1, 2));
      },
      {test::random_tensor({7, 32, 6, 5}, g), test::random_tensor({32, 16, 3, 3}, g)}, 1e-4);
#endif
}
