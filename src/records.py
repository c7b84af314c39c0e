"""What a run leaves and says about itself: run.json (how it was started: command, commit, versions, seed),
metrics.json (its final numbers), and the tables it logs (metrics, samples), all through `logging` so that they
land in the run's log file too."""
from __future__ import annotations

import json
import logging
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

from src.errors import DiskFull, out_of_space

log = logging.getLogger(__name__)


def write_json(path: Path, data: dict) -> None:
    """Atomically: a kill never leaves half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".json.part")
    try:
        tmp.write_text(json.dumps(data, indent=2, sort_keys=False) + "\n")
        os.replace(tmp, path)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        if out_of_space(e):
            raise DiskFull(path, e) from None
        raise


def earlier_parts(path: Path) -> list[dict]:
    """The records of a run's earlier parts, oldest first, from its run.json (each part started, or was resumed, by
    one command): a resumed run's run.json keeps them under "history". An unreadable file is history lost, not a
    reason to stop the run."""
    try:
        previous = json.loads(path.read_text())
    except (OSError, ValueError):
        log.warning("%s could not be read: the history of the run's earlier parts starts again here", path)
        return []
    if not isinstance(previous, dict):
        return []
    return [*previous.pop("history", []), previous]


def git() -> dict:
    """The commit of this checkout and whether tracked files were changed (None where git cannot tell)."""
    root = Path(__file__).resolve().parent.parent
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=5)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                               capture_output=True, text=True, timeout=5)
        if commit.returncode != 0:
            return {"commit": None, "dirty": None}
        return {"commit": commit.stdout.strip(), "dirty": bool(dirty.stdout.strip())}
    except (OSError, subprocess.SubprocessError):
        return {"commit": None, "dirty": None}


def run_info(**extra) -> dict:
    """The start of a run's run.json: command, working directory, commit, versions, host, start time."""
    import lightning as L
    import torch

    return {"command": [sys.executable, *sys.argv], "cwd": os.getcwd(), "git": git(),
            "python": platform.python_version(), "torch": torch.__version__, "lightning": L.__version__,
            "threads": torch.get_num_threads(),
            "host": platform.node(), "started": time.strftime("%Y-%m-%dT%H:%M:%S"), **extra}


def table_text(table) -> str:
    """A Rich table as plain text, for the log (the console shows it as drawn; the log file keeps it)."""
    from rich.console import Console

    console = Console(width=110, color_system=None, force_terminal=False, record=True, file=open(os.devnull, "w"))
    console.print(table)
    console.file.close()
    return console.export_text().rstrip()


def log_metrics(title: str, metrics: dict, run_dir: Path) -> None:
    from rich.table import Table

    table = Table(title=title, title_justify="left")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for k, v in metrics.items():
        table.add_row(k, f"{v:.4f}" if isinstance(v, float) else str(v))
    log.info("%s\nrun directory: %s", table_text(table), run_dir)
