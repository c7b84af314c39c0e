"""Each data module on small files written here in the real on-disk formats."""
import gzip
import pickle
import tarfile

import numpy as np
import pytest
import torch
from PIL import Image

from src.data.image.base import random_crop_flip
from src.data.image.cifar import CIFAR10DataModule
from src.data.image.digits import DigitsDataModule
from src.data.image.image_folder import ImageFolderDataModule
from src.data.image.mnist import FashionMNISTDataModule, MNISTDataModule, read_idx
from src.data.memory import EpochSampler
from src.data.splits import stratified_split
from src.errors import UserError


def write_idx(path, array: np.ndarray):
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(int(n).to_bytes(4, "big") for n in array.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + array.astype(np.uint8).tobytes())


def make_mnist(root, folder="MNIST", n_train=60, n_test=20):
    raw = root / folder / "raw"
    raw.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        write_idx(raw / f"{prefix}-images-idx3-ubyte.gz", rng.integers(0, 256, (n, 28, 28)))
        write_idx(raw / f"{prefix}-labels-idx1-ubyte.gz", np.arange(n) % 10)
    return raw


def test_digits_split_is_stratified_disjoint_and_fixed():
    dm = DigitsDataModule(val_fraction=0.1, test_fraction=0.2, split_seed=0)
    dm.setup()
    sizes = len(dm.train_set), len(dm.val_set), len(dm.test_set)
    assert sum(sizes) == 1797 and 355 <= sizes[2] <= 365 and 175 <= sizes[1] <= 185
    info = dm.info
    assert info["in_channels"] == 1 and info["image_size"] == [8, 8] and len(info["class_names"]) == 10
    again = DigitsDataModule(val_fraction=0.1, test_fraction=0.2, split_seed=0)
    again.setup()
    assert torch.equal(again.test_set.images, dm.test_set.images)
    x, y = dm.test_set.__getitems__([0, 1, 2])
    assert x.shape == (3, 1, 8, 8) and x.dtype == torch.uint8 and y.shape == (3,)


def test_idx_reader_and_mnist_module(tmp_path):
    make_mnist(tmp_path)
    dm = MNISTDataModule(data_dir=str(tmp_path), download=False, val_fraction=0.2, batch_size=8)
    dm.prepare_data()
    dm.setup()
    assert (len(dm.train_set), len(dm.val_set), len(dm.test_set)) == (50, 10, 20)  # 6 per class, 1 of each held out
    x, y = next(iter(dm.train_dataloader()))
    assert x.shape == (8, 1, 28, 28) and x.dtype == torch.uint8 and y.dtype == torch.int64
    assert dm.info["image_size"] == [28, 28]


def test_fashion_mnist_reads_its_own_folder(tmp_path):
    make_mnist(tmp_path, folder="FashionMNIST")
    dm = FashionMNISTDataModule(data_dir=str(tmp_path), download=False)
    dm.setup()
    assert dm.class_names[0] == "T-shirt/top" and len(dm.test_set) == 20


def test_missing_files_name_the_files_and_the_fix(tmp_path):
    dm = FashionMNISTDataModule(data_dir=str(tmp_path), download=False)
    with pytest.raises(UserError, match=r"lacks train-images-idx3-ubyte.gz.*data.data_dir"):
        dm.prepare_data()


def test_corrupt_idx_is_reported(tmp_path):
    raw = make_mnist(tmp_path)
    path = raw / "train-images-idx3-ubyte.gz"
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(UserError, match="corrupt or truncated"):
        read_idx(path)


def test_real_fashion_mnist_when_present(shared_data):
    dm = FashionMNISTDataModule(data_dir=str(shared_data), download=False)
    dm.setup()
    assert (len(dm.train_set) + len(dm.val_set), len(dm.test_set)) == (60000, 10000)


def make_cifar(root, n=20):
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        with open(folder / name, "wb") as f:
            pickle.dump({b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
                         b"labels": list(np.arange(n) % 10), b"batch_label": name.encode()}, f)
    with open(folder / "batches.meta", "wb") as f:
        pickle.dump({b"label_names": [f"c{i}".encode() for i in range(10)]}, f)


def test_cifar10_pickles(tmp_path):
    make_cifar(tmp_path)
    dm = CIFAR10DataModule(data_dir=str(tmp_path), download=False, val_fraction=0.1)
    dm.setup()
    assert (len(dm.train_set), len(dm.val_set), len(dm.test_set)) == (90, 10, 20)
    assert dm.class_names[3] == "c3" and dm.info["in_channels"] == 3


def make_image_tree(root, splits=("train", "test"), n=6, size=(12, 10)):
    rng = np.random.default_rng(0)
    for split in splits:
        for cls in ("cat", "dog", "eel"):
            d = root / split / cls
            d.mkdir(parents=True)
            for i in range(n):
                Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)).save(d / f"{i}.png")


@pytest.mark.parametrize("in_memory", [True, False])
def test_image_folder_without_val_splits_train(tmp_path, in_memory):
    make_image_tree(tmp_path / "imgs")
    dm = ImageFolderDataModule(path=str(tmp_path / "imgs"), data_dir=str(tmp_path / "d"), val_fraction=0.34,
                               in_memory=in_memory, batch_size=4, num_workers=0)
    dm.prepare_data()
    dm.setup()
    assert dm.class_names == ["cat", "dog", "eel"]
    assert (len(dm.train_set), len(dm.val_set), len(dm.test_set)) == (12, 6, 18)
    x, y = next(iter(dm.train_dataloader()))
    assert x.shape == (4, 3, 10, 12) and x.dtype == torch.uint8


def test_image_folder_from_tar_gz_with_resize_and_grey(tmp_path):
    make_image_tree(tmp_path / "src" / "wrapped", splits=("train", "val", "test"))
    archive = tmp_path / "imgs.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(tmp_path / "src" / "wrapped", arcname="wrapped")
    dm = ImageFolderDataModule(path=str(archive), data_dir=str(tmp_path / "d"), image_size=16, color="grey")
    dm.prepare_data()
    dm.prepare_data()  # a second call finds it extracted
    dm.setup()
    assert (len(dm.train_set), len(dm.val_set), len(dm.test_set)) == (18, 18, 18)
    assert dm.info["image_size"] == [16, 16] and dm.info["in_channels"] == 1


def test_image_folder_errors(tmp_path):
    with pytest.raises(UserError, match="no such folder"):
        ImageFolderDataModule(path=str(tmp_path / "nope")).prepare_data()
    (tmp_path / "flat").mkdir()
    with pytest.raises(UserError, match="has no train/ folder"):
        ImageFolderDataModule(path=str(tmp_path / "flat")).prepare_data()
    bad = tmp_path / "bad.tar.gz"
    bad.write_bytes(b"\x1f\x8b not really")
    with pytest.raises(UserError):
        ImageFolderDataModule(path=str(bad), data_dir=str(tmp_path / "d")).prepare_data()


@pytest.mark.slow
def test_real_cifar_tarball_when_present(shared_data, tmp_path):
    dm = ImageFolderDataModule(path=str(shared_data / "cifar10" / "cifar10-jpg.tar.gz"), data_dir=str(tmp_path),
                               in_memory=False)
    dm.prepare_data()
    dm.setup()
    assert len(dm.class_names) == 10 and len(dm.test_set) == 10000
    assert len(dm.train_set) + len(dm.val_set) == 50000


def test_stratified_split_keeps_class_balance():
    labels = np.repeat(np.arange(4), 50)
    a, b, rest = stratified_split(labels, [0.2, 0.1], seed=1)
    assert len(a) == 40 and len(b) == 20 and len(rest) == 140
    assert np.bincount(labels[a]).tolist() == [10] * 4
    assert not set(a) & set(b) and not set(a) & set(rest)


def test_epoch_sampler_depends_on_seed_and_epoch_only():
    s = EpochSampler(range(50), seed=3)
    first = list(s)
    s.set_epoch(1)
    second = list(s)
    assert sorted(first) == list(range(50)) and first != second
    s.set_epoch(0)
    assert list(s) == first


def test_tensor_batches_are_the_batch_samplers_and_follow_set_epoch_after_iter():
    """TensorBatchSampler gives BatchSampler's batches as tensor slices; like it, it draws the order at the first
    batch, so a set_epoch between iter() and the first batch (as Lightning's prefetching does) still counts."""
    from torch.utils.data import BatchSampler

    from src.data.memory import TensorBatchSampler

    s = EpochSampler(range(50), seed=3)
    for drop_last in (False, True):
        want = list(BatchSampler(s, 16, drop_last))
        got = list(TensorBatchSampler(s, 16, drop_last))
        assert [b.tolist() for b in got] == want and len(TensorBatchSampler(s, 16, drop_last)) == len(want)
    batches = iter(TensorBatchSampler(s, 16, False))
    s.set_epoch(1)
    assert next(batches).tolist() == list(s)[:16]


def test_random_crop_flip_keeps_shape_and_content():
    x = torch.arange(2 * 1 * 6 * 6, dtype=torch.uint8).reshape(2, 1, 6, 6)
    torch.manual_seed(0)
    out = random_crop_flip(x, padding=2, hflip=True)
    assert out.shape == x.shape and out.dtype == x.dtype
    assert torch.equal(random_crop_flip(x, padding=0, hflip=False), x)
    # a crop with shift 0 and no flip is the identity; every output pixel is an input pixel or padding
    assert set(out.unique().tolist()) <= set(x.unique().tolist()) | {0}
