"""The task contract: what every task provides, and what a task may hand its callbacks.

A task is a LightningModule given *configuration* (plain dicts with `_target_`) and the data's description
(`data_info`, the data module's `info`), never built objects; it stores both with save_hyperparameters. That makes
a checkpoint self-sufficient: `Task.load_from_checkpoint(path)` rebuilds the model, and eval.py, predict.py, export
and serving need nothing but the path.

Every task implements `predict_batch` (the batch of the data module's `collate_inputs` -> one JSON-ready dict per
input) besides Lightning's training_step/validation_step/test_step. What a task hands its callbacks is declared
by the small classes below it may also derive from (HasConfusion, HasExamples, HasSamples,
HasMistakes); a callback that needs one refuses, at setup, a task that lacks it (`require`).
"""
from __future__ import annotations

import math
from abc import ABC, abstractmethod
from typing import Any

import lightning as L
import torch
from hydra.utils import instantiate
from torch import nn

from src.errors import UserError
from src.models import build_network


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


class Task(L.LightningModule, ABC):
    """Base of every task; a subclass that lacks `predict_batch` cannot be built (Python names the method).

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
        self.net: nn.Module = build_network(model, **self.model_kwargs())

    # Lightning sets _current_fx_name around every hook it calls, about 40 times a training step, and nn.Module's
    # __setattr__ first looks for each name among the parameters, buffers and submodules. Names here hold plain
    # Python values (never a tensor or a module) and skip that search; a subclass may add its own per-step counters.
    _PLAIN_ATTRIBUTES = frozenset({"_current_fx_name"})

    def __setattr__(self, name: str, value: Any) -> None:
        if name in self._PLAIN_ATTRIBUTES:
            object.__setattr__(self, name, value)
        else:
            super().__setattr__(name, value)

    def model_kwargs(self) -> dict[str, Any]:
        """What the data dictates to the model's constructor (e.g. num_classes), on top of its config."""
        return {}

    @abstractmethod
    def predict_batch(self, batch: Any, top_k: int = 3, details: bool = False) -> list[dict]:
        """A batch of the data module's `collate_inputs` (on this task's device) -> one JSON-ready dict per input:
        the prediction and its score (and up to top_k alternatives where that means something). With details, also
        what a person would look at beside it (a translator: the attention of each output token over the source),
        as serve.py's page draws it. Sets eval mode and runs without gradients."""

    # -- optimisation --------------------------------------------------------------------------------
    def configure_optimizers(self):
        cfg = dict(self.hparams.optimizer)
        decay = cfg.get("weight_decay", 0.0) or 0.0
        # every parameter, frozen ones too (finetune.freeze): without a gradient the optimizer leaves one alone, and
        # one unfrozen later trains under the same schedule with no new parameter group
        params = list(self.named_parameters())
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

    # -- fine-tuning (src/finetune.py) ---------------------------------------------------------------
    #: where this task's weights started when not from scratch (init_from=: the checkpoint's path and run), written
    #: into every checkpoint of the run and read back from it; None: from scratch
    started_from: dict | None = None

    def output_layer(self) -> str | None:
        """The parameter-name prefix of the layer whose rows are the labels, one per name in
        data_info["class_names"] (e.g. "net.head.3"): init_from= reorders it when the labels are the same in
        another order and starts it afresh when they differ. None (the default): no layer is tied to labels."""
        return None

    # -- checkpoint identity -------------------------------------------------------------------------
    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint["gradlab"] = {"task": f"{type(self).__module__}.{type(self).__qualname__}"}
        if self.started_from:
            checkpoint["gradlab"]["init_from"] = self.started_from

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        self.started_from = (checkpoint.get("gradlab") or {}).get("init_from")


# -- what a task may hand its callbacks ----------------------------------------------------------------
class HasConfusion(ABC):
    """A classifier's confusion matrices of the last test (ConfusionMatrixPlot draws them)."""

    class_names: list[str]

    @abstractmethod
    def confusion_matrices(self) -> dict[str, torch.Tensor]:
        """{test set name: (C, C) counts, rows true, columns predicted}: "test", and any further test set (speech:
        "real"). Every rank must call it (the counts are summed over ranks)."""


class HasExamples(ABC):
    """A few examples of the last test to draw (AttentionPlot: translation; SpectrogramPlot: speech)."""

    @abstractmethod
    def test_examples(self) -> list[dict]:
        """The examples, each a dict of what its plot draws (see the plot's figure function); rank zero's."""


class HasSamples(ABC):
    """A few outputs of the last validation, shown as a table (SamplesTable)."""

    @abstractmethod
    def validation_samples(self) -> list[dict]:
        """Rows of the table, each a dict column -> value (translation: source, reference, hypothesis)."""


class HasMistakes(ABC):
    """The wrong test predictions worth reading (MistakesList writes them to a TSV file)."""

    @abstractmethod
    def test_mistakes(self) -> list[dict]:
        """The mistakes of the last test, each a dict column -> value, in the order to list them. Every rank must
        call it (it gathers all ranks' mistakes)."""


class Exportable(ABC):
    """What export.py needs of a task: its network as a module of tensors only, from what `collate_inputs` gives to
    what a user wants back (probabilities), with all that is tensor arithmetic inside (pixel normalisation, the
    audio front end, softmax); what is not (reading files, tokenising) stays outside, described in model.json."""

    @abstractmethod
    def export_graphs(self, batch) -> dict[str, tuple[torch.nn.Module, dict[str, torch.Tensor],
                                                      dict[str, dict[int, str]], list[str]]]:
        """{graph name ("model"; a translator: "encoder" and "decoder"): (module, its named example inputs taken
        from a `collate_inputs` batch, the dynamic axes of each input ({0: "batch"}, ...), its output names)}.
        Each module takes its inputs by position, in that order; each graph is written as <name>.onnx/.pt2."""

    def export_settings(self) -> dict:
        """What else a user of the exported graphs needs (a translator: how to decode), for model.json."""
        return {}


class HasCurves(ABC):
    """Learning curves to draw (ReturnCurvePlot: a reinforcement-learning agent's returns)."""

    @abstractmethod
    def return_curves(self) -> dict[str, list]:
        """{"train": [(environment step, episode return)], "val": [(environment step, mean evaluation return)]}
        over the whole run (a resumed run's earlier part included); rank zero's."""


class Renders(ABC):
    """A task that can draw what its model does (predict.py render=true: an agent's episode as a GIF)."""

    @abstractmethod
    def render_episode(self, seed: int, path: str) -> dict:
        """Draw one episode (its seed) into the file at path; returns what to print of it (return, length, file)."""


def require(task: L.LightningModule, capability: type, callback: object) -> None:
    """Refuse, with one line naming both, a callback given to a task that has nothing for it."""
    if not isinstance(task, capability):
        method = next(iter(capability.__abstractmethods__))
        raise UserError(f"callback {type(callback).__name__} needs a task that provides {method}() "
                        f"({capability.__module__}.{capability.__name__}); {type(task).__name__} does not. Remove it "
                        f"from this task's callbacks (callbacks.<name>=null) or add it to conf/task/ of a task "
                        f"that has it.")
