"""Multi30k task 1 (Elliott et al., 2016): Flickr30k image captions translated between English, German,
French and Czech; 29,000 train, 1,014 val and 1,000 test (test_2016_flickr) sentences.

Read from <data_dir>/multi30k/{train,val,test_2016_flickr}.<lang>.gz, one sentence a line, aligned, as the
data set's own repository publishes them (data/task1/raw/); downloaded from there when missing.
"""
from __future__ import annotations

from pathlib import Path

from src.data.download import fetch
from src.data.text.base import read_lines
from src.data.text.translation import TranslationDataModule
from src.errors import UserError

LANGS = ("en", "de", "fr", "cs")
PREFIXES = {"train": "train", "val": "val", "test": "test_2016_flickr"}
# the last commit of github.com/multi30k/dataset that changed data/task1/raw/ (9 Nov 2020), so the files
# cannot change under us
COMMIT = "c40b37b23d6387214f8ab37335b5a8672b9745f2"
URLS = [f"https://raw.githubusercontent.com/multi30k/dataset/{COMMIT}/data/task1/raw/",
        f"https://github.com/multi30k/dataset/raw/{COMMIT}/data/task1/raw/"]
# MD5 of the files at COMMIT, computed from the repository's blobs; the copies in ../shared/data/multi30k
# have the same sums
MD5 = {"train.en.gz": "0065d13af80720a55ca8153d126e6627", "train.de.gz": "81ff90b99829c0cd4b1b587d394afd39",
       "train.fr.gz": "6cb767741dcad3931f966fefbc05203f", "train.cs.gz": "d9a5fc268917725a2b0efce3a0cc8607",
       "val.en.gz": "2b69aa9253948ac9f67e94917272dd40", "val.de.gz": "6e0e229eb049e3fc99a1ef02fb2d5f91",
       "val.fr.gz": "93fc564584b7e5ba410c761ea5a1c682", "val.cs.gz": "83cdc082f646b769095615384cf5c0ca",
       "test_2016_flickr.en.gz": "ff2c0fcb4893a13bd73414306bc250ae",
       "test_2016_flickr.de.gz": "efd67d314d98489b716b145475101932",
       "test_2016_flickr.fr.gz": "08dc7cd4a662f31718412de95ca9bfe3",
       "test_2016_flickr.cs.gz": "3104872229daa1bef3b401d44dd2220b"}
_REFETCH = "delete it and let data.download=true fetch it again."


class Multi30kDataModule(TranslationDataModule):
    name = "multi30k"

    def __init__(self, src_lang: str = "de", tgt_lang: str = "en", vocab_size: int = 8000,
                 shared_vocab: bool = True, **kwargs):
        super().__init__(src_lang=src_lang, tgt_lang=tgt_lang, vocab_size=vocab_size, shared_vocab=shared_vocab,
                         **kwargs)
        for key, lang in (("src_lang", src_lang), ("tgt_lang", tgt_lang)):
            if lang not in LANGS:
                raise ValueError(f"data.{key}={lang} is not a language of Multi30k: choose from {', '.join(LANGS)}")

    @property
    def folder(self) -> Path:
        return self.data_dir / "multi30k"

    @property
    def files(self) -> list[str]:
        return [f"{p}.{lang}.gz" for p in PREFIXES.values() for lang in (self.src_lang, self.tgt_lang)]

    def prepare_files(self) -> None:
        """Download the missing files (MD5-checked) when data.download is true; name them otherwise."""
        missing = [f for f in self.files if not (self.folder / f).is_file()]
        if missing and self.download:
            for f in missing:
                try:
                    fetch([u + f for u in URLS], self.folder / f, MD5[f])
                except OSError as e:
                    raise UserError(f"Multi30kDataModule: could not download {f} ({e}). Put {', '.join(self.files)} "
                                    f"(from github.com/multi30k/dataset, data/task1/raw/) in {self.folder} "
                                    f"(data.data_dir=<the folder above multi30k/>), or train on data=numbers, "
                                    f"which needs no download.") from None
            missing = [f for f in self.files if not (self.folder / f).is_file()]
        if missing:
            raise UserError(f"Multi30kDataModule: {self.folder} lacks {', '.join(missing)}. Set data.download=true "
                            f"to fetch them from github.com/multi30k/dataset, point data.data_dir at a folder that "
                            f"holds multi30k/ (e.g. data.data_dir=../shared/data), or train on data=numbers, which "
                            f"needs no download.")

    def read_splits(self) -> dict[str, list[tuple[str, str]]]:
        splits = {}
        for split, prefix in PREFIXES.items():
            src_path = self.folder / f"{prefix}.{self.src_lang}.gz"
            tgt_path = self.folder / f"{prefix}.{self.tgt_lang}.gz"
            src, tgt = read_lines(src_path, _REFETCH), read_lines(tgt_path, _REFETCH)
            if len(src) != len(tgt):
                raise UserError(f"{src_path} has {len(src)} lines but {tgt_path} has {len(tgt)}: the files are not "
                                f"aligned. Delete both and let data.download=true fetch them again.")
            splits[split] = list(zip(src, tgt))
        return splits
