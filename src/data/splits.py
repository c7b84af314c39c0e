"""Splitting a labelled set into train, validation and test parts, each class spread evenly (all modalities)."""
from __future__ import annotations

import numpy as np


def stratified_split(labels: np.ndarray, fractions: list[float], seed: int) -> list[np.ndarray]:
    """Split indices into len(fractions)+1 parts, each class spread evenly; the last part takes the rest.

    Each part comes in a random order, so that the first batches of a split (trainer.limit_val_batches) are a
    sample of every class, not the first classes of a sorted folder."""
    rng = np.random.default_rng(seed)
    parts = [[] for _ in range(len(fractions) + 1)]
    for c in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == c))
        start = 0
        for k, f in enumerate(fractions):
            n = int(round(f * len(idx)))
            parts[k].append(idx[start:start + n])
            start += n
        parts[-1].append(idx[start:])
    return [rng.permutation(np.concatenate(p)) for p in parts]
