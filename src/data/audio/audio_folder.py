"""A user's recordings: <path>/<label>/*.wav (also .flac, .ogg, .aiff, .mp3: whatever soundfile reads),
or <path>/train/<label>/* with optional val/ and test/ beside it.

Without split folders, val_fraction and test_fraction of each class are held out (stratified, split_seed);
with them, a missing val/ or test/ is carved out of train/ the same way. Decoded clips are cached in
`cache_dir` (see `src.data.audio.base.cached_clips`).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from src.data.audio.base import AudioDataModule, Waveforms, cached_clips
from src.data.splits import stratified_split
from src.errors import UserError

EXTENSIONS = {".wav", ".flac", ".ogg", ".oga", ".aif", ".aiff", ".mp3"}
SPLITS = ("train", "val", "test")


def audio_files(folder: Path) -> list[Path]:
    """The sound files under `folder` (any depth), sorted; hidden files and folders are skipped."""
    return sorted(p for p in folder.rglob("*") if p.suffix.lower() in EXTENSIONS and p.is_file()
                  and not any(part.startswith(".") for part in p.relative_to(folder).parts))


def class_folders(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))


class AudioFolderDataModule(AudioDataModule):
    """Spoken-word (or any sound) classification from a folder of class folders; class i = sorted name i."""

    def __init__(self, path: str, val_fraction: float = 0.1, test_fraction: float = 0.1, split_seed: int = 0,
                 cache_dir: str | None = "data/cache", **kwargs):
        super().__init__(**kwargs)
        for key, f in (("val_fraction", val_fraction), ("test_fraction", test_fraction)):
            if not 0 <= f < 1:
                raise ValueError(f"data.{key}={f} should be at least 0 and below 1")
        if val_fraction + test_fraction >= 1:
            raise ValueError(f"data.val_fraction + data.test_fraction = {val_fraction + test_fraction} "
                             f"leaves nothing to train on")
        self.path = Path(path)
        self.val_fraction, self.test_fraction, self.split_seed = val_fraction, test_fraction, split_seed
        self.cache_dir = cache_dir

    @property
    def split_dirs(self) -> dict[str, Path]:
        """train/, val/, test/ under path: those that exist."""
        return {s: self.path / s for s in SPLITS if (self.path / s).is_dir()}

    def prepare_data(self) -> None:
        if not self.path.is_dir():
            raise UserError(f"data.path={self.path}: no such folder. Give a folder holding <label>/*.wav "
                            f"(one folder per class), or train/<label>/*.wav with optional val/ and test/.")
        dirs = self.split_dirs
        if dirs and "train" not in dirs:
            raise UserError(f"data.path={self.path} has {'/ and '.join(dirs)}/ but no train/ folder: add "
                            f"train/<label>/*.wav, or drop the split folders and keep only <label>/ folders.")

    def _list(self, folder: Path, names: list[str] | None) -> tuple[list[Path], list[int], list[str]]:
        """Files and labels of one tree of class folders. Without `names` the tree's own folders are the
        classes and each must hold sound files; with them (train's), other trees may lack a class."""
        found = class_folders(folder)
        if names is None:
            names = found
            for name in names:
                if not audio_files(folder / name):
                    raise UserError(f"{folder / name} holds no sound files ({', '.join(sorted(EXTENSIONS))}); "
                                    f"add recordings or remove the folder.")
        elif unknown := sorted(set(found) - set(names)):
            raise UserError(f"{folder} has class folders {unknown} that {self.path / 'train'} lacks; add them "
                            f"there or remove them.")
        files, labels = [], []
        for k, name in enumerate(names):
            if (folder / name).is_dir():
                found_files = audio_files(folder / name)
                files += found_files
                labels += [k] * len(found_files)
        return files, labels, names

    def load(self) -> None:
        self.prepare_data()
        dirs = self.split_dirs
        base = dirs.get("train", self.path)
        files, labels, names = self._list(base, None)
        if not files:
            raise UserError(f"data.path={self.path} holds no sound files in class folders: the layout is "
                            f"<label>/*.wav (or train/<label>/*.wav).")
        if len(names) < 2:
            raise UserError(f"data.path={self.path}: only one class ({names[0]}) was found; a classifier needs "
                            f"at least two class folders (<label>/*.wav).")
        splits = {s: self._list(dirs[s], names)[:2] for s in ("val", "test") if s in dirs}
        fractions = [0.0 if "test" in splits else self.test_fraction, 0.0 if "val" in splits else self.val_fraction]
        test_idx, val_idx, train_idx = stratified_split(np.asarray(labels), fractions, self.split_seed)
        def pick(idx):
            return [files[i] for i in idx], [labels[i] for i in idx]

        splits.setdefault("test", pick(test_idx))
        splits.setdefault("val", pick(val_idx))
        splits["train"] = pick(train_idx)
        for split in SPLITS:
            paths, y = splits[split]
            if not paths:
                fix = "add recordings" if split == "train" else \
                    f"raise data.{split}_fraction (now {getattr(self, f'{split}_fraction')}) or add a {split}/ folder"
                raise UserError(f"data.path={self.path}: the {split} split is empty; {fix}.")
            clips = cached_clips(paths, self.sample_rate, self.num_samples, self.trim_db, self.cache_dir,
                                 f"audio_folder-{self.path.resolve().name}-{split}")
            setattr(self, f"{split}_set", Waveforms(clips, torch.tensor(y, dtype=torch.int64)))
        self.class_names = list(names)
