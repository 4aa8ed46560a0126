#!/usr/bin/env python3
"""`nextvit predict` on image files against `nextvit eval` on the same images.

Writes the first N Fashion-MNIST test images as gray PNG (lossless) and as JPEG (quality 95),
runs `nextvit predict --json --top-k 1` on each folder and `nextvit eval --limit N` on the
data set itself, and compares the top-1 accuracies: predict on PNG must agree with eval within
0.5 points (it sees the same pixels through the same stored transform), and so must JPEG (lossy,
so a few predictions may move). Exits 1 when either differs by more.

    python tools/check_predict.py build/nextvit runs/fmnist/model.safetensors [--images 2000]

Needs Pillow (for the JPEG encoder) and the Debian package dataset-fashion-mnist.
"""
import argparse
import gzip
import json
import os
import re
import subprocess
import sys
import tempfile

from PIL import Image

FMNIST = os.environ.get("NEXTVIT_FASHION_MNIST", "/usr/share/datasets/fashion-mnist")


def read_idx(name):
    for path in (os.path.join(FMNIST, name), os.path.join(FMNIST, name + ".gz")):
        if os.path.exists(path):
            opener = gzip.open if path.endswith(".gz") else open
            with opener(path, "rb") as f:
                return f.read()
    sys.exit(f"{name} not found in {FMNIST}")


def write_images(folder, n):
    images, labels = read_idx("t10k-images-idx3-ubyte"), read_idx("t10k-labels-idx1-ubyte")
    os.makedirs(os.path.join(folder, "png"))
    os.makedirs(os.path.join(folder, "jpeg"))
    truth = {}
    for i in range(n):
        pixels = images[16 + i * 784 : 16 + (i + 1) * 784]
        img = Image.frombytes("L", (28, 28), pixels)
        label = labels[8 + i]
        for kind, ext, opts in (("png", "png", {}), ("jpeg", "jpg", {"quality": 95})):
            path = os.path.join(folder, kind, f"{i:05d}.{ext}")
            img.save(path, **opts)
            truth[path] = label
    return truth


def predict_accuracy(nextvit, weights, folder, truth):
    out = subprocess.run(
        [nextvit, "predict", "--weights", weights, "--json", "--top-k", "1", "--batch", "256",
         folder],
        check=True, capture_output=True, text=True).stdout
    correct = total = 0
    for line in out.splitlines():
        r = json.loads(line)
        total += 1
        correct += r["top"][0]["label"] == truth[r["path"]]
    return 100.0 * correct / total, total


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("nextvit", help="the nextvit program (build/nextvit)")
    p.add_argument("weights", help="a self-describing model.safetensors trained on Fashion-MNIST")
    p.add_argument("--images", type=int, default=2000)
    args = p.parse_args()

    out = subprocess.run(
        [args.nextvit, "eval", "--weights", args.weights, "--limit", str(args.images)],
        check=True, capture_output=True, text=True).stdout
    eval_acc = float(re.search(r"top-1 ([0-9.]+)%", out).group(1))
    print(f"eval on the first {args.images} test images (IDX):  top-1 {eval_acc:.2f}%")
    worst = 0.0
    with tempfile.TemporaryDirectory() as tmp:
        truth = write_images(tmp, args.images)
        for kind in ("png", "jpeg"):
            acc, total = predict_accuracy(args.nextvit, args.weights, os.path.join(tmp, kind), truth)
            assert total == args.images, f"predict answered for {total} of {args.images} images"
            diff = acc - eval_acc
            worst = max(worst, abs(diff))
            print(f"predict on the same images as {kind.upper():4} files:  top-1 {acc:.2f}% "
                  f"({diff:+.2f} points)")
    ok = worst <= 0.5
    print("agree within 0.5 points" if ok else f"DIFFER by {worst:.2f} points (limit 0.5)")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
