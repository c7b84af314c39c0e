"""What the translation data modules share: BPE tokenizers learnt on the training split (cached as JSON),
every pair encoded once, length-bucketed batches, and the tokenizers handed to the task through `info`.

A subclass only says where the raw (source, target) text pairs come from: `read_splits()`, and
`prepare_files()` when files must be downloaded or checked first (src.data.text.base.TextSplits).
"""
from __future__ import annotations

from pathlib import Path

from src.data.base import DataModule
from src.data.text.base import (
    BOS_ID,
    EOS_ID,
    PAD_ID,
    SPLITS,
    UNK_ID,
    BucketedLoaders,
    TextSplits,
    _pad,
    cache_key,
    cached_tokenizer,
    encode,
    input_text,
    save_tokenizer,
    tokenizer_from_str,
    train_bpe,
)
from src.errors import UserError

_CACHE_FORMAT = 1  # bump when train_bpe changes in a way that changes its output


class TranslationDataModule(TextSplits, BucketedLoaders, DataModule):
    """Base for translation data. `vocab_size` is per side, or the joint size with `shared_vocab`;
    `max_len` drops training pairs with more subword tokens on either side (val and test are kept whole)."""

    name = "translation"  # prefix of the cached tokenizers' file names

    def __init__(self, src_lang: str = "en", tgt_lang: str = "de", vocab_size: int = 500, shared_vocab: bool = False,
                 batch_size: int = 64, num_workers: int = 0, max_len: int = 100, data_dir: str = "data",
                 download: bool = True, min_frequency: int = 2, cache_dir: str | None = None):
        super().__init__()
        if src_lang == tgt_lang:
            raise ValueError(f"data.src_lang and data.tgt_lang are both {src_lang!r}: choose two languages")
        if batch_size < 1:
            raise ValueError(f"data.batch_size={batch_size} should be a positive integer")
        if vocab_size <= 4:
            raise ValueError(f"data.vocab_size={vocab_size} should be well above the 4 special tokens (e.g. 500)")
        if max_len < 1:
            raise ValueError(f"data.max_len={max_len} should be a positive number of subword tokens")
        if min_frequency < 1:
            raise ValueError(f"data.min_frequency={min_frequency} should be a positive integer")
        self.src_lang, self.tgt_lang = str(src_lang), str(tgt_lang)
        self.vocab_size, self.shared_vocab, self.min_frequency = int(vocab_size), bool(shared_vocab), int(min_frequency)
        self.batch_size, self.num_workers, self.max_len = int(batch_size), int(num_workers), int(max_len)
        self.data_dir, self.download = Path(data_dir), bool(download)
        # derived files (tokenizers) go here, not into data_dir, which may be a read-only shared copy
        self.cache_dir = Path(cache_dir) if cache_dir else self.data_dir / "cache"
        self.src_tok = self.tgt_tok = None
        self.train_set = self.val_set = self.test_set = None
        self._lengths: dict[str, list[int]] = {}
        self._uncached: dict = {}  # side -> tokenizer that could not be written to cache_dir
        self._given: tuple | None = None  # (src, tgt) tokenizers from a checkpoint (use_info)

    # subclasses implement read_splits() -> {"train": [(source, target), ...], "val": ..., "test": ...} of raw
    # text, and prepare_files() when files must be downloaded or checked first (src.data.text.base.TextSplits)

    # tokenizers -------------------------------------------------------------------------------------
    def _tokenizer_plan(self) -> dict[str, tuple[Path, list[str]]]:
        """side ("src", "tgt" or "joint") -> (cache file, training texts). The file name holds a hash of all
        that determines the tokenizer: the texts, vocab_size, min_frequency and the tokenizers version."""
        train = self.splits()["train"]
        src, tgt = [s for s, _ in train], [t for _, t in train]
        sides = ({"joint": (f"{self.src_lang}+{self.tgt_lang}", src + tgt)} if self.shared_vocab
                 else {"src": (self.src_lang, src), "tgt": (self.tgt_lang, tgt)})
        plan = {}
        for side, (label, texts) in sides.items():
            key = cache_key([_CACHE_FORMAT, self.vocab_size, self.min_frequency, label], texts)
            plan[side] = (self.cache_dir / "tokenizers" / f"{self.name}-{label}-{key}.json", texts)
        return plan

    def use_info(self, info: dict) -> None:
        """Encode with the tokenizers a checkpoint carries (eval.py), not ones learnt or cached here."""
        self._given = (tokenizer_from_str(info["src_tokenizer"]), tokenizer_from_str(info["tgt_tokenizer"]))

    # Lightning hooks --------------------------------------------------------------------------------
    def prepare_data(self) -> None:
        """Files, then tokenizers learnt on the training split and cached (atomically: a crash or a second
        process never leaves half a file). Cheap when the cache is there."""
        if self._given:
            self.splits()  # the files only
            return
        for side, (path, texts) in self._tokenizer_plan().items():
            if side in self._uncached or cached_tokenizer(path) is not None:
                continue
            tok = train_bpe(texts, self.vocab_size, self.min_frequency)
            if not save_tokenizer(tok, path):
                self._uncached[side] = tok

    def setup(self, stage: str | None = None) -> None:
        if self.train_set is not None:
            return
        from tokenizers import Tokenizer

        if self._given:
            self.src_tok, self.tgt_tok = self._given
        else:
            plan = self._tokenizer_plan()
            if not all(side in self._uncached or cached_tokenizer(path) is not None
                       for side, (path, _) in plan.items()):
                self.prepare_data()
            toks = {side: self._uncached.get(side) or Tokenizer.from_file(str(path))
                    for side, (path, _) in plan.items()}
            self.src_tok = toks.get("src", toks.get("joint"))
            self.tgt_tok = toks.get("tgt", toks.get("joint"))
        for split, pairs in self.splits().items():
            if split not in SPLITS:
                continue
            srcs, tgts = [s for s, _ in pairs], [t for _, t in pairs]
            src_ids = [e.ids for e in self.src_tok.encode_batch(srcs, add_special_tokens=False)]
            tgt_ids = [e.ids for e in self.tgt_tok.encode_batch(tgts, add_special_tokens=False)]
            examples = [{"src": s + [EOS_ID], "tgt": [BOS_ID] + t + [EOS_ID], "src_text": st, "ref": tt}
                        for s, t, st, tt in zip(src_ids, tgt_ids, srcs, tgts)
                        if split != "train" or (len(s) <= self.max_len and len(t) <= self.max_len)]
            if not examples:
                raise UserError(f"{type(self).__name__}: every training pair has more than data.max_len="
                                f"{self.max_len} subword tokens on one side; raise data.max_len.")
            setattr(self, f"{split}_set", examples)
            self._lengths[split] = [len(e["src"]) + len(e["tgt"]) for e in examples]

    @property
    def info(self) -> dict:
        """What the task needs to build its model and read its outputs; stored in the checkpoint."""
        self.setup()
        return {"src_lang": self.src_lang, "tgt_lang": self.tgt_lang,
                "src_tokenizer": self.src_tok.to_str(), "tgt_tokenizer": self.tgt_tok.to_str(),
                "src_vocab_size": self.src_tok.get_vocab_size(), "tgt_vocab_size": self.tgt_tok.get_vocab_size(),
                "shared_vocab": self.shared_vocab, "pad_id": PAD_ID, "bos_id": BOS_ID, "eos_id": EOS_ID,
                "unk_id": UNK_ID}

    # inference -------------------------------------------------------------------------------------
    @classmethod
    def example_inputs(cls, info: dict) -> list[dict]:
        return [cls.read_input("twenty-three thousand, four hundred and five", info), cls.read_input("one", info)]

    @staticmethod
    def input_spec(info: dict) -> dict:
        return {"kind": "text", "src_lang": info["src_lang"], "tgt_lang": info["tgt_lang"],
                "steps": ["strip the sentence (an empty one is refused)",
                          "encode it with src_tokenizer.json (encode(text, add_special_tokens=False).ids) and "
                          "append eos_id",
                          "src (batch, source) int64, rows padded with pad_id; src_len (batch,) int64",
                          "decode: translate.py (encoder once, then the decoder step per token, beam search)",
                          "text: tgt_tokenizer.json decode of the ids before the first eos_id, special ids "
                          "(below special_tokens) dropped"]}

    @staticmethod
    def read_input(raw: str, info: dict) -> dict:
        """One source sentence -> {"src": ids ending with EOS, "src_text": raw}, with the checkpoint's tokenizer."""
        tok = tokenizer_from_str(info["src_tokenizer"])
        return {"src": encode(tok, input_text(raw)) + [info["eos_id"]], "src_text": raw}

    @staticmethod
    def collate_inputs(samples: list[dict], info: dict) -> dict:
        """read_input() results -> {"src" (B, S), "src_len" (B,), "src_text"}, as collate_pairs pads them."""
        src, src_len = _pad([s["src"] for s in samples], info["pad_id"])
        return {"src": src, "src_len": src_len, "src_text": [s["src_text"] for s in samples]}
