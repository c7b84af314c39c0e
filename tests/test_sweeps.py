"""Hydra multirun: each run of a grid in its own directory with its own metrics.json, a summary of all runs at
the end (best first), and Optuna searches (hparams_search=<task>_optuna) that name their best trial and resume."""
import csv
import json

import pytest
import yaml

from tests.helpers import QUICK, run_here

pytestmark = pytest.mark.slow  # every test is a multirun of several trainings

FAST = [*QUICK, "trainer.max_epochs=1", "trainer.limit_train_batches=5"]


def test_a_grid_runs_each_point_in_its_own_directory_and_ends_with_a_summary(tmp_path):
    # the grid the issue names
    proc = run_here("train.py", "-m", *FAST, "task=image", "optimizer.lr=1e-3,1e-2", "model.width=16,32",
                      f"paths.sweep_dir={tmp_path}")
    found = sorted(tmp_path.glob("*/*/*/metrics.json"))
    assert [p.parent.name for p in found] == ["0", "1", "2", "3"], proc.stdout[-2000:]
    assert all("test/acc" in json.loads(p.read_text()) for p in found)
    assert all((p.parent / ".hydra" / "overrides.yaml").is_file() for p in found)
    summary = next(tmp_path.glob("*/*/summary.csv"))
    with open(summary) as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 4 and list(rows[0])[:4] == ["run", "status", "overrides", "val/acc"]
    values = [float(r["val/acc"]) for r in rows]
    assert values == sorted(values, reverse=True)  # best first by the monitored metric
    for r in rows:  # each row is its run's own metrics and overrides
        run = summary.parent / r["run"]
        assert float(r["test/acc"]) == json.loads((run / "metrics.json").read_text())["test/acc"]
        assert r["overrides"].split(" ") == yaml.safe_load((run / ".hydra" / "overrides.yaml").read_text())
    assert "best first by val/acc" in proc.stdout and str(summary) in proc.stdout.replace("\n", "")


def test_an_optuna_search_names_its_best_trial_and_resumes_where_it_stopped(tmp_path):
    search = ["hparams_search=image_optuna", *FAST, f"paths.sweep_dir={tmp_path}"]
    run_here("train.py", *search, "hydra.sweeper.n_trials=3")
    study = tmp_path / "optuna" / "image"
    assert sorted(p.name for p in study.iterdir() if p.name.isdigit()) == ["0", "1", "2"]
    proc = run_here("train.py", *search, "hydra.sweeper.n_trials=4")  # the same search, one trial more
    assert "3 trials finished, 1 to go" in proc.stdout
    runs = sorted(p.name for p in study.iterdir() if p.name.isdigit())
    assert runs == ["0", "1", "2", "3"]  # one new run, numbered after the others
    params = [yaml.safe_load((study / r / ".hydra" / "overrides.yaml").read_text())[:4] for r in runs]
    assert len({tuple(p) for p in params}) == 4  # the resumed trial is not a repeat of an earlier one
    best = yaml.safe_load((study / "optimization_results.yaml").read_text())
    val = {r: json.loads((study / r / "metrics.json").read_text())["val/acc"] for r in runs}
    assert best["best_value"] == max(val.values())
    assert "Best parameters" in proc.stdout + proc.stderr
    with open(study / "summary.csv") as f:
        assert [r["run"] for r in csv.DictReader(f)][0] in [r for r, v in val.items() if v == max(val.values())]
