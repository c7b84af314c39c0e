"""Free Spoken Digit Dataset (Jakobovski/free-spoken-digit-dataset, release v1.0.10): 3,000 recordings
`{digit}_{speaker}_{index}.wav`, 8 kHz mono, 6 speakers (george, jackson, lucas, nicolas, theo, yweweler),
50 recordings of each digit by each speaker. Read from <data_dir>/fsdd/recordings/, the repository's own
`recordings/` folder; downloaded there from the release archive when missing.

Splits: `standard` is the data set's own (index 0-4 test, 5-49 train); `speaker` holds out whole speakers
(test_speakers) for test, so the score is on voices never heard. Either way val_fraction of the rest, stratified
by digit (split_seed), is validation. Labels are words ("zero" ... "nine"), the labels of the synthesised
spoken digits, so one model can be scored on both.

A few recordings (fine-tuning on real voices): `train_speakers` limits the rest to those speakers, and `per_digit`
to the first per_digit takes of each digit by each of them (index 0 .. per_digit - 1); validation is then
val_fraction of each speaker's takes of each digit (per_digit=5, val_fraction=0.2: one of the five, drawn by
split_seed), so nothing from a test speaker chooses anything.

For scoring on any folder of FSDD-named recordings (spoken_words' `real_dir`):

    FSDDDataModule.read_folder(folder, sample_rate, length, trim_db, cache_dir=None)
        -> (clips int16 (N, length), labels int64 (N,), names list[str])

label = the digit before the first underscore of the file name; names are the file names, sorted.
"""
from __future__ import annotations

import hashlib
import re
from pathlib import Path, PurePosixPath

import numpy as np
import torch

from src.data.audio.base import AudioDataModule, Waveforms, cached_clips
from src.data.download import extract, fetch
from src.data.splits import stratified_split
from src.errors import UserError

REPO = "https://github.com/Jakobovski/free-spoken-digit-dataset"
TAG = "v1.0.10"
URLS = [f"{REPO}/archive/refs/tags/{TAG}.tar.gz",
        f"https://codeload.github.com/Jakobovski/free-spoken-digit-dataset/tar.gz/refs/tags/{TAG}"]
# GitHub does not promise stable archive bytes, so the recordings themselves are checked: md5 over the sorted
# file names, sizes and contents (tree_md5) of the tag's recordings/ (3,000 files).
RECORDINGS_MD5 = "d59e4fd79a39fe8880073ffaec807bd7"
CLASS_NAMES = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
NAME = re.compile(r"^([0-9])_(.+)_([0-9]+)\.wav$", re.IGNORECASE)


def tree_md5(folder: Path) -> str:
    """md5 over the sorted .wav files of `folder`: each one's name, size and bytes."""
    h = hashlib.md5()
    for p in sorted(folder.glob("*.wav"), key=lambda p: p.name):
        data = p.read_bytes()
        h.update(f"{p.name}\0{len(data)}\0".encode())
        h.update(data)
    return h.hexdigest()


def download_recordings(folder: Path) -> None:
    """Fetch the release archive into `folder`, check its recordings (tree_md5) and move them to
    folder/recordings atomically; the archive is deleted afterwards."""
    folder.mkdir(parents=True, exist_ok=True)
    archive = folder / f"free-spoken-digit-dataset-{TAG}.tar.gz"
    try:
        fetch(URLS, archive, None)
    except OSError as e:
        raise UserError(f"FSDD: could not download {URLS[0]} ({e}). Clone {REPO} (tag {TAG}) and point "
                        f"data.data_dir at a folder holding fsdd/recordings/, or train on data=spoken_words, "
                        f"which needs no download.") from None

    def recording(name: str) -> str | None:
        path = PurePosixPath(name)
        return path.name if path.parent.name == "recordings" and path.suffix == ".wav" else None

    def check(recordings: Path) -> None:
        digest = tree_md5(recordings)
        if digest != RECORDINGS_MD5:
            archive.unlink()
            raise UserError(f"FSDD: the recordings in {archive.name} fail their checksum (md5 {digest}, "
                            f"expected {RECORDINGS_MD5}): the download was damaged or is not release {TAG}. It "
                            f"was deleted: run again to download it afresh.")

    extract(archive, folder / "recordings", select=recording, check=check)
    archive.unlink()


class FSDDDataModule(AudioDataModule):
    def __init__(self, data_dir: str = "data", download: bool = True, split: str = "standard",
                 test_speakers: list[str] = ("theo",), val_fraction: float = 0.1, split_seed: int = 0,
                 train_speakers: list[str] | None = None, per_digit: int | None = None,
                 cache_dir: str | None = "data/cache", **kwargs):
        super().__init__(**kwargs)
        if split not in ("standard", "speaker"):
            raise ValueError(f"data.split={split}: choose standard (index 0-4 test) or speaker "
                             f"(data.test_speakers held out)")
        if not 0 < val_fraction < 1:
            raise ValueError(f"data.val_fraction={val_fraction} should be between 0 and 1")
        if split == "speaker" and not test_speakers:
            raise ValueError("data.test_speakers is empty: name the speakers held out for test, e.g. [theo]")
        if per_digit is not None and not 1 <= round(val_fraction * per_digit) < per_digit:
            raise ValueError(f"data.per_digit={per_digit} with data.val_fraction={val_fraction} leaves no "
                             f"{'validation' if round(val_fraction * per_digit) < 1 else 'training'} recordings: "
                             f"validation takes round(val_fraction x per_digit) of each speaker's takes of a digit")
        both = set(map(str, train_speakers or [])) & set(map(str, test_speakers)) if split == "speaker" else set()
        if both:
            raise ValueError(f"data.train_speakers and data.test_speakers share {sorted(both)}: a test voice must "
                             f"never be heard in training")
        self.data_dir, self.download, self.split = Path(data_dir), download, split
        self.test_speakers = [str(s) for s in test_speakers]
        self.train_speakers = [str(s) for s in train_speakers] if train_speakers else None
        self.per_digit = per_digit
        self.val_fraction, self.split_seed, self.cache_dir = val_fraction, split_seed, cache_dir

    @property
    def recordings(self) -> Path:
        return self.data_dir / "fsdd" / "recordings"

    def prepare_data(self) -> None:
        if self.recordings.is_dir() and any(self.recordings.glob("*.wav")):
            return
        if not self.download:
            raise UserError(f"FSDD: {self.recordings} holds no recordings. Set data.download=true to fetch "
                            f"release {TAG} of {REPO} (a 16 MB archive), point data.data_dir at a folder holding "
                            f"fsdd/recordings/*.wav, or train on data=spoken_words, which needs no download.")
        download_recordings(self.recordings.parent)

    @staticmethod
    def read_folder(folder: str | Path, sample_rate: int, length: int, trim_db: float | None,
                    cache_dir: str | Path | None = None) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
        """Every `{digit}_*.wav` in `folder` -> (int16 clips (N, length), int64 digit labels, file names),
        sorted by name; cached in cache_dir when given."""
        folder = Path(folder)
        if not folder.is_dir():
            raise UserError(f"{folder}: no such folder of FSDD recordings ({{digit}}_{{speaker}}_{{index}}.wav)")
        paths = sorted((p for p in folder.iterdir() if p.suffix.lower() == ".wav" and p.is_file()),
                       key=lambda p: p.name)
        if not paths:
            raise UserError(f"{folder} holds no .wav files; FSDD recordings are named {{digit}}_{{speaker}}_"
                            f"{{index}}.wav")
        labels = []
        for p in paths:
            if not re.match(r"^[0-9]_", p.name):
                raise UserError(f"{p}: the name should start with its digit and an underscore "
                                f"({{digit}}_{{speaker}}_{{index}}.wav); rename or remove it.")
            labels.append(int(p.name[0]))
        clips = cached_clips(paths, sample_rate, length, trim_db, cache_dir, f"fsdd-{folder.resolve().name}")
        return clips, torch.tensor(labels, dtype=torch.int64), [p.name for p in paths]

    def load(self) -> None:
        self.prepare_data()
        clips, labels, names = self.read_folder(self.recordings, self.sample_rate, self.num_samples,
                                                self.trim_db, self.cache_dir)
        parsed = [NAME.match(n) for n in names]
        if bad := [n for n, m in zip(names, parsed) if m is None]:
            raise UserError(f"{self.recordings}: {bad[0]} (and {len(bad) - 1} more) is not named "
                            f"{{digit}}_{{speaker}}_{{index}}.wav; rename or remove it.")
        speakers = np.array([m.group(2) for m in parsed])
        if self.split == "standard":
            test = np.array([int(m.group(3)) < 5 for m in parsed])
        else:
            if unknown := sorted(set(self.test_speakers) - set(speakers)):
                raise UserError(f"data.test_speakers: {unknown} recorded nothing in {self.recordings}; the "
                                f"speakers are {sorted(set(speakers))}.")
            test = np.isin(speakers, self.test_speakers)
            if test.all():
                raise UserError(f"data.test_speakers={self.test_speakers} holds out every speaker; leave some "
                                f"for training.")
        rest = np.flatnonzero(~test & self._kept(speakers, parsed))
        strata = labels[rest].numpy()
        if self.per_digit:  # each speaker's takes of each digit split alike
            strata = strata * len(speakers) + np.unique(speakers, return_inverse=True)[1][rest]
        val, train = stratified_split(strata, [self.val_fraction], self.split_seed)
        idx = {"train": rest[train], "val": rest[val], "test": np.flatnonzero(test)}
        for split, i in idx.items():
            i = torch.as_tensor(i, dtype=torch.int64)
            setattr(self, f"{split}_set", Waveforms(clips[i], labels[i]))
        self.class_names = list(CLASS_NAMES)

    def _kept(self, speakers: np.ndarray, parsed: list) -> np.ndarray:
        """Which recordings may be trained or validated on: those of train_speakers (all when not given), and of
        them, with per_digit, the takes of index 0 .. per_digit - 1 of each digit (standard split, whose test takes
        are 0-4: 5 .. 4 + per_digit)."""
        keep = np.ones(len(speakers), dtype=bool)
        if self.train_speakers:
            if unknown := sorted(set(self.train_speakers) - set(speakers)):
                raise UserError(f"data.train_speakers: {unknown} recorded nothing in {self.recordings}; the "
                                f"speakers are {sorted(set(speakers))}.")
            keep = np.isin(speakers, self.train_speakers)
        if self.per_digit:
            first = 5 if self.split == "standard" else 0  # the standard split's test takes are index 0-4
            keep &= np.array([int(m.group(3)) < first + self.per_digit for m in parsed])
        return keep
