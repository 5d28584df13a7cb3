"""Click-model metrics shared by the trainer (validation) and the scorer (monitoring periods).

numpy only, so a service that scores without torch or sklearn computes the same numbers:
- ``correct_probability``: map probabilities learned at one click rate to another (prior shift);
- ``log_loss`` and ``weighted_log_loss`` (WLL: both classes weigh one half);
- ``average_precision``: area under the precision-recall curve as sklearn's
  ``average_precision_score`` computes it (a step sum over distinct scores, no interpolation);
- ``competition_score``: the Toss challenge's 0.5*AP + 0.5/(1+WLL), computed on probabilities
  shifted to a 50% prior (the submission that minimises WLL);
- ``best_f1_threshold``: the probability cut that maximises F1, in one sorted pass.
"""

from __future__ import annotations

import numpy as np

EPS = 1e-7


def correct_probability(p: np.ndarray, train_rate: float, base_rate: float) -> np.ndarray:
    """Map probabilities learned at ``train_rate`` back to the true ``base_rate`` (prior shift)."""
    p = np.clip(np.asarray(p, dtype=np.float64), 1e-7, 1 - 1e-7)
    if train_rate <= 0 or train_rate >= 1 or base_rate <= 0 or base_rate >= 1:
        return p
    ratio = (base_rate / (1 - base_rate)) / (train_rate / (1 - train_rate))
    odds = p / (1 - p) * ratio
    return odds / (1 + odds)


def log_loss(y: np.ndarray, p: np.ndarray) -> float:
    p = np.clip(p, EPS, 1 - EPS)
    return float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))


def weighted_log_loss(y: np.ndarray, p: np.ndarray) -> float:
    """0.5 * mean(-log p | y=1) + 0.5 * mean(-log(1-p) | y=0); NaN when a class is absent."""
    p = np.clip(p, EPS, 1 - EPS)
    pos, neg = y == 1, y == 0
    if not pos.any() or not neg.any():
        return float("nan")
    return float(0.5 * -np.log(p[pos]).mean() + 0.5 * -np.log(1 - p[neg]).mean())


def average_precision(y: np.ndarray, p: np.ndarray) -> float:
    """sum_k (R_k - R_{k-1}) * P_k over the distinct scores, highest first (sklearn's definition).

    NaN when there is no click (sklearn warns and returns 0 there; a period without clicks has no AP).
    """
    y = np.asarray(y, dtype=np.float64).ravel()
    p = np.asarray(p, dtype=np.float64).ravel()
    positives = y.sum()
    if positives == 0:
        return float("nan")
    order = np.argsort(-p, kind="mergesort")
    sorted_p, sorted_y = p[order], y[order]
    last_of_tie = np.r_[sorted_p[1:] != sorted_p[:-1], True]  # one point per distinct score
    tp = np.cumsum(sorted_y)[last_of_tie]
    predicted = np.arange(1, len(y) + 1)[last_of_tie]
    precision = tp / predicted
    recall = tp / positives
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


def competition_score(y: np.ndarray, p_balanced: np.ndarray) -> float:
    """0.5*AP + 0.5/(1+WLL) of probabilities already shifted to a 50% prior."""
    return float(0.5 * average_precision(y, p_balanced) + 0.5 / (1 + weighted_log_loss(y, p_balanced)))


def best_f1_threshold(y: np.ndarray, p: np.ndarray) -> tuple[float, float, float, float]:
    """(threshold, precision, recall, f1) at the cut that maximises F1, in one sorted pass."""
    positives = float(y.sum())
    if positives == 0:
        return 0.5, 0.0, 0.0, 0.0
    order = np.argsort(-p, kind="stable")
    sorted_p, sorted_y = p[order], y[order]
    tp = np.cumsum(sorted_y)
    predicted = np.arange(1, len(y) + 1)
    last_of_tie = np.r_[sorted_p[1:] != sorted_p[:-1], True]  # a cut may not split equal scores
    tp, predicted, cut_p = tp[last_of_tie], predicted[last_of_tie], sorted_p[last_of_tie]
    precision = tp / predicted
    recall = tp / positives
    with np.errstate(invalid="ignore", divide="ignore"):
        f1 = np.where(tp > 0, 2 * precision * recall / (precision + recall), 0.0)
    best = int(np.argmax(f1))
    return float(cut_p[best]), float(precision[best]), float(recall[best]), float(f1[best])


def f1_at(y: np.ndarray, p: np.ndarray, threshold: float) -> float:
    """F1 of predicting a click where ``p >= threshold`` (0 when nothing is predicted or no click)."""
    predicted = np.asarray(p) >= threshold
    actual = np.asarray(y) == 1
    tp = float(np.sum(predicted & actual))
    denominator = float(predicted.sum() + actual.sum())
    return 2 * tp / denominator if denominator else 0.0
