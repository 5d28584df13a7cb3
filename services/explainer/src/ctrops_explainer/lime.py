"""Local explanations with ``lime.lime_tabular.LimeTabularExplainer``, scored in batches.

How the inputs enter LIME (docs/explainer.md has the full definitions):

- Every tabular feature of the model is one LIME feature. Integer-coded columns with few
  distinct values (hour, age_group, l_feat_14, ...) are declared categorical, so a
  perturbation draws a real category from the data (never "hour 19.4"); the others are
  quartile-discretised, LIME's default. Missing values are filled exactly as the model
  fills them before LIME sees the rows.
- ``seq`` is one more LIME feature, a switch: 1 = the row's own sequence, 0 = the
  sequence of another user drawn from a bank of data rows. LIME draws the switch with
  probability 1/2 each way, so the weight of ``seq`` is the change in click probability
  when this user's behaviour sequence is replaced by someone else's. Sequences are never
  perturbed token by token.
- Because a perturbation only ever *picks* a sequence (its own or a bank one), the
  sequence is encoded once per explained row and once per bank sequence (the LSTM's
  state; for the GBDT challenger its seq features); each batch of perturbed rows runs
  only the rest of the model (the LSTM model's ``head``, the GBDT's trees on tabular plus
  those features). ``predict_proba`` gets all of an instance's samples in one call and
  scores them in ``batch_rows`` chunks.

The local surrogate is LIME's own weighted ridge regression (alpha=1, all features, no
selection); ``RidgeWithErrors`` adds heteroscedasticity-robust standard errors of its
coefficients so the statistics can test each weight against zero.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
from lime.discretize import QuartileDiscretizer
from lime.lime_tabular import LimeTabularExplainer
from scipy.special import ndtr, ndtri
from sklearn.linear_model import Ridge

from ctrops_common.model_inputs import Rows
from .scoring import Scorer

SEQ_FEATURE = "seq"
MAX_CATEGORIES = 32  # integer columns with at most this many values are treated as categories


@dataclass
class LocalWeights:
    """LIME's output for n explained rows over F features."""

    names: list[str]
    weights: np.ndarray  # (n, F) signed local weights (probability units)
    errors: np.ndarray  # (n, F) robust standard errors of those weights
    r2: np.ndarray  # (n,) weighted R^2 of each local surrogate
    probability: np.ndarray  # (n,) the model's (base-rate corrected) click probability of the row


class RidgeWithErrors(Ridge):
    """LIME's default surrogate (Ridge, alpha=1) that also keeps HC1 standard errors of ``coef_``."""

    def __init__(self, alpha: float = 1.0) -> None:
        super().__init__(alpha=alpha, fit_intercept=True)

    def fit(self, X, y, sample_weight=None):  # noqa: N803 - sklearn's signature
        super().fit(X, y, sample_weight=sample_weight)
        w = np.ones(len(y)) if sample_weight is None else np.asarray(sample_weight, dtype=np.float64)
        X = np.asarray(X, dtype=np.float64)  # noqa: N806
        n, p = X.shape
        centred = X - np.average(X, axis=0, weights=w)
        residual = np.asarray(y, dtype=np.float64) - self.predict(X)
        bread = centred.T @ (centred * w[:, None]) + self.alpha * np.eye(p)  # positive definite: alpha > 0
        scores = centred * (w * residual)[:, None]
        bread_inv = np.linalg.solve(bread, np.eye(p))
        # diag(B^-1 M B^-1) with M = scores' scores, without forming the full product.
        variance = np.einsum("ij,ji->i", bread_inv @ (scores.T @ scores), bread_inv)
        variance *= n / max(n - p - 1, 1)  # HC1 small-sample factor
        self.standard_errors_ = np.sqrt(np.clip(variance, 0.0, None))
        return self


class FastQuartileDiscretizer(QuartileDiscretizer):
    """LIME's quartile discretizer with a vectorised truncated-normal draw.

    LIME 0.2.0.1 draws each bin's values with ``scipy.stats.truncnorm.rvs`` (slow: about
    half of LIME's own time) and, for a bin whose bounds are equal, returns the bin's
    z-score (about 0) instead of its value. This draws the same truncated normal by
    inverting its CDF (the CDF at each bin's bounds computed once per bin, not per draw)
    and returns the value itself for a single-valued bin.
    """

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._bins: dict[int, tuple[np.ndarray, ...]] = {}
        for feature in self.means:
            mins = np.asarray(self.mins[feature], dtype=np.float64)
            maxs = np.asarray(self.maxs[feature], dtype=np.float64)
            means = np.asarray(self.means[feature], dtype=np.float64)
            stds = np.asarray(self.stds[feature], dtype=np.float64)
            low, high = (mins - means) / stds, (maxs - means) / stds
            flip, a, b = _left_tail(low, high)
            self._bins[feature] = (mins, maxs, means, stds, flip, a, b, ndtr(a), ndtr(b))

    def get_undiscretize_values(self, feature, values):
        values = np.asarray(values).astype(int)
        mins, maxs, means, stds, flip, a, b, pa, pb = (v[values] for v in self._bins[feature])
        out = mins.copy()
        spread = maxs > mins
        if spread.any():
            u = self.random_state.uniform(size=int(spread.sum()))
            z = _inverse_cdf(u, a[spread], b[spread], pa[spread], pb[spread])
            z = np.where(flip[spread], -z, z)
            out[spread] = np.clip(means[spread] + stds[spread] * z, mins[spread], maxs[spread])
        return out


def _left_tail(low: np.ndarray, high: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mirror right-tail intervals to the left, where ``ndtr`` keeps its precision."""
    flip = low > 0
    return flip, np.where(flip, -high, low), np.where(flip, -low, high)


def _inverse_cdf(u: np.ndarray, a: np.ndarray, b: np.ndarray, pa: np.ndarray, pb: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        z = ndtri(pa + u * (pb - pa))
    degenerate = ~np.isfinite(z) | (pb <= pa)  # far tails where the CDF underflows: uniform in the interval
    return np.where(degenerate, a + u * (b - a), np.clip(z, a, b))


def truncated_standard_normal(low: np.ndarray, high: np.ndarray, random_state: np.random.RandomState) -> np.ndarray:
    """Draws of N(0, 1) restricted to [low, high] by inverse CDF."""
    flip, a, b = _left_tail(low, high)
    z = _inverse_cdf(random_state.uniform(size=len(a)), a, b, ndtr(a), ndtr(b))
    return np.where(flip, -z, z)


def categorical_columns(background: np.ndarray, max_categories: int = MAX_CATEGORIES) -> list[int]:
    """Columns whose values are all integers with few distinct values: codes, not quantities."""
    found = []
    for j in range(background.shape[1]):
        column = background[:, j]
        if np.all(column == np.round(column)) and len(np.unique(column)) <= max_categories:
            found.append(j)
    return found


class InstancePredictor:
    """LIME's ``predict_fn`` for one explained row: batched head passes over precomputed states."""

    def __init__(self, scorer: Scorer, own_state: np.ndarray, bank_states: np.ndarray, seed: int) -> None:
        self.scorer = scorer
        self.own_state = own_state.astype(np.float32)
        self.bank_states = bank_states.astype(np.float32)
        self.rng = np.random.default_rng(seed)
        self.calls = 0

    def __call__(self, rows: np.ndarray) -> np.ndarray:
        self.calls += 1
        x_tab = rows[:, :-1].astype(np.float32)
        states = np.repeat(self.own_state[None, :], len(rows), axis=0)
        swapped = rows[:, -1] < 0.5
        if swapped.any():
            states[swapped] = self.bank_states[self.rng.integers(len(self.bank_states), size=int(swapped.sum()))]
        p = self.scorer.probability(self.scorer.logits(x_tab, states))
        return np.column_stack([1.0 - p, p])


class TabularSeqLime:
    """A ``LimeTabularExplainer`` over the model's tabular features plus the ``seq`` switch."""

    def __init__(self, scorer: Scorer, background: Rows, bank_size: int, seed: int) -> None:
        self.scorer = scorer
        self.seed = seed
        self.names = [*scorer.preprocess.feature_columns, SEQ_FEATURE]
        n = len(background)
        switch = (np.arange(n) % 2).astype(np.float64)  # half own, half swapped: P(own) = 1/2
        training = np.column_stack([background.x_tab.astype(np.float64), switch])
        self.categorical = categorical_columns(training)
        bank = np.arange(min(bank_size, n))
        self.bank_states = scorer.encode(background.seq[bank], background.lengths[bank])
        random_state = np.random.RandomState(seed)  # shared by LIME and its discretizer, as LIME itself does
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # LIME warns about constant columns; they get weight 0
            self.explainer = LimeTabularExplainer(
                training,
                mode="classification",
                feature_names=self.names,
                class_names=["no_click", "click"],
                categorical_features=self.categorical,
                discretize_continuous=True,
                discretizer=FastQuartileDiscretizer(training, self.categorical, self.names,
                                                    random_state=random_state),
                feature_selection="none",
                random_state=random_state,
            )

    def explain(self, rows: Rows, num_samples: int, predictor_factory=None) -> LocalWeights:
        """Explain each row; ``predictor_factory(i, row, own_state)`` may swap in another predict_fn."""
        own_states = self.scorer.encode(rows.seq, rows.lengths)  # once per explained row, all in one pass
        n, f = len(rows), len(self.names)
        weights = np.zeros((n, f))
        errors = np.zeros((n, f))
        r2 = np.zeros(n)
        probability = np.zeros(n)
        for i in range(n):
            data_row = np.append(rows.x_tab[i].astype(np.float64), 1.0)
            if predictor_factory is None:
                predict = InstancePredictor(self.scorer, own_states[i], self.bank_states, self.seed + i)
            else:
                predict = predictor_factory(i, data_row, own_states[i])
            surrogate = RidgeWithErrors()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                explanation = self.explainer.explain_instance(
                    data_row, predict, labels=(1,), num_features=f, num_samples=num_samples,
                    model_regressor=surrogate,
                )
            for j, w in explanation.local_exp[1]:
                weights[i, j] = w
            errors[i] = surrogate.standard_errors_
            r2[i] = explanation.score if np.isfinite(explanation.score) else 0.0
            probability[i] = float(explanation.predict_proba[1])
        return LocalWeights(self.names, weights, errors, r2, probability)
