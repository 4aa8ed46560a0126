"""Writes tests/data/nextvit_tiny_graph_memory.json: the bytes PyTorch's autograd keeps for the
backward of one training-mode forward of the reduced Next-ViT (tests/data/nextvit_tiny_config.json,
the reference model of tools/nextvit_reference.py) on a (2, 3, 64, 64) input, with the loss the
trainer uses (cross-entropy, label smoothing 0.1).

"Keeps" is the distinct storages that saved_tensors_hooks sees the forward save, leaving out the
parameters and the input (they exist before the forward). tests/test_graph_memory.cpp checks that
our graph holds no more than this, on the CPU and on the (emulated) CUDA device. The count is a
property of the model's ops and of which tensors each backward needs, not of the data or the
machine: it only changes when PyTorch changes what an op saves.

Needs torch (CI does not: the test reads the committed file). Usage:
    python3 tools/make_graph_memory_reference.py [--out tests/data]
"""

import argparse
import json
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import nextvit_reference as R  # noqa: E402

BATCH, IMAGE = 2, 64


def saved_bytes(model, x, y):
    before = {p.untyped_storage().data_ptr() for p in model.parameters()}
    before.add(x.untyped_storage().data_ptr())
    saved = {}

    def pack(t):
        s = t.untyped_storage()
        if s.data_ptr() not in before:
            saved[s.data_ptr()] = s.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        loss = torch.nn.CrossEntropyLoss(label_smoothing=0.1)(model(x), y)
    return sum(saved.values()), loss


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    here = os.path.dirname(os.path.abspath(__file__))
    ap.add_argument("--out", default=os.path.join(here, "..", "tests", "data"))
    args = ap.parse_args()
    with open(os.path.join(args.out, "nextvit_tiny_config.json")) as f:
        cfg = json.load(f)
    torch.manual_seed(0)
    model = R.NextViT(cfg).train()
    x = torch.randn(BATCH, 3, IMAGE, IMAGE)
    y = torch.randint(0, cfg["num_classes"], (BATCH,))
    graph, _ = saved_bytes(model, x, y)
    out = {
        "generator": f"tools/make_graph_memory_reference.py, torch {torch.__version__}",
        "batch": BATCH,
        "image": IMAGE,
        "graph_bytes": graph,
    }
    path = os.path.join(args.out, "nextvit_tiny_graph_memory.json")
    with open(path, "w") as f:
        f.write(json.dumps(out, indent=1) + "\n")
    print(f"{path}: {graph} bytes")


if __name__ == "__main__":
    main()
