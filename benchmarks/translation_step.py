"""Translation training against a plain hand-written PyTorch loop: same model, batches, optimizer and schedule.

Two modes.

Step timing (the default). gradlab runs its real pipeline (the composed config, the Translation task, the data
module and every default callback and logger, validation off); the plain loop builds the same Seq2Seq from the same
config, draws the same length-bucketed batches from the same data module (same seed, so the same batches in the same
order), and steps the same loss (label-smoothed cross-entropy), gradient clipping, optimizer (parameter groups as
src/tasks/base.py makes them) and schedule. Both alternate in one process, `--rounds` times; we report the median
time per step, target tokens per second and the ratio.

    python benchmarks/translation_step.py                                      # numbers, the default model
    python benchmarks/translation_step.py --multi30k --data-dir ../shared/data # Multi30k, the recipe's model

Whole training (`--train`): the plain loop trains for the config's epochs, scores validation BLEU (greedy, as the
recipe's validation does) after each epoch, keeps the best epoch (early stopping with the recipe's patience), then
scores it on test with greedy and beam-5 decoding, and writes a JSON summary. `--score CKPT` scores a checkpoint the
app trained with exactly the same code, so that the two are compared by one scorer:

    python benchmarks/translation_step.py --multi30k --data-dir ../shared/data --train --threads 1 \\
        model.emb_dim=256 model.hidden=256 trainer.max_epochs=4 --out plain.json
    python train.py experiment=multi30k_gru data.data_dir=../shared/data threads=1 trainer.accelerator=cpu \\
        model.emb_dim=256 model.hidden=256 trainer.max_epochs=4
    python benchmarks/translation_step.py --multi30k --data-dir ../shared/data --score <run>/checkpoints/best.ckpt

Any further argument is a Hydra override of both sides' config (model sizes, trainer.max_epochs, data.batch_size).
"""
from __future__ import annotations

import argparse
import copy
import json
import math
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from train_step_overhead import StepTimer, compose  # noqa: E402


class TokenCounter:
    """Target tokens of the timed steps (those StepTimer times), counted on the host from the batch."""

    def __init__(self, skip: int, steps: int, pad_id: int):
        import lightning as L

        outer = self
        self.tokens = 0

        class _CB(L.Callback):
            def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
                if skip <= trainer.global_step < skip + steps:
                    outer.tokens += int((batch["tgt"][:, 1:] != pad_id).sum())

        self.callback = _CB()


def run_gradlab(cfg, skip: int, steps: int) -> tuple[float, int]:
    """Seconds per step and target tokens in the timed steps, through the app's own pipeline."""
    import lightning as L

    from src import pipeline

    L.seed_everything(cfg.seed, verbose=False)
    dm = pipeline.build_data(cfg.data)
    dm.prepare_data()
    task = pipeline.build_task(cfg, dm.info)
    timer, counter = StepTimer(skip, steps, cfg.trainer.accelerator), TokenCounter(skip, steps, dm.info["pad_id"])
    callbacks = pipeline.build_callbacks(cfg) + [timer.callback, counter.callback]
    trainer = pipeline.build_trainer(cfg, callbacks, pipeline.build_loggers(cfg), max_steps=skip + steps, max_epochs=-1)
    pipeline.quiet_lightning_handlers()
    trainer.fit(task, datamodule=dm)
    return timer.per_step / steps, counter.tokens


# -- the plain loop ----------------------------------------------------------------------------------------------
class Plain:
    """What one would write by hand around the same model and data: no Lightning, no callbacks, no logging."""

    def __init__(self, cfg, device: str):
        import lightning as L
        from hydra.utils import instantiate

        from src.models import build_network
        from src.tasks.schedulers import cosine

        self.cfg, self.device = cfg, device
        L.seed_everything(cfg.seed, verbose=False)  # the data module's sampler reads the seed, as in the app
        self.dm = instantiate(cfg.data)
        self.dm.prepare_data()
        self.dm.setup()
        # one training loader, made under the run's seed, which its sampler reads when made: as the app makes it at
        # fit's start, before EpochReseed reseeds each epoch (a loader made after a reseed draws other batches)
        self._train_loader = self.dm.train_dataloader()
        info = self.info = self.dm.info
        self.model = build_network(cfg.model, src_vocab_size=info["src_vocab_size"],
                                   tgt_vocab_size=info["tgt_vocab_size"], pad_id=info["pad_id"],
                                   bos_id=info["bos_id"], eos_id=info["eos_id"]).to(device)
        params = list(self.model.parameters())
        decay = cfg.optimizer.get("weight_decay") or 0.0
        groups = [{"params": [p for p in params if p.ndim > 1], "weight_decay": decay},
                  {"params": [p for p in params if p.ndim <= 1], "weight_decay": 0.0}]
        self.opt = instantiate(cfg.optimizer)(groups)
        self.pad_id, self.task = info["pad_id"], cfg.task
        self.clip = cfg.trainer.get("gradient_clip_val")
        self.bf16 = str(cfg.trainer.precision).startswith("bf16")
        self.cosine = cosine

    def schedule(self, total_steps: int):
        sched = self.cfg.get("scheduler") or {}
        options = {k: v for k, v in sched.items() if k not in ("_target_", "_partial_")}
        self.sched = self.cosine(self.opt, total_steps=total_steps, **options)["scheduler"]

    def loader(self, epoch: int):
        self._train_loader.batch_sampler.set_epoch(epoch)
        return self._train_loader

    def step(self, batch):
        import torch
        import torch.nn.functional as F

        src, src_len, tgt = (batch[k].to(self.device, non_blocking=True) for k in ("src", "src_len", "tgt"))
        with torch.autocast(self.device, dtype=torch.bfloat16, enabled=self.bf16):
            logits = self.model(src, src_len, tgt[:, :-1], self.task.get("teacher_forcing", 1.0))
        gold = tgt[:, 1:]
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), gold.reshape(-1),
                               ignore_index=self.pad_id, label_smoothing=self.task.get("label_smoothing", 0.0))
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        if self.clip:  # over the optimizer's parameters, in its groups' order, as Lightning clips
            torch.nn.utils.clip_grad_norm_([p for g in self.opt.param_groups for p in g["params"]], self.clip)
        self.opt.step()
        self.sched.step()
        return loss.detach()

    def train_epoch(self, epoch: int, seed: int) -> list:
        """One epoch of steps, reseeded at its start as the app's EpochReseed does: the losses (tensors)."""
        import lightning as L

        L.seed_everything(seed * 1000 + epoch, workers=True, verbose=False)
        return [self.step(batch) for batch in self.loader(epoch)]

    # -- scoring, the same code for the plain loop's model and an app checkpoint ---------------------------------
    def nll(self, split: str, model=None) -> float:
        """Teacher-forced negative log-likelihood per target token, no label smoothing: the task's {val,test}/loss,
        steadier than BLEU early in training."""
        import torch
        import torch.nn.functional as F

        model = model or self.model
        total, count = 0.0, 0
        model.eval()
        with torch.inference_mode(), torch.autocast(self.device, dtype=torch.bfloat16, enabled=self.bf16):
            for batch in getattr(self.dm, f"{split}_dataloader")():
                src, src_len, tgt = (batch[k].to(self.device) for k in ("src", "src_len", "tgt"))
                logits = model(src, src_len, tgt[:, :-1])
                gold = tgt[:, 1:]
                total += float(F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), gold.reshape(-1),
                                               ignore_index=self.pad_id, reduction="sum"))
                count += int((gold != self.pad_id).sum())
        model.train()
        return total / max(1, count)

    def bleu(self, split: str, beam_size: int, model=None) -> float:
        import sacrebleu
        import torch
        from tokenizers import Tokenizer

        from src.tokens import decode

        model = model or self.model
        tok = Tokenizer.from_str(self.info["tgt_tokenizer"])
        hyps, refs = [], []
        model.eval()
        with torch.inference_mode(), torch.autocast(self.device, dtype=torch.bfloat16, enabled=self.bf16):
            for batch in getattr(self.dm, f"{split}_dataloader")():
                src, src_len = batch["src"].to(self.device), batch["src_len"].to(self.device)
                max_len = min(self.task.get("max_decode_len", 200), int(src_len.max()) * 2 + 10)
                penalty = self.task.get("length_penalty", 1.0) if beam_size > 1 else 0.0
                tokens, _ = model.beam_search(src, src_len, beam_size=beam_size, max_len=max_len,
                                              length_penalty=penalty)
                hyps += [decode(tok, t) for t in tokens.tolist()]
                refs += batch["ref"]
        model.train()
        return sacrebleu.corpus_bleu(hyps, [refs]).score


def run_plain(plain: Plain, skip: int, steps: int) -> tuple[float, int]:
    import lightning as L
    import torch

    L.seed_everything(plain.cfg.seed, verbose=False)
    total = skip + steps
    plain.schedule(total)
    plain.model.train()
    sync = torch.cuda.synchronize if plain.device == "cuda" else (lambda: None)
    step, start, tokens, epoch = 0, None, 0, 0
    while step < total:
        for batch in plain.loader(epoch):
            if step == skip:
                sync()
                start = time.perf_counter()
            if step >= skip:
                tokens += int((batch["tgt"][:, 1:] != plain.pad_id).sum())
            plain.step(batch)
            step += 1
            if step == total:
                break
        epoch += 1
    sync()
    return (time.perf_counter() - start) / steps, tokens


def train_plain(cfg, device: str, save: str | None = None) -> dict:
    """The plain loop's whole run: the config's epochs, validation BLEU after each, the best epoch kept."""
    plain = Plain(cfg, device)
    epochs = int(cfg.trainer.max_epochs)
    patience = (cfg.get("callbacks") or {}).get("early_stopping", {}) or {}
    patience = int(patience.get("patience", epochs))
    plain.schedule(epochs * len(plain.loader(0)))
    seed = int(cfg.seed)
    best, best_state, history, bad, t0 = -math.inf, None, [], 0, time.perf_counter()
    cpu0 = time.process_time()
    for epoch in range(epochs):
        t = time.perf_counter()
        plain.train_epoch(epoch, seed)
        train_s = time.perf_counter() - t
        val = plain.bleu("val", int(cfg.task.get("val_beam_size", 1)))
        history.append({"epoch": epoch, "val_bleu": round(val, 2), "val_loss": round(plain.nll("val"), 4),
                        "train_s": round(train_s, 1)})
        print(f"epoch {epoch}: val BLEU {val:.2f} (greedy), val loss {history[-1]['val_loss']}, training "
              f"{train_s:.0f} s", flush=True)
        if val > best:
            best, best_state, bad = val, copy.deepcopy(plain.model.state_dict()), 0
        else:
            bad += 1
            if bad >= patience:
                break
    plain.model.load_state_dict(best_state)
    if save:  # the chosen weights, to score again later (--score reads app checkpoints; this is the state_dict)
        import torch

        torch.save(best_state, save)
    result = {"best_epoch": max(history, key=lambda h: h["val_bleu"])["epoch"], "epochs": history,
              **scores(plain)}
    result.update(wall_s=round(time.perf_counter() - t0, 1), cpu_s=round(time.process_time() - cpu0, 1))
    return result


def scores(plain: Plain, model=None) -> dict:
    beam = int(plain.task.get("beam_size", 5))
    return {"val_loss": round(plain.nll("val", model), 4), "val_bleu_greedy": round(plain.bleu("val", 1, model), 2),
            "test_bleu_greedy": round(plain.bleu("test", 1, model), 2),
            f"test_bleu_beam{beam}": round(plain.bleu("test", beam, model), 2)}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--multi30k", action="store_true", help="experiment=multi30k_gru (else task=translation)")
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--steps", type=int, default=None, help="timed steps per round (default: 20; Multi30k 8)")
    parser.add_argument("--skip", type=int, default=3, help="warm-up steps not timed")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    parser.add_argument("--bare", action="store_true", help="gradlab without callbacks or loggers")
    parser.add_argument("--train", action="store_true", help="the plain loop's whole run, BLEU at the end")
    parser.add_argument("--score", metavar="CKPT", help="score an app checkpoint with the plain loop's scorer")
    parser.add_argument("--out", default=None, help="write the --train/--score summary here (JSON)")
    parser.add_argument("--save", default=None, help="--train: save the chosen weights (a state_dict) here")
    parser.add_argument("overrides", nargs="*", help="Hydra overrides for both sides")
    args = parser.parse_args()

    import logging
    import tempfile
    import warnings

    import torch

    warnings.filterwarnings("ignore")
    logging.getLogger("lightning").setLevel(logging.ERROR)
    if args.threads:
        torch.set_num_threads(args.threads)
    extra = ["experiment=multi30k_gru"] if args.multi30k else ["task=translation"]
    if args.multi30k and args.data_dir:
        extra.append(f"data.data_dir={args.data_dir}")
    out = Path(tempfile.mkdtemp(prefix="gradlab-bench-"))
    accel = "gpu" if args.device == "cuda" else "cpu"
    cfg = compose(None, None, accel, out / "run", args.bare, tuple(extra + args.overrides))
    device_name = torch.cuda.get_device_name() if args.device == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    m = cfg.model
    print(f"data={cfg.data._target_.rsplit('.', 1)[-1]} batch_size={cfg.data.batch_size} model={m.cell} "
          f"emb {m.emb_dim} hidden {m.hidden} x{m.layers} precision {cfg.trainer.precision} device: {device_name}")
    if args.train or args.score:
        if args.score:
            from src.checkpoint import load_task

            plain = Plain(cfg, args.device)
            result = {"checkpoint": args.score, **scores(plain, load_task(args.score).net.to(args.device))}
        else:
            result = train_plain(cfg, args.device, args.save)
        result.update(overrides=extra + args.overrides, threads=torch.get_num_threads())
        print(json.dumps(result, indent=1))
        if args.out:
            Path(args.out).write_text(json.dumps(result, indent=1) + "\n")
        return
    steps = args.steps or (8 if args.multi30k else 20)
    print(f"{args.rounds} rounds of {steps} timed steps after {args.skip} warm-up steps")
    plain = Plain(cfg, args.device)
    app, hand, toks = [], [], []
    for r in range(args.rounds):
        cfg.paths.output_dir = str(out / f"run{r}")
        a, a_tok = run_gradlab(cfg, args.skip, steps)
        p, p_tok = run_plain(plain, args.skip, steps)
        assert a_tok == p_tok, f"the two sides saw different batches ({a_tok} and {p_tok} target tokens)"
        app.append(a)
        hand.append(p)
        toks.append(p_tok / steps)
        print(f"round {r + 1}: gradlab {a * 1e3:.1f} ms/step, plain {p * 1e3:.1f} ms/step", flush=True)
    a, p, tok = statistics.median(app), statistics.median(hand), statistics.median(toks)
    print(f"target tokens/s: gradlab {tok / a:,.0f}, plain {tok / p:,.0f}")
    print(f"median: gradlab {a * 1e3:.2f} ms/step, plain PyTorch {p * 1e3:.2f} ms/step, ratio {a / p:.3f}")


if __name__ == "__main__":
    main()
