"""A user's parallel corpus: a TSV file (source<TAB>target a line) or two aligned files (one sentence a line),
plain or gzipped, split into train/val/test by source sentence, so that no source is in two splits (a
sentence seen in training and tested again would flatter the score)."""
from __future__ import annotations

import random
from pathlib import Path

from src.data.text.base import read_lines
from src.data.text.translation import TranslationDataModule
from src.errors import UserError


class ParallelTextDataModule(TranslationDataModule):
    """Pairs with an empty side (blank lines) are left out. val_fraction and test_fraction are shares of the
    distinct source sentences, drawn with split_seed."""

    name = "parallel_text"

    def __init__(self, path: str | None = None, src_path: str | None = None, tgt_path: str | None = None,
                 val_fraction: float = 0.05, test_fraction: float = 0.05, split_seed: int = 0, **kwargs):
        super().__init__(**kwargs)
        if (path is None) == (src_path is None and tgt_path is None) or (src_path is None) != (tgt_path is None):
            raise ValueError("give either data.path=<file.tsv> (source<TAB>target a line), or data.path=null with "
                             "data.src_path=<file> and data.tgt_path=<file> (aligned, one sentence a line)")
        if not (0 < val_fraction < 1 and 0 < test_fraction < 1 and val_fraction + test_fraction < 1):
            raise ValueError(f"data.val_fraction={val_fraction} and data.test_fraction={test_fraction} should each be "
                             f"between 0 and 1, and sum to less than 1")
        self.path = Path(path) if path is not None else None
        self.src_path = Path(src_path) if src_path is not None else None
        self.tgt_path = Path(tgt_path) if tgt_path is not None else None
        self.val_fraction, self.test_fraction, self.split_seed = val_fraction, test_fraction, int(split_seed)

    def prepare_files(self) -> None:
        for key, p in (("path", self.path), ("src_path", self.src_path), ("tgt_path", self.tgt_path)):
            if p is not None and not p.is_file():
                raise UserError(f"data.{key}={p}: no such file. Give a UTF-8 text file ("
                                + ("source<TAB>target a line)." if key == "path" else "one sentence a line)."))

    def read_pairs(self) -> list[tuple[str, str]]:
        if self.path is not None:
            pairs = []
            for i, line in enumerate(read_lines(self.path), 1):
                if not line.strip():
                    continue
                fields = line.split("\t")
                if len(fields) != 2:
                    raise UserError(f"data.path={self.path}, line {i}: expected source<TAB>target, found "
                                    f"{len(fields)} tab-separated fields: {line[:80]!r}")
                pairs.append((fields[0], fields[1]))
        else:
            src, tgt = read_lines(self.src_path), read_lines(self.tgt_path)
            if len(src) != len(tgt):
                raise UserError(f"data.src_path={self.src_path} has {len(src)} lines but data.tgt_path={self.tgt_path} "
                                f"has {len(tgt)}: the files must be aligned, line i of one translating line i of "
                                f"the other.")
            pairs = list(zip(src, tgt))
        return [(s, t) for s, t in pairs if s.strip() and t.strip()]

    def read_splits(self) -> dict[str, list[tuple[str, str]]]:
        pairs = self.read_pairs()
        sources = list(dict.fromkeys(s for s, _ in pairs))
        where = self.path or self.src_path
        if len(sources) < 3:
            raise UserError(f"{where} holds {len(sources)} different source sentences: too few for train, val and "
                            f"test.")
        random.Random(self.split_seed).shuffle(sources)
        n_test = max(1, round(self.test_fraction * len(sources)))
        n_val = max(1, round(self.val_fraction * len(sources)))
        if n_test + n_val >= len(sources):
            raise UserError(f"{where}: data.val_fraction and data.test_fraction leave no training sentences.")
        split_of = {s: "test" for s in sources[:n_test]}
        split_of.update({s: "val" for s in sources[n_test:n_test + n_val]})
        splits = {"train": [], "val": [], "test": []}
        for s, t in pairs:
            splits[split_of.get(s, "train")].append((s, t))
        return splits
