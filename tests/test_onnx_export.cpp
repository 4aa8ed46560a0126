// ONNX export of the deployment form (models/onnx_export.h): the graph of the reduced reference
// model passes libonnx's checker and strict shape inference, has the ops the model computes
// (and no BatchNorm), a symbolic batch, and holds exactly the folded model's parameters. The
// numbers themselves are compared with ONNX Runtime by tools/check_onnx.py (CI runs it).
#include <fstream>
#include <regex>

#include "core/safetensors.h"
#include "layers/ncb.h"
#include "layers/ntb.h"
#include "models/deploy.h"
#include "models/onnx_export.h"
#include "models/weights.h"
#include "test_util.h"

using namespace nextvit;

namespace {

const std::string kData = NEXTVIT_TEST_DATA_DIR;

// The committed reduced model (tests/data/nextvit_tiny_*): trained-looking BatchNorm statistics,
// NTBs with and without token pooling, a 1x1-conv and an identity projection.
std::unique_ptr<NextViT> tiny_model() {
  auto model =
      std::make_unique<NextViT>(NextViTConfig::from_name(kData + "/nextvit_tiny_config.json"));
  load_weights(*model, kData + "/nextvit_tiny_weights.safetensors");
  model->eval();
  return model;
}

// Parameters the deploy graph must hold: every conv and linear weight and bias after folding
// (folding gave bias-free convs a bias); BatchNorm parameters are gone into them.
int64_t deploy_parameter_count(const NextViT& model) {
  const std::regex batch_norm(R"((^|\.)norm[12]?\.(weight|bias)$)");
  int64_t n = 0;
  for (const auto& [name, v] : model.named_parameters()) {
    if (!std::regex_search(name, batch_norm)) n += v.numel();
  }
  return n;
}

}  // namespace

TEST_CASE("onnx export: the tiny deploy model passes onnx::checker with the model's ops") {
  auto model = tiny_model();
  fold_batch_norms(*model);
  test::TempDir dir("onnx");
  const std::string path = dir.file("tiny.onnx");
  if (!onnx_export_available()) {  // a build without libonnx says so
    CHECK_THROWS_WITH(export_onnx(*model, path, 48, 70), Catch::Contains("built without ONNX"));
    return;
  }
  // 48x70: odd sizes send partial windows through the ceil-mode pooling.
  export_onnx(*model, path, 48, 70, {{"nextvit.classes", R"(["a", "b"])"}});
  const OnnxSummary s = check_onnx(path);
  CHECK(s.opset == 17);
  CHECK(s.ir_version >= 8);
  CHECK(s.input_name == "input");
  CHECK(s.input_dims == std::vector<std::string>{"batch", "3", "48", "70"});
  CHECK(s.output_name == "logits");
  CHECK(s.output_dims == std::vector<std::string>{"batch", "10"});
  CHECK(s.parameters == deploy_parameter_count(*model));
  CHECK(s.metadata.at("nextvit.form") == "deploy");
  CHECK(s.metadata.at("nextvit.classes") == R"(["a", "b"])");
  CHECK(
      NextViTConfig::from_json(nlohmann::json::parse(s.metadata.at("nextvit.config"))).to_json() ==
      model->config().to_json());

  int64_t convs = 0, ntbs = 0, pools = 0;
  for (const auto& [name, v] : model->named_parameters()) convs += v.dim() == 4;
  for (const auto& block : *model->features) {
    if (const auto* ntb = dynamic_cast<const NTB*>(block.get())) {
      ++ntbs;
      pools += ntb->patch_embed->stride() == 2;
      pools += ntb->e_mhsa->sr_ratio() > 1;
    } else {
      pools += dynamic_cast<const NCB&>(*block).patch_embed->stride() == 2;
    }
  }
  CHECK(ntbs == 3);  // stages 2, 3 and 4 end with one
  CHECK(s.op_counts.count("BatchNormalization") == 0);
  CHECK(s.op_counts.at("Conv") == convs);
  CHECK(s.op_counts.at("Softmax") == ntbs);
  CHECK(s.op_counts.at("AveragePool") == pools);
  CHECK(s.op_counts.at("Concat") == ntbs);
  CHECK(s.op_counts.at("Gemm") == 1);
}

TEST_CASE("onnx export: refuses an unfolded model, bad sizes and files, and invalid ONNX") {
  if (!onnx_export_available()) {
    CHECK_THROWS_WITH(check_onnx("x.onnx"), Catch::Contains("built without ONNX"));
    return;
  }
  auto model = tiny_model();
  test::TempDir dir("onnx_bad");
  CHECK_THROWS_WITH(export_onnx(*model, dir.file("a.onnx"), 64, 64),
                    Catch::Contains("not folded") && Catch::Contains("fold_batch_norms"));
  fold_batch_norms(*model);
  // Stage 2's E-MHSA pools 64 tokens: 16x16 leaves 2x2 = 4.
  CHECK_THROWS_WITH(export_onnx(*model, dir.file("a.onnx"), 16, 16), Catch::Contains("too small"));
  CHECK_THROWS_WITH(export_onnx(*model, dir.file("no/such/dir/a.onnx"), 64, 64),
                    Catch::Contains("cannot open"));
  model->train();
  CHECK_THROWS_WITH(export_onnx(*model, dir.file("a.onnx"), 64, 64), Catch::Contains("eval"));

  CHECK_THROWS_WITH(check_onnx(dir.file("missing.onnx")), Catch::Contains("cannot open"));
  std::ofstream(dir.file("garbage.onnx")) << "this is not a protobuf message \xff\xff\xff";
  CHECK_THROWS(check_onnx(dir.file("garbage.onnx")));
}
