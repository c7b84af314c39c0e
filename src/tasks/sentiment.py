"""Sentiment (text) classification: padded token ids in, logits out; accuracy, macro F1 and AUROC, the
confusion matrix, and the test mistakes the model was surest of (written by the MistakesList callback)."""
from __future__ import annotations

import torch

from src.models.text import RNNClassifier
from src.tasks.base import HasMistakes, gather_objects
from src.tasks.classification import ClassificationTask


class SentimentClassification(ClassificationTask, HasMistakes):
    """data_info: class_names, tokenizer (JSON), vocab_size, pad_id, unk_id, max_len, and the character n-gram
    settings (char_ngrams, ngram_buckets: 0 for none).

    batch: {"ids" (B, T), "lengths" (B,), "label" (B,), "text": [...][, "ngrams" (B, T, K)]}.
    num_mistakes: how many of the most confident wrong test predictions `test_mistakes()` returns (text, true,
    predicted, probability).
    """

    auroc = True

    def __init__(self, *args, num_mistakes: int = 25, **kwargs):
        super().__init__(*args, **kwargs)
        self.num_mistakes = int(num_mistakes)
        self._wrong: list[dict] = []

    def model_kwargs(self):
        info = self.data_info
        return {**super().model_kwargs(), "vocab_size": info["vocab_size"], "pad_id": info["pad_id"],
                "unk_id": info["unk_id"], "ngram_buckets": info.get("ngram_buckets", 0)}

    def inputs(self, batch):
        return batch

    def target(self, batch):
        return batch["label"]

    def forward(self, x: dict) -> torch.Tensor:
        return self.net(x["ids"], x["lengths"], x.get("ngrams"))

    def export_graphs(self, batch):
        """Token ids (batch, tokens), lengths (batch,) and, with character n-grams, their ids (batch, tokens,
        n-grams) -> probabilities. Tokenising and hashing the n-grams stay outside (model.json says how)."""
        names = ["ids", "lengths"] + (["ngrams"] if batch.get("ngrams") is not None else [])
        axes = {"ids": {0: "batch", 1: "tokens"}, "lengths": {0: "batch"},
                "ngrams": {0: "batch", 1: "tokens", 2: "ngrams"}}
        return {"model": (TextProbabilities(self.net), {n: batch[n] for n in names}, {n: axes[n] for n in names},
                          ["probabilities"])}

    # the most confident mistakes --------------------------------------------------------------------
    def test_step(self, batch, batch_idx):
        logits = super().test_step(batch, batch_idx)
        y = batch["label"]
        p, pred = torch.softmax(logits.float(), -1).max(-1)
        for i in (pred != y).nonzero().flatten().tolist():
            self._wrong.append({"probability": round(float(p[i]), 4), "true": self.class_names[int(y[i])],
                                "predicted": self.class_names[int(pred[i])], "text": batch["text"][i]})
        # keep the list short as it grows: only the surest num_mistakes can end up in the file
        if len(self._wrong) > 4 * self.num_mistakes:
            self._wrong = sorted(self._wrong, key=_surest_first)[:self.num_mistakes]

    def on_test_epoch_start(self):
        super().on_test_epoch_start()
        self._wrong = []

    def test_mistakes(self) -> list[dict]:
        """The surest wrong predictions of the last test, surest first. Every rank must call it (it gathers
        all ranks' lists, so the list is the whole test set's)."""
        wrong = gather_objects(self._wrong)
        return sorted(wrong, key=_surest_first)[:self.num_mistakes]


def _surest_first(mistake: dict) -> tuple:
    return -mistake["probability"], mistake["text"]


class TextProbabilities(torch.nn.Module):
    """A text classifier's probabilities from plain tensors, the recurrent one without packed sequences (the same
    result: src.models.recurrence.scan_rnn), so that torch.export and ONNX can trace it at any length."""

    def __init__(self, net: torch.nn.Module):
        super().__init__()
        self.net = net
        self.unpacked = {"packed": False} if isinstance(net, RNNClassifier) else {}

    def forward(self, ids: torch.Tensor, lengths: torch.Tensor, ngrams: torch.Tensor | None = None) -> torch.Tensor:
        return torch.softmax(self.net(ids, lengths, ngrams, **self.unpacked).float(), dim=-1)
