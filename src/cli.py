"""What the entry points share: check what the user typed, then run one step of src/pipeline.py.

Nothing here imports torch; src.pipeline (torch, Lightning) is imported only once the checks pass.
"""
from __future__ import annotations

import logging
import os
import re
import sys
from pathlib import Path

from omegaconf import DictConfig


def run(cfg: DictConfig, config_name: str, action: str):
    """validate(cfg), then src.pipeline.<action>(cfg). A UserError ends the process with one line on stderr and
    exit status 2, not a traceback."""
    from src.errors import UserError

    try:
        from src.checks import validate

        validate(cfg, config_name)
        from src import pipeline

        return getattr(pipeline, action)(cfg)
    except UserError as e:
        print(f"{e.prefix}{e}", file=sys.stderr, flush=True)
        sys.exit(e.exit_code)


class RankZero(logging.Filter):
    """A handler filter (conf/hydra/job_logging/gradlab.yaml): what a run says at INFO and below is said by its
    first process only; warnings and errors from every process. The rank comes from the variables Lightning's
    launcher, torchrun and SLURM set (as Lightning reads it), so nothing heavy is imported to know it."""

    def __init__(self):
        super().__init__()
        rank = next((os.environ[k] for k in ("RANK", "LOCAL_RANK", "SLURM_PROCID", "JSM_NAMESPACE_RANK")
                     if k in os.environ), "0")
        self.rank = int(rank) if rank.isdigit() else 0

    def filter(self, record: logging.LogRecord) -> bool:
        return self.rank == 0 or record.levelno > logging.INFO


def resume_in_place(argv: list[str]) -> list[str]:
    """`ckpt_path=<run>/checkpoints/x.ckpt` continues that run in its own directory: the checkpoint's
    record of the best model so far stays valid there, and logs go on where they were. The composed
    config of the resumed part goes to .hydra/resume-<time> so the original one is kept. An explicit
    hydra.run.dir=..., or a multirun, is left alone."""
    import time

    args = argv[1:]
    value = next((a.split("=", 1)[1] for a in args if a.startswith("ckpt_path=")), None)
    if value == "last":
        found = find_last_checkpoint(args)
        if found:
            argv = [argv[0], *(f"ckpt_path={found}" if a == "ckpt_path=last" else a for a in args)]
            args, value = argv[1:], str(found)
    if any(a.startswith(("hydra.run.dir=", "hydra.output_subdir=")) for a in args) or any(
            a in ("-m", "--multirun") for a in args):
        return argv
    if not value:
        return argv
    ckpt = Path(value.strip("'\""))
    if not (ckpt.is_file() and ckpt.parent.name == "checkpoints" and (ckpt.parent.parent / ".hydra").is_dir()):
        return argv
    run_dir = ckpt.parent.parent
    return [*argv, f"hydra.run.dir={run_dir}", f"hydra.output_subdir=.hydra/resume-{time.strftime('%Y%m%d-%H%M%S')}"]


def find_last_checkpoint(args: list[str]) -> Path | None:
    """What `ckpt_path=last` means: <hydra.run.dir>/checkpoints/last.ckpt when the run directory is given, else
    the newest last.ckpt of this task's runs under <paths.log_dir>/<task>/ (outputs/image/... by default)."""
    given = dict(a.split("=", 1) for a in args if "=" in a and not a.startswith(("+", "~")))
    if "hydra.run.dir" in given:
        path = Path(given["hydra.run.dir"].strip("'\"")) / "checkpoints" / "last.ckpt"
        return path if path.is_file() else None
    task = given.get("task", "image")
    for a in args:  # an experiment names its task in its own file
        if a.startswith("experiment="):
            recipe = Path(__file__).resolve().parent.parent / "conf" / "experiment" / f"{a.split('=', 1)[1]}.yaml"
            if recipe.is_file():
                for line in recipe.read_text().splitlines():
                    if line.strip().startswith("- override /task:"):
                        task = line.split(":", 1)[1].strip()
    root = Path(given.get("paths.log_dir", Path(given.get("paths.root_dir", ".")) / "outputs")) / task
    found = sorted(root.glob("*/*/checkpoints/last.ckpt"), key=lambda p: p.stat().st_mtime)
    return found[-1] if found else None


def quote_text(argv: list[str], keys: tuple[str, ...] = ("input", "inputs")) -> list[str]:
    """`input=a gorgeous, witty film` as typed (the shell has eaten the quotes) is, to Hydra, a sweep over
    a list; an input is always one string, so its value is quoted for Hydra here, before it parses."""
    out = [argv[0]]
    for a in argv[1:]:
        key, eq, value = a.partition("=")
        if eq and key in keys and not (len(value) >= 2 and value[0] == value[-1] and value[0] in "'\""):
            # in a quoted Hydra value, a backslash escapes only a quote or the backslashes before one (or
            # before the closing quote); any other backslash is itself
            value = re.sub(r"(\\*)'", lambda m: m.group(1) * 2 + "\\'", value)
            value = re.sub(r"(\\+)$", lambda m: m.group(1) * 2, value)
            a = f"{key}='{value}'"
        out.append(a)
    return out
