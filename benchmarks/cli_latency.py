"""How fast the command line answers, as whole processes: --help and mistyped options or values.

    python benchmarks/cli_latency.py [--runs 5]

Target: under 2 s each (torch and Lightning are imported only once a run really starts).
"""
from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CASES = {
    "train.py --help": ["train.py", "--help"],
    "eval.py --help": ["eval.py", "--help"],
    "mistyped option (model=cnnn)": ["train.py", "model=cnnn"],
    "mistyped key (trainer.max_epoch=3)": ["train.py", "trainer.max_epoch=3"],
    "wrong type (trainer.max_epochs=ten)": ["train.py", "trainer.max_epochs=ten"],
    "missing ckpt_path (eval.py)": ["eval.py"],
}


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    print(f"{'case':40s} {'median s':>9s} {'max s':>7s}")
    worst = 0.0
    for name, argv in CASES.items():
        times = []
        for _ in range(args.runs):
            start = time.perf_counter()
            subprocess.run([sys.executable, *argv], cwd=ROOT, capture_output=True)
            times.append(time.perf_counter() - start)
        worst = max(worst, statistics.median(times))
        print(f"{name:40s} {statistics.median(times):9.2f} {max(times):7.2f}")
    print(f"slowest median: {worst:.2f} s ({'within' if worst < 2 else 'over'} the 2 s target)")


if __name__ == "__main__":
    main()
