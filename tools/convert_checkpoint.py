#!/usr/bin/env python3
"""Converts a Next-ViT checkpoint to safetensors for build/nextvit.

    python tools/convert_checkpoint.py IN.pth OUT.safetensors [--layout official|timm|keep]
                                       [--config nextvit_small|CONFIG.json] [--unsafe-pickle]

IN may be an official (bytedance/Next-ViT) checkpoint -- a state dict, possibly wrapped in
'model' / 'state_dict' / 'model_ema' keys, possibly with DataParallel's 'module.' prefix -- a timm
one, or a safetensors file. The output holds float32 tensors (int64 for num_batches_tracked),
named in the chosen layout (default official; 'keep' leaves the names as they are).

Renaming between layouts needs to know which stage each block belongs to. A timm checkpoint says
so in its names; for an official one the configuration is taken from --config, or else from the
block count (20, 30, 40 blocks: Next-ViT-S, -B, -L). The tensors are checked against the model of
that configuration (names and shapes; the class count comes from the head), so a checkpoint that
does not fit is refused here rather than at load time.

By default .pth files are read with torch.load(weights_only=True), which refuses arbitrary
pickled objects; --unsafe-pickle lifts that for checkpoints you trust that hold other objects.
"""

import argparse
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import nextvit_reference as R  # noqa: E402

WRAPPER_KEYS = ("model", "state_dict", "model_ema", "module")


def load_any(path, unsafe_pickle=False):
    if path.endswith(".safetensors"):
        from safetensors.torch import load_file
        return load_file(path)
    try:
        obj = torch.load(path, map_location="cpu", weights_only=not unsafe_pickle)
    except Exception as e:  # pickle errors come in many types
        raise SystemExit(f"{path}: cannot load ({e}); if you trust the file and it holds more "
                         f"than tensors, pass --unsafe-pickle") from e
    return obj


def extract_state_dict(obj, path):
    """The tensor dict inside a checkpoint: unwrap 'model' / 'state_dict' ..., drop 'module.'."""
    while isinstance(obj, dict) and not any(isinstance(v, torch.Tensor) for v in obj.values()):
        key = next((k for k in WRAPPER_KEYS if k in obj), None)
        if key is None:
            raise SystemExit(f"{path}: no state dict found (top-level keys: {list(obj)[:10]})")
        obj = obj[key]
    if not isinstance(obj, dict):
        raise SystemExit(f"{path}: expected a dict of tensors, found {type(obj).__name__}")
    out = {}
    for k, v in obj.items():
        if not isinstance(v, torch.Tensor):
            continue  # e.g. a stray config entry next to the tensors
        out[k[len("module."):] if k.startswith("module.") else k] = v
    return out


def normalise_dtypes(state):
    out = {}
    for k, v in state.items():
        if v.is_floating_point():
            out[k] = v.detach().to(torch.float32).contiguous()
        elif k.endswith("num_batches_tracked") or v.dtype in (torch.int32, torch.int64):
            out[k] = v.detach().to(torch.int64).contiguous()
        else:
            raise SystemExit(f"tensor '{k}' has dtype {v.dtype}, expected a float or an integer")
    return out


def config_for(state_official, config_arg):
    blocks = {int(k.split(".")[1]) for k in state_official if k.startswith("features.")}
    n = max(blocks) + 1 if blocks else 0
    if config_arg:
        cfg = R.named_config(config_arg)
    else:
        by_blocks = {20: "nextvit_small", 30: "nextvit_base", 40: "nextvit_large"}
        if n not in by_blocks:
            raise SystemExit(f"{n} blocks is not Next-ViT-S/B/L (20/30/40 blocks): pass --config "
                             f"with the model's JSON configuration")
        cfg = R.named_config(by_blocks[n])
    if "proj_head.0.weight" in state_official:
        cfg["num_classes"] = int(state_official["proj_head.0.weight"].shape[0])
    return cfg


def timm_to_official_by_names(state):
    """timm -> official without a configuration: blocks are numbered in (stage, block) order."""
    positions = sorted({(int(k.split(".")[1]), int(k.split(".")[3]))
                        for k in state if k.startswith("stages.")})
    cfg_like = {"stage_out_channels": [[None] * (1 + max(b for s2, b in positions if s2 == s))
                                       for s in range(1 + max(s for s, _ in positions))]}
    return {R.timm_to_official_name(k, cfg_like): v for k, v in state.items()}, cfg_like


def check_against_model(state_official, cfg):
    """Names and shapes must be exactly those of the configured model."""
    expected = R.NextViT(cfg).state_dict()
    missing = [k for k in expected if k not in state_official]
    unexpected = [k for k in state_official if k not in expected]
    wrong = [f"{k}: {tuple(state_official[k].shape)} vs model {tuple(v.shape)}"
             for k, v in expected.items() if k in state_official and
             tuple(state_official[k].shape) != tuple(v.shape)]
    if missing or unexpected or wrong:
        raise SystemExit(f"the checkpoint does not fit {cfg['name']}: missing {missing[:5]}, "
                         f"unexpected {unexpected[:5]}, wrong shapes {wrong[:5]}")
    # Return in the model's state-dict order.
    return {k: state_official[k] for k in expected}


def convert(in_path, out_path, layout="official", config=None, unsafe_pickle=False):
    state = normalise_dtypes(extract_state_dict(load_any(in_path, unsafe_pickle), in_path))
    src_layout = R.detect_layout(state)
    if src_layout == "timm":
        official, _ = timm_to_official_by_names(state)
    else:
        official = state
    cfg = config_for(official, config)
    official = check_against_model(official, cfg)
    if layout == "official":
        out = official
    elif layout == "timm":
        out = {R.official_to_timm_name(k, cfg): v for k, v in official.items()}
    elif layout == "keep":
        out = state
    else:
        raise SystemExit(f"unknown layout {layout}")
    from safetensors.torch import save_file
    save_file(out, out_path, metadata={"format": "pt", "layout": layout if layout != "keep"
                                       else src_layout, "source": os.path.basename(in_path)})
    return out, src_layout, cfg


def main():
    ap = argparse.ArgumentParser(description="Next-ViT checkpoint (.pth) -> safetensors")
    ap.add_argument("input")
    ap.add_argument("output")
    ap.add_argument("--layout", choices=["official", "timm", "keep"], default="official")
    ap.add_argument("--config", help="nextvit_small|nextvit_base|nextvit_large|CONFIG.json "
                    "(default: from the block count)")
    ap.add_argument("--unsafe-pickle", action="store_true",
                    help="allow arbitrary pickled objects in IN (only for files you trust)")
    args = ap.parse_args()
    out, src, cfg = convert(args.input, args.output, args.layout, args.config, args.unsafe_pickle)
    n = sum(v.numel() for v in out.values())
    print(f"{args.input} ({src} layout, {cfg['name']}, {cfg['num_classes']} classes) -> "
          f"{args.output}: {len(out)} tensors, {n} values, {args.layout} layout")


if __name__ == "__main__":
    main()
