"""From local LIME weights to one global number per feature, with a p-value and a 95% interval.

Definitions (n explained rows i, features j; w_ij the LIME weight, s_ij its robust
standard error from the local ridge fit):

- importance_j = mean_i |w_ij| / max_k mean_i |w_ik|: the average size of the feature's
  local effect, relative to the strongest feature (which scores 1).
- pValue_j: H0 "the model's output does not depend on feature j near any explained row".
  Under H0 each z_ij = w_ij / s_ij is approximately standard normal and the rows are
  independent, so sum_i z_ij^2 follows a chi-square law with n degrees of freedom;
  pValue_j = P(chi2_n >= sum_i z_ij^2). A signed t-test of w_ij is not used because a
  discretised LIME weight changes sign from row to row for the strongest features
  (a high value helps, a low one hurts), so its mean can be zero while the effect is large.
- ci_j: the 2.5th and 97.5th percentiles of importance_j (the same ratio, recomputed)
  over bootstrap resamples of the explained rows, seeded.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import stats


@dataclass
class FeatureStat:
    feature: str
    importance: float
    p_value: float
    ci: tuple[float, float]
    mean_abs_weight: float  # probability units
    mean_weight: float
    chi2: float


def aggregate(names: list[str], weights: np.ndarray, errors: np.ndarray, bootstrap: int, seed: int
              ) -> list[FeatureStat]:
    """Global statistics per feature, sorted by importance (ties by name, so the order is stable)."""
    n = weights.shape[0]
    if n == 0:
        raise ValueError("no explained rows to aggregate")
    magnitude = np.abs(weights)
    raw = magnitude.mean(axis=0)
    importance = _relative(raw[None, :])[0]

    z = np.divide(weights, errors, out=np.zeros_like(weights), where=errors > 0)
    chi2 = (z ** 2).sum(axis=0)
    p_value = stats.chi2.sf(chi2, df=n)

    rng = np.random.default_rng(seed)
    counts = rng.multinomial(n, np.full(n, 1.0 / n), size=bootstrap)  # (B, n): row multiplicities
    resampled = _relative(counts @ magnitude / n)
    low, high = np.percentile(resampled, [2.5, 97.5], axis=0)

    result = [
        FeatureStat(
            feature=name,
            importance=float(importance[j]),
            p_value=float(np.clip(p_value[j], 0.0, 1.0)),
            ci=(float(low[j]), float(high[j])),
            mean_abs_weight=float(raw[j]),
            mean_weight=float(weights[:, j].mean()),
            chi2=float(chi2[j]),
        )
        for j, name in enumerate(names)
    ]
    result.sort(key=lambda s: (-s.importance, s.feature))
    return result


def _relative(raw: np.ndarray) -> np.ndarray:
    """Each row divided by its maximum (all zeros stays zeros)."""
    top = raw.max(axis=1, keepdims=True)
    return np.divide(raw, top, out=np.zeros_like(raw, dtype=np.float64), where=top > 0)


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
