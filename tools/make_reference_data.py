#!/usr/bin/env python3
"""Writes the PyTorch reference data of the C++ conformance tests into tests/data/.

    python tools/make_reference_data.py [--out tests/data]

Needs torch and safetensors (CI does not: the tests read the committed files). Deterministic:
the same torch version writes the same bytes. Files:

  nextvit_tiny_config.json           the reduced Next-ViT (keys of NextViTConfig::to_json)
  nextvit_tiny_weights.safetensors   its parameters and BN buffers, official names, f32 and i64
  nextvit_tiny_timm_names.json       [official name, timm name] for every tensor, in state-dict
                                     order: the timm layout of the same weights
  nextvit_tiny_io.safetensors        inputs, eval logits, and one train-mode step (see below)
  safetensors_sample.safetensors     a small file of every supported dtype for the reader test

nextvit_tiny_io.safetensors:
  input (2, 3, 64, 64), input_nonsquare (2, 3, 48, 70)
  logits_eval, logits_eval_nonsquare   eval mode (running statistics)
  targets (2,) i64, and in train mode (batch statistics, drop-path 0) on `input`:
  logits_train, loss (scalar: cross-entropy, mean, label_smoothing 0.1), grad_input,
  grad.<official name> for every parameter, and running.<official name> for every BN buffer
  (running_mean, running_var, num_batches_tracked) after that one train-mode forward.
"""

import argparse
import json
import os
import sys

import torch
import torch.nn.functional as F
from safetensors.torch import save_file

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import nextvit_reference as R  # noqa: E402

# The reduced Next-ViT: the Next Hybrid Strategy's block pattern with depths (1, 2, 5, 2),
# head_dim 16 (the smallest head size of the CUDA attention kernel), the official mix and MLP
# ratios, about 150k parameters so that weights and gradients stay small. Every NTB is 64 wide,
# the narrowest that leaves its MHCA path channels at head_dim 16: m = make_divisible(48, 16) =
# 48 (three attention heads), c = 16. The stage-2 and stage-3 NTBs take 16 channels in (their
# patch embedding is a 1x1 conv); the stage-4 NTB follows a 48-wide NCB, so its patch embedding
# is the identity, as in Next-ViT-S; that NCB has a 3-group MHCA. sr (8, 4, 2, 1): at 64x64
# stage 2 pools 64 tokens by 16, stage 3 pools 16 tokens by 4, stage 4 is unpooled.
TINY_CONFIG = {
    "name": "nextvit_tiny",
    "in_channels": 3,
    "stem_chs": [8, 8, 16],
    "stage_out_channels": [[16], [16, 64], [16, 16, 16, 16, 64], [48, 64]],
    "stage_block_types": [["NCB"], ["NCB", "NTB"], ["NCB", "NCB", "NCB", "NCB", "NTB"],
                          ["NCB", "NTB"]],
    "strides": [1, 2, 2, 2],
    "sr_ratios": [8, 4, 2, 1],
    "head_dim": 16,
    "mix_block_ratio": 0.75,
    "ncb_mlp_ratio": 3.0,
    "ntb_mlp_ratio": 2.0,
    "drop_path": 0.0,
    "num_classes": 10,
}

# 48x70 exercises what 64x64 does not: an odd width through the stride-2 stem convs (70 -> 35
# -> 18), ceil-mode average pooling with partial windows (9 -> 5 -> 3 columns), and E-MHSA
# pooling that drops a remainder (stage 2: 6x9 = 54 tokens -> 3 keys; stage 3: 3x5 = 15 -> 3).
INPUT_SHAPE = (2, 3, 64, 64)
INPUT_NONSQUARE_SHAPE = (2, 3, 48, 70)
TARGETS = [3, 7]
LABEL_SMOOTHING = 0.1


def setup_determinism():
    torch.manual_seed(0)
    torch.set_num_threads(2)
    torch.set_default_dtype(torch.float32)
    torch.use_deterministic_algorithms(True)
    torch.backends.cudnn.deterministic = True
    torch.backends.cudnn.benchmark = False
    torch.backends.mkldnn.enabled = False  # the plain ATen CPU kernels, same on every machine


def write_sample(path):
    """Every dtype the C++ reader supports, a scalar and an empty tensor, with metadata. The
    values are exact in their dtype; tests/test_safetensors.cpp spells them out."""
    tensors = {
        "f32": torch.arange(6, dtype=torch.float32).reshape(2, 3) * 0.5 - 1.0,
        "f16": torch.tensor([1.0, -2.5, 65504.0, 2.0 ** -24], dtype=torch.float16),
        "bf16": torch.tensor([[1.0, -3.0], [0.15625, 2.0 ** 100]], dtype=torch.bfloat16),
        "i64": torch.tensor([[-1, 2 ** 40, 3]], dtype=torch.int64),
        "scalar": torch.tensor(3.25),
        "empty": torch.zeros(0, 3),
    }
    save_file(tensors, path, metadata={"writer": "python safetensors"})


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    here = os.path.dirname(os.path.abspath(__file__))
    ap.add_argument("--out", default=os.path.join(here, "..", "tests", "data"))
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    setup_determinism()

    cfg = TINY_CONFIG
    model = R.NextViT(cfg)
    R.randomize_for_testing(model, seed=1)
    state = {k: v.detach().clone().contiguous() for k, v in model.state_dict().items()}
    # One metadata entry only: the Python package writes several in a random order, which would
    # make the bytes differ from run to run.
    meta = {"generator": f"tools/make_reference_data.py, torch {torch.__version__}"}

    with open(os.path.join(args.out, "nextvit_tiny_config.json"), "w") as f:
        f.write(R.config_to_json_text(cfg))
    save_file(state, os.path.join(args.out, "nextvit_tiny_weights.safetensors"), metadata=meta)
    names = [[k, R.official_to_timm_name(k, cfg)] for k in state]
    assert all(R.timm_to_official_name(t, cfg) == o for o, t in names)
    with open(os.path.join(args.out, "nextvit_tiny_timm_names.json"), "w") as f:
        f.write("[\n" + ",\n".join(json.dumps(p) for p in names) + "\n]\n")

    g = torch.Generator().manual_seed(2)
    x = torch.randn(INPUT_SHAPE, generator=g)
    x_ns = torch.randn(INPUT_NONSQUARE_SHAPE, generator=g)
    io = {"input": x, "input_nonsquare": x_ns}

    # The outputs are computed in float64 from the float32 weights and inputs (exactly
    # representable) and rounded to float32 when saved: the files hold the exact results up to
    # that rounding, so a comparison measures the C++ code's float32 error alone.
    model = model.double()
    model.eval()
    with torch.no_grad():
        io["logits_eval"] = model(x.double())
        io["logits_eval_nonsquare"] = model(x_ns.double())

    # One train-mode step: batch statistics (and the running-stat update), drop-path 0.
    model.train()
    targets = torch.tensor(TARGETS, dtype=torch.int64)
    xg = x.double().requires_grad_(True)
    logits = model(xg)
    loss = F.cross_entropy(logits, targets, label_smoothing=LABEL_SMOOTHING)
    loss.backward()
    io["targets"] = targets
    io["logits_train"] = logits.detach()
    io["loss"] = loss.detach()
    io["grad_input"] = xg.grad
    for name, p in model.named_parameters():
        io["grad." + name] = p.grad
    for name, b in model.named_buffers():
        io["running." + name] = b
    io = {k: (v.float() if v.is_floating_point() else v).detach().contiguous()
          for k, v in io.items()}
    save_file(io, os.path.join(args.out, "nextvit_tiny_io.safetensors"), metadata=meta)

    # Gradients that are zero in exact arithmetic (k biases: softmax ignores a per-row constant;
    # biases whose every path ends in a train-mode BatchNorm, which removes per-channel
    # constants) hold rounding noise; a comparison needs an absolute floor for them.
    gmax = max(p.grad.abs().max().item() for p in model.parameters())
    zero = [n for n, p in model.named_parameters() if p.grad.abs().max().item() < 1e-12 * gmax]
    print(f"largest |grad| {gmax:.4g}; {len(zero)} gradients are zero up to rounding: "
          f"{', '.join(zero)}")

    write_sample(os.path.join(args.out, "safetensors_sample.safetensors"))

    for fn in os.listdir(args.out):  # safetensors writes 0600; these files are for everyone
        if fn.startswith(("nextvit_tiny", "safetensors_sample")):
            os.chmod(os.path.join(args.out, fn), 0o644)

    params = sum(p.numel() for p in model.parameters())
    print(f"{cfg['name']}: {params} parameters, {len(state)} tensors in the state dict")
    print(f"loss {loss.item():.6f}; logits_eval[0] {io['logits_eval'][0].tolist()}")
    total = 0
    for fn in sorted(os.listdir(args.out)):
        if fn.startswith(("nextvit_tiny", "safetensors_sample")):
            size = os.path.getsize(os.path.join(args.out, fn))
            total += size
            print(f"  {fn}: {size} bytes")
    print(f"  total {total} bytes")


if __name__ == "__main__":
    main()
