#include "models/deploy.h"

#include <set>

#include "layers/ncb.h"
#include "layers/ntb.h"

namespace nextvit {
namespace {

// Reads a parameter to the host as (rows, cols) doubles-as-floats, and writes it back to the
// device it lives on. Folding runs once, so clarity beats speed here.
std::vector<float> host(const Variable& v) {
  return v.data().to_vector();
}
void store(const Variable& v, const std::vector<float>& values) {
  v.data().copy_(Tensor::from_vector(values, v.shape()).to(v.device()));
}

// conv -> bn  ==>  conv with W'[o] = s[o] W[o], b'[o] = s[o] b[o] + t[o].
void fold_post(Conv2d& conv, BatchNorm& bn) {
  if (bn.folded()) return;
  auto [scale, shift] = bn.affine();
  std::vector<float> s = scale.to_vector(), t = shift.to_vector();
  conv.ensure_bias();
  std::vector<float> w = host(conv.weight()), b = host(conv.bias());
  const int64_t out = conv.weight().size(0), per_out = conv.weight().numel() / out;
  for (int64_t o = 0; o < out; ++o) {
    for (int64_t i = 0; i < per_out; ++i) w[o * per_out + i] *= s[o];
    b[o] = s[o] * b[o] + t[o];
  }
  store(conv.weight(), w);
  store(conv.bias(), b);
  bn.mark_folded();
}

// affine (s, t) -> layer with weight (out, in, ...) over the input channels and bias (out):
// W' = W diag(s), b' = b + W t.
void fold_pre(const Variable& weight, const Variable& bias, const std::vector<float>& s,
              const std::vector<float>& t) {
  std::vector<float> w = host(weight), b = host(bias);
  const int64_t out = weight.size(0), in = weight.size(1);
  NV_CHECK(static_cast<int64_t>(s.size()) == in && weight.numel() == out * in,
           "fold: a pre-BatchNorm of {} channels cannot merge into a weight {}", s.size(),
           shape_str(weight.shape()));
  for (int64_t o = 0; o < out; ++o) {
    double acc = b[o];
    for (int64_t i = 0; i < in; ++i) {
      acc += double(w[o * in + i]) * t[i];
      w[o * in + i] *= s[i];
    }
    b[o] = static_cast<float>(acc);
  }
  store(weight, w);
  store(bias, b);
}

std::pair<std::vector<float>, std::vector<float>> affine_of(const BatchNorm& bn) {
  auto [s, t] = bn.affine();
  return {s.to_vector(), t.to_vector()};
}

void fold_patch_embed(PatchEmbed& p) {
  if (!p.is_identity()) fold_post(*p.conv, *p.norm);
}

void fold_mhca(MHCA& m) {
  fold_post(*m.group_conv3x3, *m.norm);
}

void fold_pre_into_mlp(BatchNorm& bn, Mlp& mlp) {
  if (bn.folded()) return;
  auto [s, t] = affine_of(bn);
  fold_pre(mlp.conv1->weight(), mlp.conv1->bias(), s, t);
  bn.mark_folded();
}

void fold_ntb(NTB& b) {
  fold_patch_embed(*b.patch_embed);
  if (!b.norm1->folded()) {
    auto [s1, t1] = affine_of(*b.norm1);
    EMHSA& a = *b.e_mhsa;
    fold_pre(a.q->weight(), a.q->bias(), s1, t1);
    std::vector<float> s = s1, t = t1;
    if (a.norm) {  // norm1, pool, e_mhsa.norm: (s1 s2, t1 s2 + t2)
      auto [s2, t2] = affine_of(*a.norm);
      for (size_t c = 0; c < s.size(); ++c) {
        s[c] = s1[c] * s2[c];
        t[c] = t1[c] * s2[c] + t2[c];
      }
      a.norm->mark_folded();
    }
    fold_pre(a.k->weight(), a.k->bias(), s, t);
    fold_pre(a.v->weight(), a.v->bias(), s, t);
    b.norm1->mark_folded();
  }
  fold_patch_embed(*b.projection);
  fold_mhca(*b.mhca);
  fold_pre_into_mlp(*b.norm2, *b.mlp);
}

}  // namespace

void fold_batch_norms(NextViT& model) {
  NV_CHECK(!model.is_training(),
           "fold_batch_norms: put the model in eval mode first (folding "
           "uses the running statistics)");
  for (const auto& layer : *model.stem) fold_post(*layer->conv, *layer->norm);
  for (const auto& block : *model.features) {
    if (auto* ncb = dynamic_cast<NCB*>(block.get())) {
      fold_patch_embed(*ncb->patch_embed);
      fold_mhca(*ncb->mhca);
      fold_pre_into_mlp(*ncb->norm, *ncb->mlp);
    } else {
      fold_ntb(dynamic_cast<NTB&>(*block));
    }
  }
  if (!model.norm->folded()) {
    auto [s, t] = affine_of(*model.norm);
    Linear& head = (*model.proj_head)[0];
    fold_pre(head.weight(), head.bias(), s, t);
    model.norm->mark_folded();
  }
}

namespace {

// Walks the module tree; `prefix` is the state-dict name of `m` ("" or "features.3.mlp.").
void collect_batch_norms(const Module& m, const std::string& prefix, bool folded_only,
                         std::vector<std::string>& names, int64_t& unfolded) {
  if (const auto* bn = dynamic_cast<const BatchNorm*>(&m)) {
    if (!bn->folded()) ++unfolded;
    if (bn->folded() || !folded_only) {
      for (const char* t : {"weight", "bias", "running_mean", "running_var", "num_batches_tracked"})
        names.push_back(prefix + t);
    }
  }
  for (const auto& [name, child] : m.children()) {
    if (child) collect_batch_norms(*child, prefix + name + ".", folded_only, names, unfolded);
  }
}

}  // namespace

std::vector<std::string> folded_batch_norm_tensors(const Module& model) {
  std::vector<std::string> names;
  int64_t unfolded = 0;
  collect_batch_norms(model, "", true, names, unfolded);
  return names;
}

std::vector<std::pair<std::string, Tensor>> deploy_state_dict(const NextViT& model) {
  std::vector<std::string> names;
  int64_t unfolded = 0;
  collect_batch_norms(model, "", true, names, unfolded);
  NV_CHECK(unfolded == 0, "deploy form: {} BatchNorm layer(s) are not folded", unfolded);
  const std::set<std::string> skip(names.begin(), names.end());
  std::vector<std::pair<std::string, Tensor>> out;
  for (auto& [name, t] : model.state_dict()) {
    if (!skip.count(name)) out.emplace_back(name, t);
  }
  return out;
}

}  // namespace nextvit
