"""A PyTorch Next-ViT, the reference the C++ implementation is tested against.

Written from the architecture spec (nextvit-architecture.md), parameterised by a configuration
dict whose keys are those of the C++ NextViTConfig::to_json() (models/nextvit_config.h), and
built from modules whose attribute names are exactly those of the official implementation
(bytedance/Next-ViT, classification/nextvit.py), so that `state_dict()` is in the official layout:

    stem.{j}.conv.weight, stem.{j}.norm.*                      j = 0..3
    features.{i}.patch_embed.{conv.weight, norm.*}             i = 0..blocks-1 (all stages)
    NCB: features.{i}.mhca.{group_conv3x3.weight, norm.*, projection.weight},
         features.{i}.norm.*, features.{i}.mlp.{conv1, conv2}.{weight, bias}
    NTB: features.{i}.norm1.*, features.{i}.e_mhsa.{q, k, v, proj}.{weight, bias},
         features.{i}.e_mhsa.norm.* (sr > 1), features.{i}.projection.{conv.weight, norm.*},
         features.{i}.mhca.*, features.{i}.norm2.*, features.{i}.mlp.*
    norm.*, proj_head.0.{weight, bias}

For the paper's models (head_dim 32) it computes exactly what the official code and timm's
port compute; `tools/check_conformance.py --self-test` checks that against timm. For reduced
configurations make_divisible uses head_dim as its divisor (the official code hard-codes 32,
which is the same number when head_dim = 32).

Also here: the timm <-> official name mapping (by rule for any configuration, and by order for
two state dicts of the same model) used by convert_checkpoint.py and make_reference_data.py.
"""

import copy
import json
import re

import torch
import torch.nn.functional as F
from torch import nn

BN_EPS = 1e-5

# ---------------------------------------------------------------------------------------------
# Configurations
# ---------------------------------------------------------------------------------------------


def config_from_depths(name, depths, drop_path, num_classes=1000):
    """A paper model: the Next Hybrid Strategy lays out the blocks of each stage from depths."""
    assert depths[2] % 5 == 0, f"{name}: stage-3 depth {depths[2]} must be a multiple of 5"
    d = depths
    return {
        "name": name,
        "in_channels": 3,
        "stem_chs": [64, 32, 64],
        "stage_out_channels": [
            [96] * d[0],
            [192] * (d[1] - 1) + [256],
            [384, 384, 384, 384, 512] * (d[2] // 5),
            [768] * (d[3] - 1) + [1024],
        ],
        "stage_block_types": [
            ["NCB"] * d[0],
            ["NCB"] * (d[1] - 1) + ["NTB"],
            ["NCB", "NCB", "NCB", "NCB", "NTB"] * (d[2] // 5),
            ["NCB"] * (d[3] - 1) + ["NTB"],
        ],
        "strides": [1, 2, 2, 2],
        "sr_ratios": [8, 4, 2, 1],
        "head_dim": 32,
        "mix_block_ratio": 0.75,
        "ncb_mlp_ratio": 3.0,
        "ntb_mlp_ratio": 2.0,
        "drop_path": drop_path,
        "num_classes": num_classes,
    }


def named_config(name, num_classes=1000):
    table = {
        "nextvit_small": ((3, 4, 10, 3), 0.1),
        "nextvit_base": ((3, 4, 20, 3), 0.2),
        "nextvit_large": ((3, 4, 30, 3), 0.2),
    }
    if name in table:
        depths, dp = table[name]
        return config_from_depths(name, depths, dp, num_classes)
    with open(name) as f:
        return json.load(f)


def config_to_json_text(cfg):
    """One key per line, each value compact: readable and diff-friendly."""
    lines = [f"  {json.dumps(k)}: {json.dumps(v)}" for k, v in cfg.items()]
    return "{\n" + ",\n".join(lines) + "\n}\n"


def make_divisible(v, divisor):
    """The official _make_divisible: nearest multiple of divisor (at least divisor), one more
    divisor when rounding went down by more than 10%."""
    new_v = max(divisor, int(v + divisor / 2) // divisor * divisor)
    if new_v < 0.9 * v:
        new_v += divisor
    return new_v


def ntb_split(out_channels, mix_block_ratio, head_dim):
    """(m, c): the attention-path and convolution-path widths of an NTB."""
    m = make_divisible(int(out_channels * mix_block_ratio), head_dim)
    return m, out_channels - m


def validate_config(cfg):
    hd = cfg["head_dim"]
    stages = cfg["stage_out_channels"]
    assert len(stages) == len(cfg["stage_block_types"]) == len(cfg["strides"]) == len(
        cfg["sr_ratios"]), "stage lists differ in length"
    for s, (chs, types) in enumerate(zip(stages, cfg["stage_block_types"])):
        assert len(chs) == len(types) > 0, f"stage {s + 1}: {len(chs)} widths, {len(types)} types"
        for b, (out, t) in enumerate(zip(chs, types)):
            assert out % hd == 0, f"stage {s + 1} block {b}: {out} channels, head_dim {hd}"
            assert t in ("NCB", "NTB"), f"stage {s + 1} block {b}: unknown block type {t}"
            if t == "NTB":
                m, c = ntb_split(out, cfg["mix_block_ratio"], hd)
                assert c > 0, (f"stage {s + 1} block {b}: NTB with {out} channels gets m = {m}, "
                               f"leaving no channels for its MHCA path")
                assert c % hd == 0, f"stage {s + 1} block {b}: MHCA width {c} vs head_dim {hd}"


def drop_path_rates(cfg):
    n = sum(len(s) for s in cfg["stage_out_channels"])
    return [x.item() for x in torch.linspace(0, cfg["drop_path"], n)]


# ---------------------------------------------------------------------------------------------
# Modules (attribute names = the official state-dict names)
# ---------------------------------------------------------------------------------------------


def drop_path(x, p, training):
    """Stochastic depth: zero whole samples with probability p, scale the rest by 1 / (1 - p)."""
    if p == 0.0 or not training:
        return x
    keep = 1.0 - p
    mask = x.new_empty((x.shape[0],) + (1,) * (x.dim() - 1)).bernoulli_(keep)
    return x * mask.div_(keep)


class ConvBNReLU(nn.Module):
    def __init__(self, cin, cout, stride):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False)
        self.norm = nn.BatchNorm2d(cout, eps=BN_EPS)

    def forward(self, x):
        return F.relu(self.norm(self.conv(x)))


class PatchEmbed(nn.Module):
    """stride 2: AvgPool2d(2, 2, ceil, no pad count) -> 1x1 conv -> BN; in != out: conv -> BN;
    otherwise nothing (and no parameters)."""

    def __init__(self, cin, cout, stride=1):
        super().__init__()
        self.stride = stride
        if stride == 2 or cin != cout:
            self.conv = nn.Conv2d(cin, cout, 1, bias=False)
            self.norm = nn.BatchNorm2d(cout, eps=BN_EPS)
        else:
            self.conv = None
            self.norm = None

    def forward(self, x):
        if self.stride == 2:
            x = F.avg_pool2d(x, 2, 2, ceil_mode=True, count_include_pad=False)
        if self.conv is not None:
            x = self.norm(self.conv(x))
        return x


class MHCA(nn.Module):
    """Multi-head convolutional attention: grouped 3x3 (one group per head) -> BN -> ReLU -> 1x1."""

    def __init__(self, channels, head_dim):
        super().__init__()
        self.group_conv3x3 = nn.Conv2d(channels, channels, 3, padding=1,
                                       groups=channels // head_dim, bias=False)
        self.norm = nn.BatchNorm2d(channels, eps=BN_EPS)
        self.projection = nn.Conv2d(channels, channels, 1, bias=False)

    def forward(self, x):
        return self.projection(F.relu(self.norm(self.group_conv3x3(x))))


class Mlp(nn.Module):
    def __init__(self, channels, ratio, divisor):
        super().__init__()
        hidden = make_divisible(channels * ratio, divisor)
        self.conv1 = nn.Conv2d(channels, hidden, 1, bias=True)
        self.conv2 = nn.Conv2d(hidden, channels, 1, bias=True)

    def forward(self, x):
        return self.conv2(F.relu(self.conv1(x)))


class NCB(nn.Module):
    def __init__(self, cin, cout, stride, path_dropout, head_dim, mlp_ratio):
        super().__init__()
        self.patch_embed = PatchEmbed(cin, cout, stride)
        self.mhca = MHCA(cout, head_dim)
        self.norm = nn.BatchNorm2d(cout, eps=BN_EPS)
        self.mlp = Mlp(cout, mlp_ratio, head_dim)
        self.p = path_dropout

    def forward(self, x):
        x = self.patch_embed(x)
        x = x + drop_path(self.mhca(x), self.p, self.training)
        return x + drop_path(self.mlp(self.norm(x)), self.p, self.training)


class EMHSA(nn.Module):
    """Efficient multi-head self-attention on tokens (B, N, C). With sr > 1, keys and values come
    from AvgPool1d(sr^2) over the token axis (sr^2 consecutive raster-order tokens) + BN1d."""

    def __init__(self, dim, head_dim, sr_ratio):
        super().__init__()
        self.heads = dim // head_dim
        self.head_dim = head_dim
        self.scale = head_dim ** -0.5
        self.q = nn.Linear(dim, dim)
        self.k = nn.Linear(dim, dim)
        self.v = nn.Linear(dim, dim)
        self.proj = nn.Linear(dim, dim)
        self.sr_ratio = sr_ratio
        self.norm = nn.BatchNorm1d(dim, eps=BN_EPS) if sr_ratio > 1 else None

    def forward(self, x):
        B, N, C = x.shape
        h, d = self.heads, self.head_dim
        q = self.q(x).reshape(B, N, h, d).transpose(1, 2)  # (B, h, N, d)
        kv = x
        if self.sr_ratio > 1:
            r2 = self.sr_ratio ** 2
            kv = F.avg_pool1d(x.transpose(1, 2), r2, r2)  # (B, C, N // r2)
            kv = self.norm(kv).transpose(1, 2)
        k = self.k(kv).reshape(B, -1, h, d).transpose(1, 2)  # (B, h, M, d)
        v = self.v(kv).reshape(B, -1, h, d).transpose(1, 2)
        attn = ((q @ k.transpose(-1, -2)) * self.scale).softmax(dim=-1)
        out = (attn @ v).transpose(1, 2).reshape(B, N, C)
        return self.proj(out)


class NTB(nn.Module):
    def __init__(self, cin, cout, stride, path_dropout, sr_ratio, head_dim, mix_block_ratio,
                 mlp_ratio):
        super().__init__()
        m, c = ntb_split(cout, mix_block_ratio, head_dim)
        assert c > 0, f"NTB {cin}->{cout}: the MHCA path gets {c} channels"
        self.patch_embed = PatchEmbed(cin, m, stride)
        self.norm1 = nn.BatchNorm2d(m, eps=BN_EPS)
        self.e_mhsa = EMHSA(m, head_dim, sr_ratio)
        self.projection = PatchEmbed(m, c, 1)
        self.mhca = MHCA(c, head_dim)
        self.norm2 = nn.BatchNorm2d(cout, eps=BN_EPS)
        self.mlp = Mlp(cout, mlp_ratio, head_dim)
        self.p = path_dropout
        self.r = mix_block_ratio

    def forward(self, x):
        x = self.patch_embed(x)
        B, C, H, W = x.shape
        tokens = self.norm1(x).flatten(2).transpose(1, 2)  # (B, H*W, C), raster order
        att = drop_path(self.e_mhsa(tokens), self.p * self.r, self.training)
        x = x + att.transpose(1, 2).reshape(B, C, H, W)
        y = self.projection(x)
        y = y + drop_path(self.mhca(y), self.p * (1 - self.r), self.training)
        x = torch.cat([x, y], dim=1)
        return x + drop_path(self.mlp(self.norm2(x)), self.p, self.training)


class NextViT(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        validate_config(cfg)
        self.cfg = copy.deepcopy(cfg)
        s0, s1, s2 = cfg["stem_chs"]
        self.stem = nn.Sequential(
            ConvBNReLU(cfg.get("in_channels", 3), s0, 2),
            ConvBNReLU(s0, s1, 1),
            ConvBNReLU(s1, s2, 1),
            ConvBNReLU(s2, s2, 2),
        )
        dpr = drop_path_rates(cfg)
        hd = cfg["head_dim"]
        blocks, cin, i = [], s2, 0
        for s, (chs, types) in enumerate(zip(cfg["stage_out_channels"], cfg["stage_block_types"])):
            for b, (cout, t) in enumerate(zip(chs, types)):
                stride = cfg["strides"][s] if b == 0 else 1
                if t == "NCB":
                    blocks.append(NCB(cin, cout, stride, dpr[i], hd, cfg["ncb_mlp_ratio"]))
                else:
                    blocks.append(NTB(cin, cout, stride, dpr[i], cfg["sr_ratios"][s], hd,
                                      cfg["mix_block_ratio"], cfg["ntb_mlp_ratio"]))
                cin = cout
                i += 1
        self.features = nn.Sequential(*blocks)
        self.norm = nn.BatchNorm2d(cin, eps=BN_EPS)
        self.proj_head = nn.Sequential(nn.Linear(cin, cfg["num_classes"]))
        self.reset_parameters()

    def reset_parameters(self):
        """The official init: BN weight 1, bias 0; conv and linear weights truncated normal with
        std 0.02 (bounds +-2), biases 0."""
        for m in self.modules():
            if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, (nn.Linear, nn.Conv2d)):
                nn.init.trunc_normal_(m.weight, std=0.02)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

    def forward(self, x):
        x = self.features(self.stem(x))
        x = self.norm(x).mean(dim=(2, 3))
        return self.proj_head(x)


# ---------------------------------------------------------------------------------------------
# Test helpers
# ---------------------------------------------------------------------------------------------


@torch.no_grad()
def randomize_for_testing(model, seed, calib_shape=(4, 3, 64, 64)):
    """Weights for reference data in which every term of every layer shows in the outputs. Works
    on any Next-ViT module tree (ours or timm's), drawing the same numbers for both when their
    modules come in the same order.

    The official init (std 0.02) is not used here on purpose: with it each branch adds ~1% to its
    residual and E-MHSA's softmax is uniform to 1e-7, so a wrong attention scale or key order
    would not change the logits. Instead:
      - conv and linear weights: truncated normal, std 1 / sqrt(fan_in) (cut at 2 std), so
        activations keep unit scale and attention scores spread over O(1);
      - conv and linear biases: normal, std 0.05;
      - BatchNorm statistics: calibrated by one train-mode forward of random N(0, 1) images
        (momentum 1), so that eval-mode activations are well scaled too, then perturbed: running
        mean + N(0, 0.1) std, running var * U[0.5, 2); weight U[0.5, 1.5), bias N(0, 0.1);
        num_batches_tracked a random integer.
    """
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            std = m.weight[0].numel() ** -0.5
            w = torch.empty(m.weight.shape)
            nn.init.trunc_normal_(w, std=std, a=-2 * std, b=2 * std, generator=g)
            m.weight.copy_(w)
            if m.bias is not None:
                m.bias.copy_(torch.randn(m.bias.shape, generator=g) * 0.05)
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    for m in bns:
        m.weight.copy_(torch.rand(m.num_features, generator=g) + 0.5)
        m.bias.copy_(torch.randn(m.num_features, generator=g) * 0.1)

    was_training = model.training
    momenta = [m.momentum for m in bns]
    for m in bns:
        m.momentum = 1.0
    model.train()
    model(torch.randn(calib_shape, generator=g))
    for m, mom in zip(bns, momenta):
        m.momentum = mom
    model.train(was_training)

    for m in bns:
        n = m.num_features
        m.running_mean.add_(torch.randn(n, generator=g) * 0.1 * m.running_var.sqrt())
        m.running_var.mul_(torch.rand(n, generator=g) * 1.5 + 0.5)
        m.num_batches_tracked.fill_(int(torch.randint(1, 10000, (1,), generator=g)))


# ---------------------------------------------------------------------------------------------
# Names: official <-> timm
# ---------------------------------------------------------------------------------------------


def block_positions(cfg):
    """features index i -> (stage s, block b) for timm's stages.{s}.blocks.{b}."""
    out = []
    for s, chs in enumerate(cfg["stage_out_channels"]):
        out.extend((s, b) for b in range(len(chs)))
    return out


# Leaf renames inside a block / at the top (everything else is spelt the same in both layouts).
_OFFICIAL_TO_TIMM_LEAF = [(".mlp.conv1.", ".mlp.fc1."), (".mlp.conv2.", ".mlp.fc2.")]


def official_to_timm_name(name, cfg):
    pos = block_positions(cfg)
    if name.startswith("proj_head.0."):
        return "head.fc." + name[len("proj_head.0."):]
    m = re.match(r"features\.(\d+)(\..*)$", name)
    if not m:
        return name  # stem.*, norm.*
    i, rest = int(m.group(1)), m.group(2)
    assert i < len(pos), f"{name}: block {i} does not exist in a {len(pos)}-block model"
    for a, b in _OFFICIAL_TO_TIMM_LEAF:
        if rest.startswith(a):
            rest = b + rest[len(a):]
    s, b = pos[i]
    return f"stages.{s}.blocks.{b}{rest}"


def timm_to_official_name(name, cfg):
    pos = block_positions(cfg)
    if name.startswith("head.fc."):
        return "proj_head.0." + name[len("head.fc."):]
    m = re.match(r"stages\.(\d+)\.blocks\.(\d+)(\..*)$", name)
    if not m:
        return name
    s, b, rest = int(m.group(1)), int(m.group(2)), m.group(3)
    i = pos.index((s, b))
    for a, c in _OFFICIAL_TO_TIMM_LEAF:
        if rest.startswith(c):
            rest = a + rest[len(c):]
    return f"features.{i}{rest}"


def map_by_order(src_state, dst_state):
    """Pairs (src name, dst name) of two state dicts of the same model in two layouts, matched by
    position, as timm's checkpoint_filter_fn does; every pair must agree in shape."""
    src, dst = list(src_state.items()), list(dst_state.items())
    assert len(src) == len(dst), f"{len(src)} tensors vs {len(dst)}"
    pairs = []
    for (ka, va), (kb, vb) in zip(src, dst):
        assert va.shape == vb.shape, f"{ka} {tuple(va.shape)} vs {kb} {tuple(vb.shape)}"
        pairs.append((ka, kb))
    return pairs


def detect_layout(state):
    keys = list(state)
    if any(k.startswith("stages.") for k in keys) or "head.fc.weight" in keys:
        return "timm"
    if any(k.startswith("features.") for k in keys) or "proj_head.0.weight" in keys:
        return "official"
    raise ValueError("neither official (features.*, proj_head.0.*) nor timm (stages.*, head.fc.*)"
                     " names")
