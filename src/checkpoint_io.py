"""Checkpoint writes that a kill can never leave half done."""
from __future__ import annotations

import os
from pathlib import Path

from lightning.pytorch.plugins.io import TorchCheckpointIO

from src.data.download import save_atomically


class AtomicCheckpointIO(TorchCheckpointIO):
    """Writes each checkpoint to a temporary file beside its name, then renames it over the old one: a kill at
    any moment leaves the previous last.ckpt whole. Lightning's own save writes to the system's temporary
    folder and moves the file from there; when that folder is another file system (a node's local /tmp and a
    shared checkpoint disk, as on most clusters), the move is a copy that a kill can cut short, and the
    temporary file is left behind. Remote paths (s3://, gs://, ...) go to Lightning's save unchanged."""

    def save_checkpoint(self, checkpoint: dict, path, storage_options=None) -> None:
        if storage_options is not None or "://" in str(path):
            return super().save_checkpoint(checkpoint, path, storage_options)
        save_atomically(checkpoint, Path(os.fspath(path)))
