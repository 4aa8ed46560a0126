#include "models/memory_estimate.h"

#include <algorithm>

#include "core/allocator.h"
#include "core/error.h"
#include "layers/mlp.h"
#include "layers/ntb.h"

namespace nextvit {
namespace {

// Everything in double: the point is to refuse sizes that would overflow int64.
struct Counter {
  double params = 0;
  double activations = 0;  // floats per image kept for backward (training) or alive (eval)
  double peak = 0;         // the largest single activation per image
  void conv(double in, double out, double k) { params += in * out * k * k; }
  void act(double c, double h, double w, double copies) {
    activations += copies * c * h * w;
    peak = std::max(peak, c * h * w);
  }
};

double half_up(double n) {
  return static_cast<double>((static_cast<int64_t>(n) + 1) / 2);
}

void mlp(Counter& n, double ch, double ratio, int64_t head_dim) {
  const double hidden = static_cast<double>(make_divisible(ch * ratio, head_dim));
  n.conv(ch, hidden, 1);
  n.conv(hidden, ch, 1);
}

// PatchEmbed: a 1x1 conv when the width or the resolution changes, else the identity.
void patch_embed(Counter& n, double in, double out, bool stride2) {
  if (stride2 || in != out) n.conv(in, out, 1);
}

void mhca(Counter& n, double ch, int64_t head_dim) {
  n.conv(head_dim, ch, 3);  // grouped 3x3, head_dim input channels per group
  n.conv(ch, ch, 1);
}

}  // namespace

MemoryEstimate estimate_memory(const NextViTConfig& c, int64_t batch, int64_t height, int64_t width,
                               bool training) {
  Counter n;
  double h = half_up(height), w = half_up(width);
  n.conv(c.in_channels, c.stem_channels[0], 3);
  n.act(c.stem_channels[0], h, w, 2);
  n.conv(c.stem_channels[0], c.stem_channels[1], 3);
  n.conv(c.stem_channels[1], c.stem_channels[2], 3);
  n.act(c.stem_channels[2], h, w, 4);
  n.conv(c.stem_channels[2], c.stem_channels[2], 3);
  h = half_up(h);
  w = half_up(w);
  double in = c.stem_channels[2];
  for (size_t s = 0; s < c.stage_channels.size(); ++s) {
    for (size_t b = 0; b < c.stage_channels[s].size(); ++b) {
      const double out = static_cast<double>(c.stage_channels[s][b]);
      if (b == 0 && c.strides[s] == 2) {
        h = half_up(h);
        w = half_up(w);
      }
      const bool stride2 = b == 0 && c.strides[s] == 2;
      if (c.stage_types[s][b] == BlockType::NCB) {
        patch_embed(n, in, out, stride2);
        mhca(n, out, c.head_dim);
        mlp(n, out, c.ncb_mlp_ratio, c.head_dim);
      } else {
        const double mh = static_cast<double>(
            ntb_mhsa_channels(c.stage_channels[s][b], c.mix_block_ratio, c.head_dim));
        patch_embed(n, in, mh, stride2);
        n.params += 4 * mh * mh;  // q, k, v, proj
        patch_embed(n, mh, out - mh, false);
        mhca(n, out - mh, c.head_dim);
        mlp(n, out, c.ntb_mlp_ratio, c.head_dim);
        const double tokens = h * w, sr2 = double(c.sr_ratios[s]) * c.sr_ratios[s];
        const double pooled = sr2 > 1 ? std::max(1.0, tokens / sr2) : tokens;
        n.act(mh / c.head_dim, tokens, pooled, 1);  // the attention matrix of every head
      }
      n.act(out, h, w, 4);
      in = out;
    }
  }
  n.params += in * static_cast<double>(c.num_classes);

  MemoryEstimate e;
  e.parameters = n.params;
  e.parameter_bytes = 4.0 * n.params * (training ? 4 : 1);
  // Training keeps every activation for backward; inference needs about two alive at a time.
  e.activation_bytes = 4.0 * static_cast<double>(batch) * (training ? n.activations : 2 * n.peak);
  return e;
}

void check_memory_fits(const NextViTConfig& config, int64_t batch, int64_t height, int64_t width,
                       bool training, const std::string& what) {
  const MemoryEstimate e = estimate_memory(config, batch, height, width, training);
  const double limit = static_cast<double>(physical_memory_bytes());
  if (limit <= 0 || e.total_bytes() <= limit) return;
  NV_FAIL(
      "{}: {} ({:.4g} M parameters{}) needs at least {:.3g} GB of memory ({:.3g} GB of weights{}, "
      "{:.3g} GB of activations), more than this machine's {:.3g} GB; use a smaller model, "
      "image size or batch",
      what, config.name, e.parameters / 1e6,
      batch > 0 ? fmt::format(", batch {} at {}x{}", batch, height, width) : "",
      e.total_bytes() / 1e9, e.parameter_bytes / 1e9,
      training ? " with gradients and optimizer state" : "", e.activation_bytes / 1e9, limit / 1e9);
}

}  // namespace nextvit
