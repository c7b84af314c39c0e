"""An exponential moving average of the weights, validated, checkpointed and tested in their place."""
from __future__ import annotations

import torch
from lightning.pytorch.callbacks import WeightAveraging


class EMA(WeightAveraging):
    """Lightning's WeightAveraging with an EMA that warms up: the decay after n updates is
    min(decay, (1 + n) / (10 + n)), so a short run (a few hundred steps) averages its recent weights rather than
    carrying its random start along, as a fixed 0.999 would. Checkpoints hold the average in `state_dict` (the
    raw weights in `current_model_state`, to resume from), so eval.py and predict.py use the average."""

    def __init__(self, decay: float = 0.999, device: str | None = None):
        if not 0 < decay < 1:
            raise ValueError(f"callbacks.ema.decay={decay} should be between 0 and 1, e.g. 0.999")

        def average(avg: torch.Tensor, current: torch.Tensor, n: torch.Tensor) -> torch.Tensor:
            d = torch.clamp((1 + n) / (10 + n), max=decay).to(avg.dtype)
            return avg + (current - avg) * (1 - d)

        super().__init__(device=device, avg_fn=average)
        self.decay = decay
