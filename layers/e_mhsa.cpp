#include "layers/e_mhsa.h"

#include <cmath>

namespace nextvit {

EMHSA::EMHSA(int64_t dim, int64_t head_dim, int64_t sr_ratio)
    : dim_(dim), head_dim_(head_dim), heads_(dim / head_dim), sr_ratio_(sr_ratio) {
  NV_CHECK(head_dim > 0 && dim % head_dim == 0,
           "E-MHSA: dim {} is not a whole number of heads of head_dim {}", dim, head_dim);
  NV_CHECK(sr_ratio >= 1, "E-MHSA: sr_ratio must be >= 1, got {}", sr_ratio);
  q = register_module("q", std::make_shared<Linear>(dim, dim));
  k = register_module("k", std::make_shared<Linear>(dim, dim));
  v = register_module("v", std::make_shared<Linear>(dim, dim));
  proj = register_module("proj", std::make_shared<Linear>(dim, dim));
  if (sr_ratio > 1) norm = register_module("norm", std::make_shared<BatchNorm>(dim));
}

Variable EMHSA::forward(const Variable& x) {
  profiler::ModuleScope scope(profile_id());
  NV_CHECK(x.dim() == 3 && x.size(2) == dim_, "E-MHSA: expected tokens (B, N, {}), got {}", dim_,
           shape_str(x.shape()));
  const int64_t B = x.size(0), N = x.size(1), h = heads_, d = head_dim_;
  Variable qh = ops::permute(ops::reshape(q->forward(x), {B, N, h, d}), {0, 2, 1, 3});

  Variable kv_source = x;
  if (sr_ratio_ > 1) {
    kv_source = ops::transpose(pooled_keys(ops::transpose(x, 1, 2)), 1, 2);  // (B, N', C)
  }
  const int64_t Nk = kv_source.size(1);
  Variable kh = ops::permute(ops::reshape(k->forward(kv_source), {B, Nk, h, d}), {0, 2, 1, 3});
  Variable vh = ops::permute(ops::reshape(v->forward(kv_source), {B, Nk, h, d}), {0, 2, 1, 3});

  const float scale = 1.0f / std::sqrt(static_cast<float>(d));
  Variable attn = fused_attention_ ? emhsa_attention(qh, kh, vh, scale)
                                   : emhsa_attention_unfused(qh, kh, vh, scale);  // (B, h, N, d)
  Variable out = ops::permute(attn, {0, 2, 1, 3});                                // (B, N, h, d)
  return proj->forward(ops::reshape(out, {B, N, dim_}));
}

Variable EMHSA::pooled_keys(const Variable& x) {
  const int64_t window = sr_ratio_ * sr_ratio_;
  NV_CHECK(x.size(2) >= window,
           "E-MHSA: {} tokens cannot be pooled by sr^2 = {}; the input image is too small for "
           "sr = {}",
           x.size(2), window, sr_ratio_);
  return norm->forward(ops::avg_pool1d(x, window, window));
}

namespace {

// y = linear(x) on a (B, C, L...) map's channels: a 1x1 convolution with the layer's weight.
Variable linear_on_channels(const Linear& layer, const Variable& x) {
  const Variable& w = layer.weight();
  return ops::conv2d(x, ops::reshape(w, {w.size(0), w.size(1), 1, 1}), layer.bias(), {});
}

}  // namespace

Variable EMHSA::forward_image(const Variable& x, const Variable& residual) {
  profiler::ModuleScope scope(profile_id());
  NV_CHECK(x.dim() == 4 && x.size(1) == dim_, "E-MHSA: expected an image (B, {}, H, W), got {}",
           dim_, shape_str(x.shape()));
  const int64_t B = x.size(0), H = x.size(2), W = x.size(3), N = H * W;
  const Variable q_map = linear_on_channels(*q, x);  // (B, C, H, W)

  Variable kv_source = x;  // (B, C, N', 1)
  if (sr_ratio_ > 1) {
    // (B, C, H, W) read as (B, C, N) is the token axis in raster order, as forward pools it.
    const Variable pooled = pooled_keys(ops::reshape(x, {B, dim_, N}));
    kv_source = ops::reshape(pooled, {B, dim_, pooled.size(2), 1});
  }
  const int64_t Nk = kv_source.size(2) * kv_source.size(3);
  const Variable k_map = linear_on_channels(*k, kv_source),
                 v_map = linear_on_channels(*v, kv_source);

  const float scale = 1.0f / std::sqrt(static_cast<float>(head_dim_));
  const Variable attn = ops::pooled_attention_channels(
      ops::reshape(q_map, {B, dim_, N}), ops::reshape(k_map, {B, dim_, Nk}),
      ops::reshape(v_map, {B, dim_, Nk}), heads_, scale);
  const Variable& w = proj->weight();
  return ops::conv2d_eval_fused(ops::reshape(attn, {B, dim_, H, W}),
                                ops::reshape(w, {w.size(0), w.size(1), 1, 1}), proj->bias(), {},
                                nullptr, false, residual);
}

Variable emhsa_attention_unfused(const Variable& q, const Variable& k, const Variable& v,
                                 float scale) {
  // k^T (B, h, d, N') makes q k^T a plain batched (N x d)(d x N') product.
  Variable scores = ops::scale(ops::matmul(q, ops::transpose(k, 2, 3)), scale);
  return ops::matmul(ops::softmax(scores), v);  // softmax (B, h, N, N')
}

Variable emhsa_attention(const Variable& q, const Variable& k, const Variable& v, float scale) {
  NV_CHECK(q.dim() == 4 && k.dim() == 4,
           "E-MHSA attention: expected q (B, h, N, d) and k (B, h, N', d), got q {}, k {}",
           shape_str(q.shape()), shape_str(k.shape()));
  const int64_t heads = q.size(0) * q.size(1), n = q.size(2), m = k.size(2), d = q.size(3);
  if (ops::pooled_attention_supported(q.device(), heads, n, m, d)) {
    return ops::pooled_attention(q, k, v, scale);
  }
  return emhsa_attention_unfused(q, k, v, scale);
}

}  // namespace nextvit
