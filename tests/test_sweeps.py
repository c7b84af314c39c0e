"""Hydra multirun: each run of a grid in its own directory with its own metrics.json, a summary of all runs at
the end (best first), and Optuna searches (hparams_search=<task>_optuna) that name their best trial and resume."""
import csv
import json
import os
import statistics
from datetime import datetime

import pytest
import yaml

from tests.helpers import QUICK, run_here

pytestmark = pytest.mark.slow  # every test is a multirun of several trainings

FAST = [*QUICK, "trainer.max_epochs=1", "trainer.limit_train_batches=5"]


def test_a_grid_runs_each_point_in_its_own_directory_and_pools_seeds(tmp_path):
    # the sweep of the issue: three seeds of two learning rates, on digits
    proc = run_here("train.py", "-m", *FAST, "task=image", "seed=1,2,3", "optimizer.lr=1e-3,1e-2",
                    f"paths.sweep_dir={tmp_path}")
    found = sorted(tmp_path.glob("*/*/*/metrics.json"), key=lambda p: int(p.parent.name))
    assert [p.parent.name for p in found] == [str(i) for i in range(6)], proc.stdout[-2000:]
    assert all("test/acc" in json.loads(p.read_text()) for p in found)
    summary = next(tmp_path.glob("*/*/summary.csv"))
    with open(summary) as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 6 and list(rows[0])[:4] == ["run", "status", "overrides", "val/acc"]
    values = [float(r["val/acc"]) for r in rows]
    assert values == sorted(values, reverse=True)  # best first by the monitored metric
    for r in rows:  # each row is its run's own metrics and overrides
        run = summary.parent / r["run"]
        assert float(r["test/acc"]) == json.loads((run / "metrics.json").read_text())["test/acc"]
        assert r["overrides"].split(" ") == yaml.safe_load((run / ".hydra" / "overrides.yaml").read_text())
    assert "best first by val/acc" in proc.stdout and str(summary) in proc.stdout.replace("\n", "")
    # pooled over seeds: mean and standard deviation per learning rate, best mean first
    with open(summary.parent / "summary_seeds.csv") as f:
        pooled = list(csv.DictReader(f))
    assert len(pooled) == 2 and all(p["runs"] == "3" and p["seeds"] == "1 2 3" for p in pooled)
    for p in pooled:
        lr = next(o for o in p["config"].split(" ") if o.startswith("optimizer.lr="))
        accs = [float(r["val/acc"]) for r in rows if lr in r["overrides"].split(" ")]
        assert float(p["val/acc mean"]) == pytest.approx(statistics.fmean(accs))
        assert float(p["val/acc std"]) == pytest.approx(statistics.stdev(accs))
    assert float(pooled[0]["val/acc mean"]) >= float(pooled[1]["val/acc mean"])
    assert "over seeds" in proc.stdout and "±" in proc.stdout


def test_an_optuna_search_prunes_names_its_best_trial_and_resumes_where_it_stopped(tmp_path):
    import optuna

    # the search: 8 trials under the median pruner (hparams_search's default), then 4 more
    search = ["hparams_search=image_optuna", *QUICK, "trainer.max_epochs=4", "trainer.limit_train_batches=6",
              "test=false", f"paths.sweep_dir={tmp_path}"]
    run_here("train.py", *search, "hydra.sweeper.n_trials=8")
    study_dir = tmp_path / "optuna" / "image"
    storage = f"sqlite:///{study_dir / 'optuna.db'}"
    states = [t.state for t in optuna.load_study(study_name="image", storage=storage).trials]
    pruned = [str(i) for i, s in enumerate(states) if s == optuna.trial.TrialState.PRUNED]
    assert len(states) == 8 and pruned and optuna.trial.TrialState.FAIL not in states, states
    with open(study_dir / "summary.csv") as f:
        rows = {r["run"]: r for r in csv.DictReader(f)}
    assert sorted(r for r, row in rows.items() if row["status"].startswith("pruned")) == pruned
    assert all(rows[r]["status"] == "done" for r in rows if r not in pruned)  # pruned is never failed

    proc = run_here("train.py", *search, "hydra.sweeper.n_trials=12")  # the same search, to 12 trials
    assert "8 trials finished, 4 to go" in proc.stdout
    runs = sorted((p.name for p in study_dir.iterdir() if p.name.isdigit()), key=int)
    assert runs == [str(i) for i in range(12)]  # exactly four new runs, numbered after the others
    assert len(optuna.load_study(study_name="image", storage=storage).trials) == 12
    params = [tuple(yaml.safe_load((study_dir / r / ".hydra" / "overrides.yaml").read_text())[-4:]) for r in runs]
    assert len(set(params)) == 12  # no resumed trial repeats an earlier one
    best = yaml.safe_load((study_dir / "optimization_results.yaml").read_text())
    val = {r: json.loads((study_dir / r / "metrics.json").read_text())["val/acc"] for r in runs
           if (study_dir / r / "metrics.json").is_file()}
    assert best["best_value"] == max(val.values())
    assert "Best parameters" in proc.stdout + proc.stderr
    with open(study_dir / "summary.csv") as f:
        assert [r["run"] for r in csv.DictReader(f)][0] in [r for r, v in val.items() if v == max(val.values())]


def test_trials_run_side_by_side_through_joblib_each_with_its_share_of_threads(tmp_path):
    from tests.helpers import run_script

    run_script("train.py", "hparams_search=image_optuna", *FAST, "hydra/launcher=joblib", "hydra.launcher.n_jobs=2",
               "hydra.sweeper.n_trials=2", "test=false", f"paths.sweep_dir={tmp_path}", timeout=600)
    study_dir = tmp_path / "optuna" / "image"
    runs = sorted(p for p in study_dir.iterdir() if p.name.isdigit())
    assert [r.name for r in runs] == ["0", "1"] and all((r / "metrics.json").is_file() for r in runs)
    cores = os.cpu_count()
    assert [json.loads((r / "run.json").read_text())["threads"] for r in runs] == [max(1, cores // 2)] * 2
    starts = [json.loads((r / "run.json").read_text())["started"] for r in runs]
    assert abs((datetime.fromisoformat(starts[0]) - datetime.fromisoformat(starts[1])).total_seconds()) < 20


def test_trials_run_as_submitit_jobs_report_to_a_journal_file_and_are_pruned(tmp_path):
    import optuna

    from tests.helpers import run_script

    # a pruner that stops every trial after its first validation: each trial, in its own process, must reach it
    proc = run_script("train.py", "hparams_search=image_optuna", *FAST, "trainer.max_epochs=2",
                      "hydra/launcher=submitit_local", "hydra.launcher.timeout_min=5", "hydra.sweeper.n_trials=2",
                      "hydra.sweeper.pruner={_target_:optuna.pruners.ThresholdPruner,lower:2.0}",
                      f"paths.sweep_dir={tmp_path}", timeout=600)
    study_dir = tmp_path / "optuna" / "image"
    assert "journal" in proc.stdout and (study_dir / "optuna.journal").is_file()
    assert not (study_dir / "optuna.db").exists()
    storage = optuna.storages.JournalStorage(
        optuna.storages.journal.JournalFileBackend(str(study_dir / "optuna.journal")))
    trials = optuna.load_study(study_name="image", storage=storage).trials
    assert [t.state for t in trials] == [optuna.trial.TrialState.PRUNED] * 2
    assert all(list(t.intermediate_values) == [0] for t in trials)  # reported after epoch 0, stopped there
    assert all((study_dir / str(i) / "pruned.json").is_file() for i in range(2))


def test_the_command_line_wins_over_the_search_space_and_values_are_passed_back_as_typed():
    from hydra.core.override_parser.overrides_parser import OverridesParser

    from hydra_plugins.gradlab_sweeper import _encode, search_space

    space, fixed = search_space({"a": "interval(0, 1)", "b": "choice(1, 2)", "c": "3"}, ["a=0.5", "c=1,2", "d=x"])
    assert sorted(space) == ["b", "c"] and fixed == ["a=0.5", "d=x"]
    parser = OverridesParser.create()
    for value in ["a b", "x\\y", "it's", "end\\", "c:\\dir\\", "q\\'", 0.001, True, None]:
        assert parser.parse_override(f"k={_encode(value)}").value() == value
