"""Learning-rate schedules, each a function (optimizer, total_steps, **options) -> Lightning's scheduler dict.

`total_steps` is the number of optimizer steps in the whole run (Lightning's estimated_stepping_batches);
schedules updated per step use it, per-epoch ones ignore it.
"""
from __future__ import annotations

import math

import torch
from torch.optim import Optimizer


def step(optimizer: Optimizer, total_steps: int, step_size: int = 10, gamma: float = 0.1) -> dict:
    return {"scheduler": torch.optim.lr_scheduler.StepLR(optimizer, step_size=step_size, gamma=gamma),
            "interval": "epoch"}


def cosine(optimizer: Optimizer, total_steps: int, warmup: float = 0.05, min_lr_ratio: float = 0.0) -> dict:
    """Linear warm-up for `warmup` steps (a fraction of total_steps when < 1), then cosine decay."""
    warmup_steps = int(warmup * total_steps) if warmup < 1 else int(warmup)
    decay_steps = max(1, total_steps - warmup_steps)

    def factor(i: int) -> float:
        if i < warmup_steps:
            return (i + 1) / warmup_steps
        t = min(1.0, (i - warmup_steps) / decay_steps)
        return min_lr_ratio + (1 - min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * t))

    return {"scheduler": torch.optim.lr_scheduler.LambdaLR(optimizer, factor), "interval": "step"}


def one_cycle(optimizer: Optimizer, total_steps: int, max_lr: float | None = None, pct_start: float = 0.25,
              div_factor: float = 25.0, final_div_factor: float = 1e4) -> dict:
    """torch's OneCycleLR, with the short runs it divides by zero on made well defined: a warm-up of exactly one step
    (pct_start x total_steps = 1) peaks at step 1; warming up to the last step (pct_start = 1) peaks one step
    earlier; a run of one or two steps starts at the peak and anneals."""
    max_lr = max_lr or [g["lr"] for g in optimizer.param_groups]
    total_steps = max(1, total_steps)
    if total_steps <= 2:
        pct_start = 0.0
    elif float(pct_start * total_steps) - 1 == 0:  # the end of torch's warm-up phase would be step 0
        pct_start = 2 / total_steps
    elif float(pct_start * total_steps) - 1 >= total_steps - 1:  # ... or the end of its annealing phase
        pct_start = (total_steps - 1) / total_steps
    sched = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=max_lr, total_steps=total_steps,
                                                pct_start=pct_start, div_factor=div_factor,
                                                final_div_factor=final_div_factor)
    return {"scheduler": sched, "interval": "step"}


def plateau(optimizer: Optimizer, total_steps: int, monitor: str = "val/loss", mode: str = "min",
            factor: float = 0.1, patience: int = 3) -> dict:
    sched = torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, mode=mode, factor=factor, patience=patience)
    return {"scheduler": sched, "interval": "epoch", "monitor": monitor}
