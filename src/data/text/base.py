"""Text helpers for translation and sentiment: tokenizers (learnt, cached), reading text files, a
length-bucketed batch sampler, and padding collate.

A sentence's length varies tenfold, so random batches are mostly padding; the sampler groups similar
lengths (inside random chunks, so that an epoch is still a random order) and shuffles the batches.
"""
from __future__ import annotations

import functools
import gzip
import hashlib
import json
import logging
import math
import os
import tempfile
import zlib
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import BatchSampler

from src.errors import UserError
from src.tokens import BOS_ID, EOS_ID, PAD_ID, SPECIAL_TOKENS, UNK, UNK_ID

log = logging.getLogger(__name__)


# -- tokenizers ----------------------------------------------------------------------------------------
def train_bpe(texts: Iterable[str], vocab_size: int, min_frequency: int = 2):
    """A BPE tokenizer learnt from `texts`: NFC normalisation, words marked by a leading "▁" (Metaspace) so
    that decoding restores the spaces exactly, and the four special tokens at ids 0-3."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE(unk_token=UNK))
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.Metaspace()
    tok.decoder = decoders.Metaspace()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, min_frequency=min_frequency,
                                  special_tokens=SPECIAL_TOKENS, show_progress=False)
    tok.train_from_iterator(texts, trainer=trainer)
    assert [tok.token_to_id(t) for t in SPECIAL_TOKENS] == [PAD_ID, BOS_ID, EOS_ID, UNK_ID]
    return tok


def train_word_level(texts: Iterable[str], vocab_size: int, min_frequency: int = 1, lowercase: bool = True):
    """A word-level tokenizer: NFKC (and lower-case) normalisation, words split at spaces and punctuation with
    English clitics kept whole ("doesn't" -> "doesn" "'t"; SST's "does n't" -> "does" "n't"), the vocab_size - 4
    most frequent words seen at least min_frequency times, and the four special tokens at ids 0-3; any other
    word is [UNK]."""
    from tokenizers import Regex, Tokenizer, models, pre_tokenizers, trainers

    tok = Tokenizer(models.WordLevel(unk_token=UNK))
    tok.normalizer = _normalizer(lowercase)
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.WhitespaceSplit(),
        pre_tokenizers.Split(Regex(r"(?i)n't\b|'(?:s|re|ve|ll|d|m|t)\b|\w+|[^\w\s]"), behavior="isolated")])
    trainer = trainers.WordLevelTrainer(vocab_size=vocab_size, min_frequency=min_frequency,
                                        special_tokens=SPECIAL_TOKENS, show_progress=False)
    tok.train_from_iterator(texts, trainer=trainer)
    assert [tok.token_to_id(t) for t in SPECIAL_TOKENS] == [PAD_ID, BOS_ID, EOS_ID, UNK_ID]
    return tok


def _normalizer(lowercase: bool):
    from tokenizers import normalizers

    return normalizers.Sequence([normalizers.NFKC(), normalizers.Lowercase()]) if lowercase else normalizers.NFKC()


def cache_key(settings: list, texts: Iterable[str]) -> str:
    """12 hex digits of a hash of all that determines a learnt tokenizer: its settings (with the tokenizers
    version) and every training text, so a cached tokenizer is never used for other data."""
    import tokenizers

    h = hashlib.sha256(json.dumps([tokenizers.__version__, *settings]).encode())
    for t in texts:
        h.update(t.encode("utf-8") + b"\n")
    return h.hexdigest()[:12]


def save_tokenizer(tok, path: Path) -> bool:
    """Save atomically (a crash or a second process never leaves half a file). False, with a note, when the
    folder cannot be written (a read-only shared copy of the data sets): the caller keeps the tokenizer in
    memory and learns it again at the next start."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".", suffix=".part")
    except OSError as e:
        log.warning("note: cannot cache the tokenizer in %s (%s); it is learnt again at each start", path.parent,
                    e.strerror)
        return False
    os.close(fd)
    try:
        tok.save(tmp)
        os.chmod(tmp, 0o644)  # mkstemp makes it private
        os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)
    return True


def cached_tokenizer(path: Path):
    """The tokenizer cached at path, or None when there is none or it cannot be read (a cut copy, another version's
    file): a damaged one is removed, to be learnt again."""
    from tokenizers import Tokenizer

    if not path.is_file():
        return None
    try:
        return Tokenizer.from_file(str(path))
    except Exception as e:  # noqa: BLE001 - the tokenizers library raises its own Exception
        log.warning("%s cannot be read (%s): learning the tokenizer again", path, str(e).splitlines()[0][:80])
        path.unlink(missing_ok=True)
        return None


@functools.lru_cache(maxsize=8)
def tokenizer_from_str(s: str):
    """Tokenizer.from_str, cached: predict.py rebuilds the tokenizer from the checkpoint for every input."""
    from tokenizers import Tokenizer

    return Tokenizer.from_str(s)


def encode(tok, text: str) -> list[int]:
    """Subword ids of `text`, no special tokens added."""
    return tok.encode(text, add_special_tokens=False).ids


class CharNgrams:
    """fastText's subword information (Bojanowski et al., 2017): the character n-grams of each token, with "<"
    and ">" marking its ends ("<bleak>" -> "<bl", "ble", ..., "eak>"), hashed into `buckets` ids (1-based:
    0 is padding). A word never seen in training still has n-grams seen in other words, so the model knows
    "unflinchingly" by its pieces rather than as [UNK]. The hash (CRC-32) is the same in every process.

    Called with a text and its tokens' character offsets (a tokenizers Encoding's), returns (tokens, K) int32
    ids, each row a token's n-grams padded with 0; at most `max_per_token` per token, shortest n first."""

    def __init__(self, min_n: int = 3, max_n: int = 5, buckets: int = 20000, lowercase: bool = True,
                 max_per_token: int = 32):
        self.min_n, self.max_n, self.buckets, self.lowercase = int(min_n), int(max_n), int(buckets), lowercase
        self.max_per_token = int(max_per_token)
        self._memo: dict[str, list[int]] = {}

    def token(self, piece: str) -> list[int]:
        ids = self._memo.get(piece)
        if ids is None:
            w = f"<{piece.lower() if self.lowercase else piece}>"
            ids = [zlib.crc32(w[i:i + n].encode("utf-8")) % self.buckets + 1
                   for n in range(self.min_n, self.max_n + 1) for i in range(len(w) - n + 1)]
            ids = self._memo[piece] = ids[:self.max_per_token] or [0]
        return ids

    def __call__(self, text: str, offsets: list[tuple[int, int]]) -> np.ndarray:
        rows = [self.token(text[a:b]) for a, b in offsets] or [[0]]
        out = np.zeros((len(rows), max(map(len, rows))), dtype=np.int32)
        for i, r in enumerate(rows):
            out[i, :len(r)] = r
        return out


# -- files ----------------------------------------------------------------------------------------------
def read_lines(path: Path, fix: str = "") -> list[str]:
    """The lines of a (gzipped) UTF-8 text file, without their line ends and otherwise untouched; `fix` ends
    the error message of an unreadable file.

    Split on "\\n" only: str.splitlines() would also split at the rare U+2028 or U+0085 inside a sentence
    and misalign two languages."""
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            text = f.read().decode("utf-8-sig")  # a byte-order mark is not text
    except (OSError, EOFError) as e:
        raise UserError(f"{path} is corrupt or truncated ({e}). {fix}".rstrip()) from None
    except UnicodeDecodeError as e:
        raise UserError(f"{path} is not UTF-8 text ({e}). {fix}".rstrip()) from None
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return [line.removesuffix("\r") for line in lines]


# -- batching ------------------------------------------------------------------------------------------
def _world(num_replicas: int | None, rank: int | None) -> tuple[int, int]:
    if num_replicas is not None:
        return num_replicas, rank or 0
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_world_size(), torch.distributed.get_rank()
    return 1, 0


class BucketBatchSampler(BatchSampler):
    """Batches of indices with similar lengths: the examples are shuffled, cut into chunks of
    batch_size * bucket_factor, sorted by length inside each chunk and cut into batches, and the batches are
    shuffled. The order depends only on (seed, epoch), so a resumed run sees what an uninterrupted one saw.

    shuffle=False (val/test): batches in order of decreasing length (the largest first, so that running
    out of memory shows at once), deterministic.

    Under torch.distributed each rank takes every world_size-th batch. Training drops the few batches that
    do not divide evenly (a different few each epoch); val/test re-cut the sorted examples into a multiple
    of world_size batches (each at most batch_size), so every example is evaluated exactly once and every
    rank runs the same number of steps.

    `sampler` is accepted and ignored: Lightning, under DDP, re-creates a batch sampler with a distributed
    sampler injected; this one splits the batches between ranks itself. `num_replicas`/`rank` override what
    torch.distributed says (for tests). Lightning calls set_epoch on `batch_sampler.sampler`, hence
    `self.sampler = self`.
    """

    def __init__(self, lengths: list[int], batch_size: int, seed: int = 0, shuffle: bool = True,
                 bucket_factor: int = 50, sampler=None, num_replicas: int | None = None, rank: int | None = None):
        if batch_size < 1:
            raise ValueError(f"batch_size={batch_size} should be a positive integer")
        if bucket_factor < 1:
            raise ValueError(f"bucket_factor={bucket_factor} should be a positive integer")
        self.lengths = np.asarray(lengths, dtype=np.int64)
        self.batch_size, self.seed, self.shuffle, self.bucket_factor = batch_size, seed, shuffle, bucket_factor
        self.num_replicas, self.rank = num_replicas, rank
        self.drop_last = False
        self.epoch = 0
        self.sampler = self

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _all_batches(self, world: int) -> list[np.ndarray]:
        n, bs = len(self.lengths), self.batch_size
        if not self.shuffle:
            order = np.argsort(-self.lengths, kind="stable")
            if world == 1:
                return [order[i:i + bs] for i in range(0, n, bs)]
            k = math.ceil(n / (bs * world)) * world
            return [b for b in np.array_split(order, k) if len(b)]
        rng = np.random.default_rng([self.seed, self.epoch])
        perm = rng.permutation(n)
        chunk = bs * self.bucket_factor
        batches = []
        for start in range(0, n, chunk):
            part = perm[start:start + chunk]
            part = part[np.argsort(self.lengths[part], kind="stable")]
            batches += [part[i:i + bs] for i in range(0, len(part), bs)]
        return [batches[i] for i in rng.permutation(len(batches))]

    def __iter__(self):
        world, rank = _world(self.num_replicas, self.rank)
        batches = self._all_batches(world)
        if world > 1:
            if self.shuffle:
                batches = batches[:len(batches) // world * world]
            batches = batches[rank::world]
        for b in batches:
            yield b.tolist()

    def __len__(self) -> int:
        world, rank = _world(self.num_replicas, self.rank)
        n, bs = len(self.lengths), self.batch_size
        if not self.shuffle:
            if world == 1:
                return math.ceil(n / bs)
            k = min(math.ceil(n / (bs * world)) * world, n)  # empty pieces are dropped
            return len(range(rank, k, world))
        chunk = bs * self.bucket_factor
        total = (n // chunk) * math.ceil(chunk / bs) + math.ceil((n % chunk) / bs)
        return total // world


def _pad(seqs: list[list[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    width = max((len(s) for s in seqs), default=0)
    out = torch.tensor([s + [pad_id] * (width - len(s)) for s in seqs], dtype=torch.long).view(len(seqs), width)
    return out, torch.tensor([len(s) for s in seqs], dtype=torch.long)


def collate_pairs(examples: list[dict], pad_id: int = PAD_ID) -> dict:
    """[{"src", "tgt", "src_text", "ref"}] -> {"src" (B, S), "src_len" (B,), "tgt" (B, T), "tgt_len" (B,),
    "src_text", "ref"}; ids padded with pad_id, texts kept as lists of strings (ref untouched, for sacreBLEU)."""
    src, src_len = _pad([e["src"] for e in examples], pad_id)
    tgt, tgt_len = _pad([e["tgt"] for e in examples], pad_id)
    return {"src": src, "src_len": src_len, "tgt": tgt, "tgt_len": tgt_len,
            "src_text": [e["src_text"] for e in examples], "ref": [e["ref"] for e in examples]}


SPLITS = ("train", "val", "test")


class TextSplits:
    """What the text data modules (translation, sentiment) share about their raw splits: a subclass says where
    they come from (`read_splits()`, after `prepare_files()` has downloaded or checked the files), and
    `splits()` reads them once per instance (prepare_data and setup both need them) and refuses an empty one.
    `check_splits` may refuse more."""

    _splits: dict | None = None

    def prepare_files(self) -> None:
        """Download or check the raw files (called before read_splits); nothing by default."""

    def read_splits(self) -> dict[str, list[tuple]]:
        """{"train": [...], "val": [...], "test": [...]}: raw examples."""
        raise NotImplementedError

    def check_splits(self, splits: dict[str, list[tuple]]) -> None:
        """Raise a UserError for splits this module cannot use; nothing by default."""

    def splits(self) -> dict[str, list[tuple]]:
        if self._splits is None:
            self.prepare_files()
            splits = self.read_splits()
            for split in SPLITS:
                if not splits.get(split):
                    raise UserError(f"{type(self).__name__}: the {split} split is empty.")
            self.check_splits(splits)
            self._splits = splits
        return self._splits


class BucketedLoaders:
    """The loaders of a LightningDataModule whose splits are lists of examples (`<split>_set`) with token
    counts in `self._lengths[split]`: length-bucketed batches (BucketBatchSampler) padded by `collate`, and
    tensors moved to the device while texts stay lists of strings. Mixed into the translation and text
    classification data modules."""

    collate = staticmethod(collate_pairs)
    batch_size: int
    num_workers: int
    _lengths: dict[str, list[int]]

    def _loader(self, split: str, train: bool):
        from torch.utils.data import DataLoader

        seed = int(os.environ.get("PL_GLOBAL_SEED", 0))
        sampler = BucketBatchSampler(self._lengths[split], self.batch_size, seed=seed, shuffle=train)
        if self.num_workers > 0:
            # the tokenizers were used with threads before the fork; the workers never tokenise
            os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
        # the loader's own generator: starting an epoch then draws nothing from the global generator, which
        # EpochReseed resets at each epoch start
        return DataLoader(getattr(self, f"{split}_set"), batch_sampler=sampler, collate_fn=self.collate,
                          num_workers=self.num_workers, persistent_workers=self.num_workers > 0,
                          generator=torch.Generator().manual_seed(seed))

    def train_dataloader(self):
        return self._loader("train", train=True)

    def val_dataloader(self):
        return self._loader("val", train=False)

    def test_dataloader(self):
        return self._loader("test", train=False)

    def transfer_batch_to_device(self, batch, device, dataloader_idx: int):
        """The tensors to the device; the texts stay lists of strings."""
        return {k: v.to(device, non_blocking=True) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}


def _is_file(text: str) -> bool:
    try:
        return Path(text).is_file()
    except (OSError, ValueError):  # a text longer than a file name can be, or holding a NUL
        return False


def input_text(raw: str) -> str:
    """A text given to predict: stripped, and refused when there is nothing to read."""
    text = str(raw).strip()
    if not text:
        raise UserError("the input is empty: give a sentence, e.g. input='a gorgeous, witty film'.")
    if "\n" not in text and _is_file(text):
        raise UserError(f"input={text} is a file, and this model reads text: give the sentence itself, or "
                        f"inputs={text} to predict each of its lines.")
    return text
