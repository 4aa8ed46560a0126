#!/usr/bin/env python3
"""ONNX export checked against ONNX Runtime. Needs numpy, onnxruntime and safetensors (no torch).

  python tools/check_onnx.py [--nextvit build/nextvit]
      The reduced model of tests/data (nextvit_tiny_*: perturbed BatchNorm statistics, NTBs with
      and without token pooling) at 64x64 and 48x70 (odd sizes: partial ceil-mode pooling
      windows, a remainder in the token pooling), batch 2. What CI runs.

  python tools/check_onnx.py --model nextvit_small --weights W.safetensors [--img 224 224]
                             [--batch 2] [--nextvit build/nextvit]
      Any model and weights (e.g. Next-ViT-S with the random weights of
      `tools/check_conformance.py --out DIR`, DIR/weights.safetensors), on N(0, 1) images.

For each case it runs
    nextvit export  --model M --weights W --format onnx --output M.onnx --img H W
    nextvit forward --model M --weights W --input X --output Y
and ONNX Runtime (CPU) on M.onnx with the same X, at the full batch and at batch 1 (the batch is
symbolic in the graph), and requires max|ort - ours| / max|ours| <= 1e-4 for the logits. For the
reduced model the logits PyTorch computed in float64 (tests/data/nextvit_tiny_io.safetensors)
must agree with ONNX Runtime's to the same tolerance. Exit status 0 when every check passes.
"""

import argparse
import os
import subprocess
import sys
import tempfile

import numpy as np
import onnxruntime as ort
from safetensors.numpy import load_file, save_file

REL_TOL = 1e-4
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DATA = os.path.join(ROOT, "tests", "data")


def rel_err(a, b):
    """max |a - b| / max |b| in float64"""
    a, b = a.astype(np.float64), b.astype(np.float64)
    scale = np.abs(b).max()
    diff = np.abs(a - b).max()
    return diff / scale if scale > 0 else diff


def run(cmd):
    print("  $ " + " ".join(cmd), flush=True)
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        sys.stderr.write(done.stdout + done.stderr)
        raise SystemExit(f"check_onnx: {cmd[0]} {cmd[1]} failed (exit {done.returncode})")
    if done.stderr.strip():
        print("    " + done.stderr.strip().replace("\n", "\n    "))


class Checker:
    def __init__(self):
        self.failures = []

    def expect(self, name, actual, expected):
        rel = rel_err(actual, expected)
        ok = actual.shape == expected.shape and rel <= REL_TOL
        print(f"  {'ok  ' if ok else 'FAIL'} {name}: shape {tuple(actual.shape)}, relative "
              f"error {rel:.3g} (tolerance {REL_TOL:g})")
        if not ok:
            self.failures.append(name)


def check_case(args, check, work, label, model, weights, x, reference=None):
    """Exports `model`, runs ours and ONNX Runtime on x (N, C, H, W) and compares."""
    print(f"== {label}: input {tuple(x.shape)} ==")
    h, w = x.shape[2], x.shape[3]
    onnx_path = os.path.join(work, f"{label}.onnx")
    x_path, y_path = os.path.join(work, f"{label}_x.safetensors"), os.path.join(
        work, f"{label}_y.safetensors")
    run([args.nextvit, "export", "--model", model, "--weights", weights, "--format", "onnx",
         "--output", onnx_path, "--img", str(h), str(w)])
    save_file({"input": np.ascontiguousarray(x, dtype=np.float32)}, x_path)
    run([args.nextvit, "forward", "--model", model, "--weights", weights, "--input", x_path,
         "--output", y_path])
    ours = load_file(y_path)["logits"]

    options = ort.SessionOptions()
    options.intra_op_num_threads = args.threads
    session = ort.InferenceSession(onnx_path, options, providers=["CPUExecutionProvider"])
    declared = session.get_inputs()[0].shape
    if not isinstance(declared[0], str):
        check.failures.append(f"{label}: batch dimension is not symbolic ({declared})")
        print(f"  FAIL {label}: input shape {declared}, batch not symbolic")
    full = session.run(["logits"], {"input": x.astype(np.float32)})[0]
    check.expect(f"{label} ONNX Runtime vs nextvit forward, batch {x.shape[0]}", full, ours)
    one = session.run(["logits"], {"input": x[:1].astype(np.float32)})[0]
    check.expect(f"{label} ONNX Runtime vs nextvit forward, batch 1", one, ours[:1])
    if reference is not None:
        check.expect(f"{label} ONNX Runtime vs PyTorch float64 reference", full, reference)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--nextvit", default=os.path.join(ROOT, "build", "nextvit"))
    p.add_argument("--model", help="a model name or configuration file (default: the reduced "
                   "model of tests/data)")
    p.add_argument("--weights", help="its weights (required with --model)")
    p.add_argument("--img", type=int, nargs=2, default=[224, 224], metavar=("H", "W"))
    p.add_argument("--batch", type=int, default=2)
    p.add_argument("--threads", type=int, default=2, help="ONNX Runtime's intra-op threads")
    p.add_argument("--keep", help="write the files into this folder instead of a temporary one")
    args = p.parse_args()
    if not os.access(args.nextvit, os.X_OK):
        raise SystemExit(f"check_onnx: {args.nextvit} is not a program; build it first "
                         "(tools/build.sh) or pass --nextvit")
    print(f"onnxruntime {ort.__version__}, numpy {np.__version__}")

    check = Checker()
    with tempfile.TemporaryDirectory(prefix="nextvit_onnx_") as tmp:
        work = args.keep or tmp
        os.makedirs(work, exist_ok=True)
        if args.model:
            if not args.weights:
                raise SystemExit("check_onnx: --model needs --weights")
            x = np.random.default_rng(0).standard_normal(
                (args.batch, 3, args.img[0], args.img[1])).astype(np.float32)
            label = os.path.splitext(os.path.basename(args.model))[0]
            check_case(args, check, work, f"{label}_{args.img[0]}x{args.img[1]}", args.model,
                       args.weights, x)
        else:
            model = os.path.join(DATA, "nextvit_tiny_config.json")
            weights = os.path.join(DATA, "nextvit_tiny_weights.safetensors")
            io = load_file(os.path.join(DATA, "nextvit_tiny_io.safetensors"))
            check_case(args, check, work, "tiny_64x64", model, weights, io["input"],
                       io["logits_eval"])
            check_case(args, check, work, "tiny_48x70", model, weights, io["input_nonsquare"],
                       io["logits_eval_nonsquare"])
    if check.failures:
        print(f"FAILED: {len(check.failures)} check(s): " + "; ".join(check.failures))
        return 1
    print("all ONNX checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
