"""Checks of what the user typed, run before torch is imported, so mistakes are answered at once.

Hydra already rejects unknown groups, options and keys (struct mode). What it cannot know is the type
a value should have: `trainer.max_epochs=ten` composes fine. We compose the configuration again with
the user's group choices but none of their values, and compare the type of each value they set with
the type of the default it replaces.
"""
from __future__ import annotations

import importlib.util
from pathlib import Path

from omegaconf import DictConfig, ListConfig, OmegaConf

from src.errors import UserError

CONF_DIR = Path(__file__).resolve().parent.parent / "conf"

# Lightning logger class -> the package it needs, and how to get it (gradlab's extra in pyproject.toml, or pip)
_LOGGER_PACKAGES = {
    "TensorBoardLogger": ("tensorboard", "`uv pip install tensorboard` (or `pip install tensorboard`)"),
    "MLFlowLogger": ("mlflow", "`uv sync --extra mlflow` (or `pip install mlflow`)"),
    "WandbLogger": ("wandb", "`uv sync --extra wandb` (or `pip install wandb`)"),
    "CometLogger": ("comet_ml", "`uv pip install comet-ml` (or `pip install comet-ml`)"),
    "NeptuneLogger": ("neptune", "`uv pip install neptune` (or `pip install neptune`)"),
}
# Lightning options that take several types (precision=32 or "bf16-mixed", devices=1, "auto" or [0, 1]):
# their values are checked by check_trainer or by Lightning, not by the type of their default
_SEVERAL_TYPES = {"data.text_column", "data.label_column",
                  "trainer.precision", "trainer.devices", "trainer.val_check_interval", "trainer.max_time",
                  "trainer.limit_train_batches", "trainer.limit_val_batches", "trainer.limit_test_batches",
                  "trainer.overfit_batches", "trainer.fast_dev_run", "trainer.strategy", "trainer.profiler"}
# keys whose value has a range: (key, lowest, whether the lowest itself is allowed, highest or None, what it is)
_RANGES = [
    ("optimizer.lr", 0, False, None, "a positive learning rate, e.g. 1e-3"),
    ("optimizer.weight_decay", 0, True, None, "0 or more"),
    ("optimizer.momentum", 0, True, 1, "from 0 to below 1"),
    ("model.dropout", 0, True, 1, "from 0 to below 1"),
    ("data.batch_size", 1, True, None, "1 or more"),
    ("data.num_workers", 0, True, None, "0 or more (0: read in the main process)"),
    ("data.val_fraction", 0, True, 1, "from 0 to below 1"),
    ("data.test_fraction", 0, True, 1, "from 0 to below 1"),
    ("trainer.accumulate_grad_batches", 1, True, None, "1 or more (1: no accumulation)"),
    ("trainer.log_every_n_steps", 1, True, None, "1 or more"),
    ("trainer.check_val_every_n_epoch", 1, True, None, "1 or more"),
    ("seed", 0, True, 2**32, "an integer from 0 to 4294967295, or null for a random run"),
    ("threads", 1, True, None, "1 or more, or null for one per core"),
    ("task.gamma", 0, True, 1.0 + 1e-12, "from 0 to 1"),
    ("task.gae_lambda", 0, True, 1.0 + 1e-12, "from 0 to 1"),
    ("task.n_steps", 1, True, None, "1 or more (steps per environment in a rollout)"),
    ("task.n_epochs", 1, True, None, "1 or more"),
    ("task.minibatches", 1, True, None, "1 or more"),
    ("task.clip_range", 0, False, None, "above 0"),
    ("top_k", 1, True, None, "1 or more"),
    ("batch_size", 1, True, None, "1 or more"),
]
_PRECISIONS = {"32", "32-true", "16", "16-mixed", "bf16", "bf16-mixed", "16-true", "bf16-true", "64", "64-true",
               "transformer-engine", "transformer-engine-float16"}


def _type_name(value) -> str:
    if isinstance(value, bool):
        return "true or false"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a number"
    if isinstance(value, (list, tuple, ListConfig)):
        return "a list, e.g. [1,2]"
    if isinstance(value, (dict, DictConfig)):
        return "a mapping"
    return "a string"


def _same_kind(default, value) -> bool:
    if value is None:
        return True
    if isinstance(default, bool):
        return isinstance(value, bool)
    if isinstance(default, int):
        return isinstance(value, int) and not isinstance(value, bool)
    if isinstance(default, float):
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if isinstance(default, (ListConfig, list)):
        return isinstance(value, (ListConfig, list))
    if isinstance(default, (DictConfig, dict)):
        return isinstance(value, (DictConfig, dict))
    return True  # strings accept anything Hydra parsed (a number typed where a name is expected is rare)


def _user_overrides() -> list:
    from hydra.core.hydra_config import HydraConfig
    from hydra.core.override_parser.overrides_parser import OverridesParser

    return OverridesParser.create().parse_overrides(list(HydraConfig.get().overrides.task))


def check_types(cfg: DictConfig, config_name: str) -> None:
    """Compare each `key=value` the user typed with the default it replaces."""
    from hydra import compose

    overrides = _user_overrides()
    groups, values = [], []
    for o in overrides:
        key = o.key_or_group
        if key.startswith("hydra") or (CONF_DIR / key).is_dir():
            groups.append(o.input_line)
        elif not (o.is_add() or o.is_delete() or o.is_force_add()):
            values.append(o)
    if not values:
        return
    base = compose(config_name=config_name, overrides=groups)
    for o in values:
        key = o.key_or_group
        if key in _SEVERAL_TYPES:
            continue
        default = OmegaConf.select(base, key, default=None, throw_on_resolution_failure=False)
        value = OmegaConf.select(cfg, key, default=None, throw_on_resolution_failure=False)
        if default is None or isinstance(default, str):
            continue
        if not _same_kind(default, value):
            shown = (OmegaConf.to_container(default) if isinstance(default, (DictConfig, ListConfig)) else default)
            shown = str(shown).replace(" ", "").replace("'", "") if isinstance(shown, (list, dict)) else shown
            raise UserError(f"{o.input_line}: {key} should be {_type_name(default)} (its default is {shown}).")


def check_loggers(cfg: DictConfig) -> None:
    for name, node in (cfg.get("logger") or {}).items():
        if not node or "_target_" not in node:
            continue
        cls = str(node._target_).rsplit(".", 1)[-1]
        if cls in _LOGGER_PACKAGES:
            module, install = _LOGGER_PACKAGES[cls]
            if module == "tensorboard" and importlib.util.find_spec("tensorboardX"):
                continue
            if importlib.util.find_spec(module) is None:
                raise UserError(f"logger {name!r} needs the {module!r} package, which is not installed: run "
                                f"{install}, or use logger=csv.")


def check_trainer(cfg: DictConfig) -> None:
    trainer = cfg.get("trainer") or {}
    precision = trainer.get("precision")
    if precision is not None and str(precision) not in _PRECISIONS:
        raise UserError(f"trainer.precision={precision} is not a precision Lightning knows: use 32, 16-mixed "
                        f"(NVIDIA GPUs), bf16-mixed, 64 or bf16-true.")
    for key in ("max_epochs", "max_steps"):
        value = trainer.get(key)
        if isinstance(value, int) and value == 0:
            raise UserError(f"trainer.{key}=0 trains nothing: give a positive number (-1: no limit).")


def check_ranges(cfg: DictConfig) -> None:
    """Values outside what they can mean (a negative learning rate, no batches, a fraction of 1.5), before torch
    and its own errors deep inside a run."""
    for key, low, low_ok, high, what in _RANGES:
        value = OmegaConf.select(cfg, key, default=None, throw_on_resolution_failure=False)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            continue
        if value < low or (value == low and not low_ok) or (high is not None and value >= high):
            raise UserError(f"{key}={value} should be {what}.")
    fractions = [OmegaConf.select(cfg, f"data.{k}_fraction", default=None) for k in ("val", "test")]
    if all(isinstance(f, (int, float)) for f in fractions) and sum(fractions) >= 1:
        raise UserError(f"data.val_fraction + data.test_fraction = {sum(fractions):g} leaves nothing to train on: "
                        f"keep their sum below 1.")


def check_checkpoint_path(cfg: DictConfig, required: bool = False, folders: bool = False) -> None:
    """folders: an export folder (export.py's, holding model.json) is also accepted (serve.py)."""
    path = None if OmegaConf.is_missing(cfg, "ckpt_path") else cfg.get("ckpt_path")
    if path is None:
        if required:
            raise UserError("ckpt_path is required: ckpt_path=outputs/<task>/<date>/<time>/checkpoints/last.ckpt")
        return
    if str(path) == "last":
        raise UserError("ckpt_path=last found no checkpoints/last.ckpt: it looks in hydra.run.dir=<run directory> "
                        "when given, else in this task's newest run under outputs/<task>/. Give the run "
                        "directory, or the checkpoint's path.")
    if folders and Path(str(path)).is_dir():
        if not (Path(str(path)) / "model.json").is_file():
            raise UserError(f"ckpt_path={path} is a folder without model.json: give a checkpoint file, or a folder "
                            f"that export.py wrote.")
        return
    if not Path(str(path)).is_file():
        raise UserError(f"ckpt_path={path}: no such file. Checkpoints are in <run dir>/checkpoints/ "
                        f"(best-*.ckpt, last.ckpt).")


def check_finetune(cfg: DictConfig) -> None:
    """init_from= (a new run from a checkpoint's weights) against ckpt_path= (a resume), and finetune.*."""
    start = cfg.get("init_from")
    if start is not None:
        if cfg.get("ckpt_path") is not None:
            raise UserError(f"init_from={start} with ckpt_path={cfg.ckpt_path}: init_from starts a new run from a "
                            f"checkpoint's weights, ckpt_path resumes a run (weights, optimizer, epoch): give one.")
        if not Path(str(start)).is_file():
            raise UserError(f"init_from={start}: no such file. Checkpoints are in <run dir>/checkpoints/ "
                            f"(best-*.ckpt, last.ckpt).")
    spec = cfg.get("finetune") or {}
    names, epochs = spec.get("freeze") or [], spec.get("epochs")
    if not all(isinstance(n, str) and n for n in names):
        raise UserError(f"finetune.freeze={list(names)} should list parts of the model by name, e.g. [stem,stages].")
    if epochs is not None and (isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1):
        raise UserError(f"finetune.epochs={epochs} should be the epoch (1 or more) at which the frozen parts start "
                        f"training, or null to keep them frozen.")
    if epochs is not None and not names:
        raise UserError(f"finetune.epochs={epochs} unfreezes nothing: name the parts to freeze until then, "
                        f"finetune.freeze=[...].")


def validate(cfg: DictConfig, config_name: str = "train") -> None:
    """Everything that can be checked before torch is imported, in the order a user would fix it."""
    if config_name == "train":
        from hydra.core.hydra_config import HydraConfig

        check_choices(HydraConfig.get().runtime.choices)
    check_types(cfg, config_name)
    check_trainer(cfg)
    check_ranges(cfg)
    check_loggers(cfg)
    check_checkpoint_path(cfg, required=config_name != "train", folders=config_name == "serve")
    if config_name == "train":
        check_finetune(cfg)
    seed = cfg.get("seed")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
        raise UserError(f"seed={seed} should be an integer from 0 to 4294967295, or null for a random run.")



def recipe_task(group: str, name: str) -> str | None:
    """The task a recipe (conf/experiment/, conf/hparams_search/) sets in its defaults list, if it sets one."""
    path = CONF_DIR / group / f"{name}.yaml"
    if not path.is_file():
        return None
    for entry in OmegaConf.load(path).get("defaults") or []:
        if isinstance(entry, (dict, DictConfig)):
            for key, value in entry.items():
                if str(key).replace("override", "").strip() in ("/task", "task"):
                    return str(value)
    return None


def _recipes_of(group: str, task: str) -> list[str]:
    return sorted(p.stem for p in (CONF_DIR / group).glob("*.yaml") if recipe_task(group, p.stem) == task)


def _task_lists() -> dict[str, dict]:
    """conf/task/<name>.yaml -> its task.models and task.datasets."""
    out = {}
    for path in sorted((CONF_DIR / "task").glob("*.yaml")):
        node = OmegaConf.load(path).get("task") or {}
        out[path.stem] = {"model": list(node.get("models") or []), "data": list(node.get("datasets") or [])}
    return out


def check_choices(choices) -> None:
    """A recipe, model or data set of another task is refused before anything is read or created: a recipe sets
    its own task (`experiment=multi30k_gru task=image` would compose half of each), and a task lists the models and
    data sets it takes (conf/task/<task>.yaml: task.models, task.datasets). A model or data config that no task
    lists (one of your own) is let through."""
    task = choices.get("task")
    if not task:
        return
    for group in ("experiment", "hparams_search"):
        name = choices.get(group)
        wanted = recipe_task(group, name) if name else None
        if wanted and wanted != task:
            own = ", ".join(_recipes_of(group, task)) or "none yet"
            raise UserError(f"{group}={name} is a recipe of task={wanted}, but task={task} was given: drop "
                            f"task={task} (the recipe sets its own task), or choose one of task={task}'s: "
                            f"{group}={{{own}}}.")
    lists = _task_lists()
    for group, word in (("model", "model"), ("data", "data set")):
        name, allowed = choices.get(group), lists.get(task, {}).get(group)
        if not name or not allowed or name in allowed:
            continue
        owners = [t for t, node in lists.items() if name in node[group]]
        if owners:
            raise UserError(f"{group}={name} is a {word} of task={owners[0]}, not of task={task}: the {word}s of "
                            f"task={task} are {', '.join(allowed)}.")
