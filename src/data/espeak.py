"""A small ctypes binding to espeak-ng, from the `espeakng-loader` wheel (library and voices bundled).

espeak-ng keeps internal state (pitch flutter, the noise source of breathy and whispering voices) that
carries from one utterance to the next and is not reset by espeak_Initialize or srand. A process that
starts fresh and synthesises the same list in the same order produces the same samples, so `synthesise`
runs each list in a process that starts from espeak-ng's initial state: the output depends only on the list.
"""
from __future__ import annotations

import ctypes
import multiprocessing as mp
import os
import pickle
from pathlib import Path

import numpy as np

_AUDIO_OUTPUT_SYNCHRONOUS = 2
_espeakRATE, _espeakVOLUME, _espeakPITCH, _espeakRANGE = 1, 2, 3, 4
_CALLBACK = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.c_void_p)

# the English voices of espeak-ng (accents); en-Shaw is the Shavian alphabet and is left out
ENGLISH = ["en-us", "en", "en-gb-x-rp", "en-gb-scotland", "en-gb-x-gbclan", "en-gb-x-gbcwmd", "en-029",
           "en-us-nyc"]


def _paths() -> tuple[str, str]:
    try:
        import espeakng_loader
    except ImportError:
        from src.errors import UserError

        raise UserError("data=spoken_words needs the espeakng-loader package: run `uv sync` (it is a project "
                        "dependency) or `pip install espeakng-loader`") from None
    return espeakng_loader.get_library_path(), espeakng_loader.get_data_path()


def variants() -> list[str]:
    """The voice variants (speaker characteristics) the wheel ships, sorted: m1, f1, klatt, croak, ..."""
    return sorted(p.name for p in (Path(_paths()[1]) / "voices" / "!v").iterdir() if p.is_file())


def random_variant(rng: np.random.Generator, name: str) -> str:
    """A new speaker: an espeak-ng variant file with random vocal-tract length (every formant scaled by one
    factor, then each jittered), formant strengths and widths, pitch, voicing, roughness, room echo and,
    for some, the Klatt synthesiser. No `breath`: its noise source is not reproducible."""
    warp = rng.uniform(0.8, 1.25)
    base = float(np.exp(rng.uniform(np.log(70), np.log(240))))
    lines = ["language variant", f"name {name}", f"pitch {base:.0f} {base * rng.uniform(1.15, 1.9):.0f}",
             f"flutter {rng.integers(0, 40)}", f"roughness {rng.integers(0, 6)}",
             f"voicing {rng.integers(60, 150)}", f"consonants {rng.integers(60, 130)} {rng.integers(60, 130)}"]
    for k in range(1, 9):
        lines.append(f"formant {k} {100 * warp * rng.uniform(0.94, 1.06):.0f} {rng.uniform(60, 140):.0f} "
                     f"{rng.uniform(70, 160):.0f}")
    if rng.random() < 0.3:
        lines.append(f"echo {rng.integers(10, 160)} {rng.integers(5, 25)}")
    if rng.random() < 0.25:
        lines.append(f"klatt {rng.integers(1, 7)}")
    return "\n".join(lines) + "\n"


def data_with_variants(folder: Path, extra: dict[str, str]) -> str:
    """An espeak-ng data folder under `folder` that is the wheel's plus `extra` variants (name -> file text):
    links to the wheel's files, so it costs a few kilobytes. Built once per set of variants, atomically."""
    import hashlib
    import shutil
    import tempfile

    digest = hashlib.sha1("".join(f"{k}\0{v}\0" for k, v in sorted(extra.items())).encode()).hexdigest()[:16]
    target = Path(folder) / f"espeak-ng-data-{digest}"
    if target.is_dir():
        return str(target)
    wheel = Path(_paths()[1])
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=target.name + ".part"))
    try:
        for p in wheel.iterdir():
            if p.name != "voices":
                os.symlink(p.resolve(), tmp / p.name)
        (tmp / "voices" / "!v").mkdir(parents=True)
        for p in (wheel / "voices").iterdir():
            if p.name != "!v":
                os.symlink(p.resolve(), tmp / "voices" / p.name)
        for p in (wheel / "voices" / "!v").iterdir():
            os.symlink(p.resolve(), tmp / "voices" / "!v" / p.name)
        for name, text in extra.items():
            (tmp / "voices" / "!v" / name).write_text(text)
        os.rename(tmp, target)
    except OSError:
        shutil.rmtree(tmp, ignore_errors=True)
        if not target.is_dir():  # another process may have built the same folder first
            raise
    return str(target)


class ESpeak:
    """One espeak-ng instance in this process. `say` returns int16 samples at `self.sample_rate` (22,050 Hz)."""

    def __init__(self, data_path: str | None = None):
        lib_path, wheel_data = _paths()
        data_path = data_path or wheel_data
        self.lib = ctypes.CDLL(lib_path)
        self.lib.espeak_Synth.argtypes = [ctypes.c_char_p, ctypes.c_size_t, ctypes.c_uint, ctypes.c_int,
                                          ctypes.c_uint, ctypes.c_uint, ctypes.c_void_p, ctypes.c_void_p]
        self.lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
        self.sample_rate = self.lib.espeak_Initialize(_AUDIO_OUTPUT_SYNCHRONOUS, 0, data_path.encode(), 0)
        if self.sample_rate <= 0:
            raise RuntimeError(f"espeak-ng failed to initialise from {data_path}")
        self._chunks: list[np.ndarray] = []

        def collect(wav, n, events):
            if n > 0:
                self._chunks.append(np.ctypeslib.as_array(wav, (n,)).copy())
            return 0

        self._callback = _CALLBACK(collect)  # kept referenced: espeak calls it after this returns
        self.lib.espeak_SetSynthCallback(self._callback)

    def say(self, text: str, voice: str, rate: int = 175, pitch: int = 50, pitch_range: int = 50) -> np.ndarray:
        """Speak `text` with `voice` ("en-us" or "en-us+m3"); rate in words per minute, pitch 0-100."""
        if self.lib.espeak_SetVoiceByName(voice.encode()) != 0:
            raise ValueError(f"espeak-ng has no voice {voice!r}")
        for param, value in ((_espeakRATE, rate), (_espeakPITCH, pitch), (_espeakRANGE, pitch_range),
                             (_espeakVOLUME, 100)):
            self.lib.espeak_SetParameter(param, int(value), 0)
        self._chunks.clear()
        data = text.encode()
        self.lib.espeak_Synth(data, len(data) + 1, 0, 1, 0, 0, None, None)
        self.lib.espeak_Synchronize()
        return np.concatenate(self._chunks) if self._chunks else np.zeros(0, np.int16)


def _synthesise_list(items: list[tuple], data_path: str | None = None) -> tuple[int, list[np.ndarray]]:
    engine = ESpeak(data_path)
    return engine.sample_rate, [engine.say(*item) for item in items]


def _synthesise_fresh(items: list[tuple], data_path: str | None = None) -> tuple[int, list[np.ndarray]]:
    """_synthesise_list in a forked child of this process, which has never loaded espeak-ng itself, so the
    child starts from espeak-ng's initial state. Forking costs milliseconds; a new interpreter, seconds."""
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child
        status = 1
        try:
            os.close(read_fd)
            with os.fdopen(write_fd, "wb") as f:
                pickle.dump(_synthesise_list(items, data_path), f, protocol=pickle.HIGHEST_PROTOCOL)
            status = 0
        finally:
            os._exit(status)
    os.close(write_fd)
    with os.fdopen(read_fd, "rb") as f:
        data = f.read()
    _, status = os.waitpid(pid, 0)
    if status != 0 or not data:
        raise RuntimeError(f"espeak-ng synthesis failed in a child process (status {status})")
    return pickle.loads(data)


def synthesise(lists: list[list[tuple]], processes: int | None = None, progress=None, data_path: str | None = None):
    """Synthesise each list of (text, voice, rate, pitch, pitch_range), each from espeak-ng's initial state;
    yields (index, sample_rate, [int16 arrays]) in order. data_path: an espeak-ng data folder other than the
    wheel's (data_with_variants).

    Workers are new interpreters ("spawn": they never load espeak-ng nor inherit torch's threads); each list
    runs in a fork of a worker, so the result depends on the list alone, not on what ran before it.
    """
    from concurrent.futures import ProcessPoolExecutor
    from functools import partial

    processes = processes or max(1, min(len(lists), os.cpu_count() or 1))
    with ProcessPoolExecutor(processes, mp_context=mp.get_context("spawn")) as pool:
        for i, (rate, waves) in enumerate(pool.map(partial(_synthesise_fresh, data_path=data_path), lists)):
            if progress is not None:
                progress(i + 1, len(lists))
            yield i, rate, waves
