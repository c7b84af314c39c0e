"""model.compile=true: torch.compile the task's network when the trainer sets it up, and time its first steps."""
from __future__ import annotations

import logging
import os
import shutil
import time

import lightning as L
import torch

from src.errors import UserError

log = logging.getLogger(__name__)

MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")


class Compile(L.Callback):
    """Compiles `pl_module.net` in place (nn.Module.compile): the module and its parameter names stay as they were,
    so checkpoints hold plain names and load into an uncompiled network (eval.py, predict.py, export). Training and
    evaluation in this run both go through the compiled network; each compiles on its first step (dropout and
    batch norm differ between the two), and this callback logs how long those first steps took (`seconds`, also
    written to run.json)."""

    def __init__(self, mode: str = "default", backend: str = "inductor"):
        import torch._dynamo

        if str(mode or "default") not in MODES:
            raise UserError(f"model.compile_mode={mode} is not a mode of torch.compile: choose {', '.join(MODES)}.")
        backends = torch._dynamo.list_backends(exclude_tags=())
        if str(backend or "inductor") not in backends:
            raise UserError(f"model.compile_backend={backend} is not a backend of torch.compile: inductor (code "
                            f"generation), aot_eager or eager (tracing only, to debug); all: {', '.join(backends)}.")
        self.mode = None if mode in (None, "default") else str(mode)
        self.backend = str(backend or "inductor")
        self.seconds: dict[str, float] = {}
        self._start: float | None = None

    def setup(self, trainer, pl_module, stage: str) -> None:
        on_cpu = trainer.strategy.root_device.type == "cpu"
        compilers = [os.environ.get("CXX"), "g++", "c++", "clang++"]
        if self.backend == "inductor" and on_cpu and not any(c and shutil.which(c) for c in compilers):
            raise UserError("model.compile=true on a CPU needs a C++ compiler (inductor builds C++ kernels), and none "
                            "was found (g++, c++, clang++ or $CXX): install one (apt-get install g++), or set "
                            "model.compile=false.")
        net = pl_module.net
        if getattr(net, "_compiled_call_impl", None) is None:
            net.compile(mode=self.mode, backend=self.backend)
            log.info("torch.compile: the network is compiled on its first training and evaluation steps (mode %s, "
                     "backend %s)", self.mode or "default", self.backend)

    def _begin(self, key: str) -> None:
        if key not in self.seconds and self._start is None:
            self._start = time.perf_counter()

    def _end(self, key: str, pl_module) -> None:
        if key in self.seconds or self._start is None:
            return
        if pl_module.device.type == "cuda":
            torch.cuda.synchronize(pl_module.device)
        self.seconds[key] = round(time.perf_counter() - self._start, 2)
        self._start = None
        log.info("torch.compile: the first %s step took %.1f s (compiling included)", key, self.seconds[key])

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self._begin("training")

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self._end("training", pl_module)

    def on_validation_batch_start(self, trainer, pl_module, batch, batch_idx, dataloader_idx=0):
        self._begin("evaluation")

    def on_validation_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0):
        self._end("evaluation", pl_module)
