"""A trial of an Optuna search with a pruner (hydra.sweeper.pruner): after each validation the monitored metric goes
to the study, and the run stops when the pruner says it is behind the others. Added by src/pipeline.py when the
sweeper (hydra_plugins/gradlab_sweeper) has named the study in the run's environment; never otherwise."""
from __future__ import annotations

import json
import logging
from pathlib import Path

import lightning as L
from lightning.pytorch.trainer.states import TrainerFn

log = logging.getLogger(__name__)


class TrialPruning(L.Callback):
    def __init__(self, storage: str, study_name: str, trial_id: int, pruner, monitor: str, run_dir: str):
        self.storage, self.study_name, self.trial_id, self.monitor = storage, study_name, trial_id, monitor
        self.pruner = pruner
        self.run_dir = Path(run_dir)
        self._trial = None

    def _get_trial(self):
        if self._trial is None:
            import optuna

            from src.sweep import open_storage

            study = optuna.load_study(study_name=self.study_name, storage=open_storage(self.storage),
                                      pruner=self.pruner)
            self._trial = optuna.trial.Trial(study, self.trial_id)
        return self._trial

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking or trainer.state.fn != TrainerFn.FITTING:  # not the final validate and test
            return
        prune, value = False, None
        if trainer.is_global_zero:
            metric = trainer.callback_metrics.get(self.monitor)
            if metric is not None:
                value = float(metric)
                trial = self._get_trial()
                trial.report(value, step=trainer.current_epoch)
                # after the last epoch there is nothing left to save: the trial ends as a finished one
                last = trainer.max_epochs is not None and trainer.current_epoch + 1 >= trainer.max_epochs
                prune = not last and trial.should_prune()
        prune = trainer.strategy.broadcast(prune)  # every process of the run stops together
        if not prune:
            return
        import optuna

        if trainer.is_global_zero:
            record = {"epoch": trainer.current_epoch, self.monitor: value}
            (self.run_dir / "pruned.json").write_text(json.dumps(record, indent=2) + "\n")
            log.info("pruned at epoch %d: %s=%.4f is behind the other trials", trainer.current_epoch, self.monitor,
                     value)
        raise optuna.TrialPruned(f"epoch {trainer.current_epoch}, {self.monitor}={value}")

