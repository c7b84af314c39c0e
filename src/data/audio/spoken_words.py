"""Spoken keywords synthesised offline by espeak-ng: the speech task's default data, no download.

Every voice is an English accent (en-us, en-gb-x-rp, en-gb-scotland, ...) combined with one of espeak-ng's
speaker variants (m1, f4, klatt, croak, ...; 96 of the 105, leaving out the 9 whose breathy noise source is not
reproducible from run to run). The *variants* are split three ways, so validation and
test speakers are never heard in training, in any accent. Each (voice, word) is spoken `per_voice` times
at a random rate, pitch, pitch range and intonation; background noise is mixed in at random SNRs. The set
is generated once in `prepare_data` (a few seconds on two cores), cached in `cache_dir` with a checksum,
and identical for the same options and seed.

With `words: digits` and `real_dir` pointing at Free Spoken Digit Dataset recordings, the model is also
scored on those real voices (`real/acc`), which it never trains on and never selects a checkpoint on.
"""
from __future__ import annotations

import hashlib
import json
import logging
import time
import zlib
from pathlib import Path

import numpy as np
import torch

from src.data.audio.base import AudioDataModule, Waveforms, fit_length, to_int16, trim_silence
from src.data.download import save_atomically
from src.errors import UserError

WORDS = {"commands": ["yes", "no", "up", "down", "left", "right", "on", "off", "stop", "go"],
         "digits": ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]}
_FORMAT = 2  # bump when the generation changes, so old caches are not reused
# variants whose samples differ between two generations even from espeak-ng's initial state (an internal noise
# source: whispering and breathy voices), found by generating every variant three times
UNREPRODUCIBLE = ["Alicia", "Demonic", "f2", "f3", "f5", "sandro", "victor", "whisper", "whisperf"]

log = logging.getLogger(__name__)


def _pair(x, name: str) -> tuple[float, float]:
    lo, hi = (x, x) if isinstance(x, (int, float)) else tuple(x)
    if lo > hi:
        raise ValueError(f"data.{name}={list(x)}: give [low, high]")
    return float(lo), float(hi)


class SpokenWordsDataModule(AudioDataModule):
    def __init__(self, words: str | list[str] = "commands", languages: list[str] | None = None,
                 variants: list[str] | None = None, exclude_variants: list[str] | None = None, per_voice: int = 2,
                 rate: list[int] = (130, 220), pitch: list[int] = (20, 80), pitch_range: list[int] = (20, 90),
                 val_voices: float = 0.1, test_voices: float = 0.15, noise_p: float = 0.8,
                 snr_db: list[float] = (5, 40), noise_where: str = "all", seed: int = 0, real_dir: str | None = None,
                 cache_dir: str = "data/cache", **kwargs):
        super().__init__(**kwargs)
        from src.data.audio.espeak import ENGLISH

        if isinstance(words, str):
            if words not in WORDS:
                raise ValueError(f"data.words={words}: choose {' or '.join(WORDS)}, or give a list of words")
            self.words = list(WORDS[words])
        else:
            self.words = [str(w) for w in words]
        if len(self.words) < 2 or len(set(self.words)) != len(self.words):
            raise ValueError(f"data.words={self.words}: give at least two different words")
        self.languages = list(languages or ENGLISH)
        self.variant_names = list(variants) if variants else None
        self.exclude_variants = list(exclude_variants or [])
        if per_voice < 1:
            raise ValueError(f"data.per_voice={per_voice} should be at least 1")
        if not (0 < val_voices < 1 and 0 < test_voices < 1 and val_voices + test_voices < 1):
            raise ValueError(f"data.val_voices={val_voices} and data.test_voices={test_voices} should be fractions "
                             f"of the voices that leave some for training")
        self.per_voice = int(per_voice)
        self.rate, self.pitch = _pair(rate, "rate"), _pair(pitch, "pitch")
        self.pitch_range = _pair(pitch_range, "pitch_range")
        self.val_voices, self.test_voices = float(val_voices), float(test_voices)
        self.noise_p, self.snr_db = float(noise_p), _pair(snr_db, "snr_db")
        if noise_where not in ("all", "word"):
            raise ValueError(f"data.noise_where={noise_where}: choose all or word")
        self.noise_where = noise_where
        self.seed = int(seed)
        self.real_dir = Path(real_dir) if real_dir else None
        if self.real_dir is not None and self.words != WORDS["digits"]:
            raise ValueError("data.real_dir scores the model on Free Spoken Digit Dataset recordings: it needs "
                             "data.words=digits")
        self.cache_dir = Path(cache_dir)

    # -- the voices and their split --------------------------------------------------------------------
    def _variants(self) -> list[str]:
        from src.data.audio.espeak import variants

        available = variants()
        chosen = self.variant_names or available
        unknown = sorted(set(chosen) - set(available))
        if unknown:
            raise UserError(f"data.variants: espeak-ng has no variant {', '.join(unknown)} "
                            f"(it has {', '.join(available)})")
        bad = sorted(set(chosen) & set(UNREPRODUCIBLE)) if self.variant_names else []
        if bad:
            raise UserError(f"data.variants: {', '.join(bad)} are not reproducible (espeak-ng's breathy voices draw "
                            f"on a noise source that differs from run to run); leave them out")
        return [v for v in chosen if v not in set(self.exclude_variants) | set(UNREPRODUCIBLE)]

    def voice_split(self) -> dict[str, list[str]]:
        """Variants for train, val and test (disjoint); the plain accents without a variant train."""
        names = self._variants()
        order = np.random.default_rng(self.seed).permutation(len(names))
        n_test = max(1, int(round(self.test_voices * len(names))))
        n_val = max(1, int(round(self.val_voices * len(names))))
        if n_test + n_val >= len(names):
            raise UserError(f"data: {len(names)} voice variants are too few for a train/val/test split by voice")
        shuffled = [names[i] for i in order]
        return {"test": sorted(shuffled[:n_test]), "val": sorted(shuffled[n_test:n_test + n_val]),
                "train": ["", *sorted(shuffled[n_test + n_val:])]}

    def _plan(self, variant: str) -> list[tuple]:
        """What one variant says, in every accent: (text, voice, rate, pitch, pitch range, label)."""
        rng = np.random.default_rng([self.seed, zlib.crc32(variant.encode())])
        items = []
        for lang in self.languages:
            voice = f"{lang}+{variant}" if variant else lang
            for label, word in enumerate(self.words):
                for _ in range(self.per_voice):
                    text = word + str(rng.choice(["", ".", "!", "?"]))  # statement, exclamation, question
                    items.append((text, voice, int(rng.integers(self.rate[0], self.rate[1] + 1)),
                                  int(rng.integers(self.pitch[0], self.pitch[1] + 1)),
                                  int(rng.integers(self.pitch_range[0], self.pitch_range[1] + 1)), label))
        return items

    # -- cache -------------------------------------------------------------------------------------------
    def _key(self) -> str:
        from importlib.metadata import version

        spec = {"format": _FORMAT, "espeak": version("espeakng-loader"), "words": self.words,
                "languages": self.languages, "split": self.voice_split(), "per_voice": self.per_voice,
                "rate": self.rate, "pitch": self.pitch, "range": self.pitch_range, "noise_p": self.noise_p,
                "noise_where": self.noise_where,
                "snr_db": self.snr_db, "seed": self.seed, "sample_rate": self.sample_rate,
                "num_samples": self.num_samples, "trim_db": self.trim_db}
        return hashlib.sha1(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:16]

    @property
    def cache_path(self) -> Path:
        return self.cache_dir / "spoken_words" / f"{self._key()}.pt"

    @staticmethod
    def checksum(clips: torch.Tensor, labels: torch.Tensor) -> str:
        h = hashlib.md5(clips.contiguous().numpy().tobytes())
        h.update(labels.numpy().astype(np.int64).tobytes())
        return h.hexdigest()

    def prepare_data(self) -> None:
        if not self.cache_path.is_file():
            self.generate(self.cache_path)

    def generate(self, path: Path) -> dict:
        """Synthesise the whole set (a fresh espeak-ng process per variant) and save it to `path`."""
        from src.data.audio.espeak import synthesise

        split = self.voice_split()
        jobs = [(name, v) for name in ("train", "val", "test") for v in split[name]]
        plans = [self._plan(v) for _, v in jobs]
        start, last = time.time(), [0.0]

        def progress(done, total):
            if time.time() - last[0] > 5 or done == total:
                last[0] = time.time()
                log.info("spoken_words: synthesised %d/%d voice variants (%.0f s)", done, total, time.time() - start)

        import torchaudio

        clips, labels, splits, voices = [], [], [], []
        resamplers = {}
        for i, rate, waves in synthesise([[item[:5] for item in plan] for plan in plans], progress=progress):
            longest = max(len(w) for w in waves)
            batch = torch.zeros(len(waves), longest)
            for j, w in enumerate(waves):
                batch[j, :len(w)] = torch.from_numpy(w.astype(np.float32) / 32768.0)
            if rate != self.sample_rate:  # one resampling kernel for the whole set
                resamplers.setdefault(rate, torchaudio.transforms.Resample(rate, self.sample_rate))
                batch = resamplers[rate](batch)
            lengths = [int(np.ceil(len(w) * self.sample_rate / rate)) for w in waves]
            for j, item in enumerate(plans[i]):
                clips.append(fit_length(trim_silence(batch[j, :lengths[j]], self.trim_db, self.sample_rate),
                                        self.num_samples))
                labels.append(item[5])
                splits.append(("train", "val", "test").index(jobs[i][0]))
                voices.append(item[1])
        x = torch.stack(clips)
        if self.noise_p > 0:  # background noise at random SNRs, the same for the same seed
            from src.data.audio.augment import augment_waveforms

            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(self.seed)
                x = augment_waveforms(x, self.sample_rate, noise_p=self.noise_p, snr_db=self.snr_db,
                                      noise_where=self.noise_where)
        data = {"clips": to_int16(x / x.abs().amax(1, keepdim=True).clamp_min(1.0)),
                "labels": torch.tensor(labels, dtype=torch.long), "split": torch.tensor(splits, dtype=torch.int8),
                "voices": voices, "words": self.words}
        data["md5"] = self.checksum(data["clips"], data["labels"])
        save_atomically(data, path)
        return data

    def _read_cache(self) -> dict:
        path = self.cache_path
        try:
            data = torch.load(path, weights_only=True)
            ok = self.checksum(data["clips"], data["labels"]) == data["md5"]
        except (OSError, RuntimeError, KeyError, EOFError) as e:
            raise UserError(f"{path}: unreadable cache of synthesised speech ({e}): delete it and run again "
                            f"to regenerate it") from None
        if not ok:
            raise UserError(f"{path}: the cached speech does not match its checksum: delete it and run again "
                            f"to regenerate it")
        return data

    # -- Lightning ---------------------------------------------------------------------------------------
    def load(self) -> None:
        self.prepare_data()
        data = self._read_cache()
        for k, name in enumerate(("train", "val", "test")):
            mask = data["split"] == k
            setattr(self, f"{name}_set", Waveforms(data["clips"][mask], data["labels"][mask]))
        self.class_names = list(self.words)
        if self.real_dir is not None:
            from src.data.audio.fsdd import FSDDDataModule

            clips, labels, _ = FSDDDataModule.read_folder(self.real_dir, self.sample_rate, self.num_samples,
                                                          self.trim_db, cache_dir=self.cache_dir)
            self.extra_test_sets = {"real": Waveforms(clips, labels)}
