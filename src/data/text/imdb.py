"""The Large Movie Review Dataset (Maas et al., 2011, "IMDB"): 25,000 training and 25,000 test reviews of
films, half negative (rated 4 or less of 10), half positive (7 or more); no film is in both splits.

Read from <data_dir>/aclImdb/{train,test}/{neg,pos}/<id>_<rating>.txt, as Stanford's aclImdb_v1.tar.gz
unpacks; the archive (80 MB, MD5-checked) is downloaded and unpacked there when the folder is missing. Only
those four folders are read: train/unsup/ (50,000 unlabelled reviews), the URL lists and the bag-of-words
.feat files are left out, and left out of the download too.

test/ is the test split; validation is val_fraction of train, stratified by label, drawn with split_seed
from the file names sorted, so it does not depend on the order a file system lists them in. The reviews
hold HTML line breaks (`<br /><br />` between paragraphs): each run of them becomes one space.
"""
from __future__ import annotations

import re
from pathlib import Path, PurePosixPath

import numpy as np

from src.data.download import extract, fetch, inside, md5
from src.data.splits import stratified_split
from src.data.text.classification import TextClassificationDataModule
from src.errors import UserError

URL = "https://ai.stanford.edu/~amaas/data/sentiment/aclImdb_v1.tar.gz"
MD5 = "7c2ac02c03563afcf9b574c7e56c153a"  # of aclImdb_v1.tar.gz, as torchtext checks it
SPLITS = ("train", "test")
CLASSES = ("neg", "pos")  # folder names; their positions are the label indices
CLASS_NAMES = ["negative", "positive"]
LINE_BREAKS = re.compile(r"(?:\s*<br\s*/?>)+\s*", re.IGNORECASE)


def clean(text: str) -> str:
    """A review's text with its HTML line breaks read as spaces."""
    return LINE_BREAKS.sub(" ", text).strip()


def review(rel: str) -> bool:
    """True for the reviews of train/ and test/ (<split>/<neg|pos>/<file>.txt under aclImdb/), not unsup/ or urls."""
    parts = PurePosixPath(rel).parts
    return len(parts) == 3 and parts[0] in SPLITS and parts[1] in CLASSES and parts[2].endswith(".txt")


def review_files(folder: Path) -> list[Path]:
    """The .txt files of one class folder, sorted by name."""
    return sorted((p for p in folder.iterdir() if p.suffix == ".txt"), key=lambda p: p.name)


def _has_reviews(folder: Path) -> bool:
    return folder.is_dir() and any(p.suffix == ".txt" for p in folder.iterdir())


def read_review(path: Path) -> str:
    try:
        return clean(path.read_bytes().decode("utf-8"))
    except UnicodeDecodeError as e:
        raise UserError(f"imdb: {path} is not UTF-8 text ({e}); the copy of aclImdb is damaged.") from None


class IMDBDataModule(TextClassificationDataModule):
    name = "imdb"

    def __init__(self, val_fraction: float = 0.1, split_seed: int = 0, **kwargs):
        super().__init__(**kwargs)
        if not 0 < val_fraction < 1:
            raise ValueError(f"data.val_fraction={val_fraction} should be between 0 and 1 (a share of the 25,000 "
                             f"training reviews)")
        self.val_fraction, self.split_seed = float(val_fraction), int(split_seed)

    @property
    def root(self) -> Path:
        return self.data_dir / "aclImdb"

    def prepare_files(self) -> None:
        """Download and unpack the archive when aclImdb/ is missing and data.download is true; then check
        that each of the four class folders holds reviews."""
        where = (f"Download {URL} (80 MB) and unpack it so that {self.root / 'train' / 'pos'} exists, or pass "
                 f"data.data_dir=<the folder that holds aclImdb/>.")
        if not self.root.is_dir() and self.download:
            try:
                self._download()
            except OSError as e:
                raise UserError(f"imdb: could not download the reviews ({e}). {where}") from None
        if not self.root.is_dir():
            raise UserError(f"imdb: {self.root} is missing and data.download is false. {where}")
        bad = [f"{s}/{c}" for s in SPLITS for c in CLASSES if not _has_reviews(self.root / s / c)]
        if bad:
            raise UserError(f"imdb: {self.root} is incomplete: {', '.join(bad)} missing or holding no .txt reviews. "
                            f"A whole copy has train/neg, train/pos, test/neg and test/pos. Delete {self.root} and "
                            f"let data.download=true fetch {URL} again, or point data.data_dir at a whole copy.")

    def _download(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        archive = self.data_dir / "aclImdb_v1.tar.gz"
        if not (archive.is_file() and md5(archive) == MD5):  # a download whose unpacking was cut short is reused
            fetch([URL], archive, MD5)
        extract(archive, self.root, select=inside("aclImdb", review))
        archive.unlink()

    def _read(self, split: str) -> list[tuple[str, int]]:
        return [(read_review(p), label) for label, c in enumerate(CLASSES)
                for p in review_files(self.root / split / c)]

    def read_splits(self):
        self.class_names = list(CLASS_NAMES)
        train = self._read("train")
        val_idx, train_idx = stratified_split(np.array([y for _, y in train]), [self.val_fraction], self.split_seed)
        return {"train": [train[i] for i in train_idx], "val": [train[i] for i in val_idx], "test": self._read("test")}
