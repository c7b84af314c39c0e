"""Gradient norms in the logs, and a clear stop when the loss becomes NaN or infinite."""
from __future__ import annotations

import math
from collections import defaultdict
from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback, ModelCheckpoint

from src.errors import UserError


class NonFiniteLossError(UserError):
    pass


def last_checkpoint(trainer: L.Trainer) -> str | None:
    """The newest checkpoint file the run's ModelCheckpoints have written (last.ckpt, or a best-*.ckpt), if any."""
    paths = {Path(p) for cb in trainer.checkpoint_callbacks if isinstance(cb, ModelCheckpoint)
             for p in (cb.last_model_path, cb.best_model_path) if p}
    written = [p for p in paths if p.is_file()]
    return str(max(written, key=lambda p: p.stat().st_mtime_ns)) if written else None


class GradientHealth(Callback):
    """Logs `grad_norm/total` and, with per_layer, `grad_norm/<module>` (the 2-norm of each leaf module's
    gradients, before clipping) every `log_every_n_steps`. Checks the training loss every step on CPU (every
    `log_every_n_steps` on GPUs, without a sync per step) and at each epoch end, before any checkpoint of
    that epoch is written, and stops the run with a message naming the step when it is NaN or infinite.
    """

    def __init__(self, per_layer: bool = True, log_every_n_steps: int | None = None,
                 check_every_n_steps: int | None = None):
        self.per_layer = per_layer
        self.log_every = log_every_n_steps
        self.check_every = check_every_n_steps
        self._step = 0
        # the first global step with a non-finite loss: an int on CPU; on a device a tensor there, -1 if none
        self._bad_step: int | torch.Tensor | None = None
        self._layer_of: dict[str, str] = {}

    def setup(self, trainer, pl_module, stage):
        self.log_every = self.log_every or trainer.log_every_n_steps
        if self.check_every is None:
            # the module is not on its device yet when setup runs: ask the strategy where it will be
            on_cpu = trainer.strategy.root_device.type == "cpu"
            self.check_every = 1 if on_cpu else max(1, trainer.log_every_n_steps)
        self._layer_of = {}
        for module_name, module in pl_module.named_modules():
            for p_name, _ in module.named_parameters(recurse=False):
                self._layer_of[f"{module_name}.{p_name}" if module_name else p_name] = module_name or "root"

    def on_before_optimizer_step(self, trainer, pl_module, optimizer):
        if (trainer.global_step + 1) % self.log_every != 0 or not trainer.loggers:
            return
        named = [(n, p.grad) for n, p in pl_module.named_parameters() if p.grad is not None]
        if not named:
            return
        norms = torch._foreach_norm([g for _, g in named])
        total = torch.linalg.vector_norm(torch.stack(norms))
        metrics = {"grad_norm/total": total}
        if self.per_layer:
            sq = defaultdict(list)
            for (n, _), v in zip(named, norms):
                sq[self._layer_of.get(n, n.rsplit(".", 1)[0])].append(v)
            metrics.update({f"grad_norm/{k}": torch.linalg.vector_norm(torch.stack(v)) for k, v in sq.items()})
        # straight to the loggers, as Lightning's LearningRateMonitor does: self.log would cost ~0.5 ms a key
        values = dict(zip(metrics, torch.stack(list(metrics.values())).tolist()))
        for logger in trainer.loggers:
            logger.log_metrics(values, step=trainer.global_step)

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self._step = trainer.global_step  # the step this batch's loss belongs to

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        loss = outputs["loss"] if isinstance(outputs, dict) else outputs
        if loss is None:
            return
        step = self._step
        if loss.device.type == "cpu":  # a CPU value is read without waiting for a device: one Python check
            if self._bad_step is None and not math.isfinite(loss.item()):
                self._bad_step = step
        else:  # on a device, kept there (the first bad step, -1 if none) and read every check_every steps
            if not isinstance(self._bad_step, torch.Tensor) or self._bad_step.device != loss.device:
                self._bad_step = torch.full((), -1, dtype=torch.long, device=loss.device)
            bad = ~torch.isfinite(loss.detach()) & (self._bad_step < 0)
            self._bad_step = torch.where(bad, torch.as_tensor(step, device=loss.device), self._bad_step)
        if (step + 1) % self.check_every == 0:
            self._raise_if_bad(trainer, pl_module)

    def on_train_epoch_end(self, trainer, pl_module):
        self._raise_if_bad(trainer, pl_module)

    def on_validation_start(self, trainer, pl_module):
        if trainer.training:
            self._raise_if_bad(trainer, pl_module)

    def _raise_if_bad(self, trainer: L.Trainer, pl_module) -> None:
        if self._bad_step is None:
            return
        step = int(self._bad_step.item()) if isinstance(self._bad_step, torch.Tensor) else self._bad_step
        if step < 0:
            return
        last = last_checkpoint(trainer)
        kept = (f"the last good checkpoint is {last} (resume from it with ckpt_path={last})" if last
                else "no checkpoint had been written yet")
        lr = trainer.optimizers[0].param_groups[0]["lr"] if trainer.optimizers else None
        raise NonFiniteLossError(
            f"the training loss became NaN or infinite at step {step} (epoch {trainer.current_epoch}); training "
            f"stopped and {kept}. Lower the learning rate (optimizer.lr, now {lr:.3g}) or clip gradients "
            f"(trainer.gradient_clip_val=1.0).")
