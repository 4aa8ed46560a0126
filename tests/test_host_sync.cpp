// Issue 10 item 1: no hidden synchronisation. The runtime counts every wait of the host for the
// device (cuda_rt::host_synchronizations()); in the emulated build the emulator counts every
// CUDA call that waits on a real GPU as well (nvemu::host_synchronizations()), which catches a
// wait that bypasses the runtime. A training step must make none; reading the loss makes one.
// Also: Philox (the drop-path generator) against its published test vectors, drop-path masks
// equal on CPU and device, uploads through page-locked staging, cross-entropy targets checked
// on the device, gradient clipping on the device.
#include "core/cuda_runtime.h"
#include "core/philox.h"
#include "kernels/dispatch.h"
#include "kernels/drop_path.h"
#include "models/nextvit.h"
#include "test_util.h"
#include "train/optim/adamw.h"
#include "train/optim/ema.h"
#include "train/optim/grad_clip.h"
#include "train/train_step.h"

#ifdef NEXTVIT_CUDA_EMULATED
#include <nvemu.h>
#endif

using namespace nextvit;

namespace {

// Both counts: nextvit's own, and (emulated build) every waiting CUDA call.
struct SyncCount {
  int64_t runtime = cuda_rt::host_synchronizations();
#ifdef NEXTVIT_CUDA_EMULATED
  int64_t emulator = nvemu::host_synchronizations();
#else
  int64_t emulator = 0;
#endif
  int64_t runtime_since() const {
    return cuda_rt::host_synchronizations() - runtime;
  }
  int64_t emulator_since() const {
#ifdef NEXTVIT_CUDA_EMULATED
    return nvemu::host_synchronizations() - emulator;
#else
    return 0;
#endif
  }
};

}  // namespace

TEST_CASE("philox: Philox4x32-10 matches the Random123 known-answer vectors", "[rng]") {
  using philox::Block;
  const Block a = philox::philox4x32_10(Block{{0, 0, 0, 0}}, 0, 0);
  const Block b = philox::philox4x32_10(Block{{~0u, ~0u, ~0u, ~0u}}, ~0u, ~0u);
  const Block c = philox::philox4x32_10(Block{{0x243f6a88u, 0x85a308d3u, 0x13198a2eu, 0x03707344u}},
                                        0xa4093822u, 0x299f31d0u);
  REQUIRE(std::vector<uint32_t>(a.v, a.v + 4) ==
          std::vector<uint32_t>{0x6627e8d5u, 0xe169c58du, 0xbc57ac4cu, 0x9b00dbd8u});
  REQUIRE(std::vector<uint32_t>(b.v, b.v + 4) ==
          std::vector<uint32_t>{0x408f276du, 0x41c83b0eu, 0xa20bc7c6u, 0x6d5451fdu});
  REQUIRE(std::vector<uint32_t>(c.v, c.v + 4) ==
          std::vector<uint32_t>{0xd16cfe09u, 0x94fdccebu, 0x5001e420u, 0x24126ea1u});
  // uniform() is in [0, 1) and differs between indices and seeds.
  REQUIRE(philox::uniform(1, 0) != philox::uniform(1, 1));
  REQUIRE(philox::uniform(1, 0) != philox::uniform(2, 0));
  for (uint64_t i = 0; i < 1000; ++i) {
    const float u = philox::uniform(7, i);
    REQUIRE((u >= 0.0f && u < 1.0f));
  }
}

TEST_CASE("cuda: drop-path masks are drawn on the device and equal the CPU's",
          "[cuda][drop_path]") {
  if (!cuda_available()) return;
  const int64_t rows = 1000;
  for (float keep : {0.0f, 0.3f, 0.9f, 1.0f}) {
    Tensor cpu = Tensor::empty({rows}), gpu = Tensor::empty({rows}, DType::F32, Device::cuda());
    kernels::cpu::drop_path_scales(rows, 0x1234abcdULL, keep, cpu.data<float>());
    const SyncCount before;
    NV_DISPATCH(Device::cuda(), drop_path_scales, rows, 0x1234abcdULL, keep, gpu.data<float>());
    REQUIRE(before.runtime_since() == 0);
    REQUIRE(before.emulator_since() == 0);
    REQUIRE(gpu.to_vector() == cpu.to_vector());  // bit for bit
  }
  // The op: the same generator state gives the same output on both devices.
  Generator data(4), g(5), h(5);
  const Tensor x = test::random_tensor({64, 3, 4}, data);
  Tensor yc = ops::drop_path(Variable(x), 0.5f, true, g).data();
  Tensor yg = ops::drop_path(Variable(x.to(Device::cuda())), 0.5f, true, h).data();
  REQUIRE(yg.to_vector() == yc.to_vector());
}

TEST_CASE("cuda: uploads and device copies do not wait for the device", "[cuda]") {
  if (!cuda_available()) return;
  std::vector<float> host(100000);
  for (size_t i = 0; i < host.size(); ++i) host[i] = float(i);
  const Tensor src = Tensor::from_vector(host, {int64_t(host.size())});
  const SyncCount before;
  const Tensor d = src.to(Device::cuda());
  // The caller may overwrite its buffer at once: the staging copy was taken.
  std::fill(src.data<float>(), src.data<float>() + src.numel(), -1.0f);
  const Tensor e = d.clone();  // device to device
  REQUIRE(before.runtime_since() == 0);
  REQUIRE(before.emulator_since() == 0);
  REQUIRE(e.to_vector() == host);  // reading back is the one wait
  REQUIRE(before.runtime_since() == 1);
}

TEST_CASE("cuda: an out-of-range target is found on the device and reported at the next read",
          "[cuda][cross_entropy]") {
  if (!cuda_available()) return;
  const Variable x(Tensor::zeros({3, 5}, DType::F32, Device::cuda()));
  const SyncCount before;
  Variable loss = ops::cross_entropy(x, Tensor::from_vector_i64({1, 7, 0}, {3}).to(Device::cuda()));
  REQUIRE(before.runtime_since() == 0);
  REQUIRE_THROWS_WITH(loss.data().item(),
                      Catch::Contains("cross_entropy: target 7 of sample 1 is out of range for 5 "
                                      "classes (logits (3, 5)); found on the device"));
  // Reported once; good targets work again, and negative ones are named as such.
  Variable ok = ops::cross_entropy(x, Tensor::from_vector_i64({1, 2, 0}, {3}).to(Device::cuda()));
  REQUIRE(ok.data().item() == Approx(std::log(5.0)));
  Variable neg =
      ops::cross_entropy(x, Tensor::from_vector_i64({1, -3, -1}, {3}).to(Device::cuda()));
  REQUIRE_THROWS_WITH(cuda_rt::synchronize(), Catch::Contains("target -3 of sample 1"));
}

TEST_CASE("clip_grad_norm_on_device: the same norm and gradients as clip_grad_norm",
          "[optim][cuda]") {
  std::vector<Device> devices{Device::cpu()};
  if (cuda_available()) devices.push_back(Device::cuda());
  for (Device dev : devices) {
    INFO(dev.str());
    for (float max_norm : {0.5f, 100.0f}) {
      Generator g(11);
      Variable a(Tensor::zeros({3, 4}), true), b(Tensor::zeros({7}), true);
      a.set_grad(test::random_tensor({3, 4}, g));
      b.set_grad(test::random_tensor({7}, g));
      Variable c(a.data().clone().to(dev), true), d(b.data().clone().to(dev), true);
      c.set_grad(a.grad().clone().to(dev));
      d.set_grad(b.grad().clone().to(dev));
      const float expected = clip_grad_norm({a, b}, max_norm);
      const Tensor norm = clip_grad_norm_on_device({c, d}, max_norm);
      REQUIRE(norm.device() == dev);
      REQUIRE(norm.item() == expected);
      REQUIRE(c.grad().to_vector() == a.grad().to_vector());
      REQUIRE(d.grad().to_vector() == b.grad().to_vector());
    }
  }
}

TEST_CASE("cuda: a training step makes no host synchronisation, reading its loss makes one",
          "[cuda][trainer]") {
  if (!cuda_available()) return;
  NextViTConfig config = test::reduced_config("sync_test", 3, 10);
  config.sr_ratios = {4, 2, 2, 1};
  config.drop_path = 0.2f;  // drop-path masks on the device
  NextViT model(config, 3);
  model.to(Device::cuda());
  model.train();
  AdamW optimizer(weight_decay_groups(model, 0.05));
  ModelEma ema(model, 0.9);
  StepSetup setup{&model, &optimizer, &ema, model.parameters(), Device::cuda(), 0.1f, 1.0f};
  Generator g(8);
  data::Batch batch;
  batch.images = test::random_tensor({2, 3, 32, 32}, g);
  batch.labels = Tensor::from_vector_i64({3, 9}, {2});
  StepSums sums;
  const SyncCount before;
  // The first step: its allocations, cuDNN plans and staging buffers are made here too.
  train_step(setup, batch, sums);
  REQUIRE(before.runtime_since() == 0);
  REQUIRE(before.emulator_since() == 0);
  const StepSums::Totals t = sums.take();  // the logging step's read-back
  REQUIRE(before.runtime_since() == 1);
  REQUIRE(t.steps == 1);
  REQUIRE(std::isfinite(t.loss_sum));
  REQUIRE(t.loss_sum > 0);
  REQUIRE(t.grad_norm_sum > 0);
}
