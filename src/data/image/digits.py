"""scikit-learn's handwritten digits: 1,797 real 8x8 images shipped in its wheel, so no download."""
from __future__ import annotations

import numpy as np
import torch

from src.data.image.base import ImageDataModule, TensorImages
from src.data.splits import stratified_split


class DigitsDataModule(ImageDataModule):
    """A fixed stratified split (split_seed): test_fraction for test, val_fraction for validation."""

    def __init__(self, test_fraction: float = 0.2, **kwargs):
        super().__init__(**kwargs)
        self.test_fraction = test_fraction

    def load(self) -> None:
        from sklearn.datasets import load_digits

        d = load_digits()
        images = torch.from_numpy(np.round(d.images * (255 / 16)).astype(np.uint8))[:, None]  # (N, 1, 8, 8)
        labels = torch.from_numpy(d.target.astype(np.int64))
        test, val, train = stratified_split(d.target, [self.test_fraction, self.val_fraction], self.split_seed)
        self.train_set = TensorImages(images[train], labels[train])
        self.val_set = TensorImages(images[val], labels[val])
        self.test_set = TensorImages(images[test], labels[test])
        self.class_names = [str(i) for i in range(10)]
