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


class ESpeak:
    """One espeak-ng instance in this process. `say` returns int16 samples at `self.sample_rate` (22,050 Hz)."""

    def __init__(self):
        lib_path, data_path = _paths()
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


def _synthesise_list(items: list[tuple]) -> tuple[int, list[np.ndarray]]:
    engine = ESpeak()
    return engine.sample_rate, [engine.say(*item) for item in items]


def _synthesise_fresh(items: list[tuple]) -> tuple[int, list[np.ndarray]]:
    """_synthesise_list in a forked child of this process, which has never loaded espeak-ng itself, so the
    child starts from espeak-ng's initial state. Forking costs milliseconds; a new interpreter, seconds."""
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child
        status = 1
        try:
            os.close(read_fd)
            with os.fdopen(write_fd, "wb") as f:
                pickle.dump(_synthesise_list(items), f, protocol=pickle.HIGHEST_PROTOCOL)
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


def synthesise(lists: list[list[tuple]], processes: int | None = None, progress=None):
    """Synthesise each list of (text, voice, rate, pitch, pitch_range), each from espeak-ng's initial state;
    yields (index, sample_rate, [int16 arrays]) in order.

    Workers are new interpreters ("spawn": they never load espeak-ng nor inherit torch's threads); each list
    runs in a fork of a worker, so the result depends on the list alone, not on what ran before it.
    """
    from concurrent.futures import ProcessPoolExecutor

    processes = processes or max(1, min(len(lists), os.cpu_count() or 1))
    with ProcessPoolExecutor(processes, mp_context=mp.get_context("spawn")) as pool:
        for i, (rate, waves) in enumerate(pool.map(_synthesise_fresh, lists)):
            if progress is not None:
                progress(i + 1, len(lists))
            yield i, rate, waves
