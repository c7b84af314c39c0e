"""Hydra multirun: each run of a grid in its own directory, with its own metrics.json."""
import json

from tests.helpers import QUICK, run_script


def test_a_grid_runs_each_point_in_its_own_directory(tmp_path):
    proc = run_script("train.py", "-m", *QUICK, "trainer.max_epochs=1", "trainer.limit_train_batches=5",
                      "optimizer.lr=1e-3,3e-3", f"paths.sweep_dir={tmp_path}")
    found = sorted(tmp_path.glob("*/*/*/metrics.json"))
    assert [p.parent.name for p in found] == ["0", "1"], proc.stdout[-2000:]
    assert all("test/acc" in json.loads(p.read_text()) for p in found)
    assert all((p.parent / ".hydra" / "overrides.yaml").is_file() for p in found)
