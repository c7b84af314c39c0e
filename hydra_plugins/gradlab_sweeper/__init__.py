"""gradlab's Hydra sweeper: hydra-optuna-sweeper's Optuna sweeper, made to resume. Hydra only instantiates
plugins from the `hydra_plugins` namespace, hence this folder."""
from __future__ import annotations

from hydra_plugins.hydra_optuna_sweeper.optuna_sweeper import OptunaSweeper


class ResumableOptunaSweeper(OptunaSweeper):
    """With a storage (conf/hparams_search: an SQLite file in the sweep directory), running the same command
    again loads the study, runs only the trials still missing from n_trials (finished ones count; one cut
    short is run again), and numbers the new run directories after the old ones instead of over them. The
    sampler is reseeded at random on resuming: seeded as at the start, it would propose the first trials again."""

    def sweep(self, arguments):
        from src.checks import check_choices
        from src.sweep import existing_trials

        impl = self.sweeper
        check_choices(impl.config.hydra.runtime.choices)  # before the study is created or a trial started
        storage = str(impl.storage or "")
        if storage.startswith("sqlite:///"):  # the sweep directory does not exist before the first run
            from pathlib import Path

            Path(storage.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
        done, started = existing_trials(impl.storage, impl.study_name)
        if started:
            impl.n_trials = max(0, impl.n_trials - done)
            impl.job_idx = started
            # a sampler seeded as before would draw the first trials' parameters again
            if hasattr(impl.sampler, "reseed_rng"):
                impl.sampler.reseed_rng()
            print(f"resuming study {impl.study_name!r}: {done} trials finished, {impl.n_trials} to go", flush=True)
            if impl.n_trials == 0:
                return None
        return super().sweep(arguments)
