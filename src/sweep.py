"""Sweeps (Hydra multirun): a summary of every run at the end, and what the resumable Optuna sweeper
(hydra_plugins/gradlab_sweeper) asks of a stored study.

Nothing here imports torch: Hydra builds its callbacks and sweeper before any run starts.
"""
from __future__ import annotations

import csv
import json
import math
from pathlib import Path

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf


def collect(sweep_dir: Path) -> tuple[list[dict], str | None]:
    """(rows, the monitored metric's name): one row per run directory of a sweep: {"run", "status", "overrides",
    <metric>: value, ...}, best first by the task's monitored metric (task.monitor, task.mode of each run's config);
    failed runs last."""
    rows, monitor, mode = [], None, "max"
    for run in sorted((p for p in sweep_dir.iterdir() if (p / ".hydra" / "config.yaml").is_file()),
                      key=lambda p: (len(p.name), p.name)):
        cfg = OmegaConf.load(run / ".hydra" / "config.yaml")
        monitor, mode = OmegaConf.select(cfg, "task.monitor") or monitor, OmegaConf.select(cfg, "task.mode") or mode
        overrides = OmegaConf.load(run / ".hydra" / "overrides.yaml")
        metrics_file = run / "metrics.json"
        metrics = json.loads(metrics_file.read_text()) if metrics_file.is_file() else {}
        rows.append({"run": run.name, "status": "done" if metrics else "failed",
                     "overrides": " ".join(str(o) for o in overrides), **metrics})

    def key(row):
        value = row.get(monitor)
        if value is None or (isinstance(value, float) and math.isnan(value)):
            return (1, 0.0)
        return (0, -value if mode == "max" else value)

    rows.sort(key=key)
    return rows, monitor


def write_summary(sweep_dir: Path, rows: list[dict], monitor: str | None) -> Path:
    metrics = sorted({k for r in rows for k in r} - {"run", "status", "overrides", monitor},
                     key=lambda k: (not k.startswith("test/"), k))
    columns = ["run", "status", "overrides"] + ([monitor] if monitor else []) + metrics
    path = sweep_dir / "summary.csv"
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns, restval="")
        writer.writeheader()
        writer.writerows(rows)
    return path


class SweepSummary(Callback):
    """At the end of a multirun, writes <sweep dir>/summary.csv (every run's overrides and final metrics, best
    first by the task's monitored metric) and prints it as a table."""

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
            varying = " ".join(o for o in s if o not in common)
            table.add_row(r["run"], varying if r["status"] == "done" else f"{varying} (failed)",
                          *(f"{r[c]:.4f}" if isinstance(r.get(c), float) else "" for c in shown))
        console = Console()
        console.print(table)
        console.print(f"summary: {path}")


def existing_trials(storage, study_name) -> tuple[int, int]:
    """(finished trials, all trials) of a stored study; (0, 0) when there is none yet."""
    if not storage or not study_name:
        return 0, 0
    import optuna

    try:
        study = optuna.load_study(study_name=study_name, storage=storage)
    except KeyError:  # no such study in the storage yet
        return 0, 0
    trials = study.get_trials(deepcopy=False)
    return sum(t.state == optuna.trial.TrialState.COMPLETE for t in trials), len(trials)
