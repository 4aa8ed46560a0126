#pragma once
// The deployment form of Next-ViT: every BatchNorm merged into a neighbouring linear map, as
// the official merge_pre_bn and the paper's latency numbers assume. In eval mode a BatchNorm is
// a per-channel affine map y = s x + t (s = gamma / sqrt(var + eps), t = beta - mean s), so:
//
//  - a conv followed by BN (stem, PatchEmbed, MHCA's grouped conv) becomes one conv:
//      W'[o] = s[o] W[o],  b'[o] = s[o] (b[o] - 0) + t[o]      (+ ReLU stays where it was)
//  - a BN followed by a 1x1 conv or linear (NCB.norm -> mlp.conv1, NTB.norm2 -> mlp.conv1,
//    NTB.norm1 -> e_mhsa.q/k/v, the final norm -> the classifier) becomes part of that layer:
//      W' = W diag(s),  b' = b + W t
//  - E-MHSA's k and v see norm1, then the token average pool, then e_mhsa.norm: pooling is
//    linear and per channel, so it commutes with norm1's affine map, and the two maps compose
//    into one (s1 s2, t1 s2 + t2) that is merged into k and v;
//  - the final norm before the global average pool merges into proj_head.0 the same way.
//
// Afterwards every BatchNorm is the identity and the model computes the same logits as the
// unfolded model in eval mode (up to float rounding). Training a folded model is refused.
#include <string>
#include <utility>
#include <vector>

#include "models/nextvit.h"

namespace nextvit {

// Folds in place; the model must be in eval mode. Idempotent.
void fold_batch_norms(NextViT& model);

// The persisted deploy form (`nextvit export --format deploy`): the state dict without the
// parameters and buffers of folded BatchNorms, which no longer compute anything. Every
// BatchNorm must be folded.
std::vector<std::pair<std::string, Tensor>> deploy_state_dict(const NextViT& model);

// The names of the tensors of the folded BatchNorms of `model` (what deploy_state_dict leaves
// out), so that loading a deploy file into a folded model can fill them with its own values.
std::vector<std::string> folded_batch_norm_tensors(const Module& model);

}  // namespace nextvit
