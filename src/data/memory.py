"""What every classification data module that holds its splits in memory shares (images, speech): seeded
shuffling that a resumed run repeats, batches gathered in one step, and batches moved to the device as they are.
"""
from __future__ import annotations

import os
from abc import abstractmethod

import torch
from lightning.pytorch.overrides.distributed import UnrepeatedDistributedSampler
from torch.utils.data import BatchSampler, DataLoader, RandomSampler, SequentialSampler

from src.data.base import DataModule


def _as_batch(batch):
    """collate_fn for datasets whose __getitems__ already returns a batch."""
    return batch


class EpochSampler(RandomSampler):
    """A random order that depends only on (seed, epoch), so a resumed run sees the same order as an
    uninterrupted one. Under DDP Lightning replaces it with a DistributedSampler (also seed + epoch)."""

    def __init__(self, data_source, seed: int = 0):
        super().__init__(data_source)
        self.seed, self.epoch = seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self):
        g = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
        yield from torch.randperm(len(self.data_source), generator=g).tolist()


class TensorBatchSampler(BatchSampler):
    """Batches of indices as slices of one tensor, for datasets whose `__getitems__` gathers a batch: PyTorch's
    BatchSampler builds a Python list of ints for each batch, which the dataset then turns back into a tensor
    (about 0.1 ms a batch here). The signature is BatchSampler's, so under DDP Lightning builds it again around
    its DistributedSampler."""

    def __iter__(self):  # a generator, as BatchSampler's: the order is drawn at the first batch, after set_epoch
        order = torch.tensor(list(self.sampler), dtype=torch.long)
        end = len(order) - len(order) % self.batch_size if self.drop_last else len(order)
        yield from order[:end].split(self.batch_size)


def _distributed() -> bool:
    return torch.distributed.is_available() and torch.distributed.is_initialized() and \
        torch.distributed.get_world_size() > 1


class InMemoryDataModule(DataModule):
    """Subclasses fill train_set, val_set and test_set in `load()`. A dataset with `__getitems__` (a tensor
    gather) makes each batch in one step in this process; others (files decoded per item) are read by
    num_workers worker processes. Batches are (inputs, labels).

    Validation and test under DDP: rank r reads examples r, r + world, r + 2 world, ... (Lightning's
    UnrepeatedDistributedSampler, which Lightning leaves in place). Its default DistributedSampler would pad the
    ranks to equal length by repeating examples, so a test set that does not divide evenly would count some twice.
    """

    def __init__(self, batch_size: int, pin_memory: bool = False, num_workers: int = 0):
        super().__init__()
        if batch_size < 1:
            raise ValueError(f"data.batch_size={batch_size} should be a positive integer")
        self.batch_size, self.pin_memory, self.num_workers = batch_size, pin_memory, num_workers

    @abstractmethod
    def load(self) -> None:
        """Set self.train_set, self.val_set, self.test_set and self.class_names."""

    def setup(self, stage: str | None = None) -> None:
        if self.train_set is None:
            self.load()

    def _loader(self, dataset, train: bool) -> DataLoader:
        batched = hasattr(dataset, "__getitems__")
        seed = int(os.environ.get("PL_GLOBAL_SEED", 0))
        if train:
            sampler = EpochSampler(dataset, seed=seed)
        else:
            sampler = UnrepeatedDistributedSampler(dataset, shuffle=False) if _distributed() else None
        # the loader's own generator: starting an epoch then draws nothing from the global generator, which
        # EpochReseed resets at each epoch start (the datasets here are not random, so workers need no seed)
        generator = torch.Generator().manual_seed(seed)
        pin = self.pin_memory and torch.cuda.is_available()
        # a batch gathered from memory is one step: worker processes would only add copying. Not for the
        # UnrepeatedDistributedSampler, which Lightning leaves in place only as a loader's `sampler`
        if batched and not isinstance(sampler, UnrepeatedDistributedSampler):
            batches = TensorBatchSampler(sampler or SequentialSampler(dataset), self.batch_size, drop_last=False)
            return DataLoader(dataset, batch_sampler=batches, num_workers=0, pin_memory=pin, collate_fn=_as_batch,
                              generator=generator)
        workers = 0 if batched else self.num_workers
        return DataLoader(dataset, batch_size=self.batch_size, sampler=sampler, shuffle=False, num_workers=workers,
                          pin_memory=pin, persistent_workers=workers > 0, drop_last=False,
                          collate_fn=_as_batch if batched else None, generator=generator)

    def train_dataloader(self):
        return self._loader(self.train_set, train=True)

    def val_dataloader(self):
        return self._loader(self.val_set, train=False)

    def test_dataloader(self):
        return self._loader(self.test_set, train=False)

    def transfer_batch_to_device(self, batch, device, dataloader_idx: int):
        """(inputs, labels) straight to the device: Lightning's generic walk over the batch costs more."""
        x, y = batch
        return x.to(device, non_blocking=True), y.to(device, non_blocking=True)
