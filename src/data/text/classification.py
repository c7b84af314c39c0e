"""What the text classification data modules share (sst2, imdb, text_csv): a word-level or BPE tokenizer
learnt on the training split (cached as JSON), every text encoded once, length-bucketed batches, and the
tokenizer and label names handed to the task through `info` (so they travel in the checkpoint).

A subclass only says where the (text, label) pairs come from: `read_splits()`, and `prepare_files()` when
files must be downloaded or checked first.
"""
from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
import torch

from src.data.base import DataModule
from src.data.text.base import (
    PAD_ID,
    SPLITS,
    UNK_ID,
    BucketedLoaders,
    CharNgrams,
    TextSplits,
    _normalizer,
    _pad,
    cache_key,
    cached_tokenizer,
    input_text,
    save_tokenizer,
    tokenizer_from_str,
    train_bpe,
    train_word_level,
)
from src.errors import UserError

TOKENIZERS = ("word", "bpe")
_CACHE_FORMAT = 2  # bump when a tokenizer's recipe changes in a way that changes its output


def _pad_ngrams(grams: list[np.ndarray], width: int) -> torch.Tensor:
    out = np.zeros((len(grams), width, max(g.shape[1] for g in grams)), dtype=np.int64)
    for i, g in enumerate(grams):
        out[i, :g.shape[0], :g.shape[1]] = g
    return torch.from_numpy(out)


def collate_texts(examples: list[dict], pad_id: int = PAD_ID) -> dict:
    """[{"ids", "label", "text"[, "ngrams"]}] -> {"ids" (B, T), "lengths" (B,), "label" (B,), "text": [...]
    [, "ngrams" (B, T, K)]}."""
    ids, lengths = _pad([e["ids"] for e in examples], pad_id)
    batch = {"ids": ids, "lengths": lengths, "label": torch.tensor([e["label"] for e in examples]),
             "text": [e["text"] for e in examples]}
    if "ngrams" in examples[0]:
        batch["ngrams"] = _pad_ngrams([e["ngrams"] for e in examples], ids.shape[1])
    return batch


@functools.lru_cache(maxsize=8)
def _char_ngrams(min_n: int, max_n: int, buckets: int, lowercase: bool) -> CharNgrams:
    return CharNgrams(min_n, max_n, buckets, lowercase)


class TextClassificationDataModule(TextSplits, BucketedLoaders, DataModule):
    """Base for text classification data.

    tokenizer: word (whole words, the vocab_size most frequent seen min_frequency times; others are [UNK]) or
        bpe (subwords: no word is unknown). lowercase: fold case first.
    max_len: texts are cut to this many tokens (0: never), in every split and in predict.py alike.
    char_ngrams: [min_n, max_n] (or [] for none): each token also brings its hashed character n-grams
        (src.data.text.base.CharNgrams, into ngram_buckets ids), for the model to add to its embedding.
    """

    name = "text"  # prefix of the cached tokenizer's file name
    collate = staticmethod(collate_texts)

    def __init__(self, tokenizer: str = "word", vocab_size: int = 30000, min_frequency: int = 1,
                 lowercase: bool = True, max_len: int = 0, char_ngrams: list[int] | None = (3, 5),
                 ngram_buckets: int = 20000, batch_size: int = 64, num_workers: int = 0, data_dir: str = "data",
                 download: bool = True, cache_dir: str | None = None):
        super().__init__()
        char_ngrams = [int(n) for n in (char_ngrams or [])]
        if char_ngrams and (len(char_ngrams) != 2 or not 1 <= char_ngrams[0] <= char_ngrams[1]):
            raise ValueError(f"data.char_ngrams={char_ngrams} should be [shortest, longest] n-gram length, e.g. "
                             f"[3,5], or [] for none")
        if char_ngrams and ngram_buckets < 1:
            raise ValueError(f"data.ngram_buckets={ngram_buckets} should be a positive number of hash buckets")
        if tokenizer not in TOKENIZERS:
            raise ValueError(f"data.tokenizer={tokenizer!r}: choose word or bpe")
        if vocab_size <= 4:
            raise ValueError(f"data.vocab_size={vocab_size} should be well above the 4 special tokens (e.g. 30000)")
        if min_frequency < 1:
            raise ValueError(f"data.min_frequency={min_frequency} should be a positive integer")
        if max_len < 0:
            raise ValueError(f"data.max_len={max_len} should be a number of tokens, or 0 for no limit")
        if batch_size < 1:
            raise ValueError(f"data.batch_size={batch_size} should be a positive integer")
        self.tokenizer_kind, self.vocab_size, self.min_frequency = tokenizer, int(vocab_size), int(min_frequency)
        self.lowercase, self.max_len = bool(lowercase), int(max_len)
        self.char_ngrams, self.ngram_buckets = char_ngrams, int(ngram_buckets) if char_ngrams else 0
        self.batch_size, self.num_workers = int(batch_size), int(num_workers)
        self.data_dir, self.download = Path(data_dir), bool(download)
        # derived files (the tokenizer) go here, not into data_dir, which may be a read-only shared copy
        self.cache_dir = Path(cache_dir) if cache_dir else self.data_dir / "cache"
        self.class_names: list[str] = []
        self.tok = None
        self.train_set = self.val_set = self.test_set = None
        self._lengths: dict[str, list[int]] = {}
        self._uncached = None  # a tokenizer that could not be written to cache_dir
        self._given = None  # the tokenizer of a checkpoint (use_info), and its labels
        self._given_classes: list[str] = []

    # subclasses implement read_splits() -> {"train": [(text, label index), ...], "val": ..., "test": ...},
    # setting self.class_names, and prepare_files() when files must be downloaded or checked first
    # (src.data.text.base.TextSplits)

    def check_splits(self, splits) -> None:
        if len(self.class_names) < 2:
            where = f"data.path={self.path}" if getattr(self, "path", None) else type(self).__name__
            raise UserError(f"{where}: the data has {len(self.class_names)} class(es) {self.class_names[:3]}; a "
                            f"classifier needs two or more (is data.label_column the label?).")

    # tokenizer --------------------------------------------------------------------------------------
    def _tokenizer_path(self) -> tuple[Path, list[str]]:
        texts = [t for t, _ in self.splits()["train"]]
        key = cache_key([_CACHE_FORMAT, self.tokenizer_kind, self.vocab_size, self.min_frequency, self.lowercase],
                        texts)
        return self.cache_dir / "tokenizers" / f"{self.name}-{self.tokenizer_kind}-{key}.json", texts

    def _learn(self, texts: list[str]):
        if self.tokenizer_kind == "word":
            return train_word_level(texts, self.vocab_size, self.min_frequency, self.lowercase)
        tok = train_bpe([t.lower() for t in texts] if self.lowercase else texts, self.vocab_size,
                        max(2, self.min_frequency))
        tok.normalizer = _normalizer(self.lowercase)  # what was learnt on lower-cased text is read the same way
        return tok

    def use_info(self, info: dict) -> None:
        """Encode with the tokenizer and labels a checkpoint carries (eval.py), not ones learnt again here."""
        self._given = tokenizer_from_str(info["tokenizer"])
        self._given_classes = list(info["class_names"])

    # Lightning hooks --------------------------------------------------------------------------------
    def prepare_data(self) -> None:
        """Files, then the tokenizer learnt on the training split and cached. Cheap when the cache is there."""
        self.splits()
        if self._given:
            return
        path, texts = self._tokenizer_path()
        if self._uncached is not None or cached_tokenizer(path) is not None:
            return
        tok = self._learn(texts)
        if not save_tokenizer(tok, path):
            self._uncached = tok

    def setup(self, stage: str | None = None) -> None:
        if self.train_set is not None:
            return
        from tokenizers import Tokenizer

        splits = self.splits()
        if self._given:
            self.tok = self._given
            if self._given_classes != self.class_names:
                raise UserError(f"the checkpoint's labels {self._given_classes} differ from this data's "
                                f"{self.class_names}: evaluate it on the data it was trained for.")
        else:
            path, _ = self._tokenizer_path()
            self.tok = self._uncached or cached_tokenizer(path)
            if self.tok is None:
                self.prepare_data()
                self.tok = self._uncached or Tokenizer.from_file(str(path))
        grams = self._ngrams(self.info_ngrams())
        for split in SPLITS:
            pairs = splits[split]
            encoded = self.tok.encode_batch([t for t, _ in pairs], add_special_tokens=False)
            examples = [_example(e, text, self.max_len, grams) | {"label": label}
                        for e, (text, label) in zip(encoded, pairs)]
            setattr(self, f"{split}_set", examples)
            self._lengths[split] = [len(e["ids"]) for e in examples]

    def info_ngrams(self) -> dict:
        return {"char_ngrams": list(self.char_ngrams), "ngram_buckets": self.ngram_buckets,
                "lowercase": self.lowercase}

    @staticmethod
    def _ngrams(info: dict) -> CharNgrams | None:
        if not info.get("char_ngrams"):
            return None
        return _char_ngrams(*info["char_ngrams"], info["ngram_buckets"], info["lowercase"])

    @property
    def info(self) -> dict:
        """What the task needs to build its model and read its outputs; stored in the checkpoint."""
        self.setup()
        return {"class_names": list(self.class_names), "tokenizer": self.tok.to_str(),
                "vocab_size": self.tok.get_vocab_size(), "pad_id": PAD_ID, "unk_id": UNK_ID, "max_len": self.max_len,
                **self.info_ngrams()}

    # inference -------------------------------------------------------------------------------------
    @classmethod
    def example_inputs(cls, info: dict) -> list[dict]:
        return [cls.read_input("a gorgeous, witty, seductive film", info), cls.read_input("dull", info)]

    @staticmethod
    def input_spec(info: dict) -> dict:
        spec = {"kind": "text", "tokenizer_file": "tokenizer.json", "max_len": info.get("max_len", 0),
                "pad_id": info["pad_id"], "unk_id": info["unk_id"],
                "steps": ["strip the text (an empty one is refused)",
                          "encode it with tokenizer.json (the tokenizers library: Tokenizer.from_file, "
                          "encode(text, add_special_tokens=False)): ids and character offsets",
                          "keep the first max_len tokens (max_len 0: all); no token at all: [unk_id]",
                          "ids (batch, tokens) int64, each row padded with pad_id to the longest; lengths (batch,) "
                          "int64, the number of tokens of each text"]}
        if info.get("char_ngrams"):
            low, high = info["char_ngrams"]
            spec["char_ngrams"] = {"min_n": low, "max_n": high, "buckets": info["ngram_buckets"],
                                   "lowercase": info.get("lowercase", True), "max_per_token": 32}
            spec["steps"].append(
                f"ngrams (batch, tokens, K) int64: for each token, w = '<' + its text (lowercased) + '>', the "
                f"character n-grams of w for n = {low}..{high} (all of n={low} first, left to right, then "
                f"n={low + 1}, ...), each id = zlib.crc32(utf-8 bytes) % {info['ngram_buckets']} + 1, at most 32 "
                f"per token ([0] when none); rows padded with 0 to the batch's largest K (padded tokens: all 0)")
        return spec

    @classmethod
    def read_input(cls, raw: str, info: dict) -> dict:
        """One text -> {"ids", "text"[, "ngrams"]}, with the checkpoint's tokenizer, max_len and n-grams."""
        text = input_text(raw)
        encoding = tokenizer_from_str(info["tokenizer"]).encode(text, add_special_tokens=False)
        return _example(encoding, text, info.get("max_len", 0), cls._ngrams(info)) | {"text": raw}

    @staticmethod
    def collate_inputs(samples: list[dict], info: dict) -> dict:
        batch = collate_texts([s | {"label": 0} for s in samples], info["pad_id"])
        del batch["label"]
        return batch


def _example(encoding, text: str, max_len: int, grams: CharNgrams | None) -> dict:
    """{"ids", "text"[, "ngrams"]} of one encoded text, cut to max_len tokens (0: never). A text with no
    token at all is read as one unknown word."""
    ids, offsets = encoding.ids, encoding.offsets
    if max_len:
        ids, offsets = ids[:max_len], offsets[:max_len]
    example = {"ids": ids or [UNK_ID], "text": text}
    if grams is not None:
        example["ngrams"] = grams(text, offsets)
    return example
