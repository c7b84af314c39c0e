"""What the speech data modules share: reading audio, fixed-length int16 clips in memory, seeded shuffling,
and waveform augmentation on the device.

Audio is read with soundfile (torchaudio 2.11's `load` needs torchcodec and FFmpeg), mixed to mono,
resampled with torchaudio.functional.resample to one rate, trimmed of leading and trailing silence and
centred in a window of fixed length. Clips stay int16 (N, L) in memory, so a batch is one gather; the task
turns them into features (log-Mel or MFCC) on the device.
"""
from __future__ import annotations

import hashlib
import os
from pathlib import Path

import torch
from torch.utils.data import Dataset

from src.data.download import save_atomically
from src.data.memory import InMemoryDataModule
from src.errors import UserError


# -- reading and shaping -----------------------------------------------------------------------------
def read_audio(path: str | Path, sample_rate: int) -> torch.Tensor:
    """A sound file -> float32 mono waveform in [-1, 1] at `sample_rate`."""
    import soundfile as sf

    try:
        data, rate = sf.read(str(path), dtype="float32", always_2d=True)
    except FileNotFoundError:
        raise UserError(f"{path}: no such file") from None
    except (RuntimeError, sf.LibsndfileError, OSError) as e:
        raise UserError(f"{path}: not an audio file soundfile can read ({e}); delete or replace it") from None
    if data.shape[0] == 0:
        raise UserError(f"{path}: holds no samples (a recording of length 0); delete or replace it")
    x = torch.from_numpy(data.mean(axis=1))
    return resample(x, rate, sample_rate)


def resample(x: torch.Tensor, rate: int, sample_rate: int) -> torch.Tensor:
    """Resample the last dimension from `rate` to `sample_rate` (band-limited sinc, torchaudio)."""
    if rate == sample_rate:
        return x
    import torchaudio.functional as AF

    return AF.resample(x, int(rate), int(sample_rate))


def trim_silence(x: torch.Tensor, top_db: float | None, sample_rate: int = 16000) -> torch.Tensor:
    """Drop leading and trailing 10 ms frames quieter than `top_db` below the loudest frame (None: keep all)."""
    frame = max(1, sample_rate // 100)
    if top_db is None or x.numel() < frame:
        return x
    n = -(-x.numel() // frame)
    energy = torch.nn.functional.pad(x, (0, n * frame - x.numel())).reshape(n, frame).pow(2).mean(1)
    db = 10 * torch.log10(energy.clamp_min(1e-10))
    loud = torch.nonzero(db > db.max() - top_db).flatten()
    if loud.numel() == 0:
        return x
    return x[int(loud[0]) * frame: (int(loud[-1]) + 1) * frame]


def fit_length(x: torch.Tensor, length: int) -> torch.Tensor:
    """Centre a clip in `length` samples: zero-padded on both sides, or its middle cut out."""
    n = x.numel()
    if n >= length:
        start = (n - length) // 2
        return x[start:start + length]
    left = (length - n) // 2
    return torch.nn.functional.pad(x, (left, length - n - left))


def to_int16(x: torch.Tensor) -> torch.Tensor:
    """[-1, 1] float -> int16 (x * 32768, rounded and clipped); from_int16 is its inverse."""
    return (x * 32768).round().clamp(-32768, 32767).to(torch.int16)


def from_int16(x: torch.Tensor) -> torch.Tensor:
    return x.float() / 32768.0


def prepare_clip(x: torch.Tensor, length: int, trim_db: float | None, sample_rate: int = 16000) -> torch.Tensor:
    """float waveform -> int16 clip of `length` samples, silence trimmed and the word centred."""
    return to_int16(fit_length(trim_silence(x.float(), trim_db, sample_rate), length))


def load_clips(paths: list[Path], sample_rate: int, length: int, trim_db: float | None) -> torch.Tensor:
    """Read, resample, trim and fit many files -> int16 (N, length)."""
    out = torch.zeros(len(paths), length, dtype=torch.int16)
    for i, p in enumerate(paths):
        out[i] = prepare_clip(read_audio(p, sample_rate), length, trim_db, sample_rate)
    return out


def cached_clips(paths: list[Path], sample_rate: int, length: int, trim_db: float | None,
                 cache_dir: str | Path | None, name: str) -> torch.Tensor:
    """load_clips, kept in `cache_dir` as one int16 tensor. The key covers every file's path, size and
    mtime and the rate, length and trim, so a changed, added or removed file (or option) reads afresh.
    `cache_dir=None` reads without caching."""
    if cache_dir is None:
        return _read_all(paths, sample_rate, length, trim_db, name)
    h = hashlib.md5(f"{sample_rate}:{length}:{trim_db}\n".encode())
    for p in paths:
        try:
            st = p.stat()
        except FileNotFoundError:
            raise UserError(f"{p}: no such file") from None
        h.update(f"{os.path.abspath(p)}:{st.st_size}:{st.st_mtime_ns}\n".encode())
    cache = Path(cache_dir) / "audio" / f"{name}-{sample_rate}Hz-{length}-{h.hexdigest()[:16]}.pt"
    if (clips := _read_cache(cache, (len(paths), length))) is not None:
        return clips
    clips = _read_all(paths, sample_rate, length, trim_db, name)
    save_atomically(clips, cache)
    return clips


def _read_cache(cache: Path, shape: tuple[int, int]) -> torch.Tensor | None:
    """The cached clips, or None when there are none or they are damaged (then they are read again)."""
    if not cache.is_file():
        return None
    try:
        clips = torch.load(cache, weights_only=True)
    except Exception:  # noqa: BLE001 - a truncated or garbled file fails in many ways (IndexError, ...)
        return None
    ok = isinstance(clips, torch.Tensor) and clips.dtype == torch.int16 and tuple(clips.shape) == shape
    return clips if ok else None


def _read_all(paths: list[Path], sample_rate: int, length: int, trim_db: float | None, name: str) -> torch.Tensor:
    """load_clips, in chunks under a progress bar when there are many files."""
    if len(paths) <= 2000:
        return load_clips(paths, sample_rate, length, trim_db)
    from rich.progress import track

    chunks = [paths[i:i + 1000] for i in range(0, len(paths), 1000)]
    return torch.cat([load_clips(c, sample_rate, length, trim_db)
                      for c in track(chunks, description=f"reading {name} audio", transient=True)])



# -- datasets ----------------------------------------------------------------------------------------
class Waveforms(Dataset):
    """int16 clips (N, L) and int64 labels; a batch of indices is one gather."""

    def __init__(self, clips: torch.Tensor, labels: torch.Tensor):
        assert clips.dtype == torch.int16 and clips.ndim == 2, (clips.dtype, clips.shape)
        assert len(clips) == len(labels), (len(clips), len(labels))
        self.clips, self.labels = clips, labels.long()

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, i):
        return self.clips[i], self.labels[i]

    def __getitems__(self, indices):
        idx = torch.as_tensor(indices)
        return self.clips[idx], self.labels[idx]


class AudioDataModule(InMemoryDataModule):
    """Base for spoken-word classification. Subclasses set train_set/val_set/test_set (Waveforms) and
    class_names in `load()`; they may add more test sets to `extra_test_sets` (name -> Waveforms), which
    are scored after the test split under their own prefix (e.g. real/acc), never used to choose anything.
    """

    def __init__(self, sample_rate: int = 16000, clip_seconds: float = 1.0, trim_db: float | None = 40.0,
                 batch_size: int = 128, pin_memory: bool = False, augment: dict | None = None):
        super().__init__(batch_size, pin_memory)
        if sample_rate < 4000:
            raise ValueError(f"data.sample_rate={sample_rate}: use at least 4000 Hz (16000 is usual)")
        if not 0.1 <= clip_seconds <= 30:
            raise ValueError(f"data.clip_seconds={clip_seconds} should be between 0.1 and 30")
        self.sample_rate, self.clip_seconds, self.trim_db = int(sample_rate), float(clip_seconds), trim_db
        self.augment = dict(augment or {})
        self.class_names: list[str] = []
        self.extra_test_sets: dict[str, Waveforms] = {}

    @property
    def num_samples(self) -> int:
        return int(round(self.sample_rate * self.clip_seconds))

    @property
    def info(self) -> dict:
        """What the task needs (stored in the checkpoint): labels, rate and length, and the test sets' names."""
        self.setup()
        return {"class_names": list(self.class_names), "sample_rate": self.sample_rate,
                "num_samples": self.num_samples, "trim_db": self.trim_db,
                "test_sets": ["test", *self.extra_test_sets]}

    def test_dataloader(self):
        sets = [self.test_set, *self.extra_test_sets.values()]
        loaders = [self._loader(s, train=False) for s in sets]
        return loaders[0] if len(loaders) == 1 else loaders

    def on_after_batch_transfer(self, batch, dataloader_idx: int):
        """int16 -> float in [-1, 1]; training batches are augmented (src/data/audio/augment.py) on their device."""
        x, y = batch
        x = from_int16(x) if x.dtype == torch.int16 else x
        if self.trainer is not None and self.trainer.training and self.augment:
            from src.data.audio.augment import augment_waveforms

            x = augment_waveforms(x, self.sample_rate, **self.augment)
        return x, y

    # inference -------------------------------------------------------------------------------------
    @staticmethod
    def example_inputs(info: dict) -> list[torch.Tensor]:
        n = info["num_samples"]
        t = torch.arange(n, dtype=torch.float32) / info["sample_rate"]
        return [torch.zeros(n), 0.1 * torch.sin(2 * torch.pi * 440 * t)]

    @staticmethod
    def input_spec(info: dict) -> dict:
        return {"kind": "audio", "sample_rate": info["sample_rate"], "num_samples": info["num_samples"],
                "trim_db": info.get("trim_db"),
                "steps": ["read the file as float32 and average its channels (mono)",
                          f"resample to {info['sample_rate']} Hz",
                          "trim leading and trailing 10 ms frames quieter than trim_db below the loudest "
                          "(src/data/audio/base.py trim_silence)" if info.get("trim_db") is not None else
                          "no trimming",
                          f"centre the clip in {info['num_samples']} samples, cutting or padding with zeros, then "
                          f"round to 16-bit (x * 32768, clamped) and divide by 32768",
                          "float32 (batch, num_samples); the log-Mel/MFCC features are inside the model"]}

    @staticmethod
    def read_input(path: str, info: dict) -> torch.Tensor:
        """One audio file -> float32 clip, shaped the way the model was trained (rate, trim, length)."""
        rate = info["sample_rate"]
        return from_int16(prepare_clip(read_audio(path, rate), info["num_samples"], info.get("trim_db"), rate))

