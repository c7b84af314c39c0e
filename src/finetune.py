"""Fine-tuning: a new run that starts from another run's weights (`init_from=<checkpoint>`), and parts of the model
kept frozen for a while (`finetune.freeze=[...]`, `finetune.epochs=N`).

init_from takes the weights only: the new run has its own optimizer, schedule and epochs (ckpt_path= is the one
that resumes a run). Every weight must fit the new model by name and shape, except the output layer's, the layer
the task declares tied to its labels (Task.output_layer): when the checkpoint's class names are the data's in
another order its rows are reordered; when they differ it starts afresh, and a line says which classes. Where the
start came from is recorded in run.json and in every checkpoint of the run (Task.started_from).
"""
from __future__ import annotations

import json
import logging
from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.callbacks import BaseFinetuning
from omegaconf import DictConfig

from src.checkpoint import read_checkpoint
from src.errors import UserError
from src.tasks.base import Task

log = logging.getLogger(__name__)


def read_source(cfg: DictConfig) -> dict | None:
    """The checkpoint init_from names (None without one), read and checked to be of this run's task before any
    data is read: another task's is refused in one line."""
    path = cfg.get("init_from")
    return read_checkpoint(str(path), expected_task=cfg.task._target_, key="init_from") if path else None


def begin(cfg: DictConfig, task: Task, trainer: L.Trainer, source: dict | None) -> None:
    """The task starts from the source's weights (when given) and the parts finetune.freeze names are frozen by a
    callback added to the trainer."""
    if source is not None:
        task.started_from = load_weights(task, source, str(cfg.init_from))
    spec = cfg.get("finetune") or {}
    if spec.get("freeze"):
        trainer.callbacks.append(freezer(task, list(spec.freeze), spec.get("epochs"), trainer.world_size))


# -- weights -------------------------------------------------------------------------------------------------
def _names(names: list[str], most: int = 6) -> str:
    return ", ".join(names[:most]) + (f" and {len(names) - most} more" if len(names) > most else "")


def _head(task: Task, state: dict, old: list[str], new: list[str], path: str) -> tuple[dict, str, list[str]]:
    """The source's weights with its output layer made to fit the new labels: the same (as they are), the same in
    another order (rows reordered), or others (left out: the layer keeps its fresh start). Also says which, and
    the names left out."""
    layer = task.output_layer() if old != new else None
    if layer is None:  # the same labels, or a task whose weights are not tied to labels
        return state, "same classes", []
    rows = [k for k in state if k.startswith(f"{layer}.")]
    if sorted(old) == sorted(new) and len(set(new)) == len(new):
        order = torch.tensor([old.index(name) for name in new])
        log.info("init_from=%s: the checkpoint's classes are the data's in another order: the rows of the output "
                 "layer (%s) were reordered to match", path, layer)
        return {**state, **{k: state[k][order] for k in rows}}, "classes reordered", []
    log.info("init_from=%s: the output layer (%s) starts afresh: the checkpoint's %d classes (%s) are not the data's "
             "%d (%s); new: %s; not in the data: %s", path, layer, len(old), _names(old), len(new), _names(new),
             _names([c for c in new if c not in old]) or "none", _names([c for c in old if c not in new]) or "none")
    fresh = [k for k in task.state_dict() if k.startswith(f"{layer}.")]
    return {k: v for k, v in state.items() if k not in rows}, f"output layer {layer} started afresh", fresh


def _run_record(path: str, ckpt: dict) -> dict:
    """What the source run says of itself: its run.json (beside checkpoints/) and where it started, when known."""
    record = {}
    run_json = Path(path).resolve().parent.parent / "run.json"
    try:
        run = json.loads(run_json.read_text())
        record = {k: run[k] for k in ("command", "git", "seed", "started") if k in run}
    except (OSError, ValueError):
        pass
    if ckpt["gradlab"].get("init_from"):
        record["init_from"] = ckpt["gradlab"]["init_from"]
    return record


def load_weights(task: Task, ckpt: dict, path: str) -> dict:
    """The checkpoint's weights into the task, by name and shape (the output layer fitted to the labels, see
    `_head`); anything else that does not fit is a UserError. Returns the record of the start."""
    info = ckpt["hyper_parameters"].get("data_info") or {}
    old, new = list(info.get("class_names") or []), list(task.data_info.get("class_names") or [])
    state, classes, fresh = _head(task, dict(ckpt["state_dict"]), old, new, path)
    own = task.state_dict()
    wrong = [f"{k} {tuple(v.shape)} here {tuple(own[k].shape)}" for k, v in state.items()
             if k in own and v.shape != own[k].shape]
    missing, unknown = [k for k in own if k not in state and k not in fresh], [k for k in state if k not in own]
    if wrong or missing or unknown:
        what = (f"shapes differ: {_names(wrong, 2)}" if wrong else f"it lacks {_names(missing, 3)}" if missing
                else f"this model has no {_names(unknown, 3)}")
        raise UserError(f"init_from={path} does not fit this model ({what}): build the model as that run did "
                        f"(the same model.* and task.* options; only the classes may differ).")
    task.load_state_dict(state, strict=False)
    log.info("init_from=%s: %d tensors loaded (epoch %s of its run; %s)", path, len(state), ckpt.get("epoch"), classes)
    return {"path": str(Path(path).resolve()), "epoch": ckpt.get("epoch"), "global_step": ckpt.get("global_step"),
            "classes": classes, "run": _run_record(path, ckpt)}


# -- freezing ------------------------------------------------------------------------------------------------
class Freeze(BaseFinetuning):
    """finetune.freeze: the named parts of the task's model (`task.net`) keep their weights and batch-norm
    statistics until epoch `epochs` (counted from 0), then train with the rest; epochs=None: the whole run.

    Frozen parameters stay in the optimizer from the start, without gradients (Task.configure_optimizers), so
    unfreezing adds no parameter group and the learning-rate schedule goes on over them like the rest."""

    def __init__(self, names: list[str], epochs: int | None):
        super().__init__()
        self.names, self.epochs = list(names), epochs

    def parts(self, task: Task) -> list[torch.nn.Module]:
        return [task.net.get_submodule(name) for name in self.names]

    def freeze_before_training(self, pl_module: Task) -> None:
        self.freeze(self.parts(pl_module), train_bn=False)

    def finetune_function(self, pl_module: Task, current_epoch: int, optimizer) -> None:
        if self.epochs is None or current_epoch < self.epochs:
            return
        parts = self.parts(pl_module)
        if any(not p.requires_grad for part in parts for p in part.parameters()):
            self.make_trainable(parts)
            log.info("finetune: %s train from epoch %d on", ", ".join(self.names), current_epoch)


def freezer(task: Task, names: list[str], epochs: int | None, world_size: int = 1) -> Freeze:
    """The Freeze callback for finetune.freeze, its names checked against the model's parts."""
    for name in names:
        try:
            task.net.get_submodule(str(name))
        except AttributeError:
            parts = ", ".join(n for n, _ in task.net.named_children())
            raise UserError(f"finetune.freeze: the model ({type(task.net).__name__}) has no part {name!r}; its "
                            f"parts are {parts} (a dotted name reaches inside one).") from None
    if epochs is not None and world_size > 1:
        raise UserError("finetune.epochs: parts frozen at the start cannot join training later with several "
                        "processes (DDP syncs only the parameters that train at its start): keep them frozen "
                        "(finetune.epochs=null), or train on one device.")
    return Freeze([str(n) for n in names], epochs)
