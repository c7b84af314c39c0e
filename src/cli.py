"""What the entry points share: check what the user typed, then run one step of src/pipeline.py.

Nothing here imports torch; src.pipeline (torch, Lightning) is imported only once the checks pass.
"""
from __future__ import annotations

import difflib
import logging
import os
import re
import sys
from pathlib import Path

from hydra.experimental.callback import Callback
from omegaconf import DictConfig


def run(cfg: DictConfig, config_name: str, action: str):
    """validate(cfg), then src.pipeline.<action>(cfg). A UserError ends the process with one line on stderr and
    exit status 2, not a traceback."""
    from src.errors import UserError

    try:
        from src.checks import validate

        if not _CHECKED:  # (RunDirectory checks before the run directory is made)
            validate(cfg, config_name)
        from src import pipeline

        return getattr(pipeline, action)(cfg)
    except (OSError, RuntimeError) as e:
        from src.errors import DiskFull, out_of_space

        cause = out_of_space(e)
        if cause is None:
            raise
        _exit(DiskFull(Path(cause.filename or cfg.get("paths", {}).get("output_dir") or "."), cause))  # a log
    except UserError as e:
        _exit(e)


def _exit(error) -> None:
    """End the process with a UserError's one line on stderr and its exit status."""
    print(f"{error.prefix}{error}", file=sys.stderr, flush=True)
    sys.exit(error.exit_code)


def report_errors(hydra_main, config_name: str) -> None:
    """Call an entry point's @hydra.main function with mistakes in the command line (an unknown key, group or option,
    a value Hydra cannot parse, a recipe of another task caught by the sweeper) answered in one line with a hint and
    exit status 2, where Hydra would print its own message and exit 1. Hydra reports errors in one place,
    hydra._internal.utils.run_and_report; it is wrapped while the function runs. Any other error is left to it."""
    import hydra._internal.utils as hydra_utils
    from hydra.errors import ConfigCompositionException, OverrideParseException

    from src.errors import UserError

    original = hydra_utils.run_and_report

    def report(func):
        try:
            return func()
        except UserError as e:
            _exit(e)
        except (ConfigCompositionException, OverrideParseException) as e:
            print(f"error: {config_message(e, config_name, sys.argv[1:])}", file=sys.stderr, flush=True)
            sys.exit(2)
        except Exception as e:  # noqa: BLE001 - Hydra's own report of everything else
            def again(error=e):
                raise error

            return original(again)

    hydra_utils.run_and_report = report
    try:
        hydra_main()
    finally:
        hydra_utils.run_and_report = original
        _release_run_dirs()
        _CHECKED.clear()


def _nearest(word: str, candidates) -> str:
    found = difflib.get_close_matches(word, [str(c) for c in candidates], n=1, cutoff=0.6)
    return f"; did you mean {found[0]}?" if found else ""


def _defaults_config(config_name: str, args: list[str]):
    """The config composed with the group choices in args (none of their values), for hints; None if it fails."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    from src.checks import CONF_DIR

    groups = [a for a in args if "=" in a and "," not in a and not a.startswith(("+", "~", "hydra"))
              and (CONF_DIR / a.split("=", 1)[0]).is_dir()]
    try:
        GlobalHydra.instance().clear()
        with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
            return compose(config_name=config_name, overrides=groups)
    except Exception:  # noqa: BLE001 - a hint is a courtesy
        return None


def config_message(e: Exception, config_name: str, args: list[str]) -> str:
    """Hydra's complaint about the command line as one line that names the key, group or option and the nearest
    existing one."""
    from hydra.errors import MissingConfigException, OverrideParseException
    from omegaconf import DictConfig, OmegaConf

    script = f"{config_name}.py"
    if isinstance(e, OverrideParseException):
        first = str(e.message).splitlines()[0]
        return (f"{e.override}: Hydra cannot read this ({first}). Quote a value holding spaces, commas, brackets or "
                f"'=': key='a, b'.")
    if isinstance(e, MissingConfigException) and e.missing_cfg_file and "/" in e.missing_cfg_file:
        group, _, name = e.missing_cfg_file.rpartition("/")
        options = sorted(e.options or [])
        return (f"{group}={name}: there is no {group} config {name!r}{_nearest(name, options) or '.'} The options "
                f"are: {', '.join(options)} (conf/{group}/).")
    text = str(e)
    cause = e.__cause__
    full_key = getattr(cause, "full_key", None)
    if text.startswith("Could not override") and full_key:
        typed = next((a for a in args if a.split("=", 1)[0].lstrip("+~") == text.split("'")[1]), text.split("'")[1])
        parent, _, name = str(full_key).rpartition(".")
        cfg = _defaults_config(config_name, args)
        node = OmegaConf.select(cfg, parent, default=None) if cfg is not None and parent else cfg
        hint = ""
        if isinstance(node, DictConfig):
            hint = _nearest(name, list(node.keys()))
            if hint:
                hint = hint.replace("did you mean ", f"did you mean {parent + '.' if parent else ''}")
        where = f"{parent} has no key {name!r}" if parent else f"there is no key or config group {name!r}"
        return (f"{typed}: {where}{hint or '.'} (`python {script} --cfg job` prints every key; "
                f"+{typed.lstrip('+')} adds a new one.)")
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.startswith(("\t", "Config "))]
    return " ".join(lines[:3])


# the run directories this process holds (RunDirectory), released when the entry point returns
_HELD: dict[str, object] = {}
# set once RunDirectory has checked what was typed
_CHECKED: list[bool] = []


def _rank() -> int:
    """This process's rank among those of one run, from what Lightning's launcher, torchrun and SLURM set."""
    rank = next((os.environ[k] for k in ("RANK", "LOCAL_RANK", "SLURM_PROCID", "JSM_NAMESPACE_RANK")
                 if k in os.environ), "0")
    return int(rank) if rank.isdigit() else 0


def _release_run_dirs() -> None:
    while _HELD:
        _HELD.popitem()[1].close()  # closing the file drops its lock


class RunDirectory(Callback):
    """A Hydra callback (conf/hydra/default.yaml, eval.yaml) that checks what was typed (src/checks.py) and settles
    who writes a run directory, before Hydra makes the directory and writes its .hydra/ config and log file there.

    - One run at a time: the first process of a run holds a lock on <run dir>/.lock (flock: the system drops it
      when the process ends, however it ends, so no stale lock is ever left) and writes there who holds it; a
      second run in the same directory stops at once, naming the first.
    - A resume (ckpt_path=..., or a SLURM requeue) into a directory that already holds a run keeps the run's own
      config: the resumed part's goes to .hydra/resume-<time>/.
    - A new run into a directory that holds another's checkpoints or metrics is refused rather than mixing
      the two.
    The other processes of a run (Lightning's DDP launcher, srun tasks: rank > 0) share the first's directory."""

    def on_run_start(self, config, config_name: str = "train", **kwargs) -> None:
        from src.errors import UserError

        try:
            self._settle(config, config_name)
        except UserError as e:  # Hydra turns a callback's exceptions into warnings: stop here
            _exit(e)

    def on_multirun_start(self, config, **kwargs) -> None:
        """A sweep directory named by the time (multirun/<date>/<time>) is claimed as the runs' are: two sweeps
        started in the same second write two. The jobs' configs are composed again from the sweep's hydra
        overrides, so the claimed directory goes there too."""
        from omegaconf import read_write

        if not _time_named(config.hydra.sweep):
            return
        sweep_dir = claim_directory(Path(str(config.hydra.sweep.dir)))
        with read_write(config.hydra):
            config.hydra.sweep.dir = str(sweep_dir)
            config.hydra.overrides.hydra.append(f"hydra.sweep.dir={quoted(str(sweep_dir))}")

    def _settle(self, config, config_name: str) -> None:
        import fcntl
        import json
        import time

        from hydra.core.hydra_config import HydraConfig
        from omegaconf import open_dict, read_write

        from src.checks import validate
        from src.errors import UserError

        HydraConfig.instance().set_config(config)
        validate(config, config_name)  # a mistake in what was typed creates nothing
        _CHECKED.append(True)
        if _rank() > 0:
            return
        run_dir = Path(str(config.hydra.run.dir))
        if _time_named(config.hydra.run):  # two runs started in the same second get two directories
            run_dir = claim_directory(run_dir)
            with read_write(config.hydra), open_dict(config.hydra):
                config.hydra.run.dir = str(run_dir)
        run_dir.mkdir(parents=True, exist_ok=True)
        lock = open(run_dir / ".lock", "a+")
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            lock.seek(0)
            try:
                holder = json.loads(lock.read() or "{}")
            except ValueError:
                holder = {}
            lock.close()
            who = (f" (pid {holder.get('pid')} on {holder.get('host')}, started {holder.get('started')}: "
                   f"{' '.join(holder.get('command', []))})" if holder else "")
            raise UserError(f"hydra.run.dir={run_dir} is in use by another run{who}: wait for it to end, or give "
                            f"this run another directory.") from None
        lock.seek(0)
        lock.truncate()
        lock.write(json.dumps({"pid": os.getpid(), "host": os.uname().nodename,
                               "started": time.strftime("%Y-%m-%dT%H:%M:%S"), "command": sys.argv}))
        lock.flush()
        _HELD[str(run_dir)] = lock

        requeued = os.environ.get("SLURM_RESTART_COUNT", "0") not in ("", "0")
        resuming = config_name == "train" and (bool(config.get("ckpt_path")) or requeued)
        if resuming and (run_dir / ".hydra" / "config.yaml").is_file() and config.hydra.output_subdir == ".hydra":
            with read_write(config.hydra), open_dict(config.hydra):
                config.hydra.output_subdir = f".hydra/resume-{time.strftime('%Y%m%d-%H%M%S')}"
        elif not resuming:
            held = [p.name for p in (run_dir / "checkpoints").glob("*.ckpt")] + [
                name for name in ("metrics.json",) if (run_dir / name).is_file()]
            if held:
                _release_run_dirs()
                raise UserError(f"hydra.run.dir={run_dir} already holds a run ({', '.join(sorted(held)[:3])}): "
                                f"continue it with ckpt_path=last hydra.run.dir={run_dir}, or give this run "
                                f"another directory.")


def _time_named(node) -> bool:
    """Whether a run or sweep directory is named by the time it started (${now:...}, as by default), rather than
    given: such a name is made unique; a given one is the user's to share or not."""
    from omegaconf import OmegaConf

    return "${now:" in str(OmegaConf.to_container(node, resolve=False).get("dir", ""))


def claim_directory(path: Path) -> Path:
    """path, or path-1, path-2, ...: the first that this process creates itself. Creating a directory is atomic,
    also on shared file systems, so two processes (two users, two array tasks) never claim the same one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    for n in range(10_000):
        candidate = path if n == 0 else path.with_name(f"{path.name}-{n}")
        try:
            candidate.mkdir()
            return candidate
        except FileExistsError:
            continue
    raise RuntimeError(f"{path}: 10,000 runs already started in this second")


def in_use(run_dir: Path) -> bool:
    """Whether a run is going on in run_dir now: its first process holds the lock on <run_dir>/.lock."""
    import fcntl

    lock = run_dir / ".lock"
    if not lock.is_file():
        return False
    with open(lock, "a+") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            return True
        fcntl.flock(f, fcntl.LOCK_UN)
    return False


class RankZero(logging.Filter):
    """A handler filter (conf/hydra/job_logging/gradlab.yaml): what a run says at INFO and below is said by its
    first process only; warnings and errors from every process. The rank comes from the variables Lightning's
    launcher, torchrun and SLURM set (as Lightning reads it), so nothing heavy is imported to know it."""

    def __init__(self):
        super().__init__()
        self.rank = _rank()

    def filter(self, record: logging.LogRecord) -> bool:
        return self.rank == 0 or record.levelno > logging.INFO


def resume_in_place(argv: list[str]) -> list[str]:
    """`ckpt_path=<run>/checkpoints/x.ckpt` continues that run in its own directory: the checkpoint's
    record of the best model so far stays valid there, and logs go on where they were (RunDirectory keeps the
    run's own config). An explicit hydra.run.dir=..., or a multirun, is left alone."""
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
    return [*argv, f"hydra.run.dir={ckpt.parent.parent}"]


def find_last_checkpoint(args: list[str]) -> Path | None:
    """What `ckpt_path=last` means: <hydra.run.dir>/checkpoints/last.ckpt when the run directory is given, else
    the newest last.ckpt of this task's runs under <paths.log_dir>/<task>/ (outputs/image/... by default) whose
    run is not going on now (another run, started beside this one, is never taken over)."""
    given = dict(a.split("=", 1) for a in args if "=" in a and not a.startswith(("+", "~")))
    if "hydra.run.dir" in given:
        path = Path(given["hydra.run.dir"].strip("'\"")) / "checkpoints" / "last.ckpt"
        return path if path.is_file() else None
    task = given.get("task", "image")
    if "experiment" in given:  # an experiment names its task in its own file
        from src.checks import recipe_task

        task = recipe_task("experiment", given["experiment"]) or task
    root = Path(given.get("paths.log_dir", Path(given.get("paths.root_dir", ".")) / "outputs")) / task
    found = sorted((p for p in root.glob("*/*/checkpoints/last.ckpt") if not in_use(p.parent.parent)),
                   key=lambda p: p.stat().st_mtime)
    return found[-1] if found else None


def data_overrides(argv: list[str]) -> list[str]:
    """eval.py takes `data.<key>=value` for any key of the checkpoint's data config (data.path=<where the data is
    now>): eval.yaml cannot list those keys, so they are added to its `data` node (Hydra's ++) and checked against
    the checkpoint's by src.pipeline.evaluate."""
    return [argv[0], *(f"++{a}" if a.startswith("data.") and "=" in a else a for a in argv[1:])]


def quote_text(argv: list[str], keys: tuple[str, ...] = ("input", "inputs")) -> list[str]:
    """`input=a gorgeous, witty film` as typed (the shell has eaten the quotes) is, to Hydra, a sweep over
    a list; an input is always one string, so its value is quoted for Hydra here, before it parses."""
    out = [argv[0]]
    for a in argv[1:]:
        key, eq, value = a.partition("=")
        if eq and key in keys and not (len(value) >= 2 and value[0] == value[-1] and value[0] in "'\""):
            a = f"{key}={quoted(value)}"
        out.append(a)
    return out


def quoted(value: str) -> str:
    """A string as a single-quoted Hydra override value that Hydra reads back as the same string. In a quoted Hydra
    value, a backslash escapes only a quote or the backslashes before one (or before the closing quote); any other
    backslash is itself."""
    value = re.sub(r"(\\*)'", lambda m: m.group(1) * 2 + "\\'", value)
    value = re.sub(r"(\\+)$", lambda m: m.group(1) * 2, value)
    return f"'{value}'"
