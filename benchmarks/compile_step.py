"""What model.compile=true costs and gains for each task's default model: the first training step (compiling
included) and the median time of the training steps after it, with and without torch.compile, through the app's
own pipeline (its default config for the task, validation off). Both settings alternate in one process.

    python benchmarks/compile_step.py                          # every task, CPU
    python benchmarks/compile_step.py --tasks image translation --rounds 3

The whole run it pays off in is what decides: steps to break even = compile time / time saved per step, which this
prints beside the steps of the task's default run (`uv run train.py task=<task>`).
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from train_step_overhead import compose  # noqa: E402

# the task, and what its default run needs besides (SST-2 is read from the shared data)
TASKS = {"image": [], "translation": [], "speech": [], "sentiment": ["data.data_dir={data}"],
         "rl": ["callbacks.early_stopping=null"]}


class Steps:
    """Wall time of each training step (batch start to batch end; for task=rl, one rollout and its update), and a
    stop after `n` of them."""

    def __init__(self, n: int):
        import lightning as L

        outer, self.times, self._t = self, [], None

        class _CB(L.Callback):
            def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
                outer._t = time.perf_counter()

            def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
                outer.times.append(time.perf_counter() - outer._t)
                if len(outer.times) >= n:
                    trainer.should_stop = True

        self.callback = _CB()


def run(cfg, steps: int) -> tuple[float, float]:
    """(first step, median of the steps after the first three) in seconds, through the app's pipeline."""
    import lightning as L

    from src import pipeline

    L.seed_everything(cfg.seed, verbose=False)
    dm = pipeline.build_data(cfg.data)
    timer = Steps(steps)
    trainer = pipeline.build_trainer(cfg, pipeline.build_callbacks(cfg) + [timer.callback], pipeline.build_loggers(cfg),
                                     max_epochs=-1, min_epochs=0)
    task = pipeline.build_task(cfg, pipeline.data_info(dm, trainer))
    pipeline.quiet_lightning_handlers()
    trainer.fit(task, datamodule=dm)
    import torch._dynamo

    torch._dynamo.reset()  # the next run compiles afresh, as a new process would
    return timer.times[0], statistics.median(timer.times[3:])


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", nargs="*", default=list(TASKS))
    parser.add_argument("--data-dir", default=str(ROOT.parent / "shared" / "data"))
    parser.add_argument("--steps", type=int, default=30, help="training steps per run (task=rl: rollouts)")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--mode", default="default", help="model.compile_mode")
    args = parser.parse_args()

    import logging
    import tempfile
    import warnings

    import torch

    warnings.filterwarnings("ignore")
    logging.getLogger("lightning").setLevel(logging.ERROR)
    out = Path(tempfile.mkdtemp(prefix="gradlab-compile-"))
    print(f"CPU, {torch.get_num_threads()} threads; {args.rounds} rounds of {args.steps} steps per setting")
    print("| task | model | first step eager | first step compiled | step eager | step compiled | ratio |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for name in args.tasks:
        extra = [f"task={name}"] + [o.format(data=args.data_dir) for o in TASKS[name]]
        results = {False: [], True: []}
        for r in range(args.rounds):
            for compiled in (False, True):
                cfg = compose(None, None, "cpu", out / f"{name}-{r}-{compiled}", False,
                              tuple(extra + [f"model.compile={str(compiled).lower()}",
                                             f"model.compile_mode={args.mode}"]))
                try:
                    results[compiled].append(run(cfg, args.steps))
                except Exception as e:  # noqa: BLE001 - a model that does not compile is a result too
                    print(f"{name} compile={compiled}: {type(e).__name__}: {str(e).splitlines()[0][:200]}")
                    results[compiled].append((float("nan"), float("nan")))
        (f0, s0), (f1, s1) = ([statistics.median(x[i] for x in results[c]) for i in (0, 1)] for c in (False, True))
        model = cfg.model._target_.rsplit(".", 1)[-1]
        print(f"| {name} | {model} | {f0:.2f} s | {f1:.1f} s | {s0 * 1e3:.1f} ms | {s1 * 1e3:.1f} ms | "
              f"{s1 / s0:.2f} |", flush=True)


if __name__ == "__main__":
    main()
