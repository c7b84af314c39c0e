"""CIFAR-10 from the official python pickles (cifar-10-batches-py), downloaded with a checksum when missing."""
from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import torch

from src.data.download import extract, fetch, inside
from src.data.image.base import ImageDataModule, TensorImages
from src.data.splits import stratified_split
from src.errors import UserError

URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
MD5 = "c58f30108f718f92721af3b95e74349a"
FOLDER = "cifar-10-batches-py"
TRAIN = [f"data_batch_{i}" for i in range(1, 6)]
TEST = ["test_batch"]


def read_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """One CIFAR pickle -> uint8 (N, 3, 32, 32) images and int64 labels."""
    try:
        with open(path, "rb") as f:
            d = pickle.load(f, encoding="bytes")
        data = np.asarray(d[b"data"], dtype=np.uint8).reshape(-1, 3, 32, 32)
        labels = np.asarray(d[b"labels"], dtype=np.int64)
    except (OSError, EOFError, KeyError, ValueError, pickle.UnpicklingError) as e:
        raise UserError(f"{path} is not a CIFAR-10 batch file or is corrupt ({e}): delete {path.parent} and let "
                        f"data.download=true fetch it again.") from None
    return data, labels


class CIFAR10DataModule(ImageDataModule):
    """Reads <data_dir>/cifar-10-batches-py (torchvision's layout); val_fraction of train held out."""

    def __init__(self, data_dir: str = "data", download: bool = True, **kwargs):
        super().__init__(**kwargs)
        self.data_dir, self.download = Path(data_dir), download

    @property
    def folder(self) -> Path:
        return self.data_dir / FOLDER

    def prepare_data(self) -> None:
        missing = [f for f in TRAIN + TEST + ["batches.meta"] if not (self.folder / f).is_file()]
        if not missing:
            return
        if not self.download:
            raise UserError(f"CIFAR-10: {self.folder} lacks {', '.join(missing)}. Set data.download=true, point "
                            f"data.data_dir at the folder that holds {FOLDER}/, or use data=image_folder with "
                            f"an image-folder copy.")
        archive = self.data_dir / "cifar-10-python.tar.gz"
        try:
            if not archive.is_file():
                fetch([URL], archive, MD5)
        except OSError as e:
            raise UserError(f"CIFAR-10: could not download {URL} ({e}). Download it yourself into {self.data_dir}, "
                            f"or set data.data_dir to a folder that holds {FOLDER}/.") from None
        extract(archive, self.folder, select=inside(FOLDER))

    def load(self) -> None:
        self.prepare_data()
        parts = [read_batch(self.folder / f) for f in TRAIN]
        x, y = np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])
        val, train = stratified_split(y, [self.val_fraction], self.split_seed)
        x, y = torch.from_numpy(x), torch.from_numpy(y)
        self.train_set = TensorImages(x[train], y[train])
        self.val_set = TensorImages(x[val], y[val])
        self.test_set = TensorImages(*map(torch.from_numpy, read_batch(self.folder / TEST[0])))
        with open(self.folder / "batches.meta", "rb") as f:
            self.class_names = [n.decode() for n in pickle.load(f, encoding="bytes")[b"label_names"]]
