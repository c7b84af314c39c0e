"""Progress: Rich's live bar in a terminal; one line per epoch where output goes to a file (SLURM logs, CI)."""
from __future__ import annotations

import logging
import sys
import time

from lightning.pytorch.callbacks import ProgressBar, RichProgressBar

log = logging.getLogger(__name__)


class EpochLines(ProgressBar):
    """Prints `epoch 3/15  train/loss 0.312  val/acc 0.912  ...  (41.2 s)` at the end of each epoch."""

    def __init__(self):
        super().__init__()
        self._enabled = True
        self._start = 0.0

    def disable(self) -> None:
        self._enabled = False

    def enable(self) -> None:
        self._enabled = True

    def on_train_epoch_start(self, trainer, pl_module):
        self._start = time.time()

    def on_train_epoch_end(self, trainer, pl_module):
        if not (self._enabled and trainer.is_global_zero):
            return
        metrics = self.get_metrics(trainer, pl_module)
        shown = "  ".join(f"{k} {float(v):.4g}" for k, v in metrics.items()
                          if k.split("/")[0] in ("train", "val") and not k.endswith("_step")
                          and isinstance(v, (int, float, str)) and k != "v_num")
        total = trainer.max_epochs if trainer.max_epochs and trainer.max_epochs > 0 else "?"
        log.info("epoch %d/%s  %s  (%.1f s)", trainer.current_epoch + 1, total, shown, time.time() - self._start)


def progress_bar(interactive: bool | None = None, refresh_rate: int = 1) -> ProgressBar:
    """RichProgressBar when stdout is a terminal (or interactive=true), else EpochLines."""
    if interactive is None:
        interactive = sys.stdout.isatty()
    return RichProgressBar(refresh_rate=refresh_rate) if interactive else EpochLines()
