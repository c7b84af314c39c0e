"""What every task shares: building its model and optimiser from plain config, schedules, checkpoint identity.

A task is given *configuration* (plain dicts with `_target_`), not built objects, and stores it with
save_hyperparameters. That makes a checkpoint self-sufficient: `Task.load_from_checkpoint(path)`
rebuilds the model, and `eval.py`/`predict.py` need nothing but the path.
"""
from __future__ import annotations

import math
from typing import Any

import lightning as L
import torch
from hydra.utils import instantiate
from torch import nn


def gather_objects(items: list) -> list:
    """Every rank's list, concatenated (all ranks get all), so corpus-level results see every example once."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        parts = [None] * torch.distributed.get_world_size()
        torch.distributed.all_gather_object(parts, items)
        return [x for part in parts for x in part]
    return items


def _no_decay(name: str, p: torch.Tensor) -> bool:
    """Biases and normalisation weights (1-D tensors) are not decayed."""
    return p.ndim <= 1


class Task(L.LightningModule):
    """Base LightningModule.

    model: the network's config (`_target_` plus its options); the task adds what the data dictates
        (e.g. num_classes) through `model_kwargs()`.
    optimizer / scheduler: partial configs (see conf/optimizer, conf/scheduler); scheduler may be empty.
    data: the data module's config, kept so that eval.py can rebuild the test split.
    data_info: what the data tells the model (classes, channels, normalisation, vocabularies, ...).
    monitor / mode: the validation metric that selects checkpoints.
    """

    def __init__(self, model: dict, optimizer: dict, scheduler: dict | None = None, data: dict | None = None,
                 data_info: dict | None = None, monitor: str = "val/loss", mode: str = "min"):
        super().__init__()
        self.save_hyperparameters()
        self.data_info = dict(data_info or {})
        self.net: nn.Module = instantiate(model, **self.model_kwargs())

    def model_kwargs(self) -> dict[str, Any]:
        return {}

    # -- optimisation --------------------------------------------------------------------------------
    def configure_optimizers(self):
        cfg = dict(self.hparams.optimizer)
        decay = cfg.get("weight_decay", 0.0) or 0.0
        params = [(n, p) for n, p in self.named_parameters() if p.requires_grad]
        groups = [{"params": [p for n, p in params if not _no_decay(n, p)], "weight_decay": decay},
                  {"params": [p for n, p in params if _no_decay(n, p)], "weight_decay": 0.0}]
        optimizer = instantiate(cfg)([g for g in groups if g["params"]])
        sched_cfg = self.hparams.scheduler or {}
        if not sched_cfg.get("_target_"):
            return optimizer
        total = self.trainer.estimated_stepping_batches
        if not math.isfinite(total):
            raise ValueError("a learning-rate schedule needs a finite run: set trainer.max_epochs or trainer.max_steps")
        scheduler = instantiate(sched_cfg)(optimizer, total_steps=int(total))
        return {"optimizer": optimizer, "lr_scheduler": scheduler}

    def logging_step(self) -> bool:
        """True on the steps whose logged values Lightning writes (every trainer.log_every_n_steps).

        Each self.log call costs Lightning about half a millisecond on a CPU, which is 10% of a small
        model's step: step-level values are logged only when they will be written.
        """
        n = self.trainer.log_every_n_steps
        return n > 0 and ((self.global_step + 1) % n == 0 or self.trainer.fast_dev_run)

    # -- checkpoint identity -------------------------------------------------------------------------
    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint["gradlab"] = {"task": f"{type(self).__module__}.{type(self).__qualname__}"}
