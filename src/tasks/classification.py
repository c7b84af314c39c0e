"""Classification shared by the image, speech and sentiment tasks: cross-entropy, accuracy, F1, confusion."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torchmetrics import MetricCollection
from torchmetrics.classification import (
    MulticlassAccuracy,
    MulticlassAUROC,
    MulticlassConfusionMatrix,
    MulticlassF1Score,
)

from src.errors import UserError
from src.tasks.base import Exportable, HasConfusion, Task


def _metrics(num_classes: int, auroc: bool = False) -> MetricCollection:
    metrics = {"acc": MulticlassAccuracy(num_classes, average="micro"),
               "f1": MulticlassF1Score(num_classes, average="macro")}
    if auroc:  # macro one-vs-rest; with two classes, the plain binary AUROC
        metrics["auroc"] = MulticlassAUROC(num_classes, average="macro")
    if num_classes > 5:
        metrics["acc_top5"] = MulticlassAccuracy(num_classes, top_k=5, average="micro")
    # no compute groups: torchmetrics merges metrics whose states are equal after the first batch, so a
    # first batch that is right in top-1 and top-5 alike made macro F1 report top-5 figures ever after
    return MetricCollection(metrics, compute_groups=False)


class ClassificationTask(Task, HasConfusion, Exportable):
    """Subclasses turn a batch into model inputs (`inputs`) and labels (`target`), and may add to
    `model_kwargs`; `auroc = True` adds {val,test}/auroc.

    data_info must hold `class_names`. Logged: train/loss, train/acc, {val,test}/{loss,acc,f1,acc_top5};
    the test confusion matrix is handed to the plotting callback by `confusion_matrices()`.
    """

    auroc = False
    _PLAIN_ATTRIBUTES = Task._PLAIN_ATTRIBUTES | {"train_seen"}

    def __init__(self, *args, label_smoothing: float = 0.0, **kwargs):
        super().__init__(*args, **kwargs)
        self.class_names = list(self.data_info["class_names"])
        n = len(self.class_names)
        # training accuracy as a running count on the device (no sync a step) and a Python count of examples: a
        # torchmetrics update costs more than a small model's step
        self.register_buffer("train_correct", torch.zeros((), dtype=torch.long), persistent=False)
        self.train_seen = 0
        self.val_metrics = _metrics(n, self.auroc).clone(prefix="val/")
        self.test_metrics = _metrics(n, self.auroc).clone(prefix="test/")
        self.confusion = MulticlassConfusionMatrix(n)
        self.label_smoothing = label_smoothing

    def model_kwargs(self):
        return {"num_classes": len(self.data_info["class_names"])}

    def output_layer(self) -> str:
        """The model's layer of class scores, as the model's class declares it: `output_layer = "head.3"`, that
        layer's module name within the model (src/models/: every classifier has one; a model of your own needs one
        too for init_from= to tell its body from its head)."""
        try:
            return f"net.{self.net.output_layer}"
        except AttributeError:
            name = type(self.net).__name__
            raise UserError(f"model {name} does not say which layer gives the class scores: give its class an "
                            f"attribute output_layer = '<that module's name>', as src/models/cnn.py does.") from None

    def inputs(self, batch):
        return batch[0]

    def target(self, batch):
        return batch[-1]

    def forward(self, x):
        return self.net(x)

    def _loss(self, logits, y):
        return F.cross_entropy(logits, y, label_smoothing=self.label_smoothing)

    def training_step(self, batch, batch_idx):
        y = self.target(batch)
        logits = self(self.inputs(batch))
        loss = self._loss(logits, y)
        self.train_correct.add_((logits.detach().argmax(-1) == y).sum())  # in place: no Module.__setattr__
        self.train_seen += y.numel()
        if self.logging_step():
            self.log("train/loss", loss, prog_bar=True, batch_size=y.shape[0])
        return loss

    def on_train_epoch_start(self):
        self.train_correct.zero_()
        self.train_seen = 0

    def on_train_epoch_end(self):
        # over the whole epoch (mean of ranks)
        self.log("train/acc", self.train_correct.item() / max(1, self.train_seen), sync_dist=True)

    def _evaluate(self, batch, split: str, metrics: MetricCollection):
        y = self.target(batch)
        logits = self(self.inputs(batch))
        self.log(f"{split}/loss", F.cross_entropy(logits, y), batch_size=y.shape[0], sync_dist=True,
                 add_dataloader_idx=False)
        metrics.update(logits, y)
        self.log_dict(metrics, batch_size=y.shape[0], prog_bar=split == "val", add_dataloader_idx=False)
        return logits

    def validation_step(self, batch, batch_idx):
        self._evaluate(batch, "val", self.val_metrics)

    def test_step(self, batch, batch_idx):
        logits = self._evaluate(batch, "test", self.test_metrics)
        self.confusion.update(logits, self.target(batch))
        return logits

    def on_test_epoch_start(self):
        self.confusion.reset()

    def confusion_matrices(self) -> dict[str, torch.Tensor]:
        return {"test": self.confusion.compute()}

    @torch.inference_mode()
    def predict_proba(self, x: torch.Tensor) -> torch.Tensor:
        self.eval()
        return torch.softmax(self(x).float(), dim=-1)

    def export_graphs(self, batch):
        """One input tensor (images as uint8, waveforms as float32), batched on its first axis -> probabilities."""
        return {"model": (Probabilities(self), {"input": batch}, {"input": {0: "batch"}}, ["probabilities"])}

    def predict_batch(self, x: torch.Tensor, top_k: int = 3, details: bool = False) -> list[dict]:
        """The label and probability of each input, with the top_k alternatives (the bars are all there is to
        show: details adds nothing)."""
        return top_k_rows(self.predict_proba(x).cpu(), self.class_names, top_k)


def top_k_rows(probs: torch.Tensor, class_names: list[str], top_k: int) -> list[dict]:
    """Probabilities (B, C) -> predict.py's answer for each row: the label, its probability and the top_k."""
    k = max(1, min(top_k, len(class_names)))
    top_p, top_i = torch.as_tensor(probs).topk(k, dim=-1)
    return [{"prediction": class_names[idx[0]], "probability": round(p[0], 6),
             "top_k": [[class_names[j], round(q, 6)] for j, q in zip(idx, p)]}
            for p, idx in zip(top_p.tolist(), top_i.tolist())]


class Probabilities(torch.nn.Module):
    """A classifier's forward pass with the softmax: what an exported classifier computes."""

    def __init__(self, task: torch.nn.Module):
        super().__init__()
        self.task = task

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self.task(x).float(), dim=-1)
