"""A user's own labelled texts: a .csv, .tsv or .txt file with a text and a label a row, or a folder of such
files (every *.csv, *.tsv and *.txt directly in it, in name order, read as one), e.g. the UCI Sentiment
Labelled Sentences (`sentence<TAB>0|1`, no header).

The delimiter follows each file's extension unless data.delimiter is given: "," for .csv (standard CSV
quoting: a text holding commas is quoted), a tab for .tsv and .txt (no quoting: a quote mark is part of the
text, so a text cannot hold a tab). Blank lines are skipped, and so are rows whose text is empty.

header: true, false, or auto. With auto, a file has a header when a column is given by name; otherwise its
first row is taken for a header when its label cell (e.g. "label") never occurs as the label of any other row
of the data (first rows of other files aside). A data set whose first row is the only one of its class must
say header: false.

Splits are drawn by distinct text, so a text is never in two splits (a sentence seen in training and tested
again would flatter the score), and stratified by label (a text's first label). val_path / test_path give
those splits as files instead; the fractions then apply only to the splits not given, and a text of `path`
that is also in a given split is left out of training.
"""
from __future__ import annotations

import csv
import logging
import random
import re
from collections import defaultdict
from collections.abc import Mapping
from pathlib import Path

from src.data.text.classification import TextClassificationDataModule
from src.errors import UserError

EXTENSIONS = (".csv", ".tsv", ".txt")
FORMAT = ("a .csv, .tsv or .txt file with a text and a label a row (e.g. 'a fine film<TAB>1'), or a folder of "
          "such files")
Column = int | str

log = logging.getLogger(__name__)


def _delimiter(delimiter: str | None) -> str | None:
    if delimiter is None:
        return None
    d = {"\\t": "\t", "tab": "\t", "comma": ",", "semicolon": ";"}.get(delimiter, delimiter)
    if not isinstance(d, str) or len(d) != 1:
        raise ValueError(f"data.delimiter={delimiter!r} should be one character (e.g. ',' or '\\t'), or null to "
                         f"follow the file's extension (.csv: comma; .tsv, .txt: tab)")
    return d


def _column(key: str, value) -> Column:
    if isinstance(value, bool) or not isinstance(value, (int, str)) or value == "":
        raise ValueError(f"data.{key}={value!r} should be a 0-based column index (negative counts from the end) or "
                         f"a column name")
    return value


def read_cells(path: Path, delimiter: str) -> list[tuple[int, list[str]]]:
    """(line number, cells) of each non-blank row of a delimited UTF-8 file."""
    quoting = csv.QUOTE_NONE if delimiter == "\t" else csv.QUOTE_MINIMAL
    rows = []
    try:
        with open(path, encoding="utf-8-sig", newline="") as f:
            reader = csv.reader(f, delimiter=delimiter, quoting=quoting)
            try:
                for cells in reader:
                    if any(c.strip() for c in cells):
                        rows.append((reader.line_num, cells))
            except csv.Error as e:
                raise UserError(f"{path}, line {reader.line_num}: {e}") from None
    except UnicodeDecodeError as e:
        raise UserError(f"{path} is not UTF-8 text ({e}).") from None
    except OSError as e:
        raise UserError(f"{path} cannot be read ({e.strerror}).") from None
    return rows


def _position(column: Column, cells: list[str]) -> int | None:
    """The index of an integer column in a row, None when the row is too short."""
    i = column if column >= 0 else len(cells) + column
    return i if 0 <= i < len(cells) else None


def split_by_text(rows: list[tuple[str, int]], fractions: dict[str, float], seed: int,
                  where: str) -> dict[str, list[tuple[str, int]]]:
    """{"train": ..., and a list per fraction}, drawn by distinct text and stratified by label.

    Each label's texts are shuffled and spread evenly over [0, 1) (the i-th of n at (i + 0.5) / n); sorted by
    that key, any first k texts hold every label in its share, and the splits take consecutive runs of them."""
    label_of: dict[str, int] = {}
    for text, label in rows:
        label_of.setdefault(text, label)
    by_label = defaultdict(list)
    for text, label in label_of.items():
        by_label[label].append(text)
    rng = random.Random(seed)
    keyed = []
    for label in sorted(by_label):
        texts = by_label[label]
        rng.shuffle(texts)
        keyed += [((i + 0.5) / len(texts), label, text) for i, text in enumerate(texts)]
    order = [text for *_, text in sorted(keyed, key=lambda k: k[:2])]
    split_of, start = {}, 0
    for split, fraction in fractions.items():
        n = max(1, round(fraction * len(order)))
        split_of.update(dict.fromkeys(order[start:start + n], split))
        start += n
    if start >= len(order):
        raise UserError(f"{where} holds {len(order)} different texts: too few for data.val_fraction and "
                        f"data.test_fraction to leave any for training.")
    out = {"train": [], **{split: [] for split in fractions}}
    for text, label in rows:
        out[split_of.get(text, "train")].append((text, label))
    return out


class TextCSVDataModule(TextClassificationDataModule):
    """text_column / label_column: a 0-based index (negative counts from the end) or a header's column name.
    label_names: {raw label: display name}, e.g. {0: negative, 1: positive}; without it the class names are the
    raw labels. Classes are ordered by raw label: numerically when every label is an integer."""

    name = "text_csv"

    def __init__(self, path: str | None = None, delimiter: str | None = None, header: bool | str = "auto",
                 text_column: Column = 0, label_column: Column = -1, val_path: str | None = None,
                 test_path: str | None = None, val_fraction: float = 0.1, test_fraction: float = 0.1,
                 split_seed: int = 0, label_names: Mapping | None = None, **kwargs):
        super().__init__(**kwargs)
        if path is None:
            raise ValueError(f"data.path is required: {FORMAT}")
        if header not in ("auto", True, False):
            raise ValueError(f"data.header={header!r}: choose true, false or auto (a header when a column is "
                             f"named, or when the first row's label occurs nowhere else)")
        self.text_column, self.label_column = _column("text_column", text_column), _column("label_column", label_column)
        if self.text_column == self.label_column:
            raise ValueError(f"data.text_column and data.label_column are both {text_column!r}: they must differ")
        for key, c in (("text_column", text_column), ("label_column", label_column)):
            if isinstance(c, str) and header is False:
                raise ValueError(f"data.{key}={c!r} is a column name, which needs a header: set data.header=true "
                                 f"(or auto), or give the column's 0-based index")
        used = {}  # the fractions drawn from data.path: test first, then val
        if test_path is None:
            used["test"] = test_fraction
        if val_path is None:
            used["val"] = val_fraction
        for split, f in used.items():
            if not 0 < f < 1:
                raise ValueError(f"data.{split}_fraction={f} should be between 0 and 1 (a share of the texts)")
        if sum(used.values()) >= 1:
            raise ValueError(f"data.val_fraction + data.test_fraction = {sum(used.values())} leaves nothing for "
                             f"training: make them sum to less than 1")
        if label_names is not None and not isinstance(label_names, Mapping):
            raise ValueError(f"data.label_names={label_names!r} should be null or a mapping from each raw label to a "
                             f"name, e.g. {{0: negative, 1: positive}}")
        self.path = Path(path).expanduser()
        self.val_path, self.test_path = (Path(p).expanduser() if p is not None else None for p in (val_path, test_path))
        self.delimiter, self.header = _delimiter(delimiter), header
        self.fractions = {s: float(f) for s, f in used.items()}
        self.split_seed = int(split_seed)
        self.label_names = dict(label_names) if label_names is not None else None
        self.groups: dict[str, list[Path]] | None = None  # split -> its files, once prepare_files has run

    # files ------------------------------------------------------------------------------------------
    def _files(self, key: str, path: Path) -> list[Path]:
        if path.is_dir():
            files = sorted((p for p in path.iterdir() if p.suffix.lower() in EXTENSIONS and p.is_file()
                            and not p.name.startswith(".")), key=lambda p: p.name)
            if not files:
                raise UserError(f"data.{key}={path} is a folder holding no .csv, .tsv or .txt file. Give {FORMAT}.")
            return files
        if not path.is_file():
            raise UserError(f"data.{key}={path}: no such file or folder. Give {FORMAT}.")
        return [path]

    def _delimiter_of(self, path: Path) -> str:
        if self.delimiter is not None:
            return self.delimiter
        d = {".csv": ",", ".tsv": "\t", ".txt": "\t"}.get(path.suffix.lower())
        if d is None:
            raise UserError(f"{path}: cannot tell its delimiter from the extension {path.suffix!r} (.csv: comma; "
                            f".tsv, .txt: tab). Set data.delimiter.")
        return d

    def prepare_files(self) -> None:
        self.groups = {"train": self._files("path", self.path)}
        for split, key, p in (("val", "val_path", self.val_path), ("test", "test_path", self.test_path)):
            if p is not None:
                self.groups[split] = self._files(key, p)

    # rows -------------------------------------------------------------------------------------------
    def _label_cell(self, cells: list[str]) -> str | None:
        i = _position(self.label_column, cells) if isinstance(self.label_column, int) else None
        return cells[i].strip() if i is not None else None

    def _has_header(self, tables: dict[Path, list]) -> dict[Path, bool]:
        """Which files start with a header (see the module's docstring for auto)."""
        if self.header == "auto":
            if isinstance(self.text_column, str) or isinstance(self.label_column, str):
                return dict.fromkeys(tables, True)
            body = {self._label_cell(cells) for rows in tables.values() for _, cells in rows[1:]}
            return {f: bool(rows) and self._label_cell(rows[0][1]) not in body for f, rows in tables.items()}
        return dict.fromkeys(tables, self.header)

    def _positions(self, path: Path, header: list[str] | None) -> tuple[Column, Column]:
        """The columns, names turned into indices by the file's header."""
        out = []
        for key, c in (("text_column", self.text_column), ("label_column", self.label_column)):
            if isinstance(c, str):
                names = [h.strip() for h in header or []]
                if c not in names:
                    raise UserError(f"{path}: data.{key}={c!r} is not a column of its header {names}.")
                c = names.index(c)
            out.append(c)
        return out[0], out[1]

    def _rows(self, path: Path, rows: list, has_header: bool) -> list[tuple[str, str]]:
        header = rows[0][1] if has_header and rows else None
        tc, lc = self._positions(path, header)
        out = []
        for n, cells in rows[1:] if has_header else rows:
            t, y = _position(tc, cells), _position(lc, cells)
            if t is None or y is None or t == y:
                raise UserError(f"{path}, line {n}: {len(cells)} field(s), too few for data.text_column="
                                f"{self.text_column!r} and data.label_column={self.label_column!r}: "
                                f"{self._delimiter_of(path).join(cells)[:80]!r}")
            text, label = cells[t].strip(), cells[y].strip()
            if not label:
                raise UserError(f"{path}, line {n}: the label is empty.")
            if text:
                out.append((text, label))
        return out

    def read_rows(self) -> dict[str, list[tuple[str, str]]]:
        """{"train" (data.path), and "val"/"test" when given as files: [(text, raw label), ...]}."""
        if self.groups is None:
            self.prepare_files()
        tables = {f: read_cells(f, self._delimiter_of(f)) for files in self.groups.values() for f in files}
        headers = self._has_header(tables)
        out = {}
        for split, files in self.groups.items():
            out[split] = [r for f in files for r in self._rows(f, tables[f], headers[f])]
            if not out[split]:
                where = ", ".join(map(str, files))
                raise UserError(f"{where}: no labelled rows. Give {FORMAT}.")
        return out

    # labels and splits ------------------------------------------------------------------------------
    def _classes(self, raw: set[str]) -> dict[str, int]:
        """raw label -> class index; sets class_names."""
        numeric = all(re.fullmatch(r"[+-]?\d+", y) for y in raw)
        value = int if numeric else str
        values = sorted({value(y) for y in raw})
        names = [str(v) for v in values]
        if self.label_names is not None:
            given = {}
            for k, v in self.label_names.items():
                try:
                    given[value(str(k).strip())] = str(v)
                except ValueError:
                    pass  # a name for a label that cannot occur here
            missing = [v for v in values if v not in given]
            if missing:
                raise UserError(f"data.label_names has no name for the label(s) {missing} (the data's labels are "
                                f"{values}).")
            names = [given[v] for v in values]
            if len(set(names)) < len(names):
                raise UserError(f"data.label_names gives two labels one name ({names}): each class needs its own.")
        self.class_names = names
        return {y: values.index(value(y)) for y in raw}

    def check_rows(self, rows: dict[str, list[tuple[str, str]]]) -> None:
        """Refuse what a classifier cannot mean: a label column of measurements (non-integer numbers) or of
        nearly one value per text, a text column of bare numbers (an id), a label that training never sees."""
        train = rows["train"]
        labels = {y for _, y in train}
        fractional = sorted(y for y in labels if re.fullmatch(r"[+-]?(\d+\.\d*|\.\d+)([eE][+-]?\d+)?", y))
        if fractional:
            raise UserError(f"data.path={self.path}: data.label_column={self.label_column!r} holds numbers such as "
                            f"{fractional[0]!r}, not class labels: a classifier needs labels such as pos/neg or 0/1 "
                            f"(is it the label column?).")
        if len(labels) > 20 and len(labels) > len(train) / 2:
            raise UserError(f"data.path={self.path}: data.label_column={self.label_column!r} has {len(labels)} "
                            f"different labels for {len(train)} rows (e.g. {sorted(labels)[:3]}): too many for a "
                            f"classifier to learn; is it the label column?")
        if all(re.fullmatch(r"[+-]?\d+", t) for t, _ in train[:1000]):
            raise UserError(f"data.path={self.path}: data.text_column={self.text_column!r} holds only numbers (an "
                            f"id?), not texts: set data.text_column=<its index or name>.")
        for split in ("val", "test"):
            unseen = sorted({y for _, y in rows.get(split, [])} - labels)
            if unseen:
                raise UserError(f"data.{split}_path={getattr(self, split + '_path')} has label(s) {unseen[:5]} that "
                                f"data.path={self.path} never has: a class must occur in training.")

    def read_splits(self):
        rows = self.read_rows()
        self.check_rows(rows)
        index = self._classes({y for split in rows.values() for _, y in split})
        rows = {split: [(t, index[y]) for t, y in r] for split, r in rows.items()}
        given = [s for s in ("test", "val") if s in rows]
        for i, split in enumerate(given):  # a text of a given split is in no other
            earlier = {t for s in given[:i] for t, _ in rows[s]}
            rows[split] = [(t, y) for t, y in rows[split] if t not in earlier]
        taken = {t for s in given for t, _ in rows[s]}
        train = [(t, y) for t, y in rows["train"] if t not in taken]
        if len(train) < len(rows["train"]):
            log.warning("note: %d row(s) of data.path=%s left out of training: their text is in the given %s file",
                        len(rows["train"]) - len(train), self.path, " or ".join(given))
        splits = split_by_text(train, self.fractions, self.split_seed, f"data.path={self.path}")
        splits.update({s: rows[s] for s in given})
        return splits
