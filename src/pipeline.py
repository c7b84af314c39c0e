"""The whole run, top to bottom: train() for train.py, evaluate() for eval.py, predict() for predict.py and
prepare() for prepare.py. Each builds what the config names, hands it to Lightning, and records the outcome; what a
task or a data module provides is declared in src/tasks/base.py and src/data/base.py and used only through that."""
from __future__ import annotations

import contextlib
import ctypes
import json
import logging
import math
import os
import time
from pathlib import Path

import lightning as L
import torch
from hydra.errors import InstantiationException
from hydra.utils import get_class, instantiate
from lightning.fabric.plugins.environments import SLURMEnvironment, TorchElasticEnvironment
from lightning.pytorch.callbacks import WeightAveraging
from lightning.pytorch.profilers import PassThroughProfiler
from lightning.pytorch.strategies import ParallelStrategy
from lightning.pytorch.utilities.exceptions import SIGTERMException
from omegaconf import DictConfig, OmegaConf, open_dict

from src import finetune
from src.callbacks.compile import Compile
from src.callbacks.preemption import stopped
from src.checkpoint import load_task, read_checkpoint, requeued_checkpoint
from src.data.base import DataModule
from src.errors import UserError
from src.records import earlier_parts, log_metrics, run_info, write_json
from src.tasks.base import Renders, Task

log = logging.getLogger(__name__)


# -- building blocks ---------------------------------------------------------------------------------
def build(node, what: str, **kwargs):
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


def build_data(node) -> DataModule:
    datamodule = build(node, "data")
    if not isinstance(datamodule, DataModule):
        raise UserError(f"data._target_={node['_target_']} is not a gradlab data module: derive it from "
                        f"src.data.base.DataModule.")
    return datamodule


def build_task(cfg: DictConfig, data_info: dict) -> Task:
    node = OmegaConf.to_container(cfg.task, resolve=True)
    for key in ("models", "datasets"):  # what the task can be given: checked by src/checks.py, not the task's
        node.pop(key, None)
    task = build(node, "task/model", model=_plain(cfg.model), optimizer=_plain(cfg.optimizer),
                 scheduler=_plain(cfg.get("scheduler")), data=_plain(cfg.data), data_info=data_info,
                 _recursive_=False, _convert_="all")
    if not isinstance(task, Task):
        raise UserError(f"task._target_={node['_target_']} is not a gradlab task: derive it from src.tasks.base.Task.")
    return task


def build_callbacks(cfg: DictConfig) -> list:
    from src.sweep import trial_pruning

    callbacks = [build(node, f"callbacks.{name}") for name, node in (cfg.get("callbacks") or {}).items()
                 if node is not None and "_target_" in node]
    # a trial of an Optuna search with a pruner reports to its study
    pruning = trial_pruning(cfg.task.monitor, cfg.paths.output_dir, cfg.trainer.get("max_epochs"))
    if cfg.model.get("compile"):  # model.compile=true: torch.compile the network for this run
        callbacks.append(Compile(cfg.model.get("compile_mode") or "default", cfg.model.get("compile_backend")))
    return callbacks + ([pruning] if pruning else [])


def build_loggers(cfg: DictConfig, resuming: bool = False) -> list:
    """The configured loggers. Resuming in a run directory that already has logs, a logger without a fixed
    version writes a new version beside the old (Lightning's CSV logger would otherwise replace metrics.csv)."""
    loggers = {name: node for name, node in (cfg.get("logger") or {}).items()
               if node is not None and "_target_" in node}
    if resuming and (Path(cfg.paths.output_dir) / "csv").exists():
        with open_dict(cfg):
            for node in loggers.values():
                if node.get("version") == "":
                    node.version = f"resume-{time.strftime('%Y%m%d-%H%M%S')}"
    from src import trackers

    trackers.prepare(loggers, Path(cfg.paths.output_dir), resuming)  # MLflow's server answers; a resume's run ids
    return [build(node, f"logger.{name}") for name, node in loggers.items()]


class Unprofiled(PassThroughProfiler):
    """What Lightning uses when no profiler is asked for, without the context manager it otherwise builds (from a
    generator) around each of the ~150 hooks and calls it times in a training step: 0.5 ms of digits' step here."""

    _none = contextlib.nullcontext()

    def profile(self, action_name: str):
        return self._none


def build_trainer(cfg: DictConfig, callbacks: list, loggers: list, **kwargs) -> L.Trainer:
    """The configured Trainer; kwargs override the config (e.g. max_steps)."""
    if not cfg.trainer.get("profiler"):  # debug=profiler and trainer.profiler=simple|advanced|pytorch still profile
        kwargs.setdefault("profiler", Unprofiled())
    return build(cfg.trainer, "trainer", callbacks=callbacks, logger=loggers or False, **kwargs)


def data_info(datamodule: DataModule, trainer: L.Trainer) -> dict:
    """Prepare the data once per node, as Lightning does (its first process downloads, extracts and builds the
    caches while the node's others wait), then describe it for the task. Processes that SLURM or torchrun
    started together meet in the process group, set up now rather than at fit; Lightning's own launcher starts
    its other processes only at fit, after this one has prepared everything."""
    strategy = trainer.strategy
    together = (isinstance(strategy, ParallelStrategy) and trainer.world_size > 1
                and isinstance(strategy.cluster_environment, (SLURMEnvironment, TorchElasticEnvironment)))
    if together:
        trainer.strategy.setup_environment()  # fit finds the process group up and keeps it
    if trainer.local_rank == 0:
        datamodule.prepare_data()  # downloads, or names what is missing, before any model is built
    if together:
        trainer.strategy.barrier("prepare_data")
    try:
        return datamodule.info
    except ValueError as e:
        raise UserError(f"data: {e}") from None


class _LightningNoise(logging.Filter):
    """Drops Lightning's notices that say nothing about this run."""

    NOISE = ("💡 Tip", "Trainer already configured with model summary", "Loading `train_dataloader` to estimate",
             "TPU available", "HPU available")

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(self.NOISE)


_NOISE = _LightningNoise()


def quiet_lightning_handlers() -> None:
    """Lightning logs through its own console handler and also to the root logger Hydra set up, so every
    message would print twice: keep Hydra's (console and the run's log file), and drop notices that say
    nothing about this run."""
    import warnings

    if logging.getLogger().handlers:
        for name in ("lightning.pytorch", "lightning.fabric", "lightning"):
            logging.getLogger(name).handlers.clear()
    rank_zero = logging.getLogger("lightning.pytorch.utilities.rank_zero")
    if _NOISE not in rank_zero.filters:
        rank_zero.addFilter(_NOISE)
    warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\).*")
    # the summary's size estimate under bf16-mixed/16-mixed: a remark on an estimate, not on the run
    warnings.filterwarnings("ignore", message=r"Precision .* is not supported by the model summary")


def share_machine(cfg: DictConfig) -> None:
    """Trials run side by side on one machine (hydra/launcher=joblib, hydra.launcher.n_jobs=N): each takes its
    own GPU where there are several (job number modulo the GPUs), and its share of the CPU threads (cores / N)
    unless `threads` is given."""
    import os

    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    if not HydraConfig.initialized():
        return
    hydra = HydraConfig.get()
    if hydra.mode != RunMode.MULTIRUN or "joblib" not in str(OmegaConf.select(hydra, "launcher._target_")):
        return
    cores = os.cpu_count() or 1
    n = int(OmegaConf.select(hydra, "launcher.n_jobs") or 1)
    n = cores if n < 1 else n
    if n < 2:
        return
    if not cfg.get("threads"):
        torch.set_num_threads(max(1, cores // n))
    gpus = torch.cuda.device_count()
    trainer = cfg.trainer
    if gpus > 1 and trainer.get("accelerator") in ("auto", "gpu", "cuda") and str(trainer.get("devices")) in (
            "auto", "1"):
        with open_dict(cfg):
            trainer.devices = [int(hydra.job.num) % gpus]
        log.info("trial %s of %d side by side: GPU %d", hydra.job.num, n, trainer.devices[0])


def _no_nvml_probe() -> None:
    """Lightning sets PYTORCH_NVML_BASED_CUDA_CHECK=1 on import (so that asking whether there is a GPU never
    initialises CUDA before a fork). torch then asks NVML on every torch.cuda.is_available() until CUDA is initialised,
    and Adam and AdamW ask at every step: without an NVIDIA driver, a failing dlopen each time (about 40 us a step on
    a CPU). Where NVML cannot be loaded the answer is "no GPU" either way, so the variable goes."""
    if os.environ.get("PYTORCH_NVML_BASED_CUDA_CHECK") == "1":
        try:
            ctypes.CDLL("libnvidia-ml.so.1")
        except OSError:
            del os.environ["PYTORCH_NVML_BASED_CUDA_CHECK"]


def _start(cfg: DictConfig) -> None:
    quiet_lightning_handlers()
    _no_nvml_probe()
    if cfg.get("threads"):  # torch's threads for the work on the CPU (null: torch's default, one per core)
        torch.set_num_threads(int(cfg.threads))
    share_machine(cfg)
    if cfg.seed is not None:
        L.seed_everything(cfg.seed, workers=True, verbose=False)


def _floats(results: list[dict]) -> dict:
    out = {}
    for d in results:
        out.update({k: float(v) for k, v in d.items()})
    return out


def select_checkpoint(trainer: L.Trainer) -> str | None:
    """The checkpoint chosen on the monitored validation metric; a run without one (callbacks.model_checkpoint=
    null) takes its last epoch's."""
    chosen = [c.best_model_path for c in trainer.checkpoint_callbacks if c.monitor]
    return (chosen or [c.best_model_path for c in trainer.checkpoint_callbacks] or [""])[0] or None


# -- train -------------------------------------------------------------------------------------------
def train(cfg: DictConfig) -> float | None:
    """Fit on train, select the checkpoint on val, test it once; returns the monitored metric (for sweeps)."""
    from src import trackers

    started, run_dir = time.time(), Path(cfg.paths.output_dir)
    _start(cfg)
    ckpt_path = cfg.get("ckpt_path") or requeued_checkpoint(run_dir)
    if ckpt_path:  # before any data is read: a checkpoint of another task is refused at once
        read_checkpoint(ckpt_path, expected_task=cfg.task._target_)
    source = None if ckpt_path else finetune.read_source(cfg)  # init_from=: likewise (a resume has its weights)

    # build
    datamodule = build_data(cfg.data)
    trainer = build_trainer(cfg, build_callbacks(cfg), build_loggers(cfg, resuming=bool(ckpt_path)))
    task = build_task(cfg, data_info(datamodule, trainer))
    finetune.begin(cfg, task, trainer, source)  # init_from='s weights, finetune.freeze's callback
    record = run_info(seed=cfg.seed, resumed_from=ckpt_path, init_from=task.started_from)
    if ckpt_path and (run_dir / "run.json").is_file():  # a resume in the run's own directory: keep its history
        record["history"] = earlier_parts(run_dir / "run.json")
    if trainer.is_global_zero:
        write_json(run_dir / "run.json", record)
        trackers.start(run_dir, trainer.loggers)  # MLflow's and W&B's runs begin now, their ids kept for a resume
        if ckpt_path:
            log.info("resuming from %s", ckpt_path)

    # fit
    if cfg.get("train", True):
        try:
            trainer.fit(task, datamodule=datamodule, ckpt_path=ckpt_path)
        except SIGTERMException:
            raise stopped(trainer) from None

    # select: train=false evaluates the checkpoint given, not fresh weights. Weight averaging ends with fitting:
    # the checkpoints hold the averaged weights, which validate and test load as they are (the callback would swap
    # in its own copy of the average)
    trainer.callbacks = [c for c in trainer.callbacks if not isinstance(c, WeightAveraging)]
    best = select_checkpoint(trainer) if cfg.get("train", True) else ckpt_path

    # test
    metrics = _floats(trainer.validate(task, datamodule=datamodule, ckpt_path=best, verbose=False))
    if cfg.get("test", True):
        metrics.update(_floats(trainer.test(task, datamodule=datamodule, ckpt_path=best, verbose=False)))

    if trainer.is_global_zero:
        write_json(run_dir / "metrics.json", metrics)
        record.update({"best_checkpoint": best, "epochs": trainer.current_epoch, "steps": trainer.global_step,
                       "wall_s": round(time.time() - started, 1)})
        compiled = [c.seconds for c in trainer.callbacks if isinstance(c, Compile)]
        if compiled:  # model.compile=true: the first training and evaluation steps, compiling included
            record["compile_first_step_s"] = compiled[0]
        write_json(run_dir / "run.json", record)
        trackers.log_files(cfg, run_dir, trainer.loggers, best)  # config, run.json, metrics, plots, best checkpoint
        shown = {k: v for k, v in metrics.items() if not k.startswith("val/")} or metrics  # test/, real/, ...
        log_metrics("test metrics" if cfg.get("test", True) else "validation metrics", shown, run_dir)
    value = metrics.get(cfg.task.monitor)
    return None if value is None or math.isnan(value) else value


# -- evaluate ----------------------------------------------------------------------------------------
def evaluate(cfg: DictConfig) -> dict:
    """Test (or validate) a checkpoint on the data it was trained for, read with its own tokenizers and labels."""
    run_dir = Path(cfg.paths.output_dir)
    _start(cfg)
    if cfg.split not in ("test", "val"):
        raise UserError(f"split={cfg.split}: choose test or val")
    task = load_task(cfg.ckpt_path)
    data_cfg = dict(task.hparams.data)
    changed = {f"data.{k}": v for k, v in _plain(cfg.get("data")).items()}
    changed.update({key: cfg[key] for key in ("data_dir", "batch_size") if cfg.get(key) is not None})
    for typed, value in changed.items():
        key = typed.removeprefix("data.")
        if key not in data_cfg:
            name = data_cfg["_target_"].rsplit(".", 1)[-1]
            where = next((k for k in ("path", "data_dir", "real_dir") if k in data_cfg), None)
            hint = f" Give data.{where}=<the new place>." if where and key in ("data_dir", "path") else ""
            raise UserError(f"{typed}={value}: the checkpoint's data ({name}) has no key {key!r}.{hint} Its keys: "
                            f"{', '.join(k for k in data_cfg if not k.startswith('_'))}.")
        data_cfg[key] = value
    datamodule = build_data(data_cfg)
    datamodule.use_info(task.data_info)
    trainer = build_trainer(cfg, [], build_loggers(cfg))
    data_info(datamodule, trainer)
    run = trainer.test if cfg.split == "test" else trainer.validate
    metrics = _floats(run(task, datamodule=datamodule, verbose=False))
    if trainer.is_global_zero:
        write_json(run_dir / "metrics.json", metrics)
        write_json(run_dir / "run.json", run_info(ckpt_path=str(cfg.ckpt_path), split=cfg.split))
        log_metrics(f"{cfg.split} metrics of {cfg.ckpt_path}", metrics, run_dir)
    return metrics


# -- predict -----------------------------------------------------------------------------------------
def _read_inputs(cfg: DictConfig, data_cls: type[DataModule], info: dict) -> list[str]:
    episodes = cfg.get("episodes")
    if sum(x is not None for x in (cfg.input, cfg.inputs, episodes)) != 1:
        raise UserError("give exactly one of input=<path or text>, inputs=<file with one input per line> and "
                        "episodes=<n> (an rl checkpoint)")
    if episodes is not None:
        made = data_cls.generated_inputs(info, int(episodes)) if int(episodes) > 0 else None
        if made is None:
            raise UserError(f"episodes={episodes}: " + ("give a positive number of episodes." if int(episodes) < 1
                            else "this checkpoint's data makes no inputs of its own; give input= or inputs=."))
        return made
    if cfg.input is not None:
        return [str(cfg.input)]
    path = Path(str(cfg.inputs))
    if not path.is_file():
        raise UserError(f"inputs={path}: no such file (it should list one input per line)")
    base = path.parent
    try:
        lines = [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    except UnicodeDecodeError:
        raise UserError(f"inputs={path} is not a text file: it should list one input (a path or a text) per "
                        f"line, in UTF-8. For one input, give input={path}.") from None
    if not lines:
        raise UserError(f"inputs={path} lists no inputs: write one input (a path or a text) per line.")
    # relative paths in the list are relative to the list's folder, where such a file exists
    return [str(base / x) if not Path(x).is_absolute() and _exists(base / x) else x for x in lines]


def _exists(path: Path) -> bool:
    try:
        return path.exists()
    except (OSError, ValueError):  # a line of text longer than a file name can be
        return False


def pick_device(device: str) -> str:
    """cpu, cuda, ... as given; auto: cuda where there is one."""
    return device if device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu")


def to_device(batch, device):
    """A collate_inputs batch (a tensor, or a dict of tensors and lists) on the device."""
    if isinstance(batch, torch.Tensor):
        return batch.to(device)
    return {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}


def predict(cfg: DictConfig) -> list[dict]:
    """Each input through the checkpoint's data module (read_input, collate_inputs) and task (predict_batch); one
    JSON line per input on stdout: that is predict.py's output, not a log."""
    device = pick_device(cfg.device)
    task = load_task(cfg.ckpt_path, map_location=device)
    task.to(device)
    data_cls, info = get_class(task.hparams.data["_target_"]), task.data_info
    inputs = _read_inputs(cfg, data_cls, info)
    if cfg.get("render"):
        if not isinstance(task, Renders):
            raise UserError(f"render=true: a {type(task).__name__} checkpoint has nothing to draw (an rl agent has).")
        path = Path(str(cfg.get("render_path") or f"episode-{inputs[0]}.gif"))
        drawn = task.render_episode(int(data_cls.read_input(inputs[0], info)), str(path))
        print(json.dumps({"input": inputs[0], **drawn}), flush=True)
        return [drawn]
    results, failed = [], 0
    for i in range(0, len(inputs), cfg.batch_size):
        chunk, samples = [], []
        for item in inputs[i:i + cfg.batch_size]:
            try:
                samples.append(data_cls.read_input(item, info))
                chunk.append(item)
            except (UserError, OSError, ValueError) as e:
                if cfg.input is not None:  # the one input given: its error is the answer
                    raise UserError(str(e)) from None
                failed += 1  # one unreadable input of a list: its own line, and the others go on
                print(json.dumps({"input": item, "error": str(e)}, ensure_ascii=False), flush=True)
        if not chunk:
            continue
        batch = data_cls.collate_inputs(samples, info)
        for item, result in zip(chunk, task.predict_batch(to_device(batch, device), top_k=int(cfg.top_k))):
            result = {"input": item, **result}
            print(json.dumps(result, ensure_ascii=False), flush=True)
            results.append(result)
    if failed:
        raise UserError(f"{failed} of {len(inputs)} inputs in inputs={cfg.inputs} could not be read: their lines "
                        f"above say why (\"error\"); the other {len(inputs) - failed} were predicted.")
    return results


# -- export ------------------------------------------------------------------------------------------
def export(cfg: DictConfig) -> Path:
    """A checkpoint -> a folder that runs without gradlab (src/export.py)."""
    from src import export as exporting

    logging.basicConfig(level=logging.INFO, format="%(message)s")
    return exporting.export(str(cfg.ckpt_path), cfg.format, cfg.get("out_dir"), int(cfg.opset), bool(cfg.check),
                            float(cfg.tolerance), cfg.get("quantize"))


# -- serve -------------------------------------------------------------------------------------------
def serve(cfg: DictConfig) -> None:
    """Load a checkpoint once and answer HTTP until stopped (src/serve.py)."""
    import importlib.util

    missing = [m for m in ("fastapi", "uvicorn", "multipart") if importlib.util.find_spec(m) is None]
    if missing:
        raise UserError(f"serve.py needs {', '.join(missing)}: run `uv sync --extra serve` (or `pip install fastapi "
                        f"uvicorn python-multipart`).")
    from src import serve as serving

    logging.basicConfig(level=logging.INFO, format="%(message)s")
    serving.serve(cfg)


# -- prepare -----------------------------------------------------------------------------------------
def prepare(cfg: DictConfig) -> dict:
    """Download, check and build the caches of a data set without training; returns its info."""
    started = time.time()
    datamodule = build_data(cfg.data)
    datamodule.prepare_data()
    datamodule.setup("fit")
    try:
        info = datamodule.info
    except ValueError as e:
        raise UserError(f"data: {e}") from None
    classes = info.get("class_names")
    what = f"{len(classes)} classes" if classes else ", ".join(f"{k}={info[k]}" for k in ("src_lang", "tgt_lang")
                                                              if k in info)
    sizes = ", ".join(f"{k} {v}" for k, v in datamodule.split_sizes().items())
    name = OmegaConf.select(cfg, "hydra.runtime.choices.data", default=cfg.data._target_)
    log.info("prepared data=%s (%s; %s) in %.1f s\ndata_dir: %s\ncache_dir: %s", name, what, sizes,
             time.time() - started, cfg.data.get("data_dir", "-"), cfg.data.get("cache_dir", "-"))
    return info
