"""Sentiment training steps (task=sentiment: SST-2 and its default model, bilstm) of gradlab against a plain
hand-written PyTorch loop: same model, batches, loss, optimizer and schedule.

gradlab runs its real pipeline: the config of task=sentiment composed as train.py does, the SentimentClassification
task and every default callback (checkpointing, LR monitor, gradient health, epoch reseeding, progress, and the task's
own: the EMA of the weights, the confusion plot, the mistakes list) and logger (CSV), minus validation, which the
plain loop does not do either. The plain loop builds the same RNNClassifier from the same config and steps the same
loss (cross-entropy with the task's label smoothing, under bf16 autocast where trainer.precision says so), gradient
clipping (trainer.gradient_clip_val), optimizer (fused AdamW over the parameter groups src/tasks/base.py makes),
schedule (the config's: torch's OneCycleLR over the same number of steps) and EMA of the weights (a copy at the first
step, then one foreach lerp with the callback's warm-up), and nothing else: no metrics, no logging.

Both sides take their batches from one SST-2 data module, set up once for all rounds (tokenising 67k phrases and
hashing their character n-grams takes ~25 s, untimed), through its train_dataloader: length-bucketed batches padded
by its collate, the sampler seeded from the same seed, so both see identical batches in the same order (the script
checks that both sides' timed steps held the same number of tokens). Both alternate in one process, `--rounds`
times; we report the median steps/s and ms per step of each and the ratio of their times per step (gradlab / plain),
and the same for the process's CPU time, which other jobs on a shared machine disturb less than wall time.

    python benchmarks/sentiment_step.py --data-dir ../shared/data           # CPU, torch's threads (one per core)
    python benchmarks/sentiment_step.py --data-dir ../shared/data --threads 1
    python benchmarks/sentiment_step.py --data-dir ../shared/data --bare    # Lightning alone, no callbacks
    python benchmarks/sentiment_step.py --data-dir ../shared/data --device cuda
    python benchmarks/sentiment_step.py --data-dir ../shared/data model=textcnn   # Hydra overrides, both sides
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

from train_step_overhead import StepTimer, compose  # noqa: E402

# the task's own callbacks (conf/task/sentiment.yaml), which the task config adds after callbacks=none: --bare
# turns them off by name
TASK_CALLBACKS = ("ema", "confusion_plot", "mistakes")


class Window:
    """What StepTimer does not record of the timed steps: their tokens (padded ids, counted on the host: the check
    that both sides saw the same batches) and the process's CPU time."""

    def __init__(self, skip: int, steps: int):
        import lightning as L

        outer = self
        self.tokens, self.cpu = 0, 0.0

        class _CB(L.Callback):
            def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
                if trainer.global_step == skip:
                    outer.cpu = -time.process_time()
                if skip <= trainer.global_step < skip + steps:
                    outer.tokens += batch["ids"].numel()

            def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
                if trainer.global_step == skip + steps:
                    outer.cpu += time.process_time()

        self.callback = _CB()


def run_gradlab(cfg, dm, skip: int, steps: int) -> tuple[float, float, int]:
    """Wall and CPU seconds per step, and tokens of the timed steps, through the app's own pipeline (the config
    stops it after skip + steps steps)."""
    import lightning as L

    from src import pipeline

    L.seed_everything(cfg.seed, verbose=False)
    task = pipeline.build_task(cfg, dm.info)
    timer, window = StepTimer(skip, steps, cfg.trainer.accelerator), Window(skip, steps)
    trainer = pipeline.build_trainer(cfg, pipeline.build_callbacks(cfg) + [timer.callback, window.callback],
                                     pipeline.build_loggers(cfg))
    trainer.fit(task, datamodule=dm)
    return timer.per_step / steps, window.cpu / steps, window.tokens


def run_plain(cfg, dm, skip: int, steps: int, device: str, ema: float | None) -> tuple[float, float, int]:
    """What one would write by hand: the same model, batches, loss, clipping, optimizer, schedule and (ema: its
    decay; None: none) EMA of the weights."""
    import lightning as L
    import torch
    import torch.nn.functional as F
    from hydra.utils import instantiate

    from src.models import build_network

    L.seed_everything(cfg.seed, verbose=False)  # the data module's sampler reads the seed, as in the app
    info = dm.info
    model = build_network(cfg.model, num_classes=len(info["class_names"]), vocab_size=info["vocab_size"],
                          pad_id=info["pad_id"], unk_id=info["unk_id"], ngram_buckets=info["ngram_buckets"]).to(device)
    params = list(model.parameters())
    decay = cfg.optimizer.get("weight_decay") or 0.0
    groups = [{"params": [p for p in params if p.ndim > 1], "weight_decay": decay},
              {"params": [p for p in params if p.ndim <= 1], "weight_decay": 0.0}]
    opt = instantiate(cfg.optimizer)(groups)  # AdamW, fused as the config says
    total = skip + steps  # trainer.max_steps: the length of both schedules
    schedule = instantiate(cfg.scheduler)(opt, total_steps=total) if cfg.get("scheduler") else None  # torch's
    per_step = schedule is not None and schedule["interval"] == "step"  # one-cycle: its OneCycleLR, every step
    clip, smoothing = cfg.trainer.get("gradient_clip_val"), cfg.task.get("label_smoothing", 0.0)
    by_value = cfg.trainer.gradient_clip_algorithm == "value"
    bf16 = str(cfg.trainer.precision).startswith("bf16")
    averaged = [torch.empty_like(p) for p in params] if ema else None
    model.train()
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    step, start, cpu, tokens, epoch = 0, None, 0.0, 0, 0
    while step < total:
        loader = dm.train_dataloader()
        loader.batch_sampler.set_epoch(epoch)
        for batch in loader:
            if step == skip:
                sync()
                start, cpu = time.perf_counter(), time.process_time()
            if step >= skip:
                tokens += batch["ids"].numel()
            ids, lengths, y = (batch[k].to(device, non_blocking=True) for k in ("ids", "lengths", "label"))
            ngrams = batch["ngrams"].to(device, non_blocking=True) if "ngrams" in batch else None
            with torch.autocast(device, dtype=torch.bfloat16, enabled=bf16):
                loss = F.cross_entropy(model(ids, lengths, ngrams), y, label_smoothing=smoothing)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if clip:
                (torch.nn.utils.clip_grad_value_ if by_value else torch.nn.utils.clip_grad_norm_)(params, clip)
            opt.step()
            if per_step:
                schedule["scheduler"].step()
            if averaged is not None:  # the EMA callback's: a copy at the first step, then decay min(d, (1+n)/(10+n))
                current = [p.detach() for p in params]
                if step == 0:
                    torch._foreach_copy_(averaged, current)
                else:
                    torch._foreach_lerp_(averaged, current, 1 - min(ema, (1 + step) / (10 + step)))
            step += 1
            if step == total:
                break
        epoch += 1
    sync()
    return (time.perf_counter() - start) / steps, (time.process_time() - cpu) / steps, tokens


def quiet() -> None:
    """Only the rounds' lines: no warnings, and none of Lightning's notices (GPU available, tips, max_steps reached),
    which its own loggers print at INFO whatever the level of the "lightning" logger above them."""
    import logging
    import warnings

    import lightning.pytorch  # noqa: F401  (it sets its loggers' levels when imported: set them after)

    warnings.filterwarnings("ignore")
    for name in ("lightning", "lightning.pytorch", "lightning.fabric"):
        logging.getLogger(name).setLevel(logging.ERROR)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", default=None, help="the folder that holds SST-2/ (default: the config's)")
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--steps", type=int, default=60, help="timed steps per round")
    parser.add_argument("--skip", type=int, default=5, help="warm-up steps not timed")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's, one per core)")
    parser.add_argument("--bare", action="store_true",
                        help="gradlab without callbacks or loggers (Lightning's own cost), the plain loop without EMA")
    parser.add_argument("overrides", nargs="*", help="Hydra overrides for both sides (model=textcnn, model.hidden=64)")
    args = parser.parse_args()

    import shutil
    import tempfile

    import torch
    from hydra.utils import instantiate

    quiet()
    if args.threads:
        torch.set_num_threads(args.threads)
    extra = ["task=sentiment"] + ([f"data.data_dir={args.data_dir}"] if args.data_dir else [])
    if args.bare:
        extra += [f"callbacks.{name}=null" for name in TASK_CALLBACKS]
    # both sides' schedules span exactly the steps run
    extra += args.overrides + [f"trainer.max_steps={args.skip + args.steps}", "trainer.max_epochs=-1"]
    out = Path(tempfile.mkdtemp(prefix="gradlab-bench-"))
    cfg = compose(None, None, "gpu" if args.device == "cuda" else "cpu", out / "run", args.bare, tuple(extra))
    device_name = torch.cuda.get_device_name() if args.device == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    model = {k: v for k, v in cfg.model.items() if k != "_target_"}
    print(f"data=sst2 batch_size={cfg.data.batch_size} model={cfg.model._target_.rsplit('.', 1)[-1]} {model} "
          f"precision {cfg.trainer.precision} device: {device_name}")
    started = time.perf_counter()
    dm = instantiate(cfg.data)  # one data module for both sides and every round
    dm.prepare_data()
    dm.setup()
    print(f"data set up in {time.perf_counter() - started:.0f} s; {args.rounds} rounds of {args.steps} timed steps "
          f"after {args.skip} warm-up steps", flush=True)
    ema = ((cfg.get("callbacks") or {}).get("ema") or {}).get("decay")  # the plain loop's EMA, as gradlab's
    wall, cpu = {"gradlab": [], "plain": []}, {"gradlab": [], "plain": []}
    for r in range(args.rounds):
        cfg.paths.output_dir = str(out / f"run{r}")
        a, a_cpu, a_tok = run_gradlab(cfg, dm, args.skip, args.steps)
        p, p_cpu, p_tok = run_plain(cfg, dm, args.skip, args.steps, args.device, ema)
        assert a_tok == p_tok, f"the two sides saw different batches ({a_tok} and {p_tok} tokens)"
        for side, w, c in (("gradlab", a, a_cpu), ("plain", p, p_cpu)):
            wall[side].append(w)
            cpu[side].append(c)
        print(f"round {r + 1}: gradlab {a * 1e3:.2f} ms/step, plain {p * 1e3:.2f} ms/step (CPU time {a_cpu * 1e3:.2f} "
              f"and {p_cpu * 1e3:.2f})", flush=True)
    a, p = statistics.median(wall["gradlab"]), statistics.median(wall["plain"])
    a_cpu, p_cpu = statistics.median(cpu["gradlab"]), statistics.median(cpu["plain"])
    print(f"{p_tok / args.steps:.0f} padded tokens per step (batches of {cfg.data.batch_size} texts)")
    print(f"median CPU time (the process's, all threads): gradlab {a_cpu * 1e3:.2f} ms/step, plain {p_cpu * 1e3:.2f} "
          f"ms/step, ratio {a_cpu / p_cpu:.3f}")
    paired = statistics.median(x / y for x, y in zip(wall["gradlab"], wall["plain"]))
    print(f"median of the rounds' own ratios (each round's two sides ran back to back): {paired:.3f}")
    print(f"median: gradlab {1 / a:.2f} steps/s ({a * 1e3:.2f} ms/step), plain PyTorch {1 / p:.2f} steps/s "
          f"({p * 1e3:.2f} ms/step), ratio {a / p:.3f}")
    shutil.rmtree(out, ignore_errors=True)  # each round's checkpoints: ~160 MB


if __name__ == "__main__":
    main()
