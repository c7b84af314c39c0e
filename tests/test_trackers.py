"""Trackers, really run: MLflow against `mlflow server` on a loopback port with a SQLite backend, read back through
MLflow's client; W&B offline, read back from the run files it writes. A run killed in the middle of an epoch and
resumed with ckpt_path=last ends as one tracker run holding the metrics of both parts, the config and the artifacts
(config.yaml, run.json, metrics.json, the plot, the best checkpoint)."""
from __future__ import annotations

import json
import os
import signal
import socket
import struct
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import yaml

from tests.helpers import QUICK, run_here, run_script

# two epochs of 10 steps, a metric logged every 2 steps; the kill comes at step 15, in the middle of the second
# epoch, after last.ckpt was written at the end of the first (step 10)
SHORT = ["trainer.max_epochs=2", "trainer.limit_train_batches=10", "trainer.limit_val_batches=2",
         "trainer.limit_test_batches=3", "trainer.log_every_n_steps=2"]


def killed_then_resumed(monkeypatch, run_dir: Path, env: dict, *overrides: str, kill_at: int = 15) -> dict:
    """A run SIGKILLed in its second epoch (at step kill_at), then resumed with ckpt_path=last to its end: the
    tracker ids the first part stored (trackers.json)."""
    kill = ["+callbacks.kill._target_=tests.helpers.KillAt", f"+callbacks.kill.step={kill_at}"]
    first = run_script("train.py", *QUICK, f"hydra.run.dir={run_dir}", *SHORT, *overrides, *kill, env=env,
                       check=False)
    assert first.returncode == -signal.SIGKILL, first.stderr[-3000:]
    assert (run_dir / "checkpoints" / "last.ckpt").is_file() and not (run_dir / "metrics.json").exists()
    ids = json.loads((run_dir / "trackers.json").read_text())
    for key, value in env.items():  # the resume runs in this process (no torch and Lightning to import again)
        monkeypatch.setenv(key, value)
    second = run_here("train.py", *QUICK, *SHORT, *overrides, "ckpt_path=last", f"hydra.run.dir={run_dir}")
    assert "continuing the" in second.stdout + second.stderr
    assert json.loads((run_dir / "trackers.json").read_text()) == ids  # the same tracker run, not a new one
    return ids


# -- MLflow ------------------------------------------------------------------------------------------
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def mlflow_server(tmp_path_factory):
    """`mlflow server` on a free loopback port, SQLite backend, artifacts served from a folder: its URI."""
    pytest.importorskip("mlflow")
    root = tmp_path_factory.mktemp("mlflow")
    port = _free_port()
    uri = f"http://127.0.0.1:{port}"
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}  # no background job runners (GenAI jobs)
    command = [str(Path(sys.executable).parent / "mlflow"), "server", "--backend-store-uri",
               f"sqlite:///{root / 'mlflow.db'}", "--artifacts-destination", str(root / "artifacts"),
               "--host", "127.0.0.1", "--port", str(port), "--workers", "1"]
    with open(root / "server.log", "w") as out:
        server = subprocess.Popen(command, cwd=root, env=env, stdout=out, stderr=subprocess.STDOUT,
                                  start_new_session=True)
    try:
        deadline = time.time() + 240
        while True:
            try:
                urllib.request.urlopen(f"{uri}/health", timeout=2).close()
                break
            except OSError:
                if server.poll() is not None or time.time() > deadline:
                    pytest.fail(f"mlflow server did not start:\n{(root / 'server.log').read_text()[-3000:]}")
                time.sleep(0.5)
        yield uri
    finally:
        os.killpg(server.pid, signal.SIGTERM)  # the server and the worker it started: their own process group
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()


def _artifacts(client, run_id: str, folder: str | None = None) -> list[str]:
    found = []
    for item in client.list_artifacts(run_id, folder):
        found += _artifacts(client, run_id, item.path) if item.is_dir else [item.path]
    return found


@pytest.mark.slow  # two real runs (and the server's start): a minute or two on 2 cores
def test_mlflow_a_killed_and_resumed_run_is_one_mlflow_run(tmp_path, mlflow_server, monkeypatch):
    from mlflow import MlflowClient

    run_dir = tmp_path / "run"
    ids = killed_then_resumed(monkeypatch, run_dir, {"MLFLOW_TRACKING_URI": mlflow_server}, "logger=mlflow")

    client = MlflowClient(mlflow_server)
    experiment = client.get_experiment_by_name("gradlab-image")
    (run,) = client.search_runs([experiment.experiment_id])  # one run for both parts
    run_id = run.info.run_id
    assert ids == {"mlflow": {"id": run_id}} and run.info.status == "FINISHED"
    assert run.data.tags["mlflow.runName"] == "cnn-digits"
    # metrics of both parts: steps of the first epoch (only the killed part ran them; the resume began at step 10)
    # and past the kill (only the resumed part got there)
    steps = [m.step for m in client.get_metric_history(run_id, "train/loss")]
    assert min(steps) < 10 and max(steps) >= 15, steps
    assert {m.value for m in client.get_metric_history(run_id, "epoch")} >= {0, 1}
    assert len(client.get_metric_history(run_id, "val/acc")) >= 2  # each epoch's, and the best checkpoint's
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert run.data.metrics["test/acc"] == pytest.approx(metrics["test/acc"])
    # the config: the task's hyperparameters as parameters, and the composed config as an artifact
    assert run.data.params["optimizer/_target_"] == "torch.optim.AdamW"
    assert run.data.params["model/_target_"].endswith("CNN")
    best = Path(json.loads((run_dir / "run.json").read_text())["best_checkpoint"])
    assert sorted(_artifacts(client, run_id)) == sorted(
        ["config.yaml", "run.json", "metrics.json", "plots/confusion_matrix.png", f"checkpoints/{best.name}"])
    got = Path(client.download_artifacts(run_id, "", str(tmp_path / "down")))
    config = yaml.safe_load((got / "config.yaml").read_text())
    assert config["trainer"]["max_epochs"] == 2 and config["logger"]["mlflow"]["tracking_uri"] == mlflow_server
    record = json.loads((got / "run.json").read_text())
    assert record["git"]["commit"] and "ckpt_path=" in " ".join(record["command"]) and record["history"]
    assert json.loads((got / "metrics.json").read_text()) == metrics
    assert (got / "checkpoints" / best.name).read_bytes() == best.read_bytes()


def test_mlflow_server_that_does_not_answer_is_one_line(tmp_path):
    pytest.importorskip("mlflow")
    uri = f"http://127.0.0.1:{_free_port()}"  # nothing listens there
    proc = run_here("train.py", *QUICK, "logger=mlflow", f"logger.mlflow.tracking_uri={uri}",
                    f"hydra.run.dir={tmp_path}", check=False)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    (line,) = proc.stderr.strip().splitlines()
    assert f"the MLflow tracking server at {uri} does not answer" in line and "mlflow server" in line
    proc = run_here("train.py", *QUICK, "logger=mlflow", "logger.mlflow.tracking_uri=nowhere://x",
                    f"hydra.run.dir={tmp_path / 'b'}", check=False)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    (line,) = proc.stderr.strip().splitlines()
    assert "tracking_uri=nowhere://x is not a tracking URI MLflow can use" in line


@pytest.mark.parametrize("logger", ["mlflow", "wandb"])
def test_a_missing_tracker_package_names_the_extra_to_install(logger, monkeypatch):
    monkeypatch.setitem(sys.modules, logger, None)  # as if not installed: find_spec answers None, import fails
    proc = run_here("train.py", f"logger={logger}", check=False)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    (line,) = proc.stderr.strip().splitlines()
    assert f"needs the '{logger}' package" in line and f"uv sync --extra {logger}" in line and "logger=csv" in line


# -- W&B ---------------------------------------------------------------------------------------------
def wandb_records(path: Path):
    """The records of a W&B run file (run-<id>.wandb): a LevelDB-style log of protobuf records, in blocks of 32 KiB
    after a 7-byte header; each record's 7-byte header gives its length and whether it is whole or a piece."""
    from wandb.proto import wandb_internal_pb2

    data, pos, pieces = path.read_bytes(), 7, b""
    assert data[:4] == b":W&B"
    while pos + 7 <= len(data):
        if 32768 - pos % 32768 < 7:  # too little room left in the block for a header: padding
            pos += 32768 - pos % 32768
            continue
        _, length, kind = struct.unpack("<IHB", data[pos:pos + 7])
        chunk, pos = data[pos + 7:pos + 7 + length], pos + 7 + length
        if kind == 0:  # zeros: the rest of the block
            pos += -pos % 32768
            continue
        pieces = chunk if kind in (1, 2) else pieces + chunk  # 1 whole, 2 first, 3 middle, 4 last
        if kind in (1, 4):
            record = wandb_internal_pb2.Record()
            record.ParseFromString(pieces)
            yield record


def read_wandb_run(run_file: Path) -> dict:
    """What one W&B run file holds: its run id, config keys, history rows and artifacts (name -> file paths)."""
    out = {"run_id": None, "config": set(), "history": [], "artifacts": {}}
    for record in wandb_records(run_file):
        kind = record.WhichOneof("record_type")
        if kind == "run":
            out["run_id"] = record.run.run_id
            out["config"] |= {item.key for item in record.run.config.update}
        elif kind == "config":
            out["config"] |= {item.key or item.nested_key[0] for item in record.config.update}
        elif kind == "history":
            out["history"].append({".".join(item.nested_key) or item.key: json.loads(item.value_json)
                                   for item in record.history.item})
        elif kind == "artifact":
            out["artifacts"][record.artifact.name] = sorted(c.path for c in record.artifact.manifest.contents)
    return out


@pytest.mark.slow  # two real runs (and the server's start): a minute or two on 2 cores
def test_wandb_offline_a_killed_and_resumed_run_is_one_wandb_run(tmp_path, monkeypatch):
    pytest.importorskip("wandb")
    run_dir = tmp_path / "run"
    env = {"WANDB_MODE": "offline", "WANDB_SILENT": "true", **{
        f"WANDB_{key}_DIR": str(tmp_path / key.lower()) for key in ("CACHE", "CONFIG", "DATA", "ARTIFACT")}}
    # W&B writes its run file in blocks of 32 KiB, and a SIGKILL loses the block being filled: the killed part logs
    # every step (about 2 KiB each) of epochs of 20, so that its first epoch is in blocks written before the kill
    ids = killed_then_resumed(monkeypatch, run_dir, env, "logger=wandb", "trainer.limit_train_batches=20",
                              "trainer.log_every_n_steps=1", kill_at=30)
    run_id = ids["wandb"]["id"]

    # each part wrote its own offline run directory, both under the one run id (`wandb sync` makes them one run)
    files = sorted(run_dir.glob("wandb/offline-run-*/run-*.wandb"))
    assert [f.name for f in files] == [f"run-{run_id}.wandb"] * 2
    first, second = (read_wandb_run(f) for f in files)
    assert first["run_id"] == second["run_id"] == run_id
    # metrics: the killed part's first epoch, the resumed part's second one and its test
    steps = [[row["trainer/global_step"] for row in part["history"] if "train/loss" in row] for part in (first, second)]
    assert min(steps[0]) < 20 and max(steps[1]) >= 30, steps
    assert 0 in {row.get("epoch") for row in first["history"]}
    assert 1 in {row.get("epoch") for row in second["history"]} and any("test/acc" in row for row in second["history"])
    # the config: the task's hyperparameters, in both parts
    assert {"model", "optimizer", "data"} <= first["config"] and {"model", "optimizer", "data"} <= second["config"]
    # the artifacts, logged by the part that finished
    best = Path(json.loads((run_dir / "run.json").read_text())["best_checkpoint"])
    assert second["artifacts"] == {
        f"run-files-{run_id}": ["config.yaml", "metrics.json", "plots/confusion_matrix.png", "run.json"],
        f"model-{run_id}": [best.name]}
