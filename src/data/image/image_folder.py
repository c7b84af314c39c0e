"""A user's images: train/<class>/* (and optionally val/, test/), as a folder or a .tar.gz of one."""
from __future__ import annotations

import hashlib
import logging
import tarfile
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from src.data.download import extract, save_atomically
from src.data.image.base import ImageDataModule, TensorImages
from src.data.splits import stratified_split
from src.errors import UserError

log = logging.getLogger(__name__)

EXTENSIONS = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm"}


def find_root(folder: Path) -> Path | None:
    """The folder holding train/, looking at most two levels down (archives often wrap it in a folder)."""
    for candidate in [folder, *sorted(p for p in folder.glob("*") if p.is_dir()),
                      *sorted(p for p in folder.glob("*/*") if p.is_dir())]:
        if (candidate / "train").is_dir():
            return candidate
    return None


def class_folders(split_dir: Path) -> list[str]:
    """The class folders of a split: every folder but hidden ones and archive leftovers (.ipynb_checkpoints,
    __MACOSX)."""
    return sorted(p.name for p in split_dir.iterdir() if p.is_dir() and not p.name.startswith((".", "__MACOSX")))


def _images(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.suffix.lower() in EXTENSIONS
                  and not any(part.startswith(".") for part in p.relative_to(folder).parts))


def list_images(split_dir: Path, class_names: list[str] | None = None) -> tuple[list[Path], list[int], list[str]]:
    """The images of one split, labelled by class folder. train/ names the classes: each must hold images. A val/
    or test/ folder holds those classes only (some may be missing there)."""
    found = class_folders(split_dir)
    if class_names is not None:
        unknown = sorted(set(found) - set(class_names))
        if unknown:
            raise UserError(f"{split_dir} has class folder(s) {unknown[:5]} that train/ lacks: a class must be "
                            f"trained on; add its images to train/{unknown[0]}/ or remove the folder.")
    names = class_names or found
    files, labels = [], []
    for k, name in enumerate(names):
        d = split_dir / name
        if not d.is_dir():
            continue
        images = _images(d)
        if not images and class_names is None:
            raise UserError(f"{d} holds no images ({', '.join(sorted(EXTENSIONS))}): add images or remove "
                            f"the folder.")
        files += images
        labels += [k] * len(images)
    return files, labels, names


class ImageFiles(Dataset):
    """Decodes, converts and resizes one image file at a time -> uint8 (C, H, W)."""

    def __init__(self, files: list[Path], labels: list[int], size: tuple[int, int], mode: str):
        self.files, self.labels, self.size, self.mode = files, labels, size, mode

    def __len__(self):
        return len(self.files)

    def __getitem__(self, i):
        from PIL import Image

        try:
            with Image.open(self.files[i]) as img:
                img = img.convert(self.mode)
                if img.size != (self.size[1], self.size[0]):
                    img = img.resize((self.size[1], self.size[0]), Image.BILINEAR)
                x = torch.from_numpy(np.asarray(img, dtype=np.uint8).copy())
        except (OSError, Image.DecompressionBombError) as e:
            raise UserError(f"{self.files[i]}: cannot read this image ({e}); remove it or replace it.") from None
        x = x[None] if x.ndim == 2 else x.permute(2, 0, 1)
        return x.contiguous(), self.labels[i]


class ImageFolderDataModule(ImageDataModule):
    def __init__(self, path: str, data_dir: str = "data", test_fraction: float = 0.1, image_size=None,
                 color: str = "rgb", in_memory: str | bool = "auto", cache_dir: str | None = None, **kwargs):
        super().__init__(**kwargs)
        if not 0 <= test_fraction < 1:
            raise ValueError(f"data.test_fraction={test_fraction} should be from 0 to below 1")
        if color not in ("rgb", "grey", "gray"):
            raise ValueError(f"data.color={color} should be rgb or grey")
        self.path, self.data_dir = Path(path), Path(data_dir)
        self.cache_dir = Path(cache_dir) if cache_dir else self.data_dir / "cache"  # decoded images
        self.test_fraction, self.in_memory = test_fraction, in_memory
        self.mode = "RGB" if color == "rgb" else "L"
        self.image_size = [image_size, image_size] if isinstance(image_size, int) else image_size
        if self.image_size is not None and not (len(self.image_size) == 2 and all(
                isinstance(v, int) and v > 0 for v in self.image_size)):
            raise ValueError(f"data.image_size={image_size} should be a positive integer (a square) or [height, "
                             f"width], or null for the size of the first training image")

    @property
    def root(self) -> Path:
        if self.path.is_dir():
            return self.path
        name = self.path.name.removesuffix(".gz").removesuffix(".tgz").removesuffix(".tar")
        stat = self.path.stat()  # a changed archive, or another of the same name, is another folder
        key = hashlib.md5(f"{self.path.resolve()}:{stat.st_size}:{stat.st_mtime_ns}".encode()).hexdigest()[:10]
        return self.data_dir / "extracted" / f"{name}-{key}"

    def prepare_data(self) -> None:
        if not self.path.exists():
            raise UserError(f"data.path={self.path}: no such folder or file. Give a folder holding train/<class>/ "
                            f"images, or a .tar.gz of one.")
        if self.path.is_file() and not self.root.is_dir():
            if not tarfile.is_tarfile(self.path):
                raise UserError(f"data.path={self.path} is neither a folder nor a tar archive.")
            extract(self.path, self.root)
        if find_root(self.root) is None:
            raise UserError(f"{self.root} has no train/ folder: the layout must be train/<class>/*.jpg "
                            f"(val/ and test/ alike, optional).")

    def load(self) -> None:
        self.prepare_data()
        root = find_root(self.root)
        files, labels, names = list_images(root / "train")
        if not files:
            raise UserError(f"{root / 'train'} holds no images in class folders (train/<class>/*.jpg).")
        if len(names) < 2:
            raise UserError(f"{root / 'train'} has one class folder ({names[0]}): a classifier needs two or more.")
        splits = {}
        for split in ("val", "test"):
            if (root / split).is_dir():
                splits[split] = list_images(root / split, names)[:2]
        fractions = [self.test_fraction if "test" not in splits else 0.0,
                     self.val_fraction if "val" not in splits else 0.0]
        test_idx, val_idx, train_idx = stratified_split(np.asarray(labels), fractions, self.split_seed)
        pick = lambda idx: ([files[i] for i in idx], [labels[i] for i in idx])  # noqa: E731
        splits.setdefault("test", pick(test_idx))
        splits.setdefault("val", pick(val_idx))
        splits["train"] = pick(train_idx)
        for split, (chosen, _) in splits.items():
            if not chosen:
                fix = (f"add images to {split}/" if (root / split).is_dir() else
                       f"raise data.{split}_fraction, or add a {split}/ folder")
                raise UserError(f"data.path={self.path}: the {split} split is empty ({len(files)} training images in "
                                f"{len(names)} classes): {fix}.")
        if self.image_size is None:
            from PIL import Image

            with Image.open(splits["train"][0][0]) as img:
                self.image_size = [img.size[1], img.size[0]]
        self.class_names = names
        c = 3 if self.mode == "RGB" else 1
        nbytes = len(files) * c * self.image_size[0] * self.image_size[1]
        in_memory = nbytes < 2**31 if self.in_memory == "auto" else bool(self.in_memory)
        for split in ("train", "val", "test"):
            ds = ImageFiles(*splits[split], self.image_size, self.mode)
            setattr(self, f"{split}_set", self._decode_all(ds, split) if in_memory else ds)

    def _decode_all(self, ds: ImageFiles, split: str) -> TensorImages:
        """Decode every image once (cached next to the images), so epochs read memory, not JPEGs."""
        h, w = self.image_size
        key = hashlib.md5("\n".join(f"{p}:{p.stat().st_size}:{p.stat().st_mtime_ns}:{y}"
                                    for p, y in zip(ds.files, ds.labels)).encode())
        cache = self.cache_dir / f"{self.root.name}-{split}-{h}x{w}-{self.mode}-{key.hexdigest()[:12]}.pt"
        if cache.is_file():
            try:
                images, labels = torch.load(cache, weights_only=True)
                return TensorImages(images, labels)
            except Exception as e:  # noqa: BLE001 - a cut copy or another version's file: decode again
                log.warning("%s cannot be read (%s): decoding the images again", cache, str(e).splitlines()[0][:80])
        from rich.progress import track

        images = torch.empty((len(ds), 3 if self.mode == "RGB" else 1, h, w), dtype=torch.uint8)
        for i in track(range(len(ds)), description=f"decoding {split} images", transient=True):
            images[i] = ds[i][0]
        labels = torch.tensor(ds.labels, dtype=torch.int64)
        save_atomically((images, labels), cache)
        return TensorImages(images, labels)
