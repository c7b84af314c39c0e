"""SIGTERM (what SLURM and most schedulers send before a time limit or a pre-emption) saves a checkpoint."""
from __future__ import annotations

from pathlib import Path

from lightning.pytorch.callbacks import Callback
from lightning.pytorch.utilities.exceptions import SIGTERMException

from src.errors import Stopped


class SaveOnSigterm(Callback):
    """Lightning turns a SIGTERM into a SIGTERMException at the next batch boundary, on every rank. This callback
    then saves the run's state to <dirpath>/<filename> (last.ckpt by default, so `ckpt_path=last` continues from
    it); `stopped(trainer)` then gives pipeline.train the one line that ends the process, with exit status 143
    (128 + SIGTERM). A checkpoint taken mid-epoch resumes mid-epoch, but not bit for bit: that needs the end of an
    epoch (SIGKILL + last.ckpt)."""

    def __init__(self, dirpath: str, filename: str = "last.ckpt"):
        self.path = Path(dirpath) / filename
        self.saved: Path | None = None

    def on_exception(self, trainer, pl_module, exception):
        if isinstance(exception, SIGTERMException) and trainer.state.fn == "fit":
            trainer.save_checkpoint(self.path)  # every rank calls it; rank 0 writes, atomically
            self.saved = self.path


def stopped(trainer) -> Stopped:
    """The error a run stopped by SIGTERM ends with: where it stopped, and the checkpoint to resume from."""
    saved = next((c.saved for c in trainer.callbacks if isinstance(c, SaveOnSigterm) and c.saved), None)
    where = f"stopped by SIGTERM at epoch {trainer.current_epoch}, step {trainer.global_step}"
    if saved:
        return Stopped(f"{where}; saved {saved}. Resume with ckpt_path={saved} (or ckpt_path=last).")
    return Stopped(f"{where}; no checkpoint was saved (callbacks.sigterm is off).")
