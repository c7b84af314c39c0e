"""The data contract: what every data module provides to the pipeline, its task, predict.py, export and serving.

A data module is a LightningDataModule (Lightning calls prepare_data once per node, then setup and the loaders
on every process) plus four things of ours, declared here and nowhere else:

- `info`: the description a task is built from (labels, input shape, sample rate, vocabularies or tokenizers as
  JSON strings, ...). Plain JSON-ready values: it is stored in every checkpoint, so a checkpoint needs no data.
- `use_info(info)`: take what a checkpoint carries (its tokenizers, its labels) rather than derive them from the
  files again, so that evaluating an old checkpoint reads its data the way it was trained.
- `read_input(raw, info)` and `collate_inputs(samples, info)`: one raw input (a file's path, or a text) -> one
  sample, and samples -> the batch the task's `predict_batch` takes. Static: predict.py and a server call them
  with a checkpoint's `info` and no data at all.
- `train_set`, `val_set`, `test_set`: the splits, filled by `setup()`, each a sized collection of examples.
- `example_inputs(info)` and `input_spec(info)`, for export: samples to trace the network with, and what
  `read_input` does, in words and numbers a user outside gradlab can follow (written to model.json).
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any

import lightning as L
import torch


class DataModule(L.LightningDataModule, ABC):
    """Base of every data module. Subclasses implement `info` and `read_input`; the rest has a default."""

    train_set: Any = None
    val_set: Any = None
    test_set: Any = None

    @property
    @abstractmethod
    def info(self) -> dict:
        """What the task needs to build its model and read its outputs (stored in the checkpoint). May set up
        the data to find out (e.g. the labels of a folder, a tokenizer learnt on the training split)."""

    def use_info(self, info: dict) -> None:
        """Use what a checkpoint's `info` carries instead of deriving it again; nothing to take by default."""

    @staticmethod
    @abstractmethod
    def read_input(raw: str, info: dict) -> Any:
        """One raw input (a path, or a text) -> one sample shaped as the model was trained (`info` is the
        checkpoint's). Raises UserError naming the input when it cannot be read."""

    @staticmethod
    def collate_inputs(samples: list, info: dict) -> Any:
        """Samples of `read_input` -> one batch for the task's `predict_batch`; stacked tensors by default."""
        return torch.stack(samples)

    @staticmethod
    def generated_inputs(info: dict, n: int) -> list[str] | None:
        """n raw inputs the data makes itself, for predict.py episodes=n (an environment: episode seeds of its own).
        None: this data has no inputs of its own; give input= or inputs=."""
        return None

    @staticmethod
    def example_inputs(info: dict) -> list:
        """Two samples as `read_input` makes them (of different lengths where lengths vary), for tracing the
        network at export. None: this data cannot be exported."""
        return None

    @staticmethod
    def input_spec(info: dict) -> dict:
        """What `read_input` does to a raw input, for model.json: a user of the exported model does the same."""
        return {}

    def split_sizes(self) -> dict[str, int]:
        """{split: number of examples}, after setup."""
        return {name: len(split) if split is not None else 0
                for name, split in (("train", self.train_set), ("val", self.val_set), ("test", self.test_set))}
