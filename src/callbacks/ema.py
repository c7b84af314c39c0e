"""An exponential moving average of the weights, validated, checkpointed and tested in their place."""
from __future__ import annotations

import itertools

import torch
from lightning.pytorch.callbacks import WeightAveraging


class EMA(WeightAveraging):
    """Lightning's WeightAveraging with an EMA that warms up: the decay after n updates is
    min(decay, (1 + n) / (10 + n)), so a short run (a few hundred steps) averages its recent weights rather than
    carrying its random start along, as a fixed 0.999 would. Checkpoints hold the average in `state_dict` (the
    raw weights in `current_model_state`, to resume from), so eval.py and predict.py use the average.

    Each step's update is one in-place foreach lerp per dtype over tensor lists gathered once, with the decay
    computed in Python from a count kept in Python: no host sync on a GPU and no walk over the modules. torch's
    `AveragedModel.update_parameters`, which Lightning calls, rebuilds its lists and reads its count on the host
    twice a step (two syncs on a GPU); it stays the path for an average kept on another device."""

    def __init__(self, decay: float = 0.999, device: str | None = None):
        if not 0 < decay < 1:
            raise ValueError(f"callbacks.ema.decay={decay} should be between 0 and 1, e.g. 0.999")

        def average(averaged: list[torch.Tensor], current: list[torch.Tensor], n: torch.Tensor) -> None:
            # torch's path (an average kept on another device), which reads the count on the host itself
            self._apply(self._groups(averaged, current), self._weight(int(n)))

        super().__init__(device=device, multi_avg_fn=average)
        self.decay = decay
        self._lists: tuple[list, int] | None = None  # (groups, updates so far), gathered at the first update

    def _weight(self, n: int) -> float:
        """The current weights' share in the update after n updates: 1 - min(decay, (1 + n) / (10 + n))."""
        return 1 - min(self.decay, (1 + n) / (10 + n))

    @staticmethod
    def _groups(averaged, current):
        """[(averaged floats, current floats, [])] per dtype, then ([], [], counter pairs): a counter
        (BatchNorm's num_batches_tracked, an integer buffer) takes the latest value."""
        by_dtype: dict[torch.dtype, tuple[list, list, list]] = {}
        counters = []
        for a, c in zip(averaged, current, strict=True):
            if a.is_floating_point():
                group = by_dtype.setdefault(a.dtype, ([], [], []))
                group[0].append(a)
                group[1].append(c)
            else:
                counters.append((a, c))
        return [*by_dtype.values(), ([], [], counters)]

    @staticmethod
    @torch.no_grad()
    def _apply(groups, weight: float | None) -> None:
        """Moves each average `weight` of the way to the current value (None: copies it); counters are copied."""
        for a_list, c_list, counters in groups:
            if weight is None:
                counters = [*zip(a_list, c_list), *counters]
            elif a_list:
                torch._foreach_lerp_(a_list, c_list, weight)
            for a, c in counters:
                a.copy_(c)

    def setup(self, trainer, pl_module, stage):
        super().setup(trainer, pl_module, stage)
        self._lists = None

    def on_load_checkpoint(self, trainer, pl_module, checkpoint):
        super().on_load_checkpoint(trainer, pl_module, checkpoint)
        self._lists = None  # the count was restored

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if trainer.global_step <= self._latest_update_step or not self.should_update(step_idx=trainer.global_step - 1):
            return
        if self._lists is None:
            avg = self._average_model
            averaged = [t.detach() for t in itertools.chain(avg.module.parameters(), avg.module.buffers())]
            current = [t.detach() for t in itertools.chain(pl_module.parameters(), pl_module.buffers())]
            if any(a.device != c.device for a, c in zip(averaged, current)):  # kept elsewhere: torch's own path
                return super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)
            self._lists = (self._groups(averaged, current), int(avg.n_averaged))  # the one read of the count
        groups, n = self._lists
        self._apply(groups, None if n == 0 else self._weight(n))  # the first update copies
        self._average_model.n_averaged.add_(1)
        self._lists = (groups, n + 1)
        self._latest_update_step = trainer.global_step
