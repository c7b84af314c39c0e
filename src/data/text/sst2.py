"""GLUE's SST-2 (Socher et al., 2013): movie-review phrases and sentences labelled negative (0) or positive (1);
67,349 training phrases and 872 dev sentences.

Read from <data_dir>/SST-2/{train,dev}.tsv (header `sentence<TAB>label`), as GLUE's SST-2.zip unpacks; the
archive is downloaded (MD5-checked) when they are missing. GLUE's test labels are not public, so, as everyone
does, dev.tsv is the test split here and validation is held out of train.

The training file holds every phrase of each training sentence's parse tree, so a random split of it leaks:
a validation sentence's halves and quarters would be in training. The sentences are recovered as the phrases
that no other phrase contains, val_fraction of them are held out whole, and every training phrase found only
inside held-out sentences is dropped. A phrase that is also part of a training sentence stays in training:
it belongs as much to that sentence.
"""
from __future__ import annotations

import random
from pathlib import Path

from src.data.download import extract, fetch, inside
from src.data.text.base import read_lines
from src.data.text.classification import TextClassificationDataModule
from src.errors import UserError

URLS = ["https://dl.fbaipublicfiles.com/glue/data/SST-2.zip"]
MD5 = "9f81648d4199384278b86e315dac217c"  # of SST-2.zip, as torchtext and others check it
FILES = ("train.tsv", "dev.tsv")
CLASS_NAMES = ["negative", "positive"]


def read_tsv(path: Path) -> list[tuple[str, int]]:
    """(sentence, label) rows of a GLUE SST-2 file; the header is checked, surrounding spaces dropped."""
    fix = "Delete it and let data.download=true fetch SST-2.zip again."
    lines = read_lines(path, fix)
    if not lines or lines[0].split("\t") != ["sentence", "label"]:
        raise UserError(f"{path} does not start with the header 'sentence<TAB>label' of GLUE's SST-2. {fix}")
    rows = []
    for n, line in enumerate(lines[1:], start=2):
        text, sep, label = line.rpartition("\t")
        if not sep or label not in ("0", "1") or not text.strip():
            raise UserError(f"{path}, line {n}: expected 'sentence<TAB>0 or 1', got {line[:80]!r}. {fix}")
        rows.append((text.strip(), int(label)))
    return rows


def _spans(sentence: str) -> set[str]:
    """Every run of whole words in a sentence (its tokens are space-separated)."""
    words = sentence.split()
    return {" ".join(words[i:j]) for i in range(len(words)) for j in range(i + 1, len(words) + 1)}


def sentences_of(phrases: list[str]) -> list[str]:
    """The phrases that no other phrase contains (the roots of the parse trees; where a root was neutral and
    left out of SST-2, its largest labelled parts), in a fixed order: longest first, then alphabetical."""
    roots, covered = [], set()
    for p in sorted(set(phrases), key=lambda s: (-len(s.split()), s)):
        if p not in covered:
            roots.append(p)
            covered |= _spans(p)
    return roots


def split_by_sentence(rows: list[tuple[str, int]], val_fraction: float, seed: int):
    """(train rows, val rows): val holds whole sentences; train keeps no phrase that occurs only inside them."""
    roots = sentences_of([t for t, _ in rows])
    random.Random(seed).shuffle(roots)
    n_val = max(1, round(val_fraction * len(roots)))
    held, kept = roots[:n_val], roots[n_val:]
    inside_held = set().union(*map(_spans, held))
    inside_kept = set().union(*map(_spans, kept))
    label = dict(rows)
    train = [(t, y) for t, y in rows if t not in inside_held or t in inside_kept]
    return train, [(t, label[t]) for t in held]


class SST2DataModule(TextClassificationDataModule):
    name = "sst2"

    def __init__(self, val_fraction: float = 0.1, split_seed: int = 0, **kwargs):
        super().__init__(**kwargs)
        if not 0 < val_fraction < 1:
            raise ValueError(f"data.val_fraction={val_fraction} should be between 0 and 1 (a share of the "
                             f"training sentences)")
        self.val_fraction, self.split_seed = float(val_fraction), int(split_seed)

    @property
    def folder(self) -> Path:
        return self.data_dir / "SST-2"

    def prepare_files(self) -> None:
        """Download and unpack SST-2.zip into data_dir when a file is missing and data.download is true."""
        missing = [f for f in FILES if not (self.folder / f).is_file()]
        if missing and self.download:
            try:
                self._download()
            except OSError as e:
                raise UserError(f"sst2: could not download SST-2.zip ({e}). Download {URLS[0]} yourself, unzip it "
                                f"into a folder and pass data.data_dir=<that folder> (it must hold SST-2/train.tsv "
                                f"and SST-2/dev.tsv).") from None
        missing = [f for f in FILES if not (self.folder / f).is_file()]
        if missing:
            raise UserError(f"sst2: {self.folder} lacks {', '.join(missing)}. Set data.download=true to fetch "
                            f"GLUE's SST-2.zip ({URLS[0]}), or point data.data_dir at the folder that holds SST-2/.")

    def _download(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        archive = fetch(URLS, self.data_dir / "SST-2.zip", MD5)
        extract(archive, self.folder, select=inside("SST-2", lambda rel: rel in FILES))
        archive.unlink()

    def read_splits(self):
        self.class_names = list(CLASS_NAMES)
        train, val = split_by_sentence(read_tsv(self.folder / "train.tsv"), self.val_fraction, self.split_seed)
        return {"train": train, "val": val, "test": read_tsv(self.folder / "dev.tsv")}
