"""Feature and prediction drift of a scored period against the model's training rows (pure).

``build_reference`` summarises the training rows once (``Reference``, saved beside the model):
per feature its kind, its PSI bins and the training counts in them, its standard deviation,
and a fixed random sample of rows for the two-sample tests; the same for the model's scores.
A period is then compared bin count against bin count (``PeriodAccumulator`` in period.py
fills the counts chunk by chunk), so its rows never need to be held.

Which test, as Evidently picks it (by type and sample size):
- numeric feature, period of at most ``SMALL_SAMPLE`` (1,000) rows: two-sample Kolmogorov-Smirnov,
  ``test="ks"``, statistic D and its p-value;
- numeric, more rows: the Wasserstein-1 distance divided by the reference's standard deviation,
  ``test="psi"`` with ``p_value=None`` (at 600k rows every p-value is 0; PSI decides);
- categorical feature (at most ``MAX_CATEGORIES`` distinct integer values in the reference, or
  named by the caller), at most 1,000 rows: chi-square on the 2 x categories table of counts,
  ``test="chi2"`` with its p-value;
- categorical, more rows: Jensen-Shannon distance of the two distributions, ``test="psi"``,
  ``p_value=None``.

PSI is computed for every feature and decides ``drifted`` (PSI > 0.2 by default): sum over bins
of (q - p) * ln(q / p), p the reference share and q the period share of a bin, a share of 0
replaced by ``PSI_EPSILON``. Numeric bins are the reference deciles (cut points deduplicated,
so a feature with heavy ties has fewer bins), categorical bins one per reference value plus
one for values the reference never had; a missing value (NaN) is always its own bin.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np

FeatureKind = Literal["numeric", "categorical"]

PSI_BINS = 10
PSI_EPSILON = 1e-4
MAX_CATEGORIES = 20  # at most this many distinct integer values in the reference: categorical
SMALL_SAMPLE = 1000  # periods up to this many rows get a p-value test (KS / chi-square)
REFERENCE_SAMPLE = 10_000  # rows of the training data kept for KS and Wasserstein
FORMAT = "ctrops-drift-reference/1"


def psi(expected: np.ndarray, actual: np.ndarray, epsilon: float = PSI_EPSILON) -> float:
    """Population stability index of two count (or share) vectors over the same bins."""
    expected = np.asarray(expected, dtype=np.float64)
    actual = np.asarray(actual, dtype=np.float64)
    if expected.shape != actual.shape:
        raise ValueError(f"bins differ: {expected.shape} vs {actual.shape}")
    if expected.sum() <= 0 or actual.sum() <= 0:
        return 0.0
    p = np.maximum(expected / expected.sum(), epsilon)
    q = np.maximum(actual / actual.sum(), epsilon)
    return float(np.sum((q - p) * np.log(q / p)))


def ks_test(reference: np.ndarray, current: np.ndarray) -> tuple[float, float | None]:
    """(D, p-value) of the two-sample KS test on the non-missing values; (0, None) if a side is empty."""
    from scipy import stats  # on first use: the scorer starts without SciPy

    reference = reference[~np.isnan(reference)]
    current = current[~np.isnan(current)]
    if reference.size == 0 or current.size == 0:
        return 0.0, None
    result = stats.ks_2samp(reference, current)
    return float(result.statistic), float(result.pvalue)


def chi_square(expected: np.ndarray, actual: np.ndarray) -> tuple[float, float | None]:
    """(chi2, p-value) of the 2 x bins table of counts, bins empty on both sides dropped."""
    from scipy import stats  # on first use: the scorer starts without SciPy

    table = np.vstack([np.asarray(expected, dtype=np.float64), np.asarray(actual, dtype=np.float64)])
    table = table[:, table.sum(axis=0) > 0]
    if table.shape[1] < 2 or (table.sum(axis=1) == 0).any():
        return 0.0, None  # one category in all: nothing to test
    result = stats.chi2_contingency(table, correction=False)
    return float(result.statistic), float(result.pvalue)


def wasserstein_normed(reference: np.ndarray, current: np.ndarray, scale: float) -> float:
    """Wasserstein-1 distance of the non-missing values over the reference's standard deviation."""
    from scipy import stats  # on first use: the scorer starts without SciPy

    reference = reference[~np.isnan(reference)]
    current = current[~np.isnan(current)]
    if reference.size == 0 or current.size == 0:
        return 0.0
    return float(stats.wasserstein_distance(reference, current) / (scale if scale > 0 else 1.0))


def js_distance(expected: np.ndarray, actual: np.ndarray) -> float:
    """Jensen-Shannon distance (natural log) of two count vectors."""
    from scipy.spatial.distance import jensenshannon  # on first use: the scorer starts without SciPy

    expected = np.asarray(expected, dtype=np.float64)
    actual = np.asarray(actual, dtype=np.float64)
    if expected.sum() <= 0 or actual.sum() <= 0:
        return 0.0
    value = float(jensenshannon(expected / expected.sum(), actual / actual.sum()))
    return value if math.isfinite(value) else 0.0


@dataclass
class Binning:
    """How one feature's values fall into PSI bins: ``cuts`` (numeric) or ``values`` (categorical)."""

    kind: FeatureKind
    points: np.ndarray  # numeric: sorted cut points; categorical: sorted category values

    @property
    def bins(self) -> int:
        # numeric: len(points)+1 intervals; categorical: one per value + "other"; both + missing.
        return len(self.points) + 2

    def assign(self, x: np.ndarray) -> np.ndarray:
        """Bin index of every value (the last bin is missing)."""
        x = np.asarray(x, dtype=np.float64)
        missing = np.isnan(x)
        if self.kind == "numeric":
            index = np.searchsorted(self.points, x, side="right")
        else:
            index = np.searchsorted(self.points, x)
            known = index < len(self.points)
            known[known] = self.points[index[known]] == x[known]
            index = np.where(known, index, len(self.points))  # "other": a value the reference never had
        index[missing] = self.bins - 1
        return index

    def counts(self, x: np.ndarray) -> np.ndarray:
        return np.bincount(self.assign(x), minlength=self.bins).astype(np.int64)


def quantile_cuts(values: np.ndarray, bins: int = PSI_BINS) -> np.ndarray:
    values = values[~np.isnan(values)]
    if values.size == 0:
        return np.zeros(0)
    return np.unique(np.quantile(values, np.linspace(0, 1, bins + 1)[1:-1]))


def is_categorical(values: np.ndarray, max_categories: int = MAX_CATEGORIES) -> bool:
    values = values[~np.isnan(values)]
    if values.size == 0:
        return False
    distinct = np.unique(values)
    return distinct.size <= max_categories and bool(np.all(distinct == np.round(distinct)))


@dataclass
class Reference:
    """What a period is compared with: the training rows of one model, summarised."""

    feature_columns: list[str]
    kinds: list[FeatureKind]
    binnings: list[Binning]
    counts: list[np.ndarray]  # training rows per PSI bin, per feature
    std: np.ndarray  # (F,) standard deviation of the non-missing values (0 when none)
    sample: np.ndarray  # (k, F) random training rows, for KS and Wasserstein
    score_binning: Binning
    score_counts: np.ndarray
    score_sample: np.ndarray
    rows: int
    base_rate: float  # the click rate the scores are calibrated to (the Toss score's prior shift)
    extra: dict = field(default_factory=dict)

    def index(self, feature: str) -> int:
        return self.feature_columns.index(feature)

    def save(self, path: str | Path) -> Path:
        """One ``.npz`` file (no pickles): arrays, plus the names and kinds as a JSON string."""
        path = Path(path)
        meta = {
            "format": FORMAT, "feature_columns": self.feature_columns, "kinds": self.kinds,
            "rows": self.rows, "base_rate": self.base_rate, "extra": self.extra,
        }
        offsets = np.cumsum([0] + [len(b.points) for b in self.binnings])
        with open(path, "wb") as fh:
            np.savez_compressed(
                fh,
                meta=np.array(json.dumps(meta)),
                points=np.concatenate([b.points for b in self.binnings]) if self.binnings else np.zeros(0),
                offsets=offsets,
                counts=np.concatenate(self.counts) if self.counts else np.zeros(0, dtype=np.int64),
                std=self.std, sample=self.sample,
                score_points=self.score_binning.points, score_counts=self.score_counts,
                score_sample=self.score_sample,
            )
        return path

    @classmethod
    def load(cls, path: str | Path) -> Reference:
        with np.load(Path(path), allow_pickle=False) as data:
            meta = json.loads(str(data["meta"]))
            if meta.get("format") != FORMAT:
                raise ValueError(f"{path} is not a drift reference ({meta.get('format')!r})")
            points, offsets, flat_counts = data["points"], data["offsets"], data["counts"]
            kinds = meta["kinds"]
            binnings, counts, start = [], [], 0
            for i, kind in enumerate(kinds):
                binning = Binning(kind, points[offsets[i]:offsets[i + 1]].copy())
                binnings.append(binning)
                counts.append(flat_counts[start:start + binning.bins].astype(np.int64))
                start += binning.bins
            return cls(
                feature_columns=list(meta["feature_columns"]), kinds=list(kinds), binnings=binnings,
                counts=counts, std=data["std"].copy(), sample=data["sample"].copy(),
                score_binning=Binning("numeric", data["score_points"].copy()),
                score_counts=data["score_counts"].astype(np.int64), score_sample=data["score_sample"].copy(),
                rows=int(meta["rows"]), base_rate=float(meta["base_rate"]), extra=dict(meta.get("extra") or {}),
            )


def build_reference(features: np.ndarray, feature_columns: list[str], scores: np.ndarray,
                    categorical: set[str] | None = None, *, base_rate: float | None = None,
                    sample_rows: int = REFERENCE_SAMPLE, seed: int = 0) -> Reference:
    """Summarise the model's training rows: ``features`` (n, F) float64 with NaN for missing, the
    model's ``scores`` (probabilities at the true click rate) of the same rows.

    ``categorical`` names the categorical features; None: a feature with at most
    ``MAX_CATEGORIES`` distinct integer values is categorical. ``base_rate`` (the click rate the
    scores are calibrated to) defaults to the mean score.
    """
    features = np.asarray(features, dtype=np.float64)
    scores = np.asarray(scores, dtype=np.float64).ravel()
    if features.ndim != 2 or features.shape[1] != len(feature_columns):
        raise ValueError(f"features have shape {features.shape}, expected (rows, {len(feature_columns)})")
    if scores.shape[0] != features.shape[0]:
        raise ValueError(f"{scores.shape[0]} scores for {features.shape[0]} rows")
    if features.shape[0] == 0:
        raise ValueError("a reference needs at least one training row")
    unknown = set(categorical or ()) - set(feature_columns)
    if unknown:
        raise ValueError(f"categorical features not among the columns: {sorted(unknown)}")
    kinds: list[FeatureKind] = []
    binnings: list[Binning] = []
    counts: list[np.ndarray] = []
    std = np.zeros(len(feature_columns))
    for i, column in enumerate(feature_columns):
        x = features[:, i]
        cat = column in categorical if categorical is not None else is_categorical(x)
        kind: FeatureKind = "categorical" if cat else "numeric"
        present = x[~np.isnan(x)]
        binning = Binning(kind, np.unique(present) if cat else quantile_cuts(x))
        kinds.append(kind)
        binnings.append(binning)
        counts.append(binning.counts(x))
        std[i] = float(present.std()) if present.size else 0.0
    rng = np.random.default_rng(seed)
    n = features.shape[0]
    keep = np.sort(rng.choice(n, size=sample_rows, replace=False)) if n > sample_rows else np.arange(n)
    score_binning = Binning("numeric", quantile_cuts(scores))
    return Reference(
        feature_columns=list(feature_columns), kinds=kinds, binnings=binnings, counts=counts, std=std,
        sample=features[keep].copy(), score_binning=score_binning, score_counts=score_binning.counts(scores),
        score_sample=scores[keep].copy(), rows=n,
        base_rate=float(base_rate) if base_rate is not None else float(scores.mean()),
    )


@dataclass(frozen=True)
class DriftResult:
    feature: str
    kind: FeatureKind
    test: Literal["ks", "chi2", "psi"]
    statistic: float
    p_value: float | None
    psi: float


def feature_drift(reference: Reference, i: int, counts: np.ndarray, sample: np.ndarray, rows: int) -> DriftResult:
    """Drift of feature ``i``: its period bin ``counts``, a random ``sample`` of its period values
    (every value when ``rows`` <= the sample size) and the period's row count."""
    kind = reference.kinds[i]
    ref_counts = reference.counts[i]
    value = psi(ref_counts, counts)
    if kind == "numeric":
        if rows <= SMALL_SAMPLE:
            d, p = ks_test(reference.sample[:, i], sample)
            return DriftResult(reference.feature_columns[i], kind, "ks", d, p, value)
        w = wasserstein_normed(reference.sample[:, i], sample, reference.std[i])
        return DriftResult(reference.feature_columns[i], kind, "psi", w, None, value)
    if rows <= SMALL_SAMPLE:
        chi2, p = chi_square(ref_counts, counts)
        return DriftResult(reference.feature_columns[i], kind, "chi2", chi2, p, value)
    return DriftResult(reference.feature_columns[i], kind, "psi", js_distance(ref_counts, counts), None, value)
