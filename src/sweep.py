"""Sweeps (Hydra multirun): a summary of every run at the end, and what the resumable Optuna sweeper
(hydra_plugins/gradlab_sweeper) asks of a stored study.

Nothing here imports torch: Hydra builds its callbacks and sweeper before any run starts.
"""
from __future__ import annotations

import csv
import json
import math
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf


def collect(sweep_dir: Path) -> tuple[list[dict], str | None]:
    """(rows, the monitored metric's name): one row per run directory of a sweep: {"run", "status", "overrides",
    <metric>: value, ...}, best first by the task's monitored metric (task.monitor, task.mode of each run's config);
    then the trials an Optuna pruner stopped (status "pruned", with the metric where they stopped), failed runs
    last."""
    rows, monitor, mode = [], None, "max"
    for run in sorted((p for p in sweep_dir.iterdir() if (p / ".hydra" / "config.yaml").is_file()),
                      key=lambda p: (len(p.name), p.name)):
        cfg = OmegaConf.load(run / ".hydra" / "config.yaml")
        monitor, mode = OmegaConf.select(cfg, "task.monitor") or monitor, OmegaConf.select(cfg, "task.mode") or mode
        overrides = OmegaConf.load(run / ".hydra" / "overrides.yaml")
        row = {"run": run.name, "status": "failed", "overrides": " ".join(str(o) for o in overrides)}
        if (run / "metrics.json").is_file():
            row.update(status="done", **json.loads((run / "metrics.json").read_text()))
        elif (run / "pruned.json").is_file():
            pruned = json.loads((run / "pruned.json").read_text())
            row.update(status=f"pruned at epoch {pruned.pop('epoch', '?')}", **pruned)
        rows.append(row)

    order = {"done": 0, "pruned": 1, "failed": 2}

    def key(row):
        value = row.get(monitor)
        rank = order[row["status"].split(" ")[0]]
        if value is None or (isinstance(value, float) and math.isnan(value)):
            return (rank, 1, 0.0)
        return (rank, 0, -value if mode == "max" else value)

    rows.sort(key=key)
    return rows, monitor


def _metric_columns(rows: list[dict], monitor: str | None) -> list[str]:
    return ([monitor] if monitor else []) + sorted(
        {k for r in rows for k in r} - {"run", "status", "overrides", monitor},
        key=lambda k: (not k.startswith("test/"), k))


def write_summary(sweep_dir: Path, rows: list[dict], monitor: str | None) -> Path:
    columns = ["run", "status", "overrides"] + _metric_columns(rows, monitor)
    path = sweep_dir / "summary.csv"
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns, restval="")
        writer.writeheader()
        writer.writerows(rows)
    return path


def seed_statistics(rows: list[dict], monitor: str | None, mode: str = "max") -> list[dict]:
    """Runs that differ only in `seed` pooled: one row per configuration (its overrides without seed=...) with the
    number of runs and, per metric, mean and sample standard deviation, best first by the monitored metric's mean.
    Empty when no two finished runs share a configuration."""
    import statistics

    groups: dict[str, list[dict]] = {}
    for r in rows:
        if r["status"] == "done":
            config = " ".join(o for o in r["overrides"].split(" ") if not o.startswith("seed="))
            groups.setdefault(config, []).append(r)
    if not any(len(g) > 1 for g in groups.values()):
        return []
    out = []
    for config, runs in groups.items():
        row = {"config": config, "runs": len(runs),
               "seeds": " ".join(sorted((o.removeprefix("seed=") for r in runs for o in r["overrides"].split(" ")
                                         if o.startswith("seed=")), key=lambda v: (len(v), v)))}
        for metric in _metric_columns(runs, monitor):
            values = [float(r[metric]) for r in runs if isinstance(r.get(metric), (int, float))]
            if values:
                row[f"{metric} mean"] = statistics.fmean(values)
                row[f"{metric} std"] = statistics.stdev(values) if len(values) > 1 else float("nan")
        out.append(row)
    sign = -1 if mode == "max" else 1
    out.sort(key=lambda r: sign * r.get(f"{monitor} mean", -sign * math.inf))
    return out


def _short(override: str) -> str:
    """optimizer.lr=0.0025254478013819587 -> optimizer.lr=0.002525, for the printed table (summary.csv keeps all)."""
    key, eq, value = override.partition("=")
    try:
        number = float(value)
    except ValueError:
        return override
    return f"{key}={number:.4g}" if eq and len(value) > 8 and "." in value else override


class SweepSummary(Callback):
    """At the end of a multirun, writes <sweep dir>/summary.csv (every run's overrides and final metrics, best
    first by the task's monitored metric) and prints it as a table. When runs differ only in their seed
    (seed=1,2,3), summary_seeds.csv and a second table pool them: mean ± standard deviation per configuration."""

    def on_multirun_end(self, config: DictConfig, **kwargs) -> None:
        sweep_dir = Path(config.hydra.sweep.dir)
        if not sweep_dir.is_dir():
            return
        rows, monitor = collect(sweep_dir)
        if not rows:
            return
        path = write_summary(sweep_dir, rows, monitor)
        from rich.console import Console
        from rich.table import Table

        shown = [monitor] if monitor else []
        shown += [k for k in rows[0] if k.startswith("test/") and k != monitor][:4]
        # the table shows what differs between runs; the overrides all runs share go in its caption
        split = [r["overrides"].split(" ") for r in rows]
        common = [o for o in split[0] if all(o in s for s in split[1:])]
        table = Table(title=f"sweep: {len(rows)} runs, best first by {monitor}", title_justify="left",
                      caption=f"every run: {' '.join(common)}" if common else None, caption_justify="left")
        for c in ["run", "overrides", *shown]:
            table.add_column(c, justify="right" if c in shown else "left", overflow="fold")
        for r, s in zip(rows, split):
            varying = " ".join(_short(o) for o in s if o not in common)
            table.add_row(r["run"], varying if r["status"] == "done" else f"{varying} ({r['status']})",
                          *(f"{r[c]:.4f}" if isinstance(r.get(c), float) else "" for c in shown))
        console = Console()
        console.print(table)
        console.print(f"summary: {path}")
        mode = OmegaConf.select(config, "task.mode", default="max")
        pooled = seed_statistics(rows, monitor, mode)
        if pooled:
            self._print_seeds(console, sweep_dir, pooled, monitor, common)

    @staticmethod
    def _print_seeds(console, sweep_dir: Path, pooled: list[dict], monitor: str, common: list[str]) -> None:
        from rich.table import Table

        path = sweep_dir / "summary_seeds.csv"
        with open(path, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(dict.fromkeys(k for r in pooled for k in r)), restval="")
            writer.writeheader()
            writer.writerows(pooled)
        metrics = [m.removesuffix(" mean") for m in pooled[0] if m.endswith(" mean")]
        shown = [monitor] + [m for m in metrics if m.startswith("test/") and m != monitor][:3]
        table = Table(title=f"over seeds: {len(pooled)} configurations, best first by the mean of {monitor} "
                            f"(mean ± standard deviation)", title_justify="left")
        for c in ["configuration", "runs", *shown]:
            table.add_column(c, justify="left" if c == "configuration" else "right", overflow="fold")
        for r in pooled:
            config = " ".join(_short(o) for o in r["config"].split(" ") if o not in common) or "(all the same)"
            table.add_row(config, str(r["runs"]), *(f"{r[f'{m} mean']:.4f} ± {r[f'{m} std']:.4f}"
                                                    if f"{m} mean" in r else "" for m in shown))
        console.print(table)
        console.print(f"over seeds: {path}")


# what a trial needs to report to its study (hydra_plugins/gradlab_sweeper sets these in its environment)
TRIAL_ENV = {"storage": "GRADLAB_OPTUNA_STORAGE", "study": "GRADLAB_OPTUNA_STUDY", "trial": "GRADLAB_OPTUNA_TRIAL",
             "pruner": "GRADLAB_OPTUNA_PRUNER"}
PRUNERS = ("median", "successive_halving", "hyperband", "none")


def make_pruner(spec: Any, max_epochs: int | None):
    """None, a name of PRUNERS or a config with _target_ -> an Optuna pruner. The named ones never prune in the
    first trials (3 of them) or before the second validation, and Hyperband spans 1 to trainer.max_epochs."""
    import optuna

    if spec is None or spec == "none":
        return optuna.pruners.NopPruner()
    if isinstance(spec, (dict, DictConfig)):
        from hydra.utils import instantiate

        return instantiate(spec)
    if spec == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=1)
    if spec == "successive_halving":
        return optuna.pruners.SuccessiveHalvingPruner(min_resource=1, reduction_factor=3)
    if spec == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=1, max_resource=int(max_epochs) if max_epochs else "auto",
                                              reduction_factor=3)
    raise ValueError(f"hydra.sweeper.pruner={spec}: choose one of {', '.join(PRUNERS)}, or give an Optuna pruner "
                     f"as a config with _target_")


def open_storage(url: str | None):
    """An Optuna storage from hydra.sweeper.storage: sqlite:///<file> (one machine), journal:///<file> (Optuna's
    journal file: trials that run as separate jobs on a shared file system), any other database URL, or None (in
    memory)."""
    if not url:
        return None
    url = str(url)
    for prefix in ("sqlite:///", "journal:///"):  # a file in the sweep directory, which the first run creates
        if url.startswith(prefix):
            Path(url.removeprefix(prefix)).parent.mkdir(parents=True, exist_ok=True)
    if url.startswith("journal:///"):
        from optuna.storages import JournalStorage
        from optuna.storages.journal import JournalFileBackend

        return JournalStorage(JournalFileBackend(url.removeprefix("journal:///")))
    return url


def settle_trials(storage, study_name) -> tuple[int, int]:
    """(finished trials, all trials) of a stored study, (0, 0) when there is none yet. Finished: complete or pruned.
    A trial still marked running belongs to a sweep that was stopped: it is marked failed (and run again)."""
    if storage is None or not study_name:
        return 0, 0
    import optuna

    try:
        study = optuna.load_study(study_name=study_name, storage=storage)
    except KeyError:  # no such study in the storage yet
        return 0, 0
    states = optuna.trial.TrialState
    trials = study.get_trials(deepcopy=False)
    for t in trials:
        if t.state == states.RUNNING:
            study.tell(t.number, state=states.FAIL)
    return sum(t.state in (states.COMPLETE, states.PRUNED) for t in trials), len(trials)


def trial_pruning(monitor: str, run_dir: str, max_epochs: int | None):
    """The callback that reports to the study and prunes this run, when it is a trial of a sweep with a pruner
    (its environment names the study); None otherwise."""
    import os

    if not all(os.environ.get(v) for v in TRIAL_ENV.values()):
        return None
    from src.callbacks.pruning import TrialPruning

    # the study's pruner is not stored with it: the trial builds the same one the sweeper did
    pruner = make_pruner(json.loads(os.environ[TRIAL_ENV["pruner"]]), max_epochs)
    return TrialPruning(os.environ[TRIAL_ENV["storage"]], os.environ[TRIAL_ENV["study"]],
                        int(os.environ[TRIAL_ENV["trial"]]), pruner, monitor, run_dir)
