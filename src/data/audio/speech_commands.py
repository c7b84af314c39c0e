"""Google Speech Commands v0.02 (Warden, 2018): 105,829 one-second 16 kHz clips of 35 words by 2,618 speakers.

Layout (torchaudio's): <data_dir>/SpeechCommands/speech_commands_v0.02/<word>/<speaker>_nohash_<n>.wav with
validation_list.txt, testing_list.txt (paths relative to that folder) and _background_noise_/*.wav; the
canonical 12-class test set unpacks beside it into speech_commands_test_set_v0.02/<label>/*.wav. Both
archives are downloaded there when missing and checked against the SHA-256 that torchaudio and TensorFlow
Datasets publish.

The split is the official one: files named in validation_list.txt are val, in testing_list.txt test, the rest
train (one speaker never spans two splits). `classes: 35` keeps every word; `classes: 12` is the usual
keyword-spotting task: ten commands, `_unknown_` for the other 25 words (all of them, as TFDS keeps them), and
`_silence_`: one-second windows of the background recordings at a random volume (a fixed seed), as many per
split as an average class. Each background file is cut into disjoint stretches (first 80% train, next 10% val,
last 10% test), so no split hears another's noise. With 12 classes the canonical test set is also scored, as
`canonical/acc`.
"""
from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import torch

from src.data.audio.audio_folder import audio_files
from src.data.audio.base import AudioDataModule, Waveforms, cached_clips, prepare_clip, read_audio
from src.data.download import extract, fetch
from src.errors import UserError

URLS = ["https://storage.googleapis.com/download.tensorflow.org/data/", "http://download.tensorflow.org/data/"]
# name -> (SHA-256, bytes), as pinned by TensorFlow Datasets (url_checksums/speech_commands.txt) and, for the
# main archive, torchaudio (datasets/speechcommands.py)
ARCHIVES = {"speech_commands_v0.02.tar.gz":
            ("af14739ee7dc311471de98f5f9d2c9191b18aedfe957f4a6ff791c709868ff58", 2_428_923_189),
            "speech_commands_test_set_v0.02.tar.gz":
            ("cc2a00c1147c2254e9be3fa0f779d8c17421dc349b86366567a8edfa9acd51df", 112_563_277)}
WORDS = ["backward", "bed", "bird", "cat", "dog", "down", "eight", "five", "follow", "forward", "four", "go",
         "happy", "house", "learn", "left", "marvin", "nine", "no", "off", "on", "one", "right", "seven", "sheila",
         "six", "stop", "three", "tree", "two", "up", "visual", "wow", "yes", "zero"]
# the order of spoken_words' `commands`, so a model trained on synthesised commands shares labels 0-9
COMMANDS = ["yes", "no", "up", "down", "left", "right", "on", "off", "stop", "go"]
UNKNOWN, SILENCE, NOISE = "_unknown_", "_silence_", "_background_noise_"
NOISE_STRETCH = {"train": (0.0, 0.8), "val": (0.8, 0.9), "test": (0.9, 1.0)}


def sha256(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def download_archive(name: str, dest: Path) -> None:
    """Fetch archive `name`, check its size and SHA-256, unpack it into `dest` atomically, delete it."""
    digest, size = ARCHIVES[name]
    archive = dest.parent / name
    try:
        fetch([u + name for u in URLS], archive, None)  # fetch checks MD5 only; the published sums are SHA-256
    except OSError as e:
        raise UserError(f"SpeechCommands: could not download {name} ({e}). Fetch {URLS[0]}{name} yourself and "
                        f"unpack it into {dest}, point data.data_dir at a folder holding "
                        f"SpeechCommands/{dest.name}/, or train on data=spoken_words.") from None
    if archive.stat().st_size != size or sha256(archive) != digest:
        archive.unlink()
        raise UserError(f"SpeechCommands: {name} failed its checksum (expected {size} bytes, SHA-256 {digest}); "
                        f"it was deleted: run again to download it afresh.")
    extract(archive, dest)
    archive.unlink()


def read_list(path: Path) -> set[str]:
    try:
        return {line.strip().removeprefix("./") for line in path.read_text().splitlines() if line.strip()}
    except FileNotFoundError:
        raise UserError(f"{path}: no such file; Speech Commands v0.02 ships it beside the word folders. "
                        f"Unpack the whole archive there again (or delete the folder, with data.download=true).") \
            from None


class SpeechCommandsDataModule(AudioDataModule):
    def __init__(self, data_dir: str = "data", download: bool = True, classes: int = 12,
                 canonical_test: bool = True, cache_dir: str | None = "data/cache", **kwargs):
        super().__init__(**kwargs)
        if classes not in (12, 35):
            raise ValueError(f"data.classes={classes}: choose 35 (every word) or 12 (ten commands, _unknown_ "
                             f"and _silence_)")
        self.data_dir, self.download, self.classes = Path(data_dir), download, int(classes)
        self.canonical_test, self.cache_dir = bool(canonical_test) and classes == 12, cache_dir

    @property
    def root(self) -> Path:
        return self.data_dir / "SpeechCommands" / "speech_commands_v0.02"

    @property
    def canonical_root(self) -> Path:
        return self.data_dir / "SpeechCommands" / "speech_commands_test_set_v0.02"

    def prepare_data(self) -> None:
        needed = [(self.root, "speech_commands_v0.02.tar.gz")]
        if self.canonical_test:
            needed.append((self.canonical_root, "speech_commands_test_set_v0.02.tar.gz"))
        for folder, name in needed:
            if folder.is_dir():
                continue
            if not self.download:
                extra = " or set data.canonical_test=false," if name.startswith("speech_commands_test") else ""
                raise UserError(f"SpeechCommands: {folder} is missing. Set data.download=true to fetch {name} "
                                f"({ARCHIVES[name][1] / 1e9:.2f} GB), point data.data_dir at a folder holding "
                                f"SpeechCommands/{folder.name}/,{extra} or train on data=spoken_words, which "
                                f"needs no download.")
            folder.parent.mkdir(parents=True, exist_ok=True)
            download_archive(name, folder)

    def _files(self) -> dict[str, list[Path]]:
        """The official split: train/val/test -> sorted word files."""
        missing = [w for w in WORDS if not (self.root / w).is_dir()]
        if missing:
            raise UserError(f"SpeechCommands: {self.root} lacks the word folders {missing}; it should be the "
                            f"unpacked speech_commands_v0.02.tar.gz (v0.01 has 30 words, v0.02 35).")
        lists = {s: read_list(self.root / f"{n}_list.txt") for s, n in (("val", "validation"), ("test", "testing"))}
        files = {"train": [], "val": [], "test": []}
        seen = set()
        for word in WORDS:
            for p in audio_files(self.root / word):
                rel = p.relative_to(self.root).as_posix()
                split = "val" if rel in lists["val"] else "test" if rel in lists["test"] else "train"
                files[split].append(p)
                seen.add(rel)
        for split, listed in lists.items():
            if lost := sorted(listed - seen):
                raise UserError(f"SpeechCommands: {len(lost)} files named in {self.root}/"
                                f"{'validation' if split == 'val' else 'testing'}_list.txt are missing, e.g. "
                                f"{self.root / lost[0]}; unpack the archive there again.")
        return files

    def _label(self, word: str) -> int:
        if self.classes == 35:
            return WORDS.index(word)
        return COMMANDS.index(word) if word in COMMANDS else len(COMMANDS)  # _unknown_

    def _silence(self, noise: list[torch.Tensor], split: str, n: int, seed: int) -> torch.Tensor:
        """`n` one-second windows of the background recordings' `split` stretch, each at a random volume."""
        length = self.num_samples
        rng = np.random.default_rng([seed, list(NOISE_STRETCH).index(split)])
        lo, hi = NOISE_STRETCH[split]
        out = torch.zeros(n, length, dtype=torch.int16)
        for i in range(n):
            x = noise[i % len(noise)]
            a, b = int(lo * x.numel()), int(hi * x.numel())
            start = int(rng.integers(a, max(a, b - length) + 1))
            out[i] = prepare_clip(x[start:min(start + length, b)] * float(rng.uniform(0, 1)), length, self.trim_db,
                                  self.sample_rate)
        return out

    def load(self) -> None:
        self.prepare_data()
        files = self._files()
        noise = []
        if self.classes == 12:
            noise_files = sorted((self.root / NOISE).glob("*.wav"))
            if not noise_files:
                raise UserError(f"SpeechCommands: {self.root / NOISE} holds no .wav files, from which _silence_ "
                                f"clips are cut; unpack the archive there again, or use data.classes=35.")
            noise = [read_audio(p, self.sample_rate) for p in noise_files]
        for split, paths in files.items():
            clips = cached_clips(paths, self.sample_rate, self.num_samples, self.trim_db, self.cache_dir,
                                 f"speech_commands-{split}")
            labels = torch.tensor([self._label(p.parent.name) for p in paths], dtype=torch.int64)
            if self.classes == 12:
                n = round(len(paths) / (len(COMMANDS) + 1))
                clips = torch.cat([clips, self._silence(noise, split, n, seed=0)])
                labels = torch.cat([labels, torch.full((n,), len(COMMANDS) + 1, dtype=torch.int64)])
            setattr(self, f"{split}_set", Waveforms(clips, labels))
        self.class_names = list(WORDS) if self.classes == 35 else [*COMMANDS, UNKNOWN, SILENCE]
        if self.canonical_test:
            self.extra_test_sets = {"canonical": self._canonical()}

    def _canonical(self) -> Waveforms:
        """The canonical test set: <label>/*.wav with the 12 class names as folders."""
        names = [*COMMANDS, UNKNOWN, SILENCE]
        root = self.canonical_root
        inner = [p for p in root.iterdir() if p.is_dir() and (p / SILENCE).is_dir()]
        root = inner[0] if not (root / SILENCE).is_dir() and len(inner) == 1 else root  # a wrapping folder
        folders = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
        unknown = sorted(set(folders) - set(names))
        if unknown or not folders:
            raise UserError(f"SpeechCommands: {root} should hold the folders {names}"
                            f"{f', not {unknown}' if unknown else ''}; unpack speech_commands_test_set_v0.02.tar.gz "
                            f"there again, or set data.canonical_test=false.")
        paths, labels = [], []
        for name in folders:
            found = audio_files(root / name)
            paths += found
            labels += [names.index(name)] * len(found)
        clips = cached_clips(paths, self.sample_rate, self.num_samples, self.trim_db, self.cache_dir,
                             "speech_commands-canonical")
        return Waveforms(clips, torch.tensor(labels, dtype=torch.int64))
