"""What the image data modules share: uint8 tensors in memory, augmentation on the device (the loaders and
seeded shuffling are src/data/memory.py's).

Images stay uint8 (N, C, H, W) until the task normalises them on the device, so a batch is a slice of a
tensor (no per-sample Python) and augmentation (random crop with padding, horizontal flip) runs on whole
batches wherever the model runs.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from src.data.memory import InMemoryDataModule


class TensorImages(Dataset):
    """uint8 images (N, C, H, W) and int64 labels; a batch of indices is one gather."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor):
        assert images.dtype == torch.uint8 and images.ndim == 4, (images.dtype, images.shape)
        self.images, self.labels = images, labels

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, i):
        return self.images[i], self.labels[i]

    def __getitems__(self, indices):
        idx = torch.as_tensor(indices)
        return self.images[idx], self.labels[idx]


def random_crop_flip(x: torch.Tensor, padding: int, hflip: bool) -> torch.Tensor:
    """Random crop after zero padding, and random horizontal flip, for a whole batch (N, C, H, W)."""
    n, _, h, w = x.shape
    if padding > 0:
        padded = F.pad(x, (padding,) * 4)
        dy = torch.randint(0, 2 * padding + 1, (n,), device=x.device)
        dx = torch.randint(0, 2 * padding + 1, (n,), device=x.device)
        rows = (dy[:, None] + torch.arange(h, device=x.device)[None, :])  # (N, H)
        cols = (dx[:, None] + torch.arange(w, device=x.device)[None, :])  # (N, W)
        b = torch.arange(n, device=x.device)[:, None, None]
        x = padded.permute(0, 2, 3, 1)[b, rows[:, :, None], cols[:, None, :]].permute(0, 3, 1, 2)
    if hflip:
        flip = torch.rand(n, device=x.device) < 0.5
        x = torch.where(flip[:, None, None, None], x.flip(-1), x)
    return x.contiguous()


class ImageDataModule(InMemoryDataModule):
    """Base for image classification data. Subclasses fill train/val/test sets (datasets that yield uint8
    (C, H, W) tensors and int labels) and `class_names` in `load()`; the rest is shared."""

    def __init__(self, batch_size: int = 128, num_workers: int = 0, pin_memory: bool = False,
                 augment: dict | None = None, val_fraction: float = 0.1, split_seed: int = 0,
                 mean: list[float] | None = None, std: list[float] | None = None):
        super().__init__(batch_size, pin_memory, num_workers)
        if not 0 < val_fraction < 1:
            raise ValueError(f"data.val_fraction={val_fraction} should be between 0 and 1")
        self.augment = dict(augment or {})
        self.val_fraction, self.split_seed = val_fraction, split_seed
        self.class_names: list[str] = []
        if (mean is None) != (std is None):
            raise ValueError("give both data.mean and data.std (per channel, 0-1 scale), or neither")
        self._mean_std = (list(mean), list(std)) if mean is not None else None

    @property
    def info(self) -> dict:
        """What the task needs to build its model and normalise inputs; stored in the checkpoint."""
        self.setup()
        x0, _ = self.train_set[0]
        mean, std = self.mean_std()
        if len(mean) != x0.shape[0] or len(std) != x0.shape[0]:
            raise ValueError(f"data.mean and data.std need one value per channel ({x0.shape[0]}), got {mean} and {std}")
        return {"class_names": list(self.class_names), "in_channels": int(x0.shape[0]),
                "image_size": [int(x0.shape[1]), int(x0.shape[2])], "mean": mean, "std": std}

    def mean_std(self) -> tuple[list[float], list[float]]:
        """data.mean/data.std if given, else the per-channel mean and std of up to 10,000 training images (0-1
        scale)."""
        if self._mean_std is None:
            n = len(self.train_set)
            idx = torch.linspace(0, n - 1, min(n, 10_000)).long().tolist()
            if isinstance(self.train_set, TensorImages):
                x = self.train_set.images[idx]
            else:
                x = torch.stack([self.train_set[i][0] for i in idx])
            x = x.float().div_(255).transpose(0, 1).reshape(x.shape[1], -1)
            self._mean_std = (x.mean(1).tolist(), x.std(1).clamp_min(1e-3).tolist())
        return self._mean_std

    def on_after_batch_transfer(self, batch, dataloader_idx: int):
        """Augment training batches on the device they will be trained on."""
        if self.trainer is not None and self.trainer.training:
            x, y = batch
            pad, flip = int(self.augment.get("crop_padding", 0)), bool(self.augment.get("hflip", False))
            if pad or flip:
                batch = (random_crop_flip(x, pad, flip), y)
        return batch

    # inference -------------------------------------------------------------------------------------
    @staticmethod
    def example_inputs(info: dict) -> list[torch.Tensor]:
        shape = (info["in_channels"], *info["image_size"])
        return [torch.zeros(shape, dtype=torch.uint8), torch.full(shape, 200, dtype=torch.uint8)]

    @staticmethod
    def input_spec(info: dict) -> dict:
        channels = "grey (PIL mode L)" if info["in_channels"] == 1 else "RGB"
        return {"kind": "image", "image_size": list(info["image_size"]), "in_channels": info["in_channels"],
                "steps": [f"decode the image and convert it to {channels}",
                          f"resize to {info['image_size'][1]}x{info['image_size'][0]} (width x height), bilinear, "
                          f"when it is another size",
                          "uint8 array, channels first: (channels, height, width); a batch stacks them",
                          "nothing else: scaling and per-channel normalisation are inside the model"],
                "mean": info.get("mean"), "std": info.get("std")}

    @staticmethod
    def read_input(path: str, info: dict) -> torch.Tensor:
        """One image file -> uint8 (C, H, W) at the size and channels the model was trained on."""
        from PIL import Image, UnidentifiedImageError
        from PIL.Image import DecompressionBombError

        from src.errors import UserError

        try:
            img = Image.open(path)
            img = img.convert("L" if info["in_channels"] == 1 else "RGB")
        except FileNotFoundError:
            raise UserError(f"{path}: no such file") from None
        except (UnidentifiedImageError, DecompressionBombError, OSError) as e:
            raise UserError(f"{path}: not an image PIL can read ({e})") from None
        h, w = info["image_size"]
        if img.size != (w, h):
            img = img.resize((w, h), Image.BILINEAR)
        x = torch.from_numpy(np.asarray(img, dtype=np.uint8).copy())
        return x[None] if x.ndim == 2 else x.permute(2, 0, 1).contiguous()
