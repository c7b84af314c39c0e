"""benchmarks/gpu_check.py: the GPU check's whole pipeline (launching each part, reading what it wrote, the JSON) in
its --tiny mode on the CPU, and how it records a part that fails or runs out of time."""
from __future__ import annotations

import importlib.util
import json
import math
import os
import subprocess
import sys
import time

import pytest

from tests.helpers import ROOT

PARTS = {"overhead", "translation_step", "multi30k", "cifar10"}


def gpu_check():
    spec = importlib.util.spec_from_file_location("gpu_check", ROOT / "benchmarks" / "gpu_check.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def check(*args: str, timeout: float = 400) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "benchmarks/gpu_check.py", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, "PYTHONUNBUFFERED": "1"})


def number(value, low: float = 0.0, high: float = math.inf) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and low <= value <= high


def assert_benchmark(results: dict) -> None:
    app, plain, ratio = results["gradlab_ms_per_step"], results["plain_ms_per_step"], results["ratio"]
    assert number(app) and app > 0 and number(plain) and plain > 0 and number(ratio) and ratio > 0
    assert abs(ratio - app / plain) <= 0.01 * ratio + 0.002  # the printed ratio is that of the printed medians
    assert results["device"].startswith("CPU")


@pytest.mark.slow
def test_tiny_check_runs_every_part_and_writes_every_figure(shared_data, tmp_path):
    for need in ("multi30k/train.de.gz", "cifar10/cifar10-jpg.tar.gz"):
        if not (shared_data / need).is_file():
            pytest.skip(f"../shared/data/{need} is not here")
    out = tmp_path / "out" / "check.json"
    start = time.perf_counter()
    proc = check("--tiny", "--data-dir", str(shared_data), "--out", str(out), "--work-dir", str(tmp_path / "work"))
    wall = time.perf_counter() - start
    assert proc.returncode == 0, f"{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}"
    report = json.loads(out.read_text())
    assert report["mode"] == "tiny" and report["complete"] and report["ok"] and report["failed"] == []
    env = report["environment"]
    assert env["torch"] and env["lightning"] and env["commit"] and "gpu" in env
    assert set(report["parts"]) == PARTS
    for name, part in report["parts"].items():
        if name == "translation_step" and not (ROOT / "benchmarks" / "translation_step.py").is_file():
            assert part["status"] == "skipped" and "translation_step.py" in part["note"]
            continue
        assert part["status"] == "ok", part
        assert number(part["wall_s"]) and 0 < part["wall_s"] <= part["timeout_s"]
        assert (out.parent / part["log"]).is_file() and part["log"] == f"check.{name}.log"
        assert part["command"].split()[1] == ("train.py" if name in ("multi30k", "cifar10") else
                                              f"benchmarks/{'train_step_overhead' if name == 'overhead' else name}.py")

    parts = report["parts"]
    assert_benchmark(parts["overhead"]["results"])
    if parts["translation_step"]["status"] == "ok":
        results = parts["translation_step"]["results"]
        assert_benchmark(results)
        assert number(results["gradlab_tgt_tokens_per_s"]) and results["gradlab_tgt_tokens_per_s"] > 0
        assert number(results["plain_tgt_tokens_per_s"]) and results["plain_tgt_tokens_per_s"] > 0

    m30k = parts["multi30k"]
    assert "experiment=multi30k_gru trainer=gpu" in m30k["command"] and "++trainer.max_time=" in m30k["command"]
    assert m30k["reference"]["test_bleu"] == 40.1 and m30k["reference"]["tgt_tokens_per_s"] == 32000
    results = m30k["results"]
    assert number(results["test_bleu"], 0, 100) and results["test_beam_size"] == 5
    assert number(results["tgt_tokens_per_s"]) and results["tgt_tokens_per_s"] > 0
    assert results["tgt_tokens_per_s_per_epoch"] and all(v > 0 for v in results["tgt_tokens_per_s_per_epoch"])
    assert results["epochs_run"] == m30k["budget"]["epochs"] == 1 and results["stopped_by"] == "max_epochs"
    assert m30k["budget"]["recipe_epochs"] == 20 and len(results["epoch_s"]) == 1
    assert results["bleu_minus_reference"] == pytest.approx(results["test_bleu"] - 40.1)

    cifar = parts["cifar10"]
    assert "experiment=cifar10_resnet18 data=image_folder" in cifar["command"]
    results = cifar["results"]
    assert number(results["test_acc"], 0, 1) and number(results["wall_s"]) and results["wall_s"] > 0
    assert results["epochs_run"] == cifar["budget"]["epochs"] == 1 and cifar["budget"]["recipe_epochs"] == 30

    # about 40 s of CPU (four processes importing torch and Lightning); seconds per part, not minutes, even when busy
    assert report["wall_s"] <= wall < 300, f"the tiny check took {wall:.0f} s"


def test_a_part_that_cannot_run_is_recorded_and_the_exit_status_says_so(tmp_path):
    out = tmp_path / "check.json"
    proc = check("--tiny", "--parts", "multi30k,cifar10", "--data-dir", str(tmp_path / "nothing"), "--out", str(out),
                 timeout=120)
    assert proc.returncode == 1
    report = json.loads(out.read_text())
    assert report["complete"] and not report["ok"] and report["failed"] == ["multi30k", "cifar10"]
    assert "multi30k/train.de.gz" in report["parts"]["multi30k"]["error"]
    assert "cifar10-jpg.tar.gz" in report["parts"]["cifar10"]["error"]

    # joined with an earlier check's parts: the failed ones stay failed, the others come along
    earlier = tmp_path / "earlier.json"
    earlier.write_text(json.dumps({"started": "then", "parts": {"overhead": {"status": "ok", "results": {}}}}))
    joined = tmp_path / "joined.json"
    proc = check("--parts", "none", "--keep", str(earlier), "--keep", str(out), "--out", str(joined), timeout=120)
    assert proc.returncode == 1
    parts = json.loads(joined.read_text())["parts"]
    assert parts["overhead"]["kept_from"]["file"] == str(earlier) and parts["cifar10"]["status"] == "failed"


def test_a_part_past_its_time_is_stopped_with_its_process_group(tmp_path):
    module = gpu_check()
    log = tmp_path / "part.log"
    code = "import subprocess, sys, time; subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)']); " \
           "print('started', flush=True); time.sleep(60)"
    start = time.perf_counter()
    rc, wall = module.run_part([sys.executable, "-c", code], log, timeout=3, env=dict(os.environ))
    assert rc is None and 3 <= wall < 20 and time.perf_counter() - start < 20
    assert "started" in log.read_text()


def test_benchmark_lines_are_read():
    module = gpu_check()
    text = ("data=multi30k batch_size=128 model=gru emb 512 hidden 512 x1 precision 32 device: NVIDIA H200\n"
            "round 1: gradlab 40.1 ms/step, plain 39.0 ms/step\ntarget tokens/s: gradlab 41,250, plain 42,001\n"
            "median: gradlab 40.10 ms/step, plain PyTorch 39.00 ms/step, ratio 1.028\n")
    assert module.parse_benchmark(text) == {
        "gradlab_ms_per_step": 40.1, "plain_ms_per_step": 39.0, "ratio": 1.028, "device": "NVIDIA H200",
        "gradlab_tgt_tokens_per_s": 41250.0, "plain_tgt_tokens_per_s": 42001.0}
    with pytest.raises(ValueError):
        module.parse_benchmark("Traceback (most recent call last):\n")
