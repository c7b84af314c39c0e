"""What the entry points share: check what the user typed, then run one step of src/pipeline.py.

Nothing here imports torch; src.pipeline (torch, Lightning) is imported only once the checks pass.
"""
from __future__ import annotations

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
        print(f"error: {e}", file=sys.stderr, flush=True)
        sys.exit(2)


def resume_in_place(argv: list[str]) -> list[str]:
    """`ckpt_path=<run>/checkpoints/x.ckpt` continues that run in its own directory: the checkpoint's
    record of the best model so far stays valid there, and logs go on where they were. The composed
    config of the resumed part goes to .hydra/resume-<time> so the original one is kept. An explicit
    hydra.run.dir=..., or a multirun, is left alone."""
    import time

    args = argv[1:]
    if any(a.startswith(("hydra.run.dir=", "hydra.output_subdir=")) for a in args) or any(
            a in ("-m", "--multirun") for a in args):
        return argv
    value = next((a.split("=", 1)[1] for a in args if a.startswith("ckpt_path=")), None)
    if not value:
        return argv
    ckpt = Path(value.strip("'\""))
    if not (ckpt.is_file() and ckpt.parent.name == "checkpoints" and (ckpt.parent.parent / ".hydra").is_dir()):
        return argv
    run_dir = ckpt.parent.parent
    return [*argv, f"hydra.run.dir={run_dir}", f"hydra.output_subdir=.hydra/resume-{time.strftime('%Y%m%d-%H%M%S')}"]


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
