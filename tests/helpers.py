"""Test helpers: run the entry points in-process or as real processes, and callbacks that misbehave on cue."""
from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

from lightning.pytorch.callbacks import Callback

ROOT = Path(__file__).resolve().parent.parent
SHARED_DATA = (ROOT.parent / "shared" / "data").resolve()

# small, quiet, fast: what every test run adds to its overrides
QUICK = ["trainer.accelerator=cpu", "callbacks.progress_bar=null", "callbacks.model_summary=null",
         "trainer.enable_model_summary=false"]


# small runs, for tests that need a task's checkpoint rather than a good model
TINY_IMAGE = ["trainer.max_epochs=1", "trainer.limit_train_batches=8", "trainer.limit_val_batches=2"]
TINY_SPEECH = ["task=speech", "data.words=[yes,no,stop]", "data.languages=[en-us,en-gb-x-rp]",
               "data.variants=[m1,m3,f1,f4,klatt,croak]", "data.per_voice=3", "data.val_voices=0.2",
               "data.test_voices=0.2", "trainer.max_epochs=1", "model.widths=[16,32,32]"]
TINY_TRANSLATION = ["task=translation", "data.train_size=600", "data.val_size=40", "data.test_size=40",
                    "model.emb_dim=32", "model.hidden=32", "trainer.max_epochs=1", "task.beam_size=3"]


def reviews_csv(path: Path) -> Path:
    """A small text_csv file of two classes (text,label with a header)."""
    rows = [("a gorgeous witty film", "pos"), ("a dull tedious mess", "neg")] * 30
    path.write_text("text,label\n" + "".join(f"{t} {i},{y}\n" for i, (t, y) in enumerate(rows)))
    return path


def digit_images(folder: Path, n: int) -> list[Path]:
    """The first n test images of the embedded digits, as PNG files (lossless: read back, the same uint8)."""
    from PIL import Image

    from src.data.image.digits import DigitsDataModule

    digits = DigitsDataModule()
    digits.setup("test")
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        Image.fromarray(digits.test_set[i][0][0].numpy(), mode="L").save(folder / f"{i}.png")
    return [folder / f"{i}.png" for i in range(n)]


def recordings(folder: Path, n: int) -> list[Path]:
    """n real recordings (FSDD's first take of each digit by each speaker, from ../shared) or, without them, n tones
    written as 16 kHz WAV files."""
    import numpy as np
    import soundfile as sf

    found = sorted((SHARED_DATA / "fsdd" / "recordings").glob("*_1.wav"))[:n]
    if found:
        return found
    t = np.arange(8000) / 16000
    for i in range(n):
        sf.write(folder / f"tone{i}.wav", (0.3 * np.sin(2 * np.pi * (200 + 150 * i) * t)).astype("float32"), 16000)
    return [folder / f"tone{i}.wav" for i in range(n)]


def run_script(script: str, *overrides: str, timeout: float = 600, env: dict | None = None,
               check: bool = True) -> subprocess.CompletedProcess:
    """python <script> <overrides> in the project root, as a user would type it."""
    proc = subprocess.run([sys.executable, script, *overrides], cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})})
    if check and proc.returncode != 0:
        raise AssertionError(f"{script} {' '.join(overrides)} exited {proc.returncode}\n"
                             f"--- stdout ---\n{proc.stdout[-4000:]}\n--- stderr ---\n{proc.stderr[-4000:]}")
    return proc


def train(run_dir: Path, *overrides: str, **kwargs) -> dict:
    """Train in a subprocess into run_dir; returns its metrics.json."""
    run_script("train.py", *QUICK, f"hydra.run.dir={run_dir}", *overrides, **kwargs)
    return json.loads((run_dir / "metrics.json").read_text())


def cli(script: str, *args: str) -> tuple[int, str, str]:
    """python <script> <args> run in this process, from its `if __name__ == "__main__"` on, as a user would type
    it (the command line's own rewrites, Hydra's main, its error report): (exit status, stdout, stderr). Far
    cheaper than a new process (no torch and Lightning to import again) for tests of what a command answers."""
    import io
    import logging
    import runpy

    from hydra.core.global_hydra import GlobalHydra

    out, err, argv, status = io.StringIO(), io.StringIO(), sys.argv, 0
    GlobalHydra.instance().clear()
    sys.argv = [str(ROOT / script), *args]
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            runpy.run_path(str(ROOT / script), run_name="__main__")
    except SystemExit as e:
        status = e.code if isinstance(e.code, int) else int(e.code is not None)
    finally:
        sys.argv = argv
        GlobalHydra.instance().clear()
        for name in (None, "hydra"):  # the handlers Hydra's logging config set up, on streams now closed
            for handler in logging.getLogger(name).handlers[:]:
                logging.getLogger(name).removeHandler(handler)
                handler.close()
    return status, out.getvalue(), err.getvalue()


def run_here(script: str, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    """run_script's answer, from the command run in this process (cli): for tests of what a command prints and
    writes, where the process itself (signals, kills, its imports) is not what is tested."""
    code, out, err = cli(script, *args)
    if check and code != 0:
        raise AssertionError(f"{script} {' '.join(args)} exited {code}\n--- stdout ---\n{out[-4000:]}\n"
                             f"--- stderr ---\n{err[-4000:]}")
    return subprocess.CompletedProcess([script, *args], code, out, err)


@contextlib.contextmanager
def composed(config_name: str, overrides: list[str], run_dir: Path | None = None):
    """The config an entry point composes (train, eval or predict), as Hydra's main sets it up: Hydra initialised
    and its runtime config set while the block runs, with the run directory at run_dir (when given)."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import open_dict

    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
            cfg = compose(config_name, overrides=overrides, return_hydra_config=True)
            HydraConfig().set_config(cfg)
            if run_dir is not None:
                with open_dict(cfg):
                    cfg.paths.output_dir = str(run_dir)
            yield cfg
    finally:
        GlobalHydra.instance().clear()


def train_here(run_dir: Path, *overrides: str) -> dict:
    """train.py's run in this process: the same composed config and src.pipeline.train, without starting Python,
    torch and Lightning again (8 s here), for tests about what a run produces rather than about the command line.
    Writes into run_dir (no .hydra/ or train.log: those are Hydra's main's). Returns its metrics.json."""
    from src import pipeline

    with composed("train", [*QUICK, *overrides], run_dir) as cfg:
        pipeline.train(cfg)
    return json.loads((Path(run_dir) / "metrics.json").read_text())


def eval_here(run_dir: Path, ckpt_path: Path, *overrides: str) -> dict:
    """eval.py's work in this process (its config and src.pipeline.evaluate), into run_dir: the metrics."""
    from src import pipeline

    given = [f"ckpt_path={ckpt_path}", "trainer.accelerator=cpu", "trainer.enable_progress_bar=false", *overrides]
    with composed("eval", given, run_dir) as cfg:
        return pipeline.evaluate(cfg)


def predict_here(ckpt_path: Path, *overrides: str) -> list[dict]:
    """predict.py's work in this process (its config and src.pipeline.predict): the results it prints."""
    from src import pipeline

    with composed("predict", [f"ckpt_path={ckpt_path}", "device=cpu", *overrides]) as cfg:
        return pipeline.predict(cfg)


class KillAt(Callback):
    """SIGKILLs its own process at a given global step: a crash with no chance to clean up."""

    signum = signal.SIGKILL

    def __init__(self, step: int):
        self.step = step

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if trainer.global_step == self.step:
            os.kill(os.getpid(), self.signum)


class PoisonLoss(Callback):
    """Makes the model's output NaN from a given step on, as a diverging run would."""

    def __init__(self, step: int):
        self.step = step

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if trainer.global_step == self.step:
            import torch

            with torch.no_grad():
                for p in pl_module.net.parameters():
                    p.fill_(float("nan"))


class TermAt(KillAt):
    """Sends SIGTERM to its own process at a given global step, as a scheduler does before a time limit."""

    signum = signal.SIGTERM


class KillDuringSave(Callback):
    """SIGKILLs its own process in the middle of writing the n-th checkpoint: half the bytes are on disk when it
    dies. Fault injection: it wraps torch.save for the rest of the run."""

    def __init__(self, nth: int):
        self.nth = nth

    def setup(self, trainer, pl_module, stage):
        import io

        import torch

        real_save, count = torch.save, [0]

        def save(obj, f, *args, **kwargs):  # f: a path, or the file the checkpoint is written through
            if str(getattr(f, "name", f)).count(".ckpt"):
                count[0] += 1
                if count[0] == self.nth:
                    buffer = io.BytesIO()
                    real_save(obj, buffer, *args, **kwargs)
                    out = f if hasattr(f, "write") else open(f, "wb")
                    out.write(buffer.getvalue()[:len(buffer.getvalue()) // 2])
                    out.flush()
                    os.kill(os.getpid(), signal.SIGKILL)
            return real_save(obj, f, *args, **kwargs)

        torch.save = save
