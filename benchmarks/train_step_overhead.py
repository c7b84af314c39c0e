"""Time training steps of gradlab against a plain hand-written PyTorch loop: same model, data, batch size.

The plain loop is a strong baseline, not a strawman: it slices the same in-memory uint8 tensors, applies
the same batch augmentation and normalisation, and steps the same AdamW + cosine schedule. gradlab runs
its real pipeline: the composed default config, the task, the data module and every default callback
(checkpointing, early stopping, LR monitor, gradient health, progress), minus validation, which the plain
loop does not do either. Both alternate in one process, `--rounds` times; we report the median time per
step, the ratio of the medians, and the median of each round's own ratio (its two sides ran back to back).

    python benchmarks/train_step_overhead.py                       # digits (the default run), CPU
    python benchmarks/train_step_overhead.py --data fashion_mnist --data-dir ../shared/data
    python benchmarks/train_step_overhead.py --device cuda         # on an NVIDIA GPU
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def compose(data: str | None, data_dir: str | None, device: str, out: Path, bare: bool = False,
            extra: tuple[str, ...] = ()):
    """The composed train config for a timed run: validation off, no model summary, early stopping off; `extra`
    overrides go last (a task, an experiment, model sizes)."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import open_dict

    GlobalHydra.instance().clear()
    overrides = ([f"data={data}"] if data else []) + [f"trainer.accelerator={device}", "trainer.limit_val_batches=0",
                 "trainer.num_sanity_val_steps=0", "callbacks.model_summary=null", "trainer.enable_model_summary=false",
                 "callbacks.progress_bar.interactive=false",
                 "callbacks.early_stopping=null"]  # it needs a validation metric, and there is no validation here
    if data_dir:
        overrides.append(f"data.data_dir={data_dir}")
    if bare:  # Lightning alone: no callbacks, no loggers, no progress bar
        overrides = [o for o in overrides if not o.startswith("callbacks.")] + [
            "callbacks=none", "~logger", "trainer.enable_progress_bar=false", "+trainer.enable_checkpointing=false"]
    overrides += list(extra)
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = hydra_compose(config_name="train", overrides=overrides, return_hydra_config=True)
    HydraConfig().set_config(cfg)
    with open_dict(cfg):
        cfg.paths.output_dir = str(out)
    return cfg


class StepTimer:
    """Wall time from the start of step `skip` to the end of step `skip + steps - 1`."""

    def __init__(self, skip: int, steps: int, device: str):
        import lightning as L

        outer = self

        class _CB(L.Callback):
            def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
                if trainer.global_step == skip:
                    outer._sync()
                    outer.start = time.perf_counter()

            def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
                if trainer.global_step == skip + steps:
                    outer._sync()
                    outer.end = time.perf_counter()

        self.callback, self.device = _CB(), device
        self.start = self.end = None

    def _sync(self):
        import torch

        if self.device == "cuda":
            torch.cuda.synchronize()

    @property
    def per_step(self) -> float:
        return (self.end - self.start)


def run_gradlab(cfg, skip: int, steps: int) -> float:
    import lightning as L

    from src import pipeline

    L.seed_everything(0, verbose=False)
    dm = pipeline.build(cfg.data, "data")
    dm.prepare_data()
    task = pipeline.build_task(cfg, dm.info)
    timer = StepTimer(skip, steps, cfg.trainer.accelerator)
    callbacks = pipeline.build_callbacks(cfg) + [timer.callback]
    trainer = pipeline.build_trainer(cfg, callbacks, pipeline.build_loggers(cfg), max_steps=skip + steps, max_epochs=-1)
    pipeline.quiet_lightning_handlers()
    trainer.fit(task, datamodule=dm)
    return timer.per_step / steps


def run_plain(cfg, skip: int, steps: int, device: str) -> float:
    """What one would write by hand: the same model, tensors, augmentation, optimizer and schedule."""
    import math

    import torch
    import torch.nn.functional as F

    from src.data.image.base import random_crop_flip
    from src.models.cnn import CNN

    torch.manual_seed(0)
    from hydra.utils import instantiate

    dm = instantiate(cfg.data)
    dm.prepare_data()
    dm.setup()
    info = dm.info
    x_all, y_all = dm.train_set.images, dm.train_set.labels
    model = CNN(info["in_channels"], len(info["class_names"]), widths=tuple(cfg.model.widths), depth=cfg.model.depth,
                dropout=cfg.model.dropout).to(device)
    decay = [p for p in model.parameters() if p.ndim > 1]
    no_decay = [p for p in model.parameters() if p.ndim <= 1]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": cfg.optimizer.weight_decay},
                             {"params": no_decay, "weight_decay": 0.0}], lr=cfg.optimizer.lr,
                            fused=cfg.optimizer.get("fused"))  # the same implementation as gradlab's config
    total = skip + steps
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda i: 0.5 * (1 + math.cos(math.pi * min(1, i / total))))
    mean = torch.tensor(info["mean"], device=device).view(1, -1, 1, 1)
    std = torch.tensor(info["std"], device=device).view(1, -1, 1, 1)
    pad, flip = int(cfg.data.augment.crop_padding), bool(cfg.data.augment.hflip)
    bs, n = cfg.data.batch_size, len(y_all)
    model.train()
    step, start = 0, None
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    while step < total:
        perm = torch.randperm(n)
        for i in range(0, n, bs):
            if step == skip:
                sync()
                start = time.perf_counter()
            idx = perm[i:i + bs]
            x, y = x_all[idx].to(device, non_blocking=True), y_all[idx].to(device, non_blocking=True)
            x = random_crop_flip(x, pad, flip)
            x = (x.float() / 255 - mean) / std
            loss = F.cross_entropy(model(x), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            step += 1
            if step == total:
                break
    sync()
    return (time.perf_counter() - start) / steps


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default="digits")
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--steps", type=int, default=None, help="timed steps per round (default: by data set)")
    parser.add_argument("--skip", type=int, default=5, help="warm-up steps not timed")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--bare", action="store_true",
                        help="gradlab without callbacks or loggers (Lightning's own cost)")
    args = parser.parse_args()
    # digits: 200 steps (4 epochs of 45, so epoch ends and their checkpoints are in), a window of seconds: 30 steps
    # of a few ms each gave ratios from 1.0 to 1.4 on the same code on a shared machine
    steps = args.steps or {"digits": 200}.get(args.data, 60)

    import logging
    import tempfile
    import warnings

    import torch

    from src import pipeline

    pipeline._no_nvml_probe()  # as train.py does; a plain script that never imports Lightning has no probe either
    warnings.filterwarnings("ignore")
    logging.getLogger("lightning").setLevel(logging.ERROR)
    out = Path(tempfile.mkdtemp(prefix="gradlab-bench-"))
    cfg = compose(args.data, args.data_dir, "gpu" if args.device == "cuda" else "cpu", out / "run", args.bare)
    device_name = torch.cuda.get_device_name() if args.device == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    print(f"data={args.data} batch_size={cfg.data.batch_size} model=cnn{list(cfg.model.widths)} device: {device_name}")
    print(f"{args.rounds} rounds of {steps} timed steps after {args.skip} warm-up steps")
    app, plain = [], []
    for r in range(args.rounds):
        cfg.paths.output_dir = str(out / f"run{r}")
        app.append(run_gradlab(cfg, args.skip, steps))
        plain.append(run_plain(cfg, args.skip, steps, args.device))
        print(f"round {r + 1}: gradlab {app[-1] * 1e3:.2f} ms/step, plain {plain[-1] * 1e3:.2f} ms/step", flush=True)
    a, p = statistics.median(app), statistics.median(plain)
    paired = statistics.median(x / y for x, y in zip(app, plain))
    print(f"median of the rounds' own ratios (each round's two sides back to back): {paired:.3f}")
    # noise on a shared machine only adds time: each side's fastest round is the least disturbed (timeit's advice)
    print(f"fastest rounds: gradlab {min(app) * 1e3:.2f} ms/step, plain {min(plain) * 1e3:.2f}, "
          f"ratio {min(app) / min(plain):.3f}")
    print(f"median: gradlab {a * 1e3:.2f} ms/step, plain PyTorch {p * 1e3:.2f} ms/step, ratio {a / p:.3f}")


if __name__ == "__main__":
    main()
