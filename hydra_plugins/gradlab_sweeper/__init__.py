"""gradlab's Hydra sweeper over Optuna (4 or later): `hparams_search=<task>_optuna`, or `hydra/sweeper=optuna` with
`hydra.sweeper.params`. Hydra instantiates sweepers only from the `hydra_plugins` namespace, hence this folder.

- The search space is written in Hydra's override syntax: `interval(a, b)` (uniform; `int(interval(...))` for
  integers), `tag(log, interval(a, b))` (log-uniform), `choice(a, b, ...)` or `a,b,...` (categorical), `range(a, b)`
  (integers a ... b-1). Sweeps typed on the command line join the space; plain values there hold for every trial.
- The study lives in a storage: `sqlite:///<file>` for trials run on one machine, `journal:///<file>` (Optuna's
  journal file, safe on a shared file system) for trials that run as separate jobs (SLURM). Running the same command
  again resumes the study: only the trials missing from n_trials run (finished and pruned ones count; one cut short
  is run again), their run directories are numbered after the old ones, and the sampler is seeded anew from its seed
  and the number of trials already started, so it repeats no earlier proposal and a resume repeats bit for bit.
- `pruner` (median, successive_halving, hyperband, none, or an Optuna pruner's config): each trial reports the
  monitored metric after every validation (src/callbacks/pruning.py) and stops when the pruner says so; the study
  records it as pruned, not failed.
- n_jobs trials are asked for at once and handed to the launcher together (hydra/launcher=joblib runs them side by
  side; n_jobs null: as many as the launcher runs at once).
"""
from __future__ import annotations

import logging
import math
import os
from pathlib import Path
from typing import Any

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import ChoiceSweep, IntervalSweep, RangeSweep
from hydra.core.plugins import Plugins
from hydra.plugins.sweeper import Sweeper
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

log = logging.getLogger(__name__)

def _encode(value: Any) -> str:
    """A sampled value as Hydra reads it back on the command line."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    text = str(value)
    if isinstance(value, str) and (not text or any(c in text for c in " ,=()[]{}'\"\\:")):
        from src.cli import quoted

        return quoted(text)
    return text


def distribution(key: str, override) -> Any:
    """An Optuna distribution from one parsed sweep override."""
    import optuna.distributions as d

    value = override.value()
    log_scale = "log" in (getattr(value, "tags", None) or set())
    if isinstance(value, IntervalSweep):
        if isinstance(value.start, int) and isinstance(value.end, int):
            return d.IntDistribution(value.start, value.end, log=log_scale)
        return d.FloatDistribution(float(value.start), float(value.end), log=log_scale)
    if isinstance(value, RangeSweep):
        values = list(override.sweep_iterator())
        if all(isinstance(v, int) for v in values) and values:
            return d.IntDistribution(min(values), max(values), step=abs(int(value.step)), log=log_scale)
        return d.CategoricalDistribution(values)
    if isinstance(value, ChoiceSweep):
        return d.CategoricalDistribution(list(override.sweep_iterator()))
    raise ValueError(f"hydra.sweeper.params.{key}: {override.input_line} is not a search space Optuna can sample "
                     f"(use interval(...), tag(log, interval(...)), choice(...) or range(...))")


def search_space(params: dict | None, arguments: list[str]) -> tuple[dict, list[str]]:
    """({key: distribution}, [fixed overrides]) from hydra.sweeper.params, then the command line's arguments: for a
    key given twice, the later (the command line's) wins, a sweep or a fixed value."""
    space, fixed = {}, {}
    lines = [f"{k}={v}" for k, v in (params or {}).items()] + list(arguments)
    for override in OverridesParser.create().parse_overrides(lines):
        key = override.get_key_element()
        if override.is_sweep_override():
            space[key] = distribution(key, override)
            fixed.pop(key, None)
        else:
            fixed[key] = override.input_line
            space.pop(key, None)
    return space, list(fixed.values())


class OptunaSweeper(Sweeper):
    def __init__(self, direction: Any = "minimize", study_name: str | None = None, storage: str | None = None,
                 n_trials: int = 20, n_jobs: int | None = 1, params: dict | None = None, pruner: Any = None,
                 sampler: Any = None, **_ignored) -> None:
        self.direction, self.study_name, self.storage = direction, study_name or "gradlab", storage
        self.n_trials, self.n_jobs, self.params, self.pruner = int(n_trials), n_jobs, params, pruner
        self.config: DictConfig | None = None

    def setup(self, *, hydra_context, task_function, config: DictConfig) -> None:
        self.config, self.hydra_context = config, hydra_context
        # Hydra built the pruner's and sampler's objects from their configs already; the configs are what a trial
        # is told and what a resume reseeds
        self.pruner = OmegaConf.select(config, "hydra.sweeper.pruner")
        self.launcher = Plugins.instance().instantiate_launcher(config=config, hydra_context=hydra_context,
                                                                task_function=task_function)

    @property
    def _prunes(self) -> bool:
        return self.pruner not in (None, "none")

    # -- the parts ---------------------------------------------------------------------------------
    def _sampler(self, started: int):
        """The configured sampler, its seed moved on by the trials already started (a resume repeats nothing)."""
        node = OmegaConf.select(self.config, "hydra.sweeper.sampler")
        if node is None:
            import optuna

            return optuna.samplers.TPESampler()
        node = OmegaConf.to_container(node, resolve=True)
        if started and node.get("seed") is not None:
            node["seed"] = int(node["seed"]) + started
        return instantiate(node)

    def _batch_size(self) -> int:
        n = self.n_jobs
        if n is None:
            n = OmegaConf.select(self.config, "hydra.launcher.n_jobs", default=1)
        n = int(n if n is not None else 1)
        return n if n > 0 else (os.cpu_count() or 1)

    def _choose_storage(self) -> None:
        """Trials launched as SLURM jobs (submitit) with a pruner report to the study from other machines, where
        SQLite on a shared disk is unsafe: there the study goes to Optuna's journal file beside the SQLite file
        named (the same command finds it again to resume)."""
        from src.errors import UserError

        storage = str(self.storage or "")
        launcher = str(OmegaConf.select(self.config, "hydra.launcher._target_", default=""))
        if "submitit" in launcher and storage.startswith("sqlite:///") and self._prunes:
            journal = Path(storage.removeprefix("sqlite:///")).with_suffix(".journal")
            print(f"trials run as SLURM jobs report to the study: it is kept in {journal} (Optuna's journal file, "
                  f"safe on a shared disk) rather than {storage}", flush=True)
            self.storage = storage = f"journal:///{journal}"
        if self._prunes and not storage:
            raise UserError("hydra.sweeper.pruner: pruning needs the study in a storage the trials can reach: give "
                            "hydra.sweeper.storage=sqlite:///<sweep dir>/optuna.db (or journal:///<file>)")

    def _trial_env(self, trial) -> list[str]:
        """What a trial needs to report to the study and be pruned (src/callbacks/pruning.py), as Hydra overrides
        of its environment: the task's config and overrides stay as typed."""
        if not self._prunes:
            return []
        import json

        from src.sweep import TRIAL_ENV

        pruner = OmegaConf.to_container(self.pruner) if isinstance(self.pruner, DictConfig) else self.pruner
        values = {"storage": self.storage, "study": self.study_name, "trial": trial._trial_id,
                  "pruner": json.dumps(pruner)}
        return [f"+hydra.job.env_set.{TRIAL_ENV[k]}={_encode(str(v))}" for k, v in values.items()]

    # -- the sweep ---------------------------------------------------------------------------------
    def sweep(self, arguments: list[str]) -> Any:
        import optuna

        from src.checks import check_choices
        from src.errors import UserError
        from src.sweep import make_pruner, open_storage, settle_trials

        check_choices(self.config.hydra.runtime.choices)  # before the study is created or a trial started
        try:
            space, fixed = search_space(OmegaConf.to_container(self.params, resolve=True)
                                        if isinstance(self.params, DictConfig) else self.params, arguments)
            pruner = make_pruner(self.pruner, OmegaConf.select(self.config, "trainer.max_epochs", default=None))
        except ValueError as e:
            raise UserError(str(e)) from None
        self._choose_storage()
        storage = open_storage(self.storage)  # (after the checks: a mistake creates no sweep directory)
        done, started = settle_trials(storage, self.study_name)
        directions = list(self.direction) if isinstance(self.direction, (list, tuple)) or OmegaConf.is_list(
            self.direction) else [str(self.direction)]
        study = optuna.create_study(study_name=self.study_name, storage=storage, sampler=self._sampler(started),
                                    pruner=pruner, directions=directions, load_if_exists=True)
        if [d.name.lower() for d in study.directions] != [d.lower() for d in directions]:
            raise UserError(f"hydra.sweeper.direction={self.direction}: the stored study {self.study_name!r} "
                            f"{'maximizes' if study.directions[0].name == 'MAXIMIZE' else 'minimizes'}; give "
                            f"hydra.sweeper.study_name=<a new name> for a new search")
        remaining = max(0, self.n_trials - done)
        if started:
            print(f"resuming study {self.study_name!r}: {done} trials finished, {remaining} to go", flush=True)
        job_idx, batch, returns = started, self._batch_size(), []
        while remaining > 0:
            trials = [study.ask(space) for _ in range(min(batch, remaining))]
            overrides = [tuple([*fixed, *(f"{k}={_encode(v)}" for k, v in t.params.items()), *self._trial_env(t)])
                         for t in trials]
            self.validate_batch_is_legal(overrides)
            results = self.launcher.launch(overrides, initial_job_idx=job_idx)
            job_idx += len(results)
            remaining -= len(results)
            for trial, result in zip(trials, results):
                self._tell(study, trial, result)
            returns.append(results)
        self._report(study)
        return returns

    @staticmethod
    def _tell(study, trial, result) -> None:
        import optuna
        from hydra.core.utils import JobStatus

        error = result._return_value if result.status == JobStatus.FAILED else None
        if isinstance(error, optuna.TrialPruned):
            study.tell(trial, state=optuna.trial.TrialState.PRUNED)
            print(f"trial {trial.number}: pruned ({error})", flush=True)
            return
        values = result._return_value if error is None else None
        values = list(values) if isinstance(values, (list, tuple)) else [values]
        if error is not None or any(v is None or (isinstance(v, float) and math.isnan(v)) for v in values):
            why = f"{type(error).__name__}: {error}" if error is not None else "it returned no value of the metric"
            log.warning("trial %d failed (%s); the search goes on", trial.number, why)
            study.tell(trial, state=optuna.trial.TrialState.FAIL)
            return
        study.tell(trial, [float(v) for v in values] if len(values) > 1 else float(values[0]))

    def _report(self, study) -> None:
        """optimization_results.yaml in the sweep directory: the best trial's parameters and value."""
        import optuna

        complete = [t for t in study.get_trials(deepcopy=False) if t.state == optuna.trial.TrialState.COMPLETE]
        if not complete:
            log.warning("no trial of study %r finished: there is no best one", self.study_name)
            return
        if len(study.directions) > 1:
            results = {"name": "optuna", "solutions": [{"params": t.params, "values": t.values}
                                                       for t in study.best_trials]}
        else:
            best = study.best_trial
            results = {"name": "optuna", "best_params": best.params, "best_value": best.value,
                       "best_trial": best.number}
            print(f"Best parameters (trial {best.number}, value {best.value:.6g}): "
                  + " ".join(f"{k}={_encode(v)}" for k, v in best.params.items()), flush=True)
        out = Path(str(self.config.hydra.sweep.dir))
        out.mkdir(parents=True, exist_ok=True)
        OmegaConf.save(OmegaConf.create(results), out / "optimization_results.yaml")


class ResumableOptunaSweeper(OptunaSweeper):
    """The name configs written before the sweeper moved to Optuna 4 use."""
