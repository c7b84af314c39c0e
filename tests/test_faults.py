"""Faults on real runs of the embedded digits data: a kill and resume that repeats the uninterrupted run, SIGTERM,
a SLURM requeue, a kill in the middle of a checkpoint write, a loss that becomes NaN. Each is several runs: slow."""
import json
import logging

import pytest
import torch

from tests.helpers import QUICK, run_here, run_script, train_here

pytestmark = pytest.mark.slow


def test_killed_run_resumes_with_ckpt_path_last_and_matches_an_uninterrupted_one(tmp_path):
    args = ["trainer.max_epochs=3", "seed=3"]
    whole = train_here(tmp_path / "whole", *args)
    # 1258 training images / 32 = 40 steps an epoch: die in the middle of the second epoch
    logs = tmp_path / "outputs"  # runs go to <logs>/image/<date>/<time>/, as they do by default
    killed = run_script("train.py", *QUICK, f"paths.log_dir={logs}", *args,
                        "+callbacks.kill._target_=tests.helpers.KillAt", "+callbacks.kill.step=60", check=False)
    assert killed.returncode != 0 and not list(logs.rglob("metrics.json"))
    (last,) = logs.glob("image/*/*/checkpoints/last.ckpt")
    assert torch.load(last, weights_only=True)["epoch"] == 0  # the end of the first epoch
    proc = run_here("train.py", *QUICK, *args, f"paths.log_dir={logs}", "ckpt_path=last")  # the newest run's
    assert f"resuming from {last}" in proc.stdout
    resumed = json.loads((last.parent.parent / "metrics.json").read_text())  # the same run directory
    assert resumed == whole
    assert (last.parent.parent / "csv" / "metrics.csv").is_file()  # the first part's log is kept


def test_sigterm_saves_a_checkpoint_and_exits_cleanly(tmp_path):
    proc = run_script("train.py", *QUICK, f"hydra.run.dir={tmp_path}", "trainer.max_epochs=3",
                      "+callbacks.term._target_=tests.helpers.TermAt", "+callbacks.term.step=50", check=False)
    assert proc.returncode == 143 and "Traceback" not in proc.stderr
    message = proc.stderr.strip().splitlines()[-1]
    assert message.startswith("stopped by SIGTERM at epoch 1, step 51")  # the batch under way ends first
    assert "ckpt_path=" in message
    saved = torch.load(tmp_path / "checkpoints" / "last.ckpt", weights_only=True)
    assert saved["global_step"] == 51 and not (tmp_path / "metrics.json").exists()
    # (ckpt_path=last itself is resolved by the command line: test_killed_run_resumes_...)
    metrics = train_here(tmp_path, "trainer.max_epochs=3", f"ckpt_path={tmp_path / 'checkpoints' / 'last.ckpt'}")
    assert metrics["test/acc"] > 0.8


def test_a_job_requeued_by_slurm_resumes_from_its_last_checkpoint(tmp_path, monkeypatch, caplog):
    caplog.set_level(logging.INFO)
    train_here(tmp_path, "trainer.max_epochs=1")
    monkeypatch.setenv("SLURM_RESTART_COUNT", "1")
    train_here(tmp_path, "trainer.max_epochs=2")
    assert f"requeued by SLURM (restart 1): resuming from {tmp_path / 'checkpoints' / 'last.ckpt'}" in caplog.text
    assert torch.load(tmp_path / "checkpoints" / "last.ckpt", weights_only=True)["epoch"] == 1
    caplog.clear()
    monkeypatch.setenv("SLURM_RESTART_COUNT", "0")  # a job's first start trains from scratch
    train_here(tmp_path, "trainer.max_epochs=1")
    assert "requeued by SLURM" not in caplog.text and "resuming from" not in caplog.text


def test_a_kill_while_a_checkpoint_is_written_leaves_every_checkpoint_whole(tmp_path):
    proc = run_script("train.py", *QUICK, f"hydra.run.dir={tmp_path}", "trainer.max_epochs=4",
                      "+callbacks.kill._target_=tests.helpers.KillDuringSave", "+callbacks.kill.nth=4", check=False)
    assert proc.returncode != 0
    names = sorted(p.name for p in (tmp_path / "checkpoints").iterdir())
    assert any(n.endswith(".part") for n in names), names  # the half-written file was a temporary one
    assert (tmp_path / "checkpoints" / "last.ckpt").is_file()
    for path in (tmp_path / "checkpoints").glob("*.ckpt"):  # every checkpoint under its real name loads
        assert torch.load(path, weights_only=True)["epoch"] in range(4), path


def test_nan_loss_stops_with_a_clear_message_and_keeps_the_last_good_checkpoint(tmp_path):
    proc = run_here("train.py", *QUICK, f"hydra.run.dir={tmp_path}", "trainer.max_epochs=3",
                    "+callbacks.poison._target_=tests.helpers.PoisonLoss", "+callbacks.poison.step=45", check=False)
    assert proc.returncode == 2
    message = proc.stderr.strip().splitlines()[-1]
    assert "NaN or infinite at step 45" in message and "optimizer.lr" in message and "gradient_clip_val" in message
    assert "Traceback" not in proc.stderr
    # the good checkpoint of the epoch before is named, to resume from
    assert f"the last good checkpoint is {tmp_path / 'checkpoints'}/" in message and "ckpt_path=" in message
    last = torch.load(tmp_path / "checkpoints" / "last.ckpt", weights_only=True)
    assert all(torch.isfinite(v).all() for v in last["state_dict"].values() if v.is_floating_point())
