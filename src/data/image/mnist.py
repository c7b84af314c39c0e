"""MNIST and Fashion-MNIST from their IDX files (the four .gz files, as published and as torchvision stores them)."""
from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import torch

from src.data.download import ensure_files
from src.data.image.base import ImageDataModule, TensorImages
from src.data.splits import stratified_split
from src.errors import UserError

_IDX_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def read_idx(path: Path) -> np.ndarray:
    """Read an IDX file (gzipped or not): magic 0x0000 <dtype> <ndim>, then ndim big-endian sizes, then data."""
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            data = f.read()
        if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] not in _IDX_DTYPES:
            raise ValueError("not an IDX file (bad magic number)")
        ndim = data[3]
        shape = tuple(int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
        arr = np.frombuffer(data, dtype=_IDX_DTYPES[data[2]], offset=4 + 4 * ndim)
        if arr.size != int(np.prod(shape)):
            raise ValueError(f"holds {arr.size} values for a shape of {shape}")
        return arr.reshape(shape)
    except (OSError, EOFError, ValueError) as e:
        raise UserError(f"{path} is corrupt or truncated ({e}): delete it and let data.download=true fetch it "
                        f"again.") from None


class MNISTDataModule(ImageDataModule):
    """Reads <data_dir>/<folder>/raw/*-ubyte.gz; val_fraction of train is held out (stratified, split_seed)."""

    folder = "MNIST"
    urls = ["https://ossci-datasets.s3.amazonaws.com/mnist/", "http://yann.lecun.com/exdb/mnist/"]
    files = {"train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
             "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
             "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
             "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c"}
    class_names_ = [str(i) for i in range(10)]

    def __init__(self, data_dir: str = "data", download: bool = True, **kwargs):
        super().__init__(**kwargs)
        self.data_dir, self.download = Path(data_dir), download

    @property
    def raw_dir(self) -> Path:
        return self.data_dir / self.folder / "raw"

    def prepare_data(self) -> None:
        ensure_files(self.raw_dir, self.files, self.urls, self.download, type(self).__name__,
                     f"{self.folder}/raw/")

    def _split(self, prefix: str) -> tuple[torch.Tensor, torch.Tensor]:
        images = read_idx(self.raw_dir / f"{prefix}-images-idx3-ubyte.gz")
        labels = read_idx(self.raw_dir / f"{prefix}-labels-idx1-ubyte.gz")
        if len(images) != len(labels):
            raise UserError(f"{self.raw_dir}: {prefix} has {len(images)} images but {len(labels)} labels")
        return torch.from_numpy(images.copy())[:, None], torch.from_numpy(labels.astype(np.int64))

    def load(self) -> None:
        self.prepare_data()  # cheap when the files are there; names what is missing otherwise
        x, y = self._split("train")
        val, train = stratified_split(y.numpy(), [self.val_fraction], self.split_seed)
        self.train_set = TensorImages(x[train], y[train])
        self.val_set = TensorImages(x[val], y[val])
        self.test_set = TensorImages(*self._split("t10k"))
        self.class_names = list(self.class_names_)


class FashionMNISTDataModule(MNISTDataModule):
    folder = "FashionMNIST"
    urls = ["http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"]
    files = {"train-images-idx3-ubyte.gz": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
             "train-labels-idx1-ubyte.gz": "25c81989df183df01b3e8a0aad5dffbe",
             "t10k-images-idx3-ubyte.gz": "bef4ecab320f06d8554ea6380940ec79",
             "t10k-labels-idx1-ubyte.gz": "bb300cfdad3c16e7a12a480ee83cd310"}
    class_names_ = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
                    "Ankle boot"]
