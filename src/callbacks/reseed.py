"""Reseed every epoch from (seed, epoch), so that a run resumed from a checkpoint repeats an uninterrupted one."""
from __future__ import annotations

import lightning as L
from lightning.pytorch.callbacks import Callback


class EpochReseed(Callback):
    """Resets Python's, NumPy's and torch's random generators at the start of each training epoch.

    Augmentation and dropout then depend only on (seed, epoch), not on how many random numbers earlier
    epochs drew, which a checkpoint does not record. Data order is seeded per epoch by the samplers.
    """

    def __init__(self, seed: int | None):
        self.seed = seed

    def on_train_epoch_start(self, trainer, pl_module):
        if self.seed is not None:
            L.seed_everything(self.seed * 1000 + trainer.current_epoch + trainer.global_rank * 7919, workers=True,
                              verbose=False)
