#include "models/onnx_export.h"

#include "core/error.h"

#ifdef NEXTVIT_WITH_ONNX

#include <onnx/checker.h>
#include <onnx/onnx_pb.h>
#include <onnx/shape_inference/implementation.h>

#include <cmath>
#include <fstream>
#include <limits>

#include "layers/ncb.h"
#include "layers/ntb.h"

namespace nextvit {
namespace {

constexpr int64_t kOpset = 17;

// A value of the graph being built: its name and, for an NCHW map, its channels and spatial size
// (the batch stays symbolic). The builders below return the Map their last node produces.
struct Map {
  std::string name;
  int64_t c = 0, h = 0, w = 0;
};

void set_int(onnx::NodeProto& n, const char* name, int64_t value) {
  onnx::AttributeProto* a = n.add_attribute();
  a->set_name(name);
  a->set_type(onnx::AttributeProto::INT);
  a->set_i(value);
}

void set_ints(onnx::NodeProto& n, const char* name, const std::vector<int64_t>& values) {
  onnx::AttributeProto* a = n.add_attribute();
  a->set_name(name);
  a->set_type(onnx::AttributeProto::INTS);
  for (int64_t v : values) a->add_ints(v);
}

// Appends nodes and initializers to a GraphProto. Every node has one output, named like the node
// after the module path it comes from ("features.5.e_mhsa.softmax"), so that the graph reads
// like the model and names never collide.
class Graph {
 public:
  explicit Graph(onnx::GraphProto* g) : g_(g) {}

  // A float32 initializer (raw little-endian data, as ONNX Runtime reads it fastest).
  std::string floats(const std::string& name, const std::vector<float>& values,
                     const std::vector<int64_t>& dims) {
    onnx::TensorProto* t = g_->add_initializer();
    t->set_name(name);
    t->set_data_type(onnx::TensorProto::FLOAT);
    for (int64_t d : dims) t->add_dims(d);
    t->set_raw_data(values.data(), values.size() * sizeof(float));
    return name;
  }
  // A 1-D int64 initializer: the target shape of a Reshape.
  std::string int64s(const std::string& name, const std::vector<int64_t>& values) {
    onnx::TensorProto* t = g_->add_initializer();
    t->set_name(name);
    t->set_data_type(onnx::TensorProto::INT64);
    t->add_dims(static_cast<int64_t>(values.size()));
    for (int64_t v : values) t->add_int64_data(v);
    return name;
  }
  onnx::NodeProto& node(const std::string& op, const std::vector<std::string>& inputs,
                        const std::string& name) {
    onnx::NodeProto* n = g_->add_node();
    n->set_op_type(op);
    n->set_name(name);
    for (const auto& i : inputs) n->add_input(i);
    n->add_output(name);
    return *n;
  }
  std::string transpose(const std::string& x, const std::vector<int64_t>& perm,
                        const std::string& name) {
    set_ints(node("Transpose", {x}, name), "perm", perm);
    return name;
  }
  // Reshape to `shape`, where 0 keeps the input's dimension (the symbolic batch).
  std::string reshape(const std::string& x, const std::vector<int64_t>& shape,
                      const std::string& name) {
    node("Reshape", {x, int64s(name + ".shape", shape)}, name);
    return name;
  }

 private:
  onnx::GraphProto* g_;
};

std::vector<float> values(const Variable& v) {
  return v.data().to_vector();
}

void require_folded(const BatchNorm* bn, const std::string& name) {
  NV_CHECK(bn == nullptr || bn->folded(),
           "export_onnx: BatchNorm {} is not folded: the ONNX graph is the deployment form, "
           "call fold_batch_norms (models/deploy.h) on the eval model first",
           name);
}

Map conv(Graph& g, const Conv2d& conv, const Map& x, const std::string& name) {
  const Shape& ws = conv.weight().shape();  // (out, in / groups, kh, kw)
  const ops::Conv2dOptions& o = conv.options();
  std::vector<std::string> inputs{x.name, g.floats(name + ".weight", values(conv.weight()), ws)};
  if (conv.bias().defined()) {
    inputs.push_back(g.floats(name + ".bias", values(conv.bias()), conv.bias().shape()));
  }
  onnx::NodeProto& n = g.node("Conv", inputs, name);
  set_ints(n, "kernel_shape", {ws[2], ws[3]});
  set_ints(n, "strides", {o.stride_h, o.stride_w});
  set_ints(n, "pads", {o.pad_h, o.pad_w, o.pad_h, o.pad_w});
  set_int(n, "group", o.groups);
  return {name, ws[0], (x.h + 2 * o.pad_h - ws[2]) / o.stride_h + 1,
          (x.w + 2 * o.pad_w - ws[3]) / o.stride_w + 1};
}

Map relu(Graph& g, const Map& x, const std::string& name) {
  g.node("Relu", {x.name}, name);
  return {name, x.c, x.h, x.w};
}

Map add(Graph& g, const Map& a, const Map& b, const std::string& name) {
  g.node("Add", {a.name, b.name}, name);
  return {name, a.c, a.h, a.w};
}

// x (..., in) -> (..., out): MatMul by the transposed weight, then Add the bias.
std::string linear(Graph& g, const Linear& layer, const std::string& x, const std::string& name) {
  const int64_t out = layer.weight().size(0), in = layer.weight().size(1);
  const std::vector<float> w = values(layer.weight());
  std::vector<float> wt(w.size());
  for (int64_t o = 0; o < out; ++o) {
    for (int64_t i = 0; i < in; ++i) wt[i * out + o] = w[o * in + i];
  }
  g.node("MatMul", {x, g.floats(name + ".weight_t", wt, {in, out})}, name + ".matmul");
  g.node("Add", {name + ".matmul", g.floats(name + ".bias", values(layer.bias()), {out})}, name);
  return name;
}

Map patch_embed(Graph& g, const PatchEmbed& p, const Map& x, const std::string& name) {
  if (p.is_identity()) return x;
  require_folded(p.norm.get(), name + ".norm");
  Map y = x;
  if (p.stride() == 2) {
    // AvgPool2d(2, 2, ceil_mode=True, count_include_pad=False): a partial window at an odd edge
    // averages the values it covers.
    onnx::NodeProto& n = g.node("AveragePool", {x.name}, name + ".pool");
    set_ints(n, "kernel_shape", {2, 2});
    set_ints(n, "strides", {2, 2});
    set_int(n, "ceil_mode", 1);
    set_int(n, "count_include_pad", 0);
    y = {name + ".pool", x.c, (x.h + 1) / 2, (x.w + 1) / 2};
  }
  return conv(g, *p.conv, y, name + ".conv");
}

Map mhca(Graph& g, const MHCA& m, const Map& x, const std::string& name) {
  require_folded(m.norm.get(), name + ".norm");
  Map y = relu(g, conv(g, *m.group_conv3x3, x, name + ".group_conv3x3"), name + ".relu");
  return conv(g, *m.projection, y, name + ".projection");
}

Map mlp(Graph& g, const Mlp& m, const Map& x, const std::string& name) {
  Map y = relu(g, conv(g, *m.conv1, x, name + ".conv1"), name + ".relu");
  return conv(g, *m.conv2, y, name + ".conv2");
}

// E-MHSA on the map x (B, C, H, W), returning its output as a map of the same shape.
Map e_mhsa(Graph& g, const EMHSA& a, const Map& x, const std::string& name) {
  const int64_t C = x.c, N = x.h * x.w, h = a.heads(), d = C / h;
  // (B, C, H, W) -> (B, C, N) -> tokens (B, N, C), raster order as the model's reshape.
  const std::string seq = g.reshape(x.name, {0, C, N}, name + ".flatten");
  const std::string tokens = g.transpose(seq, {0, 2, 1}, name + ".tokens");
  const std::string q =
      g.transpose(g.reshape(linear(g, *a.q, tokens, name + ".q"), {0, N, h, d}, name + ".q_heads"),
                  {0, 2, 1, 3}, name + ".q_bhnd");
  std::string kv = tokens;
  int64_t nk = N;
  if (a.sr_ratio() > 1) {
    // AvgPool1d(sr^2) over the token axis of (B, C, N); e_mhsa.norm is folded into k and v.
    require_folded(a.norm.get(), name + ".norm");
    const int64_t window = a.sr_ratio() * a.sr_ratio();
    onnx::NodeProto& n = g.node("AveragePool", {seq}, name + ".pool");
    set_ints(n, "kernel_shape", {window});
    set_ints(n, "strides", {window});
    nk = N / window;
    kv = g.transpose(name + ".pool", {0, 2, 1}, name + ".pooled_tokens");
  }
  // k as (B, h, d, N') so that q k^T is a plain MatMul; v as (B, h, N', d).
  const std::string kt =
      g.transpose(g.reshape(linear(g, *a.k, kv, name + ".k"), {0, nk, h, d}, name + ".k_heads"),
                  {0, 2, 3, 1}, name + ".k_bhdn");
  const std::string v =
      g.transpose(g.reshape(linear(g, *a.v, kv, name + ".v"), {0, nk, h, d}, name + ".v_heads"),
                  {0, 2, 1, 3}, name + ".v_bhnd");
  g.node("MatMul", {q, kt}, name + ".scores");
  // The same float scale as the model (1 / sqrt(float(d))), applied after the product as there.
  const float scale = 1.0f / std::sqrt(static_cast<float>(d));
  g.node("Mul", {name + ".scores", g.floats(name + ".scale", {scale}, {})}, name + ".scaled");
  set_int(g.node("Softmax", {name + ".scaled"}, name + ".softmax"), "axis", -1);
  g.node("MatMul", {name + ".softmax", v}, name + ".attention");  // (B, h, N, d)
  const std::string merged = g.reshape(
      g.transpose(name + ".attention", {0, 2, 1, 3}, name + ".bnhd"), {0, N, C}, name + ".merged");
  const std::string out = linear(g, *a.proj, merged, name + ".proj");
  const std::string back = g.transpose(out, {0, 2, 1}, name + ".channels_first");
  return {g.reshape(back, {0, C, x.h, x.w}, name + ".map"), C, x.h, x.w};
}

Map ncb(Graph& g, const NCB& b, const Map& input, const std::string& name) {
  Map x = patch_embed(g, *b.patch_embed, input, name + ".patch_embed");
  x = add(g, x, mhca(g, *b.mhca, x, name + ".mhca"), name + ".add_mhca");
  require_folded(b.norm.get(), name + ".norm");
  return add(g, x, mlp(g, *b.mlp, x, name + ".mlp"), name + ".add_mlp");
}

Map ntb(Graph& g, const NTB& b, const Map& input, const std::string& name) {
  Map x = patch_embed(g, *b.patch_embed, input, name + ".patch_embed");
  require_folded(b.norm1.get(), name + ".norm1");
  x = add(g, x, e_mhsa(g, *b.e_mhsa, x, name + ".e_mhsa"), name + ".add_e_mhsa");
  Map y = patch_embed(g, *b.projection, x, name + ".projection");
  y = add(g, y, mhca(g, *b.mhca, y, name + ".mhca"), name + ".add_mhca");
  set_int(g.node("Concat", {x.name, y.name}, name + ".concat"), "axis", 1);
  const Map cat{name + ".concat", x.c + y.c, x.h, x.w};
  require_folded(b.norm2.get(), name + ".norm2");
  return add(g, cat, mlp(g, *b.mlp, cat, name + ".mlp"), name + ".add_mlp");
}

// The network from "input" to "logits".
void build_graph(Graph& g, const NextViT& model, int64_t img_h, int64_t img_w) {
  Map x{"input", model.config().in_channels, img_h, img_w};
  for (size_t i = 0; i < model.stem->size(); ++i) {
    const ConvBNReLU& unit = (*model.stem)[i];
    const std::string name = "stem." + std::to_string(i);
    require_folded(unit.norm.get(), name + ".norm");
    x = relu(g, conv(g, *unit.conv, x, name + ".conv"), name + ".relu");
  }
  for (size_t i = 0; i < model.features->size(); ++i) {
    const Block& block = (*model.features)[i];
    const std::string name = "features." + std::to_string(i);
    if (const auto* b = dynamic_cast<const NCB*>(&block)) {
      x = ncb(g, *b, x, name);
    } else {
      x = ntb(g, dynamic_cast<const NTB&>(block), x, name);
    }
  }
  require_folded(model.norm.get(), "norm");
  g.node("GlobalAveragePool", {x.name}, "pool");
  set_int(g.node("Flatten", {"pool"}, "flatten"), "axis", 1);
  const Linear& head = (*model.proj_head)[0];
  onnx::NodeProto& gemm = g.node(
      "Gemm",
      {"flatten", g.floats("proj_head.0.weight", values(head.weight()), head.weight().shape()),
       g.floats("proj_head.0.bias", values(head.bias()), head.bias().shape())},
      "logits");
  set_int(gemm, "transB", 1);
}

void set_tensor_type(onnx::ValueInfoProto* v, const std::string& name,
                     const std::vector<int64_t>& dims) {
  v->set_name(name);
  onnx::TypeProto_Tensor* t = v->mutable_type()->mutable_tensor_type();
  t->set_elem_type(onnx::TensorProto::FLOAT);
  onnx::TensorShapeProto* shape = t->mutable_shape();
  shape->add_dim()->set_dim_param("batch");
  for (int64_t d : dims) shape->add_dim()->set_dim_value(d);
}

void add_metadata(onnx::ModelProto& m, const std::string& key, const std::string& value) {
  onnx::StringStringEntryProto* e = m.add_metadata_props();
  e->set_key(key);
  e->set_value(value);
}

std::string dim_text(const onnx::TensorShapeProto_Dimension& d) {
  if (d.has_dim_value()) return std::to_string(d.dim_value());
  return d.has_dim_param() ? d.dim_param() : "?";
}

std::vector<std::string> dims_of(const onnx::ValueInfoProto& v) {
  std::vector<std::string> out;
  for (const auto& d : v.type().tensor_type().shape().dim()) out.push_back(dim_text(d));
  return out;
}

}  // namespace

bool onnx_export_available() {
  return true;
}

void export_onnx(const NextViT& deploy_model, const std::string& path, int64_t img_h, int64_t img_w,
                 const std::map<std::string, std::string>& metadata) {
  NV_CHECK(!deploy_model.is_training(), "export_onnx: put the model in eval mode first");
  const NextViTConfig& config = deploy_model.config();
  config.validate_input(img_h, img_w);

  onnx::ModelProto model;
  model.set_ir_version(onnx::IR_VERSION);
  model.set_producer_name("nextvit");
  model.set_model_version(1);
  onnx::OperatorSetIdProto* opset = model.add_opset_import();
  opset->set_domain("");
  opset->set_version(kOpset);
  std::map<std::string, std::string> entries = metadata;
  entries["nextvit.config"] = config.to_json().dump();
  entries["nextvit.form"] = "deploy";
  for (const auto& [key, value] : entries) add_metadata(model, key, value);

  onnx::GraphProto* graph = model.mutable_graph();
  graph->set_name(config.name);
  set_tensor_type(graph->add_input(), "input", {config.in_channels, img_h, img_w});
  set_tensor_type(graph->add_output(), "logits", {config.num_classes});
  Graph g(graph);
  build_graph(g, deploy_model, img_h, img_w);

  try {
    onnx::checker::check_model(model);
  } catch (const std::exception& e) {
    NV_FAIL("export_onnx: the ONNX checker refused the graph of {}: {}", config.name, e.what());
  }
  NV_CHECK(model.ByteSizeLong() < static_cast<size_t>(std::numeric_limits<int>::max()),
           "export_onnx: {} needs {} bytes, over protobuf's 2 GiB limit for one message",
           config.name, model.ByteSizeLong());
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  NV_CHECK(out.good(), "export_onnx: cannot open {} for writing", path);
  NV_CHECK(model.SerializeToOstream(&out) && out.flush().good(), "export_onnx: writing {} failed",
           path);
}

OnnxSummary check_onnx(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  NV_CHECK(in.good(), "check_onnx: cannot open {}", path);
  onnx::ModelProto model;
  NV_CHECK(model.ParseFromIstream(&in),
           "check_onnx: {} is not an ONNX model (protobuf parse failed)", path);
  NV_CHECK(model.graph().input_size() >= 1 && model.graph().output_size() == 1,
           "check_onnx: {} has {} inputs and {} outputs; expected one image input and one output",
           path, model.graph().input_size(), model.graph().output_size());
  onnx::ValueInfoProto* output = model.mutable_graph()->mutable_output(0);
  const std::vector<std::string> declared = dims_of(*output);
  try {
    onnx::checker::check_model(model);
    // The output's declared shape is dropped so that shape inference has to derive it from the
    // input through every node; it must come out as declared. Strict: a node whose output
    // shape cannot be inferred is an error too.
    output->mutable_type()->mutable_tensor_type()->clear_shape();
    onnx::shape_inference::InferShapes(model, onnx::OpSchemaRegistry::Instance(),
                                       onnx::ShapeInferenceOptions(true, 1, false));
  } catch (const std::exception& e) {
    NV_FAIL("check_onnx: {} is not a valid ONNX model: {}", path, e.what());
  }
  OnnxSummary s;
  s.ir_version = model.ir_version();
  for (const auto& o : model.opset_import()) {
    if (o.domain().empty() || o.domain() == "ai.onnx") s.opset = o.version();
  }
  const onnx::GraphProto& graph = model.graph();
  s.nodes = graph.node_size();
  for (const auto& n : graph.node()) ++s.op_counts[n.op_type()];
  for (const auto& t : graph.initializer()) {
    if (t.data_type() != onnx::TensorProto::FLOAT || t.dims_size() == 0) continue;
    int64_t n = 1;
    for (int64_t d : t.dims()) n *= d;
    s.parameters += n;
  }
  s.input_name = graph.input(0).name();
  s.input_dims = dims_of(graph.input(0));
  s.output_name = graph.output(0).name();
  s.output_dims = dims_of(graph.output(0));
  NV_CHECK(s.output_dims == declared,
           "check_onnx: {}: shape inference gives the output {} the shape [{}], declared [{}]",
           path, s.output_name, fmt::join(s.output_dims, ", "), fmt::join(declared, ", "));
  for (const auto& e : model.metadata_props()) s.metadata[e.key()] = e.value();
  return s;
}

}  // namespace nextvit

#else  // built without ONNX: the same functions, refusing with the reason

namespace nextvit {

namespace {
[[noreturn]] void no_onnx() {
  NV_FAIL(
      "this nextvit was built without ONNX (configure with libonnx-dev and libprotobuf-dev "
      "installed, or -DNEXTVIT_ONNX=ON to require them; tools/setup.sh installs them)");
}
}  // namespace

bool onnx_export_available() {
  return false;
}
void export_onnx(const NextViT&, const std::string&, int64_t, int64_t,
                 const std::map<std::string, std::string>&) {
  no_onnx();
}
OnnxSummary check_onnx(const std::string&) {
  no_onnx();
}

}  // namespace nextvit

#endif
