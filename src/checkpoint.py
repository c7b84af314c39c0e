"""Checkpoints: writes that a kill can never leave half done, reading one back safely, the task it was trained as
(old class paths mapped to today's), and which checkpoint a run resumes from."""
from __future__ import annotations

import logging
import os
from pathlib import Path

import torch
from hydra.utils import get_class
from lightning.pytorch.plugins.io import TorchCheckpointIO

from src.data.base import DataModule
from src.data.download import save_atomically
from src.errors import UserError
from src.tasks.base import Task

log = logging.getLogger(__name__)

# A checkpoint names its task and data module by import path. A module that moves keeps its old path here, so
# that checkpoints written before the move still load (src/data/ was split by modality after f6b5779).
MOVED = {f"src.data.{name}": f"src.data.{modality}.{name}" for modality, names in {
    "image": ["digits", "mnist", "cifar", "image_folder"],
    "audio": ["spoken_words", "fsdd", "speech_commands", "audio_folder"],
    "text": ["numbers", "multi30k", "parallel_text", "sst2", "imdb", "text_csv"]}.items() for name in names}


def current_path(target: str) -> str:
    """A class path as a checkpoint stored it -> where that class lives today."""
    module, _, name = target.rpartition(".")
    return f"{MOVED.get(module, module)}.{name}"


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


def task_name(target: str) -> str:
    """src.tasks.image.ImageClassification -> image"""
    return target.split(".")[-2] if target.count(".") >= 2 else target


def read_checkpoint(path: str, expected_task: str | None = None, key: str = "ckpt_path") -> dict:
    """Load a checkpoint's contents on the CPU (weights only) and check that it is one of ours, of this task. key: the
    option that named it, for the messages (ckpt_path, init_from)."""
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise UserError(f"{key}={path}: no such file") from None
    except Exception as e:  # noqa: BLE001 - truncated zip, pickle of unknown classes, not a torch file, 0 bytes
        first = (str(e).splitlines() or [""])[0][:200]
        what = "it is empty: 0 bytes" if Path(path).is_file() and Path(path).stat().st_size == 0 else (
            f"{type(e).__name__}: {first}" if first else type(e).__name__)
        raise UserError(f"{key}={path} is not a readable checkpoint ({what}). Was it truncated? Use another, "
                        f"e.g. the run's best-*.ckpt.") from None
    meta = ckpt.get("gradlab") if isinstance(ckpt, dict) else None
    if not meta or "hyper_parameters" not in ckpt:
        raise UserError(f"{key}={path} was not written by gradlab (it has no task record).")
    meta["task"] = current_path(meta["task"])
    if expected_task and meta["task"] != expected_task:
        raise UserError(f"{key}={path} is a checkpoint of task={task_name(meta['task'])} ({meta['task']}), "
                        f"but this run is task={task_name(expected_task)}: pass task={task_name(meta['task'])} "
                        f"or a checkpoint of this task.")
    return ckpt


def load_task(ckpt_path: str, map_location="cpu") -> Task:
    """The task a checkpoint was trained as, with its model, labels and data config restored (the data module's
    path brought up to date). A model that started from pretrained weights (model.weights) is built without them:
    the checkpoint's weights replace them, and neither a download nor the file is needed again."""
    ckpt = read_checkpoint(ckpt_path)
    data = dict(ckpt["hyper_parameters"].get("data") or {})
    data["_target_"] = current_path(str(data.get("_target_")))
    try:
        cls, data_cls = get_class(ckpt["gradlab"]["task"]), get_class(data["_target_"])
    except (ImportError, ValueError) as e:
        raise UserError(f"ckpt_path={ckpt_path} names a class this gradlab does not have ({e}): use the gradlab "
                        f"version that wrote it (run.json of its run records the git commit).") from None
    if not (issubclass(cls, Task) and issubclass(data_cls, DataModule)):
        raise UserError(f"ckpt_path={ckpt_path} names {cls.__name__} and {data_cls.__name__}, which are not a "
                        f"gradlab task and data module (src.tasks.base.Task, src.data.base.DataModule).")
    model = dict(ckpt["hyper_parameters"].get("model") or {})
    if model.get("weights"):  # the pretrained weights it started from (model.weights): it holds its own now
        return cls.load_from_checkpoint(ckpt_path, map_location=map_location, weights_only=True, data=data,
                                        model={**model, "weights": None})
    return cls.load_from_checkpoint(ckpt_path, map_location=map_location, weights_only=True, data=data)


def requeued_checkpoint(run_dir: Path) -> str | None:
    """The run's own last.ckpt when SLURM has started this job again (requeued after a pre-emption or a time
    limit: SLURM_RESTART_COUNT > 0), so the job goes on where it stopped instead of starting over."""
    last = run_dir / "checkpoints" / "last.ckpt"
    if os.environ.get("SLURM_RESTART_COUNT", "0") not in ("", "0") and last.is_file():
        log.info("requeued by SLURM (restart %s): resuming from %s", os.environ["SLURM_RESTART_COUNT"], last)
        return str(last)
    return None
