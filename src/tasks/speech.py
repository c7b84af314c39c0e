"""Spoken-word classification: waveforms in, log-Mel or MFCC features and SpecAugment on the device, logits out.

Besides the test split, a data module may name more test sets in data_info["test_sets"] (e.g. "real":
recordings of real people for a model trained on synthetic voices); each is scored under its own prefix
(real/acc, real/f1, ...) and is never used to choose a checkpoint.
"""
from __future__ import annotations

import torch
from torch import nn
from torchmetrics.classification import MulticlassConfusionMatrix

from src.models.audio import Features, SpecAugment
from src.tasks.base import HasExamples
from src.tasks.classification import ClassificationTask, _metrics


class SpeechClassification(ClassificationTask, HasExamples):
    """data_info: class_names, sample_rate, num_samples, test_sets. features: see src.models.audio.Features;
    spec_augment: see src.models.audio.SpecAugment (training only)."""

    def __init__(self, *args, features: dict | None = None, spec_augment: dict | None = None,
                 num_examples: int = 8, **kwargs):
        self._features_cfg = dict(features or {})
        super().__init__(*args, **kwargs)
        self.spec_augment = SpecAugment(**dict(spec_augment or {}))
        extra = list(self.data_info.get("test_sets", ["test"]))[1:]
        n = len(self.class_names)
        self.extra_metrics = nn.ModuleDict({name: _metrics(n).clone(prefix=f"{name}/") for name in extra})
        self.extra_confusion = nn.ModuleDict({name: MulticlassConfusionMatrix(n) for name in extra})
        self.num_examples = num_examples
        self.spectrogram_examples: list[dict] = []

    def model_kwargs(self):
        # the front end is built here, before the model, because the model's input size depends on it
        self.features = Features(self.data_info["sample_rate"], **self._features_cfg)
        return {**super().model_kwargs(), "in_features": self.features.num_features}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(self.spec_augment(self.features(x)))

    # several test sets -------------------------------------------------------------------------------
    def test_step(self, batch, batch_idx, dataloader_idx: int = 0):
        if dataloader_idx == 0:
            logits = self._evaluate(batch, "test", self.test_metrics)
            self.confusion.update(logits, batch[-1])
            if batch_idx == 0:
                self._keep_examples(batch[0], batch[-1], logits)
            return
        name = list(self.extra_metrics)[dataloader_idx - 1]
        logits = self._evaluate(batch, name, self.extra_metrics[name])
        self.extra_confusion[name].update(logits, batch[-1])

    def on_test_epoch_start(self):
        super().on_test_epoch_start()
        for m in self.extra_confusion.values():
            m.reset()
        self.spectrogram_examples = []

    def confusion_matrices(self) -> dict[str, torch.Tensor]:
        return {**super().confusion_matrices(), **{name: m.compute() for name, m in self.extra_confusion.items()}}

    def test_examples(self) -> list[dict]:
        """The first test clips: features, true and predicted word, probability (SpectrogramPlot)."""
        return self.spectrogram_examples

    def _keep_examples(self, x, y, logits):
        """The first test clips' features, true and predicted words, for the spectrogram plot."""
        k = min(self.num_examples, len(y))
        probs = torch.softmax(logits[:k].float(), -1)
        p, pred = probs.max(-1)
        feats = self.features(x[:k]).squeeze(1).cpu()
        self.spectrogram_examples = [
            {"features": feats[i].numpy(), "true": self.class_names[int(y[i])],
             "predicted": self.class_names[int(pred[i])], "probability": float(p[i])} for i in range(k)]
