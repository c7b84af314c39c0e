"""Run directories never collide: two runs (or sweeps) started in the same second get two directories, and
`ckpt_path=last` never takes over the checkpoint of a run that is going on beside it."""
import fcntl
import json
import subprocess
import sys

import pytest

from src.cli import find_last_checkpoint
from tests.helpers import QUICK, ROOT, TINY_IMAGE, cli


@pytest.mark.slow
def test_two_runs_started_in_the_same_second_write_two_directories(tmp_path):
    # the same overrides, and a directory named by the day: both name the same folder when they start
    args = [*QUICK, *TINY_IMAGE, f"hydra.run.dir={tmp_path}/runs/${{now:%Y-%m-%d}}"]
    procs = [subprocess.Popen([sys.executable, "train.py", *args], cwd=ROOT, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True) for _ in range(2)]
    outs = [p.communicate(timeout=300)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    runs = sorted((tmp_path / "runs").iterdir())
    assert len(runs) == 2 and runs[1].name == runs[0].name + "-1", runs
    for run in runs:  # each a whole run of its own
        assert "test/acc" in json.loads((run / "metrics.json").read_text())
        assert (run / "checkpoints" / "last.ckpt").is_file() and (run / ".hydra" / "config.yaml").is_file()
        assert json.loads((run / "run.json").read_text())["command"][-1] == args[-1]


def test_two_sweeps_started_in_the_same_second_write_two_directories(tmp_path):
    args = ["-m", *QUICK, *TINY_IMAGE, "test=false", f"hydra.sweep.dir={tmp_path}/sweeps/${{now:%Y-%m-%d}}"]
    for _ in range(2):
        code, out, err = cli("train.py", *args)
        assert code == 0, err[-2000:]
    sweeps = sorted((tmp_path / "sweeps").iterdir())
    assert [s.name for s in sweeps][1] == sweeps[0].name + "-1"
    assert all((s / "0" / "metrics.json").is_file() and (s / "summary.csv").is_file() for s in sweeps)


def _run_with_last(root, name, mtime):
    last = root / "image" / "2026-01-01" / name / "checkpoints" / "last.ckpt"
    last.parent.mkdir(parents=True)
    last.write_bytes(b"x")
    import os

    os.utime(last, (mtime, mtime))
    return last


def test_ckpt_path_last_never_takes_a_run_that_is_going_on(tmp_path):
    older = _run_with_last(tmp_path, "10-00-00", 1_000_000)
    newer = _run_with_last(tmp_path, "10-00-01", 2_000_000)
    args = ["task=image", f"paths.log_dir={tmp_path}"]
    assert find_last_checkpoint(args) == newer
    with open(newer.parent.parent / ".lock", "a+") as lock:  # as the running train.py holds it
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        assert find_last_checkpoint(args) == older
    assert find_last_checkpoint(args) == newer  # the run has ended: its checkpoint is the newest again
