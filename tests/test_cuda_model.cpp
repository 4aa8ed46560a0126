// The whole CUDA backend end to end: a reduced Next-ViT's forward and backward on the device
// against the CPU, and training on the device with a checkpoint saved and resumed. Named
// "cuda: ..." (skipped without a device); in the emulated build they run every kernel, cuBLAS
// and cuDNN call of a training step.
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "core/safetensors.h"
#include "models/nextvit.h"
#include "test_util.h"
#include "train/data/fashion_mnist.h"
#include "train/trainer.h"

using namespace nextvit;
namespace fs = std::filesystem;

namespace {

// test::reduced_config with the spatial reductions of a small image and no stochastic depth.
NextViTConfig reduced_config(int64_t in_channels, int64_t classes) {
  NextViTConfig c = test::reduced_config("cuda_test", in_channels, classes);
  c.sr_ratios = {4, 2, 2, 1};
  c.drop_path = 0.0f;
  return c;
}

}  // namespace

TEST_CASE("cuda: a reduced Next-ViT's forward and backward match the CPU", "[cuda][model]") {
  if (!cuda_available()) return;
  const NextViTConfig c = reduced_config(3, 10);
  NextViT cpu_model(c, 21), gpu_model(c, 21);  // the same seed: the same initial weights
  gpu_model.to(Device::cuda());
  Generator g(3);
  const Tensor x = test::random_tensor({2, 3, 64, 64}, g);
  const Tensor dy = test::random_tensor({2, 10}, g);

  // Training mode: batch statistics, running-statistics updates, every backward kernel.
  Variable yc = cpu_model.forward(Variable(x));
  Variable yg = gpu_model.forward(Variable(x.to(Device::cuda())));
  NV_REQUIRE_CLOSE(yg.data().cpu(), yc.data(), 1e-4, 1e-4 * test::max_abs(yc.data()));
  yc.backward(dy);
  yg.backward(dy.to(Device::cuda()));
  const auto pc = cpu_model.named_parameters(), pg = gpu_model.named_parameters();
  REQUIRE(pc.size() == pg.size());
  // Some gradients are rounding noise around zero (the bias of a conv followed by BatchNorm,
  // which removes any constant shift): their absolute tolerance is set by the largest gradient.
  double scale = 0;
  for (const auto& [name, v] : pc) scale = std::max(scale, test::max_abs(v.grad()));
  for (size_t i = 0; i < pc.size(); ++i) {
    INFO("gradient of " << pc[i].first);
    const Tensor& gc = pc[i].second.grad();
    NV_REQUIRE_CLOSE(pg[i].second.grad().cpu(), gc, 1e-3, 1e-3 * test::max_abs(gc) + 1e-5 * scale);
  }
  // Eval mode uses the running statistics both devices updated.
  cpu_model.eval();
  gpu_model.eval();
  NoGradGuard no_grad;
  const Tensor ec = cpu_model.forward(Variable(x)).data();
  const Tensor eg = gpu_model.forward(Variable(x.to(Device::cuda()))).data().cpu();
  NV_REQUIRE_CLOSE(eg, ec, 1e-4, 1e-4 * test::max_abs(ec));
}

TEST_CASE("cuda: training on the device saves a checkpoint and resumes it exactly",
          "[cuda][trainer]") {
  if (!cuda_available()) return;
  if (!data::FashionMnist::available(data::Split::Train) ||
      !data::FashionMnist::available(data::Split::Test)) {
    WARN("skipped: Fashion-MNIST not found (apt-get install dataset-fashion-mnist)");
    return;
  }
  const std::string tag = "." + std::to_string(::getpid());
  const std::string config = "/tmp/nextvit_cuda_train_config" + tag + ".json";
  std::ofstream(config) << reduced_config(3, 10).to_json().dump();
  auto options = [&](const std::string& out) {
    TrainOptions o;
    o.model = config;
    o.out = out + tag;
    o.device = Device::cuda();
    o.batch = 4;
    o.epochs = 2;
    o.limit_train = 16;  // 4 steps an epoch
    o.limit_eval = 8;
    o.workers = 0;
    o.quiet = true;
    o.warmup_epochs = 0;
    o.clip_grad = 1.0;  // the gradient norm's reduction on the device too
    o.seed = 5;
    fs::remove_all(o.out);
    return o;
  };
  TrainOptions full = options("/tmp/nextvit_cuda_train_full");
  const TrainResult r = train(full);
  REQUIRE(r.steps == 8);
  REQUIRE(std::isfinite(r.final_accuracy));

  TrainOptions part = options("/tmp/nextvit_cuda_train_part");
  part.stop_after_steps = 3;  // mid-epoch 1
  REQUIRE(train(part).interrupted);
  part.stop_after_steps = 0;
  part.resume = true;
  REQUIRE(train(part).steps == 8);

  // The same device, the same order of operations: the same bits.
  SafeTensors a = read_safetensors(full.out + "/model.safetensors");
  SafeTensors b = read_safetensors(part.out + "/model.safetensors");
  REQUIRE(a.size() == b.size());
  for (auto& [name, t] : a.tensors()) {
    INFO(name);
    if (t.dtype() == DType::F32) REQUIRE(t.to_vector() == b.at(name).to_vector());
  }
}
