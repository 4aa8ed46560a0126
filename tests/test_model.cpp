// models/: configurations, parameter and MAC counts, validation, weight-name layouts.
#include "layers/ntb.h"
#include "models/deploy.h"
#include "models/nextvit_info.h"
#include "models/weights.h"
#include "test_util.h"

using namespace nextvit;

TEST_CASE("model: Next-ViT S B L parameter and MAC counts match the official model", "[model]") {
  // Reference: timm 1.0.31 nextvit_{small,base,large} (identical to the official code), params
  // summed over model.parameters(), MACs = torch.utils.flop_counter total / 2 at 1x3x224x224
  // (convolution + mm + addmm + bmm; the spec's 5.8 / 8.3 / 10.8 G).
  struct Case {
    NextViTConfig config;
    int64_t params, macs;
  };
  for (const Case& c : {Case{NextViTConfig::small(), 31763368, 5794420224},
                        Case{NextViTConfig::base(), 44818856, 8273817088},
                        Case{NextViTConfig::large(), 57874344, 10753213952}}) {
    INFO(c.config.name);
    NextViT model(c.config);
    ModelInfo info = analyze(model, 224, 224);
    REQUIRE(info.params == c.params);
    REQUIRE(model.parameter_count() == c.params);
    REQUIRE(info.macs == c.macs);
    REQUIRE(info.stages.size() == 6);
    REQUIRE(info.stages[4].height == 7);
    REQUIRE(info.stages[4].channels == 1024);
  }
}

TEST_CASE("model: state dict uses the official names in the official order", "[model]") {
  NextViT model(NextViTConfig::small());
  auto sd = model.state_dict();
  REQUIRE(sd.front().first == "stem.0.conv.weight");
  REQUIRE(sd[1].first == "stem.0.norm.weight");
  REQUIRE(sd[5].first == "stem.0.norm.num_batches_tracked");
  REQUIRE(sd.back().first == "proj_head.0.bias");
  std::map<std::string, Shape> shapes;
  for (auto& [n, t] : sd) shapes[n] = t.shape();
  // Block 6 is stage 2's NTB (256 channels: m = 192 attention, c = 64 convolution, sr 4).
  REQUIRE(shapes.at("features.6.e_mhsa.q.weight") == Shape{192, 192});
  REQUIRE(shapes.at("features.6.e_mhsa.norm.running_var") == Shape{192});
  REQUIRE(shapes.at("features.6.projection.conv.weight") == Shape{64, 192, 1, 1});
  REQUIRE(shapes.at("features.6.mhca.group_conv3x3.weight") == Shape{64, 32, 3, 3});
  REQUIRE(shapes.at("features.6.mlp.conv1.weight") == Shape{512, 256, 1, 1});
  REQUIRE(shapes.at("features.3.patch_embed.conv.weight") == Shape{192, 96, 1, 1});
  REQUIRE(shapes.count("features.1.patch_embed.conv.weight") == 0);  // identity
  REQUIRE(shapes.count("features.19.e_mhsa.norm.weight") == 0);      // stage 4: sr = 1
  REQUIRE(shapes.at("proj_head.0.weight") == Shape{1000, 1024});
  // timm's nextvit_small state_dict has 472 entries (parameters and buffers), as ours.
  REQUIRE(sd.size() == 472);
}

TEST_CASE("model: timm and official names map onto each other", "[model]") {
  NextViTConfig c = NextViTConfig::small();
  REQUIRE(timm_to_official("stages.2.blocks.9.mlp.fc2.bias", c) == "features.16.mlp.conv2.bias");
  REQUIRE(timm_to_official("stages.0.blocks.0.mhca.norm.weight", c) ==
          "features.0.mhca.norm.weight");
  REQUIRE(timm_to_official("head.fc.weight", c) == "proj_head.0.weight");
  REQUIRE(timm_to_official("stem.3.norm.running_mean", c) == "stem.3.norm.running_mean");
  REQUIRE_THROWS_WITH(timm_to_official("stages.1.blocks.4.norm.weight", c),
                      Catch::Contains("names a block"));
  NextViT model(c);
  for (auto& [name, t] : model.state_dict()) {
    REQUIRE(timm_to_official(official_to_timm(name, c), c) == name);
  }
  REQUIRE(official_to_timm("features.19.mlp.conv1.weight", c) ==
          "stages.3.blocks.2.mlp.fc1.weight");
}

TEST_CASE("model: drop-path rates follow linspace(0, max, blocks)", "[model]") {
  NextViTConfig c = NextViTConfig::small();  // 20 blocks, max 0.1
  REQUIRE(c.drop_path_rate(0) == 0.0f);
  REQUIRE(c.drop_path_rate(19) == 0.1f);
  REQUIRE(c.drop_path_rate(10) == Approx(0.1 * 10 / 19).epsilon(1e-6));
}

TEST_CASE("model: configurations that cannot work are refused before computing", "[model]") {
  NextViTConfig c = NextViTConfig::small();
  c.stage_channels[1].back() = 64;  // NTB at 64: m = make_divisible(48, 32) = 64, c = 0
  REQUIRE_THROWS_WITH(c.validate(), Catch::Contains("leaving no channels for its MHCA path"));
  c = NextViTConfig::small();
  c.stage_channels[0][0] = 80;  // not a multiple of head_dim
  REQUIRE_THROWS_WITH(NextViT(c), Catch::Contains("not a multiple of head_dim 32"));
  c = NextViTConfig::small();
  c.stage_types[2].pop_back();
  REQUIRE_THROWS_WITH(c.validate(), Catch::Contains("block types"));
  c = NextViTConfig::small();
  c.num_classes = 0;
  REQUIRE_THROWS_WITH(c.validate(), Catch::Contains("num_classes"));

  // Inputs: stage 2 of S sees H/8 x W/8 tokens pooled by sr^2 = 16.
  NextViTConfig s = NextViTConfig::small();
  REQUIRE_NOTHROW(s.validate_input(224, 224));
  REQUIRE_NOTHROW(s.validate_input(25, 25));  // 4x4 tokens at stage 2: exactly one window
  REQUIRE_THROWS_WITH(s.validate_input(24, 24),
                      Catch::Contains("stage 2 has 3x3 = 9 tokens, fewer than the sr^2 = 16"));
  REQUIRE_THROWS_WITH(s.validate_input(0, 10), Catch::Contains("must be positive"));
}

TEST_CASE("model: JSON configurations round-trip and report bad fields", "[model]") {
  NextViTConfig s = NextViTConfig::small();
  NextViTConfig r = NextViTConfig::from_json(s.to_json());
  REQUIRE(r.stage_channels == s.stage_channels);
  REQUIRE(r.stage_types == s.stage_types);
  REQUIRE(r.drop_path == s.drop_path);
  nlohmann::json j = s.to_json();
  j["stage_block_types"][0][0] = "XYZ";
  REQUIRE_THROWS_WITH(NextViTConfig::from_json(j), Catch::Contains("'XYZ'"));
  j = s.to_json();
  j.erase("stage_out_channels");
  REQUIRE_THROWS_WITH(NextViTConfig::from_json(j), Catch::Contains("stage_out_channels"));
  REQUIRE_THROWS_WITH(NextViTConfig::from_name("no_such_model"),
                      Catch::Contains("unknown model 'no_such_model'"));
}

TEST_CASE("model: make_divisible and the NTB split follow the official rounding", "[model]") {
  REQUIRE(make_divisible(96 * 3.0, 32) == 288);
  REQUIRE(make_divisible(10, 32) == 32);
  REQUIRE(make_divisible(100, 64) == 128);  // 64 < 0.9 * 100, so one divisor more
  REQUIRE(ntb_mhsa_channels(256, 0.75, 32) == 192);
  REQUIRE(ntb_mhsa_channels(512, 0.75, 32) == 384);
  REQUIRE(ntb_mhsa_channels(1024, 0.75, 32) == 768);
}

TEST_CASE("model: loading refuses missing, unexpected and misshapen tensors by name", "[model]") {
  NextViT model(NextViTConfig::small());
  NamedTensors sd = model.state_dict();
  Tensor before = model.norm->weight().data().clone();

  NamedTensors missing(sd.begin() + 1, sd.end());
  REQUIRE_THROWS_WITH(load_state_dict(model, missing),
                      Catch::Contains("missing 1 tensor(s): stem.0.conv.weight"));
  NamedTensors extra = sd;
  extra.emplace_back("features.99.bogus", Tensor::zeros({1}));
  REQUIRE_THROWS_WITH(load_state_dict(model, extra),
                      Catch::Contains("unexpected tensor(s): features.99.bogus"));
  NamedTensors bad = sd;
  for (auto& [n, t] : bad) {
    if (n == "norm.weight") t = Tensor::zeros({7});
  }
  REQUIRE_THROWS_WITH(load_state_dict(model, bad),
                      Catch::Contains("norm.weight (file (7,), model (1024,))"));

  // A good load in timm names: every tensor lands, values included.
  NamedTensors timm;
  Generator g(3);
  for (auto& [n, t] : sd) {
    Tensor v = t.dtype() == DType::F32 ? test::random_tensor(t.shape(), g) : t.clone();
    timm.emplace_back(official_to_timm(n, model.config()), v);
  }
  REQUIRE(load_state_dict(model, timm) == WeightLayout::Timm);
  for (auto& [n, t] : timm) {
    if (n == "norm.weight") REQUIRE(model.norm->weight().data().to_vector() == t.to_vector());
  }
  REQUIRE(model.norm->weight().data().to_vector() != before.to_vector());
}

TEST_CASE("deploy: folding every BatchNorm keeps the eval logits", "[model][deploy]") {
  // Every block kind: NTB with sr > 1 (composed norms) and sr = 1.
  const NextViTConfig c = test::reduced_config("fold_test", 3, 7);
  NextViT model(c, 11);
  // Non-trivial statistics and affine parameters, so folding has something to do.
  Generator g(5);
  for (auto& [name, v] : model.named_parameters()) {
    if (name.find("norm") != std::string::npos)
      v.data().copy_(test::random_tensor(v.shape(), g, 0.5f, 1.5f));
  }
  for (auto& [name, t] : model.named_buffers()) {
    if (name.find("running_mean") != std::string::npos)
      t->copy_(test::random_tensor(t->shape(), g));
    if (name.find("running_var") != std::string::npos)
      t->copy_(test::random_tensor(t->shape(), g, 0.5f, 2.0f));
  }
  model.eval();
  Tensor x = test::random_tensor({2, 3, 64, 48}, g);
  NoGradGuard ng;
  Tensor before = model.forward(Variable(x)).data();
  fold_batch_norms(model);
  Tensor after = model.forward(Variable(x)).data();
  NV_REQUIRE_CLOSE(after, before, 0.0, 1e-4 * test::max_abs(before));
  model.train();
  REQUIRE_THROWS_WITH(model.forward(Variable(x)), Catch::Contains("folded for deployment"));
}

TEST_CASE("module: a child is found by its dotted name, with clear errors", "[model]") {
  const NextViTConfig c = test::reduced_config("child_test", 3, 7);
  NextViT model(c, 3);
  // The same object the state dict names: its running_var is the tensor listed there.
  std::string norm_path;
  for (auto& [name, t] : model.named_buffers()) {
    const std::string suffix = ".norm.running_var";
    if (name.size() > suffix.size() &&
        name.compare(name.size() - suffix.size(), suffix.size(), suffix) == 0) {
      norm_path = name.substr(0, name.size() - suffix.size() + std::string(".norm").size());
      BatchNorm& bn = model.child<BatchNorm>(norm_path);
      REQUIRE(bn.running_var().shares_storage(*t));
      break;
    }
  }
  REQUIRE(!norm_path.empty());
  REQUIRE(&model.child("features") == model.features.get());
  REQUIRE(&model.child("features.0") == &model.features->child("0"));
  REQUIRE_THROWS_WITH(model.child("features.0.nope"),
                      Catch::Contains("no child 'nope' in 'features.0' (children: "));
  REQUIRE_THROWS_WITH(model.child("nope"), Catch::Contains("no child 'nope' in this module"));
  REQUIRE_THROWS_WITH(model.child<BatchNorm>("features"), Catch::Contains("is not a"));
}

TEST_CASE("batch norm: options() is a pure read, and each training forward counts one batch",
          "[model]") {
  BatchNorm bn(4);
  Generator g(1);
  Variable x(test::random_tensor({2, 4, 3, 3}, g));
  REQUIRE(bn.named_buffers().back().first == "num_batches_tracked");
  const Tensor& count = *bn.named_buffers().back().second;
  bn.forward(x);
  bn.forward_relu(x);
  REQUIRE(count.to_vector_i64()[0] == 2);
  bn.eval();
  bn.forward(x);
  REQUIRE(count.to_vector_i64()[0] == 2);
}
