"""SIGTERM (what SLURM and most schedulers send before a time limit or a pre-emption) saves a checkpoint."""
from __future__ import annotations

from pathlib import Path

from lightning.pytorch.callbacks import Callback
from lightning.pytorch.utilities.exceptions import SIGTERMException


class SaveOnSigterm(Callback):
    """Lightning turns a SIGTERM into a SIGTERMException at the next batch boundary, on every rank. This callback
    then saves the run's state to <dirpath>/<filename> (last.ckpt by default, so `ckpt_path=last` continues from
    it), and pipeline.train ends the process with one line and exit status 143 (128 + SIGTERM). A checkpoint
    taken mid-epoch resumes mid-epoch, but not bit for bit: that needs the end of an epoch (SIGKILL + last.ckpt)."""

    def __init__(self, dirpath: str, filename: str = "last.ckpt"):
        self.path = Path(dirpath) / filename
        self.saved: Path | None = None

    def on_exception(self, trainer, pl_module, exception):
        if isinstance(exception, SIGTERMException) and trainer.state.fn == "fit":
            trainer.save_checkpoint(self.path)  # every rank calls it; rank 0 writes, atomically
            self.saved = self.path
