"""Comparing two rankings of features (the attribution and the held-out permutation test)."""

from __future__ import annotations

import numpy as np
from scipy import stats


def top_overlap(first: list[str], second: list[str], k: int = 10) -> int:
    """How many of the first k names of one ranking are among the first k of the other."""
    return len(set(first[:k]) & set(second[:k]))


def rank_correlation(a: dict[str, float], b: dict[str, float]) -> float:
    """Spearman correlation of two scores over their common features (0 when undefined)."""
    common = sorted(set(a) & set(b))
    if len(common) < 3:
        return 0.0
    x = np.array([a[c] for c in common])
    y = np.array([b[c] for c in common])
    if np.ptp(x) == 0 or np.ptp(y) == 0:
        return 0.0
    rho = stats.spearmanr(x, y).statistic
    return float(rho) if np.isfinite(rho) else 0.0
