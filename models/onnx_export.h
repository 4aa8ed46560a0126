#pragma once
// ONNX export of the deployment form (models/deploy.h): the eval network with every BatchNorm
// folded, written as an ONNX model (opset 17) that ONNX Runtime, TensorRT and the like run.
//
// The graph computes exactly what NextViT::forward computes in eval mode, op for op:
//   stem      Conv 3x3 (BN folded into its weight and bias) -> Relu, four times
//   PatchEmbed  [AveragePool 2x2 stride 2, ceil_mode, count_include_pad 0] -> Conv 1x1
//   MHCA      grouped Conv 3x3 -> Relu -> Conv 1x1;   Mlp: Conv 1x1 -> Relu -> Conv 1x1
//   E-MHSA    the (B, C, H, W) map as tokens (Reshape, Transpose); q, k, v as MatMul + Add;
//             for sr > 1, k and v from AveragePool over sr^2 consecutive tokens (1-D, floor);
//             heads by Reshape/Transpose; MatMul, Mul(1/sqrt(d)), Softmax(-1), MatMul; proj
//   NCB / NTB residual Adds and the NTB's channel Concat
//   head      GlobalAveragePool -> Flatten -> Gemm
// Input "input" (batch, C, H, W) float32 with a symbolic batch; output "logits" (batch,
// classes). H and W are fixed at export (the token reshapes and pooling windows depend on them).
// Initializers carry the official parameter names ("features.3.mhca.group_conv3x3.weight";
// linear weights are stored transposed as "<name>.weight_t" for MatMul).
//
// Built with Debian's libonnx and libprotobuf (cmake/onnx.cmake, NEXTVIT_ONNX=AUTO|ON|OFF); a
// build without them still has these functions, and they throw "built without ONNX".
#include <map>
#include <string>
#include <vector>

#include "models/nextvit.h"

namespace nextvit {

// Whether this build can write and check ONNX files.
bool onnx_export_available();

// Writes `deploy_model` (eval mode, fold_batch_norms applied) for input images of
// img_h x img_w to `path`, after onnx::checker has accepted the graph. The model's metadata_props
// hold `metadata` (e.g. metadata_entries() of models/model_metadata.h: preprocessing, class
// names) with "nextvit.config" set to the model's configuration and "nextvit.form" to "deploy".
// Throws, naming the reason, for a model with an unfolded BatchNorm, an input size the model
// refuses, a file that cannot be written, or a build without ONNX.
void export_onnx(const NextViT& deploy_model, const std::string& path, int64_t img_h, int64_t img_w,
                 const std::map<std::string, std::string>& metadata = {});

// What an ONNX file holds, after onnx::checker (check_model) and strict shape inference have
// accepted it. Dimensions are given as text: a number, or the name of a symbolic one ("batch").
struct OnnxSummary {
  int64_t ir_version = 0;
  int64_t opset = 0;  // of the default domain
  int64_t nodes = 0;
  int64_t parameters = 0;  // float values held by initializers
  std::map<std::string, int64_t> op_counts;
  std::string input_name, output_name;
  std::vector<std::string> input_dims, output_dims;  // output_dims as shape inference gives them
  std::map<std::string, std::string> metadata;       // metadata_props
};

// Loads `path`, runs the ONNX checker and shape inference on it; throws with the checker's
// message when it is not a valid model.
OnnxSummary check_onnx(const std::string& path);

}  // namespace nextvit
