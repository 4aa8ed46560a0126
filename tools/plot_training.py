#!/usr/bin/env python3
"""Training curves of one or more `nextvit train` runs, as a picture.

    python tools/plot_training.py RUN_DIR [RUN_DIR ...] -o curves.png [--title T]

Reads each RUN_DIR/log.jsonl (written by `nextvit train --out RUN_DIR`) and draws three panels
against epoch, the runs overlaid in one colour each:
  - loss: the running training loss of the --log-every step lines (thin line) and, per epoch, the
    epoch's training loss (dots) and the test loss (dashed, squares);
  - test top-1 per epoch;
  - the learning rate (step lines; the epoch lines when the run logged no steps).
A run that was resumed appends to its log; a step logged twice (before and after the resume)
keeps its last value. Needs matplotlib (pip install matplotlib); nothing else.
"""
import argparse
import json
import os
import sys


def read_run(run_dir):
    """(step_lines, epoch_lines) of a run, each sorted by step with duplicates removed."""
    path = os.path.join(run_dir, "log.jsonl")
    if not os.path.exists(path):
        sys.exit(f"plot_training: {path} does not exist (is {run_dir} a `nextvit train --out` folder?)")
    steps, epochs = {}, {}
    with open(path) as f:
        for number, line in enumerate(f, 1):
            line = line.strip()
            if not line:
                continue
            try:
                entry = json.loads(line)
            except json.JSONDecodeError as e:
                sys.exit(f"plot_training: {path}:{number}: not JSON ({e})")
            if "eval_top1" in entry:
                epochs[entry["epoch"]] = entry
            elif "step" in entry:
                steps[entry["step"]] = entry
    return ([steps[k] for k in sorted(steps)], [epochs[k] for k in sorted(epochs)])


def plot(runs, output, title):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_loss, ax_top1, ax_lr) = plt.subplots(1, 3, figsize=(15, 4.2))
    for index, (name, (steps, epochs)) in enumerate(runs):
        color = f"C{index}"
        if steps:
            ax_loss.plot([s["epoch"] for s in steps], [s["train_loss"] for s in steps],
                         color=color, linewidth=0.8, alpha=0.6, label=f"{name}: train, mean so far in the epoch")
            ax_lr.plot([s["epoch"] for s in steps], [s["lr"] for s in steps], color=color, label=name)
        elif epochs:
            ax_lr.plot([e["epoch"] for e in epochs], [e["lr"] for e in epochs], "o-", color=color,
                       label=name)
        if epochs:
            x = [e["epoch"] for e in epochs]
            ax_loss.plot(x, [e["train_loss"] for e in epochs], "o", color=color,
                         label=f"{name}: train")
            ax_loss.plot(x, [e["eval_loss"] for e in epochs], "s--", color=color,
                         label=f"{name}: test")
            ax_top1.plot(x, [100 * e["eval_top1"] for e in epochs], "o-", color=color, label=name)
            best = max(epochs, key=lambda e: e["eval_top1"])
            ax_top1.annotate(f"{100 * best['eval_top1']:.2f}%", (best["epoch"], 100 * best["eval_top1"]),
                             textcoords="offset points", xytext=(-20, 6), color=color, fontsize=8)
    ax_loss.set(title="loss", xlabel="epoch", ylabel="cross-entropy (label-smoothed for train)")
    ax_top1.set(title="test top-1", xlabel="epoch", ylabel="%")
    ax_lr.set(title="learning rate", xlabel="epoch", ylabel="lr")
    for ax in (ax_loss, ax_top1, ax_lr):
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(output, dpi=110)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("runs", nargs="+", metavar="RUN_DIR")
    parser.add_argument("-o", "--output", default="curves.png")
    parser.add_argument("--title", default="")
    args = parser.parse_args()
    runs = []
    for run in args.runs:
        steps, epochs = read_run(run)
        if not steps and not epochs:
            sys.exit(f"plot_training: {run}/log.jsonl has no step or epoch lines")
        runs.append((os.path.basename(os.path.normpath(run)), (steps, epochs)))
    plot(runs, args.output, args.title)
    print(f"plot_training: wrote {args.output} ({len(runs)} run(s))")


if __name__ == "__main__":
    main()
