"""One training step of the speech ResNet (forward, backward, fused AdamW) on a batch of log-Mel features:
the memory layout and precision choices, side by side.

- `contiguous`: the layout PyTorch gives by default (NCHW);
- `channels_last`: NHWC, what SpeechResNet now uses (oneDNN's convolutions on CPU, cuDNN's tensor cores on GPU);
- each again under bfloat16 autocast (`trainer.precision=bf16-mixed`, which experiment=synth_to_real_digits sets).

    python benchmarks/speech_step.py [--repeats 5] [--steps 6] [--batch 128] [--threads 2]

Prints the median milliseconds per step of each variant and its speed-up over `contiguous` fp32. The variants
run interleaved, several rounds each, so that machine noise hits them alike. bfloat16 is only fast on CPUs with
native support (AVX512-BF16 or AMX); elsewhere it is emulated and slower.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from src.models.audio import SpeechResNet  # noqa: E402

VARIANTS = {"contiguous fp32": (False, False), "channels_last fp32": (True, False),
            "contiguous bf16": (False, True), "channels_last bf16": (True, True)}


def step_ms(channels_last: bool, bf16: bool, batch: int, steps: int) -> float:
    torch.manual_seed(0)
    # the recipe's model: 8 kHz, 40 mel bands, 101 frames
    net = SpeechResNet(10, 40, widths=[24, 48, 96], blocks=1, stem_stride=[2, 2], dropout=0.1)
    x = torch.randn(batch, 1, 40, 101)
    if not channels_last:  # SpeechResNet is channels-last itself: undo it for the baseline
        net = net.to(memory_format=torch.contiguous_format)
        net.forward = lambda t: net.head(net.stages(net.stem(t)))
    y = torch.randint(0, 10, (batch,))
    opt = torch.optim.AdamW(net.parameters(), lr=1e-3, fused=True)

    def step():
        opt.zero_grad(set_to_none=True)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            out = net(x)
        torch.nn.functional.cross_entropy(out.float(), y).backward()
        opt.step()

    step()  # warm-up: oneDNN picks its kernels
    start = time.perf_counter()
    for _ in range(steps):
        step()
    return (time.perf_counter() - start) / steps * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    times: dict[str, list[float]] = {name: [] for name in VARIANTS}
    for _ in range(args.repeats):
        for name, (cl, bf) in VARIANTS.items():
            times[name].append(step_ms(cl, bf, args.batch, args.steps))
    base = statistics.median(times["contiguous fp32"])
    print(f"speech ResNet training step, batch {args.batch}, {args.threads} threads, "
          f"median of {args.repeats} rounds x {args.steps} steps")
    for name, ts in times.items():
        med = statistics.median(ts)
        print(f"  {name:20s} {med:7.1f} ms   x{base / med:.2f}")


if __name__ == "__main__":
    main()
