"""Validation metrics that mean something at 2% clicks (../shared/spec/dataset.md).

All of them are computed on the validation rows, which keep the original click rate,
from probabilities already corrected back to that rate:
- ``val_accuracy``: at 0.5 - near 1 - CTR for any model, so it is shown but says little;
- ``auc`` (ROC AUC), ``ap`` (average precision), ``logloss``;
- ``calibration``: predicted clicks / actual clicks (1.0 is perfect);
- ``score``: the competition score 0.5*AP + 0.5/(1+WLL), with WLL the class-balanced
  log loss. WLL weighs both classes equally, so the submission that minimises it is the
  model's probability shifted to a 50% prior; the score is computed on exactly that
  shift (a constant 0.5 scores about 0.305, the Toss reference deep models 0.344-0.346);
- ``precision``/``recall``/``f1`` at ``threshold``: the corrected-probability cut that
  maximises F1 on the validation rows (stated with the numbers; optimistic by design).
"""

from __future__ import annotations

import math

import numpy as np
from sklearn.metrics import average_precision_score, roc_auc_score

# The formulas live in libs/common so the scorer's monitoring periods compute the same numbers.
from ctrops_common.ctr_metrics import (  # noqa: F401 - re-exported: the trainer's callers and tests import them here
    best_f1_threshold,
    competition_score,
    correct_probability,
    log_loss,
    weighted_log_loss,
)


def finite_or_none(value: float | None) -> float | None:
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def validation_metrics(y: np.ndarray, p_raw: np.ndarray, train_rate: float, base_rate: float) -> dict[str, float | None]:
    """Metrics of raw model probabilities ``p_raw`` (learned at ``train_rate``) on validation labels ``y``."""
    y = np.asarray(y, dtype=np.float64)
    p = correct_probability(p_raw, train_rate, base_rate)
    p_balanced = correct_probability(p_raw, train_rate, 0.5)
    both_classes = 0 < y.sum() < len(y)
    threshold, precision, recall, f1 = best_f1_threshold(y, p)
    actual = float(y.sum())
    return {
        "val_loss": log_loss(y, p),
        "val_accuracy": float(np.mean((p >= 0.5) == (y == 1))),
        "auc": finite_or_none(roc_auc_score(y, p)) if both_classes else None,
        "ap": finite_or_none(average_precision_score(y, p)) if both_classes else None,
        "logloss": log_loss(y, p),
        "calibration": float(p.sum() / actual) if actual else None,
        "score": finite_or_none(competition_score(y, p_balanced)) if both_classes else None,
        "precision": precision,
        "recall": recall,
        "f1": f1,
        "threshold": threshold,
    }
