#!/usr/bin/env python3
"""Full-size conformance checks of Next-ViT-S against PyTorch. Needs torch, timm, safetensors.

  python tools/check_conformance.py --self-test
      The PyTorch reference model (tools/nextvit_reference.py) against timm's nextvit_small:
      timm's weights copied into ours by position (names differ, shapes must match one to one,
      and the rule-based name mapping must give the same pairs), then eval logits at 224x224 and
      256x320, and with drop-path 0 the train-mode logits, loss and every parameter's gradient.
      Also converts a .pth saved from the reference model with tools/convert_checkpoint.py in
      each layout and checks the tensors come back unchanged.

  python tools/check_conformance.py --out DIR [--nextvit build/nextvit] [--layout official|timm]
                                    [--device cpu|cuda]
      Writes DIR/weights.safetensors (nextvit_small, 1000 classes, random weights and perturbed
      BatchNorm statistics), DIR/input_224.safetensors (2, 3, 224, 224) and
      DIR/input_256x320.safetensors (1, 3, 256, 320) holding `input`, and the PyTorch logits in
      DIR/expected_*.safetensors. With --nextvit, runs
          nextvit forward --model nextvit_small --weights W --input X --output Y
      for each input and compares `logits`: max|a - b| / max|b| must be <= 1e-4.

Exit status 0 when every check passes.
"""

import argparse
import os
import subprocess
import sys
import tempfile

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import nextvit_reference as R  # noqa: E402

REL_TOL = 1e-4
INPUTS = {"224": (2, 3, 224, 224), "256x320": (1, 3, 256, 320)}


def setup():
    torch.manual_seed(0)
    torch.set_num_threads(max(1, min(8, os.cpu_count() or 1)))
    torch.use_deterministic_algorithms(True)


def rel_err(a, b):
    """(max |a - b| / max |b|, max |a - b|)"""
    diff = (a.double() - b.double()).abs().max().item()
    scale = b.double().abs().max().item()
    return diff / scale if scale > 0 else diff, diff


def report(name, a, b, tol, failures):
    rel, diff = rel_err(a, b)
    ok = rel <= tol
    print(f"  {'ok  ' if ok else 'FAIL'} {name}: max abs diff {diff:.3g}, relative {rel:.3g} "
          f"(tolerance {tol:g})")
    if not ok:
        failures.append(name)


def build_pair(drop_path):
    """timm's nextvit_small and ours with timm's random weights copied in by position."""
    import timm
    tm = timm.create_model("nextvit_small", pretrained=False, drop_path_rate=drop_path)
    R.randomize_for_testing(tm, seed=1, calib_shape=(2, 3, 224, 224))
    cfg = R.named_config("nextvit_small")
    cfg["drop_path"] = drop_path
    ours = R.NextViT(cfg)
    pairs = R.map_by_order(tm.state_dict(), ours.state_dict())
    by_rule = [(t, o) for t, o in pairs if R.timm_to_official_name(t, cfg) != o or
               R.official_to_timm_name(o, cfg) != t]
    assert not by_rule, f"rule-based names disagree with the positional pairing: {by_rule[:5]}"
    sd = tm.state_dict()
    ours.load_state_dict({o: sd[t] for t, o in pairs}, strict=True)
    return tm, ours, cfg, pairs


def self_test():
    failures = []
    print("reference model vs timm nextvit_small")
    tm, ours, cfg, pairs = build_pair(drop_path=0.0)
    n_params = sum(p.numel() for p in ours.parameters())
    print(f"  {len(pairs)} state-dict tensors matched by position and by rule, shapes equal; "
          f"{n_params} parameters")
    g = torch.Generator().manual_seed(2)

    tm.eval()
    ours.eval()
    for tag, shape in INPUTS.items():
        x = torch.randn(shape, generator=g)
        with torch.no_grad():
            report(f"eval logits {tag} {tuple(shape)}, float32", ours(x), tm(x), REL_TOL,
                   failures)
            report(f"eval logits {tag} {tuple(shape)}, float64", ours.double()(x.double()),
                   tm.double()(x.double()), 1e-9, failures)
        ours.float()
        tm.float()

    # The train step in float64: at float32, gradients of a 20-block network differ between any
    # two implementations by rounding noise of ~1e-2 relative for the input gradient and more for
    # the gradients that are zero in exact arithmetic; in float64 only real differences remain.
    tm.double().train()
    ours.double().train()
    x = torch.randn(2, 3, 224, 224, generator=g, dtype=torch.float64)
    targets = torch.tensor([1, 998])
    xa, xb = x.clone().requires_grad_(True), x.clone().requires_grad_(True)
    la, lb = ours(xa), tm(xb)
    loss_a = F.cross_entropy(la, targets, label_smoothing=0.1)
    loss_b = F.cross_entropy(lb, targets, label_smoothing=0.1)
    loss_a.backward()
    loss_b.backward()
    tol = 1e-9
    report("train logits 224, float64, drop-path 0", la.detach(), lb.detach(), tol, failures)
    report("train loss", loss_a.detach().reshape(1), loss_b.detach().reshape(1), tol, failures)
    report("grad input", xa.grad, xb.grad, tol, failures)
    # Each gradient relative to its own largest value, with a floor of 1e-9 of the largest
    # gradient anywhere for those that are zero in exact arithmetic.
    tparams, oparams = dict(tm.named_parameters()), dict(ours.named_parameters())
    gmax = max(p.grad.abs().max().item() for p in tparams.values())
    worst, worst_name = 0.0, ""
    for t, o in pairs:
        if t not in tparams:
            continue  # buffers
        a, b = oparams[o].grad, tparams[t].grad
        rel = (a - b).abs().max().item() / max(b.abs().max().item(), 1e-9 * gmax)
        if rel > worst:
            worst, worst_name = rel, o
    ok = worst <= 1e-6
    print(f"  {'ok  ' if ok else 'FAIL'} all {len(oparams)} parameter gradients: worst relative "
          f"diff {worst:.3g} ({worst_name}) (tolerance 1e-6)")
    if not ok:
        failures.append("parameter gradients")
    tbuf, obuf = dict(tm.named_buffers()), dict(ours.named_buffers())
    worst = max(rel_err(obuf[o], tbuf[t])[0] for t, o in pairs if t in tbuf)
    ok = worst <= tol
    print(f"  {'ok  ' if ok else 'FAIL'} BatchNorm running statistics after the train step: "
          f"worst relative diff {worst:.3g} (tolerance {tol:g})")
    if not ok:
        failures.append("running statistics")
    ours.float()

    print("tests/data/nextvit_tiny_* (the committed reference data) vs timm's blocks")
    failures += check_tiny_data()

    print("convert_checkpoint.py on a .pth saved from the reference model")
    failures += check_converter(ours, cfg)
    return failures


def timm_tiny(cfg):
    """The reduced configuration assembled from timm's own modules (ConvNormAct, NextStage,
    ClassifierHead): an independent implementation of every block, named in timm's layout.
    timm's NTB hard-codes the divisor 32 in its split; it is patched to head_dim while building,
    which is what the reduced configuration means."""
    import timm.models.nextvit as T
    from timm.layers import ClassifierHead
    from torch import nn

    class TimmTiny(nn.Module):
        def __init__(self):
            super().__init__()
            s0, s1, s2 = cfg["stem_chs"]
            self.stem = nn.Sequential(T.ConvNormAct(3, s0, 3, 2), T.ConvNormAct(s0, s1, 3, 1),
                                      T.ConvNormAct(s1, s2, 3, 1), T.ConvNormAct(s2, s2, 3, 2))
            stages, cin = [], s2
            for s, chs in enumerate(cfg["stage_out_channels"]):
                types = [T.NextConvBlock if t == "NCB" else T.NextTransformerBlock
                         for t in cfg["stage_block_types"][s]]
                stages.append(T.NextStage(cin, chs, types, stride=cfg["strides"][s],
                                          sr_ratio=cfg["sr_ratios"][s],
                                          mix_block_ratio=cfg["mix_block_ratio"],
                                          head_dim=cfg["head_dim"], drop_path=0.0))
                cin = chs[-1]
            self.stages = nn.Sequential(*stages)
            self.norm = nn.BatchNorm2d(cin)
            self.head = ClassifierHead(cin, cfg["num_classes"], pool_type="avg")

        def forward(self, x):
            return self.head(self.norm(self.stages(self.stem(x))))

    original = T._make_divisible
    T._make_divisible = lambda v, divisor, min_value=None: original(v, cfg["head_dim"], min_value)
    try:
        return TimmTiny()
    finally:
        T._make_divisible = original


def check_tiny_data():
    import json
    from safetensors.torch import load_file
    data = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "data")
    failures = []
    with open(os.path.join(data, "nextvit_tiny_config.json")) as f:
        cfg = json.load(f)
    weights = load_file(os.path.join(data, "nextvit_tiny_weights.safetensors"))
    io = load_file(os.path.join(data, "nextvit_tiny_io.safetensors"))
    with open(os.path.join(data, "nextvit_tiny_timm_names.json")) as f:
        names = json.load(f)
    tm = timm_tiny(cfg)
    timm_names = list(tm.state_dict())
    ok = [t for _, t in names] == timm_names and sorted(o for o, _ in names) == sorted(weights)
    print(f"  {'ok  ' if ok else 'FAIL'} nextvit_tiny_timm_names.json lists timm's "
          f"{len(timm_names)} names in timm's order, paired with the weights file's names")
    if not ok:
        failures.append("tiny timm names")
        return failures
    tm.load_state_dict({t: weights[o] for o, t in names}, strict=True)
    tm.double().eval()
    with torch.no_grad():
        for key, inp in [("logits_eval", "input"), ("logits_eval_nonsquare", "input_nonsquare")]:
            report(f"{key} {tuple(io[inp].shape)}", io[key], tm(io[inp].double()).float(), 1e-6,
                   failures)
    tm.train()
    x = io["input"].double().requires_grad_(True)
    logits = tm(x)
    loss = F.cross_entropy(logits, io["targets"], label_smoothing=0.1)
    loss.backward()
    report("logits_train", io["logits_train"], logits.detach().float(), 1e-6, failures)
    report("loss", io["loss"].reshape(1), loss.detach().float().reshape(1), 1e-6, failures)
    report("grad_input", io["grad_input"], x.grad.float(), 1e-6, failures)
    to_official = {t: o for o, t in names}
    grads = {to_official[n]: p.grad for n, p in tm.named_parameters()}
    gmax = max(g.abs().max().item() for g in grads.values())
    worst, worst_name = 0.0, ""
    for o, g in grads.items():
        want = io["grad." + o].double()
        rel = (want - g).abs().max().item() / max(g.abs().max().item(), 1e-6 * gmax)
        if rel > worst:
            worst, worst_name = rel, o
    ok = worst <= 1e-5 and len(grads) == sum(k.startswith("grad.") for k in io)
    print(f"  {'ok  ' if ok else 'FAIL'} all {len(grads)} grad.* tensors: worst relative diff "
          f"{worst:.3g} ({worst_name})")
    if not ok:
        failures.append("tiny gradients")
    worst = max(rel_err(io["running." + to_official[n]].double(), b.double())[0]
                for n, b in tm.named_buffers())
    ok = worst <= 1e-6
    print(f"  {'ok  ' if ok else 'FAIL'} running.* statistics after the train step: worst "
          f"relative diff {worst:.3g}")
    if not ok:
        failures.append("tiny running statistics")
    return failures


def check_converter(model, cfg):
    import convert_checkpoint as C
    from safetensors.torch import load_file
    failures = []
    state = model.state_dict()
    with tempfile.TemporaryDirectory() as d:
        pth = os.path.join(d, "official.pth")
        torch.save({"model": state, "epoch": 7}, pth)  # wrapped, as the official script saves
        timm_pth = os.path.join(d, "timm.pth")
        torch.save({R.official_to_timm_name(k, cfg): v for k, v in state.items()}, timm_pth)
        for src, layout in [(pth, "official"), (pth, "timm"), (timm_pth, "official"),
                            (timm_pth, "keep")]:
            out = os.path.join(d, "out.safetensors")
            C.convert(src, out, layout=layout)
            back = load_file(out)
            want = {k if layout == "official" else R.official_to_timm_name(k, cfg): v
                    for k, v in state.items()}
            same = set(back) == set(want) and all(
                torch.equal(back[k], want[k].to(back[k].dtype)) and
                back[k].dtype == (torch.int64 if k.endswith("num_batches_tracked")
                                  else torch.float32) for k in want)
            name = f"{os.path.basename(src)} -> {layout}: {len(back)} tensors"
            print(f"  {'ok  ' if same else 'FAIL'} {name}")
            if not same:
                failures.append(name)
    return failures


def write_and_compare(out_dir, nextvit, layout, device):
    from safetensors.torch import load_file, save_file
    os.makedirs(out_dir, exist_ok=True)
    cfg = R.named_config("nextvit_small")
    model = R.NextViT(cfg)
    R.randomize_for_testing(model, seed=1, calib_shape=(2, 3, 224, 224))
    model.eval()
    state = model.state_dict()
    if layout == "timm":
        state = {R.official_to_timm_name(k, cfg): v for k, v in state.items()}
    weights = os.path.join(out_dir, "weights.safetensors")
    save_file({k: v.contiguous() for k, v in state.items()}, weights,
              metadata={"layout": layout})
    tm = None
    try:  # the same weights in timm's model: an independent computation of the logits
        import timm
        tm = timm.create_model("nextvit_small", pretrained=False)
        tm.load_state_dict({t: model.state_dict()[o] for o, t in
                            R.map_by_order(model.state_dict(), tm.state_dict())})
        tm.eval()
    except ImportError:
        print("timm is not installed: the logits are checked against the reference model only")
    g = torch.Generator().manual_seed(2)
    failures = []
    for tag, shape in INPUTS.items():
        x = torch.randn(shape, generator=g)
        with torch.no_grad():  # expected logits in float64: exact up to the final rounding
            logits = model.double()(x.double()).float()
            model.float()
        if tm is not None:
            with torch.no_grad():
                report(f"reference vs timm {tag}", logits, tm(x), REL_TOL, failures)
        inp = os.path.join(out_dir, f"input_{tag}.safetensors")
        save_file({"input": x.contiguous()}, inp)
        save_file({"logits": logits.contiguous()},
                  os.path.join(out_dir, f"expected_{tag}.safetensors"))
        print(f"wrote {inp} {tuple(shape)} and expected_{tag}.safetensors")
        if nextvit:
            out = os.path.join(out_dir, f"logits_{tag}.safetensors")
            cmd = [nextvit, "forward", "--model", "nextvit_small", "--weights", weights,
                   "--input", inp, "--output", out]
            if device:
                cmd += ["--device", device]
            print("  $ " + " ".join(cmd))
            r = subprocess.run(cmd)
            if r.returncode != 0:
                print(f"  FAIL nextvit forward exited with {r.returncode}")
                failures.append(f"nextvit forward {tag}")
                continue
            got = load_file(out)["logits"]
            if tuple(got.shape) != tuple(logits.shape):
                print(f"  FAIL logits shape {tuple(got.shape)}, expected {tuple(logits.shape)}")
                failures.append(f"shape {tag}")
                continue
            report(f"nextvit vs PyTorch logits {tag}", got, logits, REL_TOL, failures)
    return failures


def main():
    ap = argparse.ArgumentParser(description="Next-ViT-S conformance against PyTorch")
    ap.add_argument("--self-test", action="store_true",
                    help="check the PyTorch reference model against timm and the converter")
    ap.add_argument("--out", help="folder for weights, inputs and expected logits")
    ap.add_argument("--nextvit", help="path of build/nextvit: run it and compare its logits")
    ap.add_argument("--layout", choices=["official", "timm"], default="official",
                    help="names in weights.safetensors (default official)")
    ap.add_argument("--device", choices=["cpu", "cuda"], help="passed to nextvit forward")
    args = ap.parse_args()
    if not args.self_test and not args.out:
        ap.error("give --self-test and/or --out DIR")
    if args.nextvit and not args.out:
        ap.error("--nextvit needs --out DIR")
    setup()
    failures = []
    if args.self_test:
        failures += self_test()
    if args.out:
        failures += write_and_compare(args.out, args.nextvit, args.layout, args.device)
    print("PASS" if not failures else f"FAIL: {', '.join(failures)}")
    return 0 if not failures else 1


if __name__ == "__main__":
    sys.exit(main())
