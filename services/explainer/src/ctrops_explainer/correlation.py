"""Pearson correlations that are always a valid matrix: finite, symmetric, unit diagonal.

Missing values are handled pairwise (each pair uses the rows where both are present).
A pair with fewer than 3 shared rows, or where either side is constant on those rows
(a constant or all-missing column), has no defined correlation and is reported as 0.
"""

from __future__ import annotations

import numpy as np

MIN_PAIRS = 3
_TINY = 1e-12


def pearson_matrix(values: np.ndarray) -> np.ndarray:
    """(n, k) columns with NaN for missing -> (k, k) pairwise-complete Pearson correlations."""
    x = np.asarray(values, dtype=np.float64)
    if x.ndim != 2:
        raise ValueError("expected a 2-D array of columns")
    k = x.shape[1]
    present = np.isfinite(x)
    # Standardise each column first (on its own present values) so the sums below do not cancel badly.
    with np.errstate(invalid="ignore", divide="ignore"):
        counts = present.sum(axis=0)
        mean = np.where(counts > 0, np.where(present, x, 0.0).sum(axis=0) / np.maximum(counts, 1), 0.0)
        centred = np.where(present, x - mean, 0.0)
        scale = np.sqrt((centred ** 2).sum(axis=0) / np.maximum(counts, 1))
        z = centred / np.where(scale > _TINY, scale, 1.0)
    m = present.astype(np.float64)
    pairs = m.T @ m  # rows where both are present
    sum_x = z.T @ m  # [i, j]: sum of column i over rows where j is present too
    sum_xx = (z ** 2).T @ m
    sum_xy = z.T @ z  # zero wherever either value is missing
    with np.errstate(invalid="ignore", divide="ignore"):
        cov = sum_xy - sum_x * sum_x.T / pairs
        var_i = sum_xx - sum_x ** 2 / pairs
        var_j = var_i.T
        r = cov / np.sqrt(var_i * var_j)
    defined = (pairs >= MIN_PAIRS) & (var_i > _TINY * np.maximum(pairs, 1)) & (var_j > _TINY * np.maximum(pairs, 1))
    r = np.where(defined & np.isfinite(r), np.clip(r, -1.0, 1.0), 0.0)
    r = (r + r.T) / 2
    np.fill_diagonal(r, 1.0)
    return r if k else np.zeros((0, 0))


def correlated_pairs(matrix: np.ndarray, names: list[str], threshold: float, limit: int = 20) -> list[dict]:
    """Pairs (i < j) with |r| >= ``threshold``, strongest first (ties by name), at most ``limit``."""
    r = np.asarray(matrix, dtype=np.float64)
    i, j = np.triu_indices(len(names), k=1)
    keep = np.abs(r[i, j]) >= threshold
    found = [{"features": [names[a], names[b]], "r": round(float(r[a, b]), 6)} for a, b in zip(i[keep], j[keep])]
    found.sort(key=lambda p: (-abs(p["r"]), p["features"]))
    return found[:limit]
