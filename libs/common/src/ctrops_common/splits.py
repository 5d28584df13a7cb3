"""The trainer's stratified validation rows, reproducible by any service from the run's config.

The explainer tests whether a feature carries signal on rows the model never saw: the
validation rows of the run. The trainer does not publish them, but they depend only on
the labels, ``validation_split`` and ``seed`` (``ctrops_trainer.data.split_rows``: per
class, a seeded permutation, positives drawn first, then negatives, from one generator),
so they are re-derived here with the same draws. ``libs/common/tests/test_splits.py``
checks that these are the trainer's rows; the trainer may adopt this function later.
"""

from __future__ import annotations

import numpy as np


def validation_rows(labels: np.ndarray, validation_split: float, seed: int) -> np.ndarray:
    """Sorted row indices of the run's validation part (the same rows as the trainer's ``Split.val``).

    ``labels`` are the file's ``clicked`` values (0/1) in row order. A class with fewer than
    two rows (the trainer refuses such files) keeps at least one training row, as the
    trainer would."""
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    parts = []
    for cls in (1, 0):  # the trainer draws the positives' permutation first
        indices = np.flatnonzero(labels == cls)
        if len(indices) == 0:
            continue
        shuffled = rng.permutation(indices)
        n_val = min(len(indices) - 1, max(1, int(round(validation_split * len(indices)))))
        parts.append(shuffled[:n_val])
    return np.sort(np.concatenate(parts)) if parts else np.zeros(0, dtype=np.int64)


def training_rows(labels: np.ndarray, validation_split: float, seed: int) -> np.ndarray:
    """Every other row (sorted): what the trainer fitted on, before any down-sampling."""
    val = validation_rows(labels, validation_split, seed)
    keep = np.ones(len(labels), dtype=bool)
    keep[val] = False
    return np.flatnonzero(keep)
