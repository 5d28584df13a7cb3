"""Held-out permutation importance with a test: does a feature carry signal on rows the model never saw?

For each feature j the column is shuffled across the run's validation rows (``repeats``
seeded shuffles; ``seq`` is shuffled whole: rows swap their sequence encodings) and the
ROC AUC of the model's scores is recomputed. The statistic is the drop

    D_j = AUC(original scores) - mean_r AUC(scores with feature j shuffled, shuffle r)

on the validation rows, which the model was not fitted on: a feature the model leaned on
but that carries no signal in new data (an overfitted one) does not lower the held-out AUC.
AUC rather than log loss because it is the contract's headline metric and does not
depend on the click rate the model was calibrated to.

Inference uses the DeLong structural components (placements): each click i gets
v10_i (share of non-clicks it outranks, ties 1/2), each non-click k gets v01_k (share of
clicks outranking it); AUC = mean v10 = mean v01. D_j is then the mean of the per-row
contrasts a10_i = v10_i(original) - mean_r v10_i(shuffled r) over clicks (and likewise
a01 over non-clicks), so

- se_j = sqrt(var(a10)/m + var(a01)/n) (DeLong's paired variance of an AUC contrast, with
  m clicks and n non-clicks: the uncertainty of drawing these validation rows);
- p_raw_j = P(Z >= D_j / se_j), one-sided: H0 "shuffling the feature does not lower the
  held-out AUC", i.e. the feature carries no signal the model can use on new rows;
- the 95% interval of D_j: percentiles over ``bootstrap`` stratified resamples of the
  validation rows (clicks and non-clicks resampled separately), each resample's drop
  computed from the same contrasts (D_b = sum_i c_i a10_i / m + sum_k c_k a01_k / n - D,
  the first-order expansion of the resample's AUC drop; scoring the model again per
  resample would cost 500 times more for a difference of order 1/n); ``p_bootstrap`` =
  (1 + #{D_b <= 0}) / (1 + B) is kept beside it, a resolution-limited check of p_raw.

Features in ``skip`` (those the model provably never reads: ``Scorer.unused``) are not
scored: a shuffle cannot change a score, so their drop is exactly 0 and p_raw 1. Their
shuffles are still drawn, so every other feature gets the same shuffles, and the same
numbers, as without the skip. A LightGBM re-walks only the trees that read the shuffled
feature (``shuffle.py``): the same scores, a fraction of the work.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.special import ndtr

from ctrops_common.auc_stats import midranks

from .scoring import Scorer
from .shuffle import shuffled_scores

SEQ_FEATURE = "seq"
_BOOTSTRAP_CHUNK = 100


@dataclass
class HeldOutImportance:
    names: list[str]
    baseline_auc: float
    drop: np.ndarray  # (F,) mean AUC drop over the shuffles
    se: np.ndarray  # (F,) DeLong standard error of the drop
    p_raw: np.ndarray  # (F,) one-sided
    ci: np.ndarray  # (F, 2) bootstrap percentile interval of the drop
    p_bootstrap: np.ndarray  # (F,)
    drop_std: np.ndarray  # (F,) spread of the drop between shuffles (permutation noise)
    rows: int
    clicks: int
    repeats: int
    bootstrap: int
    loss_increase: np.ndarray = None  # (F,) mean increase of the per-row log loss (corrected probability)
    loss_p_raw: np.ndarray = None  # (F,) one-sided paired z-test of it


def placements(y: np.ndarray, scores: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
    """(AUC, v10 per click, v01 per non-click) of one score vector (ties count 1/2, as sklearn)."""
    pos = y == 1
    m, n = int(pos.sum()), int((~pos).sum())
    x, z = scores[pos], scores[~pos]
    tz = midranks(np.r_[x, z])
    v10 = (tz[:m] - midranks(x)) / n
    v01 = 1.0 - (tz[m:] - midranks(z)) / m
    return float(v10.mean()), v10, v01


def heldout_permutation(scorer: Scorer, x_tab: np.ndarray, states: np.ndarray, clicked: np.ndarray,
                        names: list[str], repeats: int, bootstrap: int, seed: int,
                        skip: np.ndarray | None = None) -> HeldOutImportance:
    """Shuffle each feature on the (validation) rows given; the AUC drop, its test and its interval."""
    y = (np.asarray(clicked) == 1).astype(np.int8)
    m, n = int(y.sum()), int(len(y) - y.sum())
    if m < 2 or n < 2:
        raise ValueError(f"the validation rows hold {m} click(s) and {n} non-click(s); at least 2 of each are "
                         "needed to test features")
    rng = np.random.default_rng(seed)
    shuffled = shuffled_scores(scorer, x_tab, states)
    logits0 = shuffled.base
    auc0, v10_0, v01_0 = placements(y, logits0)
    loss0 = _row_loss(scorer, logits0, y)
    f = len(names)
    loss_diff = np.zeros((len(y), f))
    a10 = np.zeros((m, f))
    a01 = np.zeros((n, f))
    drops = np.zeros((f, repeats))
    skip = np.zeros(f, dtype=bool) if skip is None else np.asarray(skip, dtype=bool)
    for j, name in enumerate(names):
        for r in range(repeats):
            order = rng.permutation(len(y))
            if skip[j]:
                continue  # never read by the model: every score, hence every contrast, is unchanged
            score = shuffled.scores(None if name == SEQ_FEATURE else j, order)
            auc, v10, v01 = placements(y, score)
            loss_diff[:, j] += (_row_loss(scorer, score, y) - loss0) / repeats
            drops[j, r] = auc0 - auc
            a10[:, j] += (v10_0 - v10) / repeats
            a01[:, j] += (v01_0 - v01) / repeats
    drop = drops.mean(axis=1)
    se = np.sqrt(a10.var(axis=0, ddof=1) / m + a01.var(axis=0, ddof=1) / n)
    with np.errstate(divide="ignore", invalid="ignore"):
        z = np.where(se > 0, drop / np.where(se > 0, se, 1.0), np.where(drop > 0, np.inf, -np.inf))
    p_raw = np.where((se == 0) & (drop == 0), 1.0, ndtr(-z))

    resampled = np.empty((bootstrap, f))
    for start in range(0, bootstrap, _BOOTSTRAP_CHUNK):
        b = min(_BOOTSTRAP_CHUNK, bootstrap - start)
        c10 = rng.multinomial(m, np.full(m, 1.0 / m), size=b).astype(np.float64)
        c01 = rng.multinomial(n, np.full(n, 1.0 / n), size=b).astype(np.float64)
        resampled[start:start + b] = c10 @ a10 / m + c01 @ a01 / n - drop
    low, high = np.percentile(resampled, [2.5, 97.5], axis=0)
    p_boot = (1.0 + (resampled <= 0).sum(axis=0)) / (1.0 + bootstrap)
    loss_se = loss_diff.std(axis=0, ddof=1) / np.sqrt(len(y))
    loss_z = np.divide(loss_diff.mean(axis=0), loss_se, out=np.zeros(f), where=loss_se > 0)
    return HeldOutImportance(
        loss_increase=loss_diff.mean(axis=0), loss_p_raw=ndtr(-loss_z),
        names=list(names), baseline_auc=auc0, drop=drop, se=se, p_raw=np.clip(p_raw, 0.0, 1.0),
        ci=np.column_stack([low, high]), p_bootstrap=p_boot, drop_std=drops.std(axis=1),
        rows=len(y), clicks=m, repeats=repeats, bootstrap=bootstrap,
    )


def _row_loss(scorer: Scorer, logits: np.ndarray, y: np.ndarray) -> np.ndarray:
    p = np.clip(scorer.probability(logits), 1e-12, 1 - 1e-12)
    return -(y * np.log(p) + (1 - y) * np.log1p(-p))


def benjamini_hochberg(p: np.ndarray) -> np.ndarray:
    """Benjamini-Hochberg adjusted p-values (step-up, monotone, capped at 1), in the input order."""
    p = np.asarray(p, dtype=np.float64)
    k = len(p)
    if k == 0:
        return p.copy()
    order = np.argsort(p, kind="mergesort")
    scaled = p[order] * k / np.arange(1, k + 1)
    adjusted = np.minimum.accumulate(scaled[::-1])[::-1]
    out = np.empty(k)
    out[order] = np.minimum(adjusted, 1.0)
    return out
