"""One monitoring period of a deployed model, accumulated chunk by chunk (pure: numpy/scipy).

``PeriodAccumulator.add`` takes each scored chunk (features in the reference's column order,
probabilities at the true click rate, labels or None) and keeps only:
- per feature, the counts in the reference's PSI bins, and the same for the scores;
- a fixed-size random sample of rows (``PERIOD_SAMPLE``, chosen by the smallest of a random key
  per row, so chunks of any size keep the same rows as one ``add``) for KS and Wasserstein;
- the probabilities (8 bytes a row) and labels (1 byte a row), which AUC, AP and CBPE need whole:
  about 5 MB for a 600k-row period, whatever the number of features.

``finish`` turns that into a ``MonitoringPeriod``:
- AUC with its 95% DeLong interval (ctrops_common.auc_stats), AP, log loss, accuracy at the
  model's threshold beside the majority-class accuracy (at 2% clicks "always no" scores 98%),
  F1 at the threshold, and the Toss score 0.5*AP + 0.5/(1+WLL) on the probabilities shifted to a
  50% prior, exactly as the trainer scores a run (ctrops_common.ctr_metrics);
- calibration = predicted clicks / actual clicks, with a 95% interval from the exact Poisson
  interval of the actual clicks (the predicted sum is treated as known);
- ``estimated_auc``, CBPE-style (NannyML): if the scores are calibrated, row i is a click with
  probability p_i, independently, so the expected number of click/non-click pairs the model
  orders right is sum over i ranked above j of p_i (1 - p_j) (ties: one half), divided by the
  expected number of click/non-click pairs, (sum p)(sum 1-p) - sum p(1-p). One sort, O(n log n).
  Given for every period, labelled or not: with labels it can be checked against the AUC;
- prediction PSI (the period's scores against the training rows' scores) and per-feature drift
  (drift.py), sorted by PSI, highest first, with the model's importance rank when known.
"""

from __future__ import annotations

import math
from datetime import datetime, timezone

import numpy as np

from ctrops_common.auc_stats import auc_ci
from ctrops_common.ctr_metrics import (
    average_precision,
    competition_score,
    correct_probability,
    f1_at,
    log_loss,
)
from ctrops_common.events import FeatureDrift, MonitoringPeriod, PeriodMetrics

from .drift import Reference, feature_drift, psi

PERIOD_SAMPLE = 5000  # >= drift.SMALL_SAMPLE: a small period's KS sees every row
SAMPLE_SEED = 20260314


def period_label(when: datetime, bucket: str) -> str:
    """"2026-03-14" (day), "2026-W11" (ISO week), "2026-03" (month); an aware time is taken in UTC."""
    if when.tzinfo is not None:
        when = when.astimezone(timezone.utc)
    if bucket == "day":
        return when.strftime("%Y-%m-%d")
    if bucket == "week":
        year, week, _ = when.isocalendar()
        return f"{year}-W{week:02d}"
    if bucket == "month":
        return when.strftime("%Y-%m")
    raise ValueError(f"bucket must be day, week or month, not {bucket!r}")


def poisson_interval(count: int, level: float = 0.95) -> tuple[float, float]:
    """Exact (Garwood) interval of a Poisson mean from one observed ``count``."""
    from scipy import stats  # on first use: the scorer starts without SciPy

    alpha = 1 - level
    low = 0.0 if count == 0 else float(stats.chi2.ppf(alpha / 2, 2 * count) / 2)
    high = float(stats.chi2.ppf(1 - alpha / 2, 2 * count + 2) / 2)
    return low, high


def expected_auc(p: np.ndarray) -> float | None:
    """CBPE-style AUC from calibrated probabilities alone (None with fewer than 2 rows or no spread)."""
    p = np.clip(np.asarray(p, dtype=np.float64).ravel(), 0.0, 1.0)
    if p.size < 2:
        return None
    order = np.argsort(p, kind="mergesort")
    s = p[order]
    starts = np.flatnonzero(np.r_[True, s[1:] != s[:-1]])  # runs of equal scores
    clicks = np.add.reduceat(s, starts)  # expected clicks per run
    non_clicks = np.add.reduceat(1.0 - s, starts)
    self_pairs = np.add.reduceat(s * (1.0 - s), starts)  # a row never pairs with itself
    below = np.r_[0.0, np.cumsum(non_clicks)[:-1]]  # expected non-clicks ranked strictly lower
    concordant = np.sum(clicks * below) + 0.5 * np.sum(clicks * non_clicks - self_pairs)
    pairs = p.sum() * (1.0 - p).sum() - np.sum(p * (1.0 - p))
    if pairs <= 0:
        return None
    return float(concordant / pairs)


def _finite(value: float | None) -> float | None:
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


class PeriodAccumulator:
    """Counts and samples of one period against ``reference``; bounded memory whatever the rows."""

    def __init__(self, reference: Reference, *, sample_rows: int = PERIOD_SAMPLE, seed: int = SAMPLE_SEED) -> None:
        self.reference = reference
        self.rows = 0
        self.counts = [np.zeros(b.bins, dtype=np.int64) for b in reference.binnings]
        self.score_counts = np.zeros(reference.score_binning.bins, dtype=np.int64)
        self.sample_rows = sample_rows
        self._rng = np.random.default_rng(seed)
        self._sample = np.zeros((0, len(reference.feature_columns)))
        self._sample_keys = np.zeros(0)
        self._probabilities: list[np.ndarray] = []
        self._labels: list[np.ndarray] | None = None  # None until the first chunk says

    def add(self, features: np.ndarray, probabilities: np.ndarray, labels: np.ndarray | None) -> None:
        features = np.asarray(features, dtype=np.float64)
        probabilities = np.asarray(probabilities, dtype=np.float64).ravel()
        n = probabilities.shape[0]
        width = len(self.reference.feature_columns)
        if features.ndim != 2 or features.shape != (n, width):
            raise ValueError(f"features have shape {features.shape}, expected ({n}, {width})")
        if not np.isfinite(probabilities).all() or (probabilities < 0).any() or (probabilities > 1).any():
            raise ValueError("probabilities must be finite and within [0, 1]")
        if self.rows and (labels is None) != (self._labels is None):
            raise ValueError("a period is either labelled in every chunk or in none")
        if labels is not None:
            labels = np.asarray(labels).ravel()
            if labels.shape[0] != n:
                raise ValueError(f"{labels.shape[0]} labels for {n} rows")
            if not np.isin(labels, (0, 1)).all():
                raise ValueError("labels must be 0 or 1")
            if self._labels is None:
                self._labels = []
            self._labels.append(labels.astype(np.int8))
        if n == 0:
            return
        for i, binning in enumerate(self.reference.binnings):
            self.counts[i] += binning.counts(features[:, i])
        self.score_counts += self.reference.score_binning.counts(probabilities)
        self._probabilities.append(probabilities.copy())
        # Keep the rows with the smallest random keys: the same rows however the period is chunked.
        keys = self._rng.random(n)
        all_keys = np.r_[self._sample_keys, keys]
        if all_keys.size > self.sample_rows:
            keep = np.argpartition(all_keys, self.sample_rows - 1)[: self.sample_rows]
        else:
            keep = np.arange(all_keys.size)
        old = keep[keep < self._sample_keys.size]
        new = keep[keep >= self._sample_keys.size] - self._sample_keys.size
        self._sample = np.vstack([self._sample[old], features[new]])
        self._sample_keys = np.r_[self._sample_keys[old], keys[new]]
        self.rows += n

    @property
    def labelled(self) -> bool:
        return self._labels is not None

    def probabilities(self) -> np.ndarray:
        return np.concatenate(self._probabilities) if self._probabilities else np.zeros(0)

    def labels(self) -> np.ndarray | None:
        return None if self._labels is None else np.concatenate(self._labels)

    def metrics(self, threshold: float) -> PeriodMetrics:
        p = self.probabilities()
        predicted = float(p.sum())
        values: dict[str, float | int | None] = {
            "predicted_clicks": predicted,
            "mean_probability": float(p.mean()) if p.size else 0.0,
            "estimated_auc": _finite(expected_auc(p)),
        }
        y = self.labels()
        if y is not None:
            actual = int(y.sum())
            values.update(
                actual_clicks=actual,
                logloss=_finite(log_loss(y, p)),
                accuracy=float(np.mean((p >= threshold) == (y == 1))),
                majority_accuracy=float(max(actual, y.size - actual) / y.size),
                f1=f1_at(y, p, threshold),
            )
            if actual > 0:
                low, high = poisson_interval(actual)
                values.update(calibration=predicted / actual, calibration_ci_low=predicted / high,
                              calibration_ci_high=predicted / low if low > 0 else None)
            if 0 < actual < y.size:
                interval = auc_ci(y, p)
                p_balanced = correct_probability(p, self.reference.base_rate, 0.5)
                values.update(
                    auc=interval.auc, auc_ci_low=interval.low, auc_ci_high=interval.high,
                    ap=_finite(average_precision(y, p)), toss_score=_finite(competition_score(y, p_balanced)),
                )
        return PeriodMetrics(**values)

    def drift(self, importance_ranks: dict[str, int] | None, psi_threshold: float) -> list[FeatureDrift]:
        ranks = importance_ranks or {}
        results = []
        for i, column in enumerate(self.reference.feature_columns):
            r = feature_drift(self.reference, i, self.counts[i], self._sample[:, i], self.rows)
            results.append(FeatureDrift(
                feature=r.feature, kind=r.kind, test=r.test, statistic=r.statistic, p_value=r.p_value,
                psi=r.psi, drifted=r.psi > psi_threshold, importance_rank=ranks.get(column),
            ))
        results.sort(key=lambda d: (-d.psi, d.feature))
        return results

    def finish(self, *, run_id: str, model_kind: str, period: str, bucket: str, job_ids: list[str],
               threshold: float, baseline_auc: float | None, baseline_auc_ci_low: float | None,
               importance_ranks: dict[str, int] | None, psi_threshold: float = 0.2) -> MonitoringPeriod:
        if self.rows == 0:
            raise ValueError("the period has no rows")
        return MonitoringPeriod(
            period_id=f"{run_id}:{model_kind}:{period}", period=period, bucket=bucket, run_id=run_id,
            model_kind=model_kind, job_ids=list(job_ids), rows=self.rows, labelled=self.labelled,
            metrics=self.metrics(threshold), baseline_auc=baseline_auc, baseline_auc_ci_low=baseline_auc_ci_low,
            drift=self.drift(importance_ranks, psi_threshold),
            prediction_psi=psi(self.reference.score_counts, self.score_counts),
            reference_rows=self.reference.rows, location="",
        )
