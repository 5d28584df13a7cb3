"""What the model attributes to each feature, row by row, and which values of a feature raise clicks.

Two sources of per-row attributions a_ij (row i, feature j), one per model kind:

- LightGBM: exact TreeSHAP (LightGBM's ``pred_contrib``): each row's logit split into
  additive contributions; the generic ``seq_*`` columns are summed into one ``seq``
  feature (SHAP values are additive, so the sum is the sequence's contribution).
- LSTM+MLP: LIME weights (``lime.py``): each row's local effect of keeping its own value
  (its category or quartile bin; for ``seq`` its own sequence) in click probability.

From them (n rows):

- importance_j = mean_i |a_ij| / max_k mean_i |a_ik| (the strongest feature scores 1), and
  its 95% interval: percentiles of the same ratio over bootstrap resamples of the rows;
- the direction of effect: for a code-like feature (integers, at most ``MAX_CATEGORIES``
  values) the values whose mean attribution is positive and at least half the best
  value's ("values 19, 20, 21, 22 raise clicks"); for a quantity, the sign of the Spearman
  correlation between the feature's value and its attribution ("higher values raise
  clicks"), "no single direction" below |rho| 0.1. Beside it, the observed click rate of
  those rows (named values vs the rest; top vs bottom quartile) so the claim can be read
  against the data.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy import stats

from .scoring import Scorer

SEQ_FEATURE = "seq"
MAX_CATEGORIES = 32
MIN_VALUE_ROWS = 5  # a category seen on fewer rows gets no direction of its own
NO_DIRECTION_RHO = 0.1


def tree_shap(scorer: Scorer, x_tab: np.ndarray, states: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Exact TreeSHAP contributions to the logit: ((n, F + 1) tabular features then ``seq``, the
    seq_* columns summed; (n, S) the seq_* columns' own contributions)."""
    model = scorer.model
    f = x_tab.shape[1]
    features, seq_parts = [], []
    for start in range(0, len(x_tab), scorer.batch_rows):
        stop = start + scorer.batch_rows
        contrib = model.contributions(x_tab[start:stop], states[start:stop])  # (b, F + S + 1), bias last
        features.append(np.column_stack([contrib[:, :f], contrib[:, f:-1].sum(axis=1)]))
        seq_parts.append(contrib[:, f:-1])
    if not features:
        return np.zeros((0, f + 1)), np.zeros((0, states.shape[1]))
    return np.concatenate(features), np.concatenate(seq_parts)


def importance_with_interval(attribution: np.ndarray, bootstrap: int, seed: int
                             ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(importance (F,), 95% interval (F, 2), mean |a| (F,)) from per-row attributions."""
    magnitude = np.abs(attribution)
    raw = magnitude.mean(axis=0)
    importance = _relative(raw[None, :])[0]
    n = len(magnitude)
    rng = np.random.default_rng(seed)
    resampled = np.empty((bootstrap, magnitude.shape[1]))
    for start in range(0, bootstrap, 100):
        b = min(100, bootstrap - start)
        counts = rng.multinomial(n, np.full(n, 1.0 / n), size=b).astype(np.float64)
        resampled[start:start + b] = _relative(counts @ magnitude / n)
    low, high = np.percentile(resampled, [2.5, 97.5], axis=0)
    return importance, np.column_stack([np.minimum(low, importance), np.maximum(high, importance)]), raw


def _relative(raw: np.ndarray) -> np.ndarray:
    top = raw.max(axis=1, keepdims=True)
    return np.divide(raw, top, out=np.zeros_like(raw, dtype=np.float64), where=top > 0)


def is_code_like(values: np.ndarray) -> bool:
    finite = values[np.isfinite(values)]
    return len(finite) > 0 and bool(np.all(finite == np.round(finite))) and len(np.unique(finite)) <= MAX_CATEGORIES


def _code(value: float) -> str:
    return str(int(value)) if value == int(value) else f"{value:g}"


def _rate(clicked: np.ndarray) -> float | None:
    return float(clicked.mean()) if len(clicked) else None


def partial_dependence(scorer: Scorer, x_tab: np.ndarray, states: np.ndarray, j: int, raw: np.ndarray
                       ) -> tuple[np.ndarray, np.ndarray]:
    """For a model without per-row attributions on many rows (the LSTM): feature j set to each value of a
    grid (its codes, or five quantiles of a quantity) on every given row; returns (values, attribution)
    flattened over rows x grid, the attribution being each row's logit at that value minus its mean over
    the grid (centred individual conditional expectation)."""
    finite = raw[np.isfinite(raw)]
    if len(finite) == 0:
        return np.zeros(0), np.zeros(0)
    grid = np.unique(finite) if is_code_like(finite) else np.unique(np.quantile(finite, [0.1, 0.3, 0.5, 0.7, 0.9]))
    n, g = len(x_tab), len(grid)
    x = np.repeat(x_tab[None, :, :], g, axis=0).reshape(g * n, -1)
    x[:, j] = np.repeat(grid, n).astype(np.float32)
    logits = scorer.logits(x, np.tile(states, (g, 1))).reshape(g, n)
    centred = logits - logits.mean(axis=0, keepdims=True)
    return np.repeat(grid, n), centred.ravel()


def direction_of(values: np.ndarray, attribution: np.ndarray, clicked: np.ndarray,
                 evidence: tuple[np.ndarray, np.ndarray] | None = None) -> dict[str, Any]:
    """Which values of one feature raise clicks, from its attributions on rows holding those values.
    ``evidence`` (values, clicked) of data rows gives the observed click rates (default: the same rows)."""
    values = np.asarray(values, dtype=np.float64)
    present = np.isfinite(values)
    v, a = values[present], attribution[present]
    ev, ey = (values, np.asarray(clicked)) if evidence is None else (np.asarray(evidence[0], dtype=np.float64),
                                                                     np.asarray(evidence[1]))
    seen = np.isfinite(ev)
    ev, ey = ev[seen], ey[seen]
    if len(v) < 2 * MIN_VALUE_ROWS or np.ptp(v) == 0 or not np.any(a != a[0]):
        return {"kind": "none", "text": "no direction (the feature does not vary or has no effect here)",
                "text_ko": "방향 없음 (값이 변하지 않거나 효과가 없음)"}
    if is_code_like(v):
        levels, inverse, counts = np.unique(v, return_inverse=True, return_counts=True)
        means = np.bincount(inverse, weights=a) / counts
        usable = counts >= MIN_VALUE_ROWS
        best = means[usable].max() if usable.any() else 0.0
        raising = usable & (means > 0) & (means >= 0.5 * best)
        if not raising.any():
            return {"kind": "none", "text": "no value stands out", "text_ko": "두드러지는 값 없음"}
        order = np.argsort(-means[raising])
        named = levels[raising][order]
        codes = [_code(x) for x in named]
        inside = np.isin(ev, named)
        return {
            "kind": "values",
            "values": [float(x) for x in named],
            "effects": {_code(levels[k]): float(means[k]) for k in np.flatnonzero(usable)},
            "text": f"values {', '.join(codes)} raise clicks",
            "text_ko": f"값 {', '.join(codes)}에서 클릭 증가",
            "ctr_named": _rate(ey[inside]), "ctr_rest": _rate(ey[~inside]),
        }
    rho = stats.spearmanr(v, a).statistic
    rho = float(rho) if np.isfinite(rho) else 0.0
    low_cut, high_cut = np.quantile(ev, [0.25, 0.75]) if len(ev) else (0.0, 0.0)
    evidence = {"rho": rho, "ctr_top_quartile": _rate(ey[ev >= high_cut]),
                "ctr_bottom_quartile": _rate(ey[ev <= low_cut])}
    if abs(rho) < NO_DIRECTION_RHO:
        return {"kind": "mixed", "sign": 0, "text": "no single direction", "text_ko": "일정한 방향 없음", **evidence}
    sign = 1 if rho > 0 else -1
    return {"kind": "monotone", "sign": sign,
            "text": "higher values raise clicks" if sign > 0 else "lower values raise clicks",
            "text_ko": "값이 클수록 클릭 증가" if sign > 0 else "값이 작을수록 클릭 증가", **evidence}


def sequence_direction(token_effects: dict[int, float] | None = None) -> dict[str, Any]:
    """``seq`` has no single value: its direction is which recent tokens raise clicks, when known."""
    if token_effects:
        raising = [t for t, e in sorted(token_effects.items(), key=lambda kv: -kv[1]) if e > 0]
        lowering = [t for t, e in sorted(token_effects.items(), key=lambda kv: kv[1]) if e < 0]
        text = ", ".join(str(t) for t in raising[:5])
        return {"kind": "sequence", "tokens_raise": raising[:10], "tokens_lower": lowering[:10],
                "text": f"recent tokens {text} raise clicks" if raising else "no recent token raises clicks",
                "text_ko": f"최근 행동 {text}에서 클릭 증가" if raising else "클릭을 높이는 최근 행동 없음"}
    return {"kind": "sequence", "text": "depends on which actions the user took recently",
            "text_ko": "최근 행동 시퀀스의 내용에 따라 다름"}


def gbdt_token_effects(model: Any, states: np.ndarray, seq_contrib: np.ndarray) -> dict[int, float]:
    """For a LightGBM: each vocabulary token's mean TreeSHAP contribution (its count and age features
    together) on rows where it is among the recent tokens, minus that on rows where it is not; tokens
    whose effect is at least a quarter of the largest."""
    names = list(model.seq_feature_names)
    spec = model.seq_spec
    effects: dict[int, float] = {}
    for token in spec.vocab:
        count_name = f"seq_tok_{token}_{spec.recent}"
        if count_name not in names:
            continue
        columns = [names.index(c) for c in (count_name, f"seq_tok_{token}_age") if c in names]
        present = states[:, names.index(count_name)] > 0
        if present.sum() < MIN_VALUE_ROWS or (~present).sum() < MIN_VALUE_ROWS:
            continue
        total = seq_contrib[:, columns].sum(axis=1)
        effects[int(token)] = float(total[present].mean() - total[~present].mean())
    top = max((abs(e) for e in effects.values()), default=0.0)
    return {t: e for t, e in effects.items() if abs(e) >= 0.25 * top} if top > 0 else {}
