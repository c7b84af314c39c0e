"""The whole run, top to bottom: train() for train.py, evaluate() for eval.py, predict() for predict.py."""
from __future__ import annotations

import json
import math
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import lightning as L
import torch
from hydra.errors import InstantiationException
from hydra.utils import get_class, instantiate
from lightning.pytorch.callbacks import WeightAveraging
from lightning.pytorch.utilities.exceptions import SIGTERMException
from omegaconf import DictConfig, OmegaConf, open_dict

from src.errors import UserError


class Stopped(UserError):
    """The run was told to stop (SIGTERM): exit status 128 + 15, as a process killed by SIGTERM reports."""

    exit_code = 143
    prefix = ""


# -- building blocks ---------------------------------------------------------------------------------
def _build(node, what: str, **kwargs):
    """instantiate() with the user's mistakes turned into one line naming the config group."""
    try:
        return instantiate(node, **kwargs)
    except InstantiationException as e:
        cause = e.__cause__ or e
        if isinstance(cause, UserError):
            raise cause from None
        raise UserError(f"{what}: {type(cause).__name__}: {cause}") from None
    except (ValueError, TypeError) as e:
        raise UserError(f"{what}: {e}") from None


def _plain(node) -> dict:
    return OmegaConf.to_container(node, resolve=True) if isinstance(node, DictConfig) else dict(node or {})


def task_name(target: str) -> str:
    """src.tasks.image.ImageClassification -> image"""
    return target.split(".")[-2] if target.count(".") >= 2 else target


def read_checkpoint(path: str, expected_task: str | None = None) -> dict:
    """Load a checkpoint's contents on the CPU (weights only) and check that it is one of ours, of this task."""
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise UserError(f"ckpt_path={path}: no such file") from None
    except Exception as e:  # noqa: BLE001 - truncated zip, pickle of unknown classes, not a torch file
        raise UserError(f"ckpt_path={path} is not a readable checkpoint ({type(e).__name__}: "
                        f"{str(e).splitlines()[0][:200]}). Was it truncated? Use another, e.g. the run's best-*.ckpt.") from None
    meta = ckpt.get("gradlab") if isinstance(ckpt, dict) else None
    if not meta or "hyper_parameters" not in ckpt:
        raise UserError(f"ckpt_path={path} was not written by gradlab (it has no task record).")
    if expected_task and meta["task"] != expected_task:
        raise UserError(f"ckpt_path={path} is a checkpoint of task={task_name(meta['task'])} ({meta['task']}), "
                        f"but this run is task={task_name(expected_task)}: pass task={task_name(meta['task'])} "
                        f"or a checkpoint of this task.")
    return ckpt


def build_task(cfg: DictConfig, data_info: dict):
    node = OmegaConf.to_container(cfg.task, resolve=True)
    return _build(node, "task/model", model=_plain(cfg.model), optimizer=_plain(cfg.optimizer),
                  scheduler=_plain(cfg.get("scheduler")), data=_plain(cfg.data), data_info=data_info,
                  _recursive_=False, _convert_="all")


def build_callbacks(cfg: DictConfig) -> list:
    return [_build(node, f"callbacks.{name}") for name, node in (cfg.get("callbacks") or {}).items()
            if node is not None and "_target_" in node]


def build_loggers(cfg: DictConfig) -> list:
    return [_build(node, f"logger.{name}") for name, node in (cfg.get("logger") or {}).items()
            if node is not None and "_target_" in node]


def build_trainer(cfg: DictConfig, callbacks: list, loggers: list) -> L.Trainer:
    return _build(cfg.trainer, "trainer", callbacks=callbacks, logger=loggers or False)


def _git() -> dict:
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


def write_json(path: Path, data: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".json.part")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=False) + "\n")
    os.replace(tmp, path)


def print_metrics(title: str, metrics: dict, run_dir: Path) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title, title_justify="left")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for k, v in metrics.items():
        table.add_row(k, f"{v:.4f}" if isinstance(v, float) else str(v))
    console = Console()
    console.print(table)
    console.print(f"run directory: {run_dir}")


_NOISE = ("💡 Tip", "Trainer already configured with model summary", "Loading `train_dataloader` to estimate",
          "TPU available", "HPU available")


def quiet_lightning_handlers() -> None:
    """Lightning logs through its own console handler and also to the root logger Hydra set up, so every
    message would print twice: keep Hydra's (console and the run's log file), and drop notices that say
    nothing about this run."""
    import logging
    import warnings

    if logging.getLogger().handlers:
        for name in ("lightning.pytorch", "lightning.fabric", "lightning"):
            logging.getLogger(name).handlers.clear()
    rank_zero = logging.getLogger("lightning.pytorch.utilities.rank_zero")
    if not any(getattr(f, "gradlab", False) for f in rank_zero.filters):
        drop = logging.Filter()
        drop.filter = lambda record: not str(record.msg).startswith(_NOISE)
        drop.gradlab = True
        rank_zero.addFilter(drop)
    warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\).*")
    # the summary's size estimate under bf16-mixed/16-mixed: a remark on an estimate, not on the run
    warnings.filterwarnings("ignore", message=r"Precision .* is not supported by the model summary")


def _floats(results: list[dict]) -> dict:
    out = {}
    for d in results:
        out.update({k: float(v) for k, v in d.items()})
    return out


def requeued_checkpoint(run_dir: Path) -> str | None:
    """The run's own last.ckpt when SLURM has started this job again (requeued after a pre-emption or a time
    limit: SLURM_RESTART_COUNT > 0), so the job goes on where it stopped instead of starting over."""
    last = run_dir / "checkpoints" / "last.ckpt"
    if os.environ.get("SLURM_RESTART_COUNT", "0") not in ("", "0") and last.is_file():
        print(f"requeued by SLURM (restart {os.environ['SLURM_RESTART_COUNT']}): resuming from {last}", flush=True)
        return str(last)
    return None


# -- train -------------------------------------------------------------------------------------------
def train(cfg: DictConfig) -> float | None:
    """Fit on train, select the checkpoint on val, test it once; returns the monitored metric (for sweeps)."""
    start = time.time()
    run_dir = Path(cfg.paths.output_dir)
    quiet_lightning_handlers()
    if cfg.seed is not None:
        L.seed_everything(cfg.seed, workers=True, verbose=False)

    ckpt_path = cfg.get("ckpt_path") or requeued_checkpoint(run_dir)
    if ckpt_path:  # before any data is read: a checkpoint of another task is refused at once
        read_checkpoint(ckpt_path, expected_task=cfg.task._target_)
    datamodule = _build(cfg.data, "data")
    datamodule.prepare_data()  # downloads or names what is missing, before any model is built
    try:
        data_info = datamodule.info
    except ValueError as e:
        raise UserError(f"data: {e}") from None
    task = build_task(cfg, data_info)
    if ckpt_path and (run_dir / "csv").exists():
        # resuming in the same run directory: new log versions beside the old (Lightning's CSV logger would
        # otherwise delete the old metrics.csv)
        with open_dict(cfg):
            for node in (cfg.get("logger") or {}).values():
                if node is not None and node.get("version") == "":
                    node.version = f"resume-{time.strftime('%Y%m%d-%H%M%S')}"
    trainer = build_trainer(cfg, build_callbacks(cfg), build_loggers(cfg))

    info = {"command": [sys.executable, *sys.argv], "cwd": os.getcwd(), "git": _git(), "seed": cfg.seed,
            "python": platform.python_version(), "torch": torch.__version__, "lightning": L.__version__,
            "host": platform.node(), "started": time.strftime("%Y-%m-%dT%H:%M:%S"), "resumed_from": ckpt_path}
    if trainer.is_global_zero:
        write_json(run_dir / "run.json", info)
        if ckpt_path:
            print(f"resuming from {ckpt_path}", flush=True)

    if cfg.get("train", True):
        try:
            trainer.fit(task, datamodule=datamodule, ckpt_path=ckpt_path)
        except SIGTERMException:
            saved = next((c.saved for c in trainer.callbacks if getattr(c, "saved", None)), None)
            raise Stopped(f"stopped by SIGTERM at epoch {trainer.current_epoch}, step {trainer.global_step}"
                          + (f"; saved {saved}. Resume with ckpt_path={saved} (or ckpt_path=last)." if saved
                             else "; no checkpoint was saved (callbacks.sigterm is off).")) from None
    # weight averaging is done once fitting ends: the checkpoints hold the averaged weights, which validate and
    # test must load as they are (the callback would swap in its own copy of the average)
    trainer.callbacks = [c for c in trainer.callbacks if not isinstance(c, WeightAveraging)]
    # the checkpoint chosen on the monitored metric; a recipe without one (model_checkpoint=null) tests the last
    chosen = [c.best_model_path for c in trainer.checkpoint_callbacks if c.monitor]
    best = (chosen or [c.best_model_path for c in trainer.checkpoint_callbacks] or [""])[0]
    if not cfg.get("train", True):
        best = ckpt_path or ""  # train=false: evaluate the checkpoint given, not fresh weights
    metrics = _floats(trainer.validate(task, datamodule=datamodule, ckpt_path=best or None, verbose=False))
    if cfg.get("test", True):
        metrics.update(_floats(trainer.test(task, datamodule=datamodule, ckpt_path=best or None, verbose=False)))

    if trainer.is_global_zero:
        write_json(run_dir / "metrics.json", metrics)
        info.update({"best_checkpoint": best or None, "epochs": trainer.current_epoch,
                     "steps": trainer.global_step, "wall_s": round(time.time() - start, 1)})
        write_json(run_dir / "run.json", info)
        shown = {k: v for k, v in metrics.items() if not k.startswith("val/")} or metrics  # test/, real/, ...
        print_metrics("test metrics" if cfg.get("test", True) else "validation metrics", shown, run_dir)
    value = metrics.get(cfg.task.monitor)
    return None if value is None or math.isnan(value) else value


# -- evaluate ----------------------------------------------------------------------------------------
def load_task(ckpt_path: str, map_location="cpu"):
    """The task a checkpoint was trained as, with its model, labels and data config restored."""
    ckpt = read_checkpoint(ckpt_path)
    cls = get_class(ckpt["gradlab"]["task"])
    return cls.load_from_checkpoint(ckpt_path, map_location=map_location, weights_only=True)


def evaluate(cfg: DictConfig) -> dict:
    run_dir = Path(cfg.paths.output_dir)
    quiet_lightning_handlers()
    if cfg.seed is not None:
        L.seed_everything(cfg.seed, workers=True, verbose=False)
    task = load_task(cfg.ckpt_path)
    data_cfg = dict(task.hparams.data)
    for key in ("data_dir", "batch_size"):
        if cfg.get(key) is not None:
            data_cfg[key] = cfg[key]
    datamodule = _build(data_cfg, "data")
    if hasattr(datamodule, "use_info"):  # e.g. the checkpoint's tokenizers, not ones learnt again here
        datamodule.use_info(task.data_info)
    datamodule.prepare_data()
    trainer = build_trainer(cfg, [], build_loggers(cfg))
    if cfg.split not in ("test", "val"):
        raise UserError(f"split={cfg.split}: choose test or val")
    run = trainer.test if cfg.split == "test" else trainer.validate
    metrics = _floats(run(task, datamodule=datamodule, verbose=False))
    if trainer.is_global_zero:
        write_json(run_dir / "metrics.json", metrics)
        write_json(run_dir / "run.json", {"command": [sys.executable, *sys.argv], "ckpt_path": str(cfg.ckpt_path),
                                          "git": _git(), "split": cfg.split})
        print_metrics(f"{cfg.split} metrics of {cfg.ckpt_path}", metrics, run_dir)
    return metrics


# -- predict -----------------------------------------------------------------------------------------
def _read_inputs(cfg: DictConfig) -> list[str]:
    if (cfg.input is None) == (cfg.inputs is None):
        raise UserError("give exactly one of input=<path or text> and inputs=<file with one input per line>")
    if cfg.input is not None:
        return [str(cfg.input)]
    path = Path(str(cfg.inputs))
    if not path.is_file():
        raise UserError(f"inputs={path}: no such file (it should list one input per line)")
    base = path.parent
    lines = [line.strip() for line in path.read_text().splitlines() if line.strip()]
    # relative paths in the list are relative to the list's folder, where such a file exists
    return [str(base / x) if not Path(x).is_absolute() and (base / x).exists() else x for x in lines]


def _to(batch, device):
    if isinstance(batch, torch.Tensor):
        return batch.to(device)
    return {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}


def predict(cfg: DictConfig) -> list[dict]:
    device = cfg.device if cfg.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu")
    task = load_task(cfg.ckpt_path, map_location=device)
    task.to(device)
    data_cls = get_class(task.hparams.data["_target_"])
    collate = getattr(data_cls, "collate_inputs", lambda samples, info: torch.stack(samples))
    inputs = _read_inputs(cfg)
    results = []
    for i in range(0, len(inputs), cfg.batch_size):
        chunk = inputs[i:i + cfg.batch_size]
        batch = collate([data_cls.read_input(item, task.data_info) for item in chunk], task.data_info)
        for item, result in zip(chunk, task.predict_batch(_to(batch, device), top_k=int(cfg.top_k))):
            result = {"input": item, **result}
            print(json.dumps(result, ensure_ascii=False), flush=True)
            results.append(result)
    return results
