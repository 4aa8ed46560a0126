// What a training step's autograd graph keeps, against PyTorch: the bytes alive after the
// train-mode forward and loss of the reduced Next-ViT, which the backward is waiting for, must
// not exceed what PyTorch's autograd saves for the same model and input
// (tests/data/nextvit_tiny_graph_memory.json, made by tools/make_graph_memory_reference.py).
// On the CPU and on the CUDA device (emulated in CI): the device's kernels may save other
// tensors than the CPU's. Bytes, not timings: the count is exact and the same on every machine.
#include <fstream>
#include <nlohmann/json.hpp>

#include "models/nextvit.h"
#include "test_util.h"

using namespace nextvit;

namespace {

const std::string kData = NEXTVIT_TEST_DATA_DIR;

struct Reference {
  int64_t batch, image, graph_bytes;
};

Reference pytorch_reference() {
  std::ifstream in(kData + "/nextvit_tiny_graph_memory.json");
  REQUIRE(in.good());
  const nlohmann::json j = nlohmann::json::parse(in);
  return {j.at("batch").get<int64_t>(), j.at("image").get<int64_t>(),
          j.at("graph_bytes").get<int64_t>()};
}

// Bytes the forward and loss on `device` leave alive: what is alive after them minus what was
// alive before (the model's weights and the input). The counter comes first, so that every
// tensor it counted is freed while it still stands in for the device's allocator.
int64_t graph_bytes(Device device, const Reference& ref) {
  test::LiveBytes counter(device.type);
  NextViT model(NextViTConfig::from_name(kData + "/nextvit_tiny_config.json"), 7);
  model.to(device);
  model.train();
  Generator g(5);
  const Tensor x = test::random_tensor({ref.batch, 3, ref.image, ref.image}, g).to(device);
  const Tensor y = Tensor::from_vector_i64({1, 7}, {ref.batch}).to(device);
  const int64_t before = counter.live();
  Variable loss = ops::cross_entropy(model.forward(Variable(x)), y, 0.1f);
  const int64_t held = counter.live() - before;
  loss.backward();  // the graph is sound: its backward runs
  REQUIRE(std::isfinite(model.named_parameters().front().second.grad().cpu().to_vector()[0]));
  return held;
}

}  // namespace

TEST_CASE("autograd: a training graph keeps no more than PyTorch's autograd saves",
          "[autograd][memory]") {
  const Reference ref = pytorch_reference();
  REQUIRE(ref.batch == 2);
  const int64_t ours = graph_bytes(Device::cpu(), ref);
  INFO("ours " << ours << " bytes, PyTorch " << ref.graph_bytes);
  CHECK(ours <= ref.graph_bytes);
  // And not vacuously: the graph holds at least the stem's first activation, which every
  // backward needs (batch x 8 channels x 32 x 32 floats).
  CHECK(ours >= ref.batch * 8 * 32 * 32 * 4);
}

TEST_CASE("cuda: a training graph on the device keeps no more than PyTorch's autograd saves",
          "[cuda][memory]") {
  if (!cuda_available()) return;
  const Reference ref = pytorch_reference();
  const int64_t ours = graph_bytes(Device::cuda(), ref);
  INFO("ours on the device " << ours << " bytes, PyTorch " << ref.graph_bytes);
  CHECK(ours <= ref.graph_bytes);
  CHECK(ours >= ref.batch * 8 * 32 * 32 * 4);
}
