"""The optimizer step of Adam/AdamW: PyTorch's default implementation against `fused=True`, on the sentiment
BiLSTM with character n-grams (10.5 M parameters, most of them in two embedding tables) and on the image CNN.

On a CPU, PyTorch's default Adam updates one tensor after another; the fused kernel does all of them in one
pass. conf/optimizer/adam.yaml and adamw.yaml set fused: true.

    python benchmarks/optimizer_step.py [--repeats 7] [--steps 40]

Prints the median milliseconds per optimizer step (gradients computed once, outside the timing) and the ratio.
The two variants run interleaved, several times each, so that machine noise hits both alike.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from src.models.cnn import CNN  # noqa: E402
from src.models.text import RNNClassifier  # noqa: E402


def models() -> dict[str, torch.nn.Module]:
    return {"sentiment BiLSTM + n-grams (vocab 14k, 20k buckets, 300-d)":
            RNNClassifier(14000, 2, embed_dim=300, hidden=150, ngram_buckets=20000),
            "image CNN (digits)": CNN(in_channels=1, num_classes=10)}


def time_steps(model: torch.nn.Module, fused: bool | None, steps: int) -> float:
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.01, fused=fused)
    for p in model.parameters():
        p.grad = torch.randn_like(p) * 1e-3
    opt.step()  # state allocated outside the timing
    start = time.perf_counter()
    for _ in range(steps):
        opt.step()
    return (time.perf_counter() - start) / steps * 1e3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--steps", type=int, default=40)
    args = parser.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    print("| model | parameters | default ms/step | fused ms/step | ratio |")
    print("| --- | --- | --- | --- | --- |")
    for name, model in models().items():
        times = {None: [], True: []}
        for _ in range(args.repeats):
            for fused in times:
                times[fused].append(time_steps(model, fused, args.steps))
        default, fused = statistics.median(times[None]), statistics.median(times[True])
        n = sum(p.numel() for p in model.parameters())
        print(f"| {name} | {n / 1e6:.2f} M | {default:.2f} | {fused:.2f} | {default / fused:.1f}x |", flush=True)


if __name__ == "__main__":
    main()
