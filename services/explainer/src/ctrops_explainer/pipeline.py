"""One explanation of one trained model: attributions, a held-out test per feature, directions, correlations.

Pure work: files in, a JSON-ready dict out; nothing here knows about Kafka. The handler
runs ``explain_run`` in a worker thread and stores the result atomically.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import torch
from threadpoolctl import threadpool_limits

from ctrops_common.dataset import column_description
from ctrops_common.model_loading import LoadedModel

from ctrops_common.splits import validation_rows

from .attribution import (direction_of, gbdt_token_effects, importance_with_interval, partial_dependence,
                          sequence_direction, tree_shap)
from .config import ExplainConfig, SplitSpec  # noqa: F401 - callers import them here too
from .correlation import correlated_pairs, pearson_matrix
from .heldout import benjamini_hochberg, heldout_permutation
from ctrops_common.model_inputs import DataFile, Rows
from .lime import SEQ_FEATURE, TabularSeqLime
from .scoring import Scorer
from .statistics import rank_correlation, top_overlap

SIGNIFICANCE = 0.05
PILOT_ROWS = 8
SEQ_LENGTH = "seq_length"  # the numeric stand-in for ``seq`` in the correlation matrix
RESULT_VERSION = 2

DEFINITIONS = {
    "rows": "the run's validation rows (the trainer's stratified split, re-derived from the labels, "
            "validation_split and seed of training.done: ctrops_common.splits), which the model was not fitted on",
    "importance": "mean over validation rows of |attribution|, divided by the largest such mean (top feature = 1); "
                  "attribution = exact TreeSHAP contribution to the logit (LightGBM; seq_* features summed into "
                  "seq) or the LIME weight in click probability (LSTM+MLP, on explained validation rows)",
    "ci": "95% percentile bootstrap interval of importance, resampling the rows the attributions were computed on",
    "pValue": "Benjamini-Hochberg adjusted (across all features) one-sided p of the held-out permutation test; "
              "the same number as p_value; the unadjusted one is p_value_raw",
    "p_value_raw": "H0: shuffling the feature across the validation rows does not lower the model's ROC AUC there "
                   "(the feature carries no signal on rows the model never saw). Statistic: AUC drop D averaged "
                   "over the shuffles; se from DeLong's paired variance of the AUC contrast (placements of clicks "
                   "and non-clicks); p = P(Z >= D/se). A feature a tree model never splits on is not scored: its drop "
                   "is exactly 0 and p 1",
    "auc_drop_ci": "95% percentile interval of the AUC drop over stratified bootstrap resamples of the validation "
                   "rows (first-order expansion of each resample's drop from the per-row placements)",
    "direction": "attribution = TreeSHAP (LightGBM) or the centred partial dependence of the logit on a grid "
                 "(LSTM: each code, or 5 quantiles, set on direction_rows validation rows); code-like features (integers, <= 32 values): the values whose mean attribution is positive and at "
                 "least half the best value's; quantities: sign of Spearman(value, attribution), 'no single "
                 "direction' below |rho| 0.1; beside it the observed validation click rates of those rows",
    "seq": "TreeSHAP: the sum of the seq_* features' contributions; LIME: one switch (own sequence vs another "
           "user's from a bank of rows); permutation: rows swap whole sequence encodings",
    "lime_samples": "LIME perturbations per row sized by a convergence test: a pilot at lime_min_samples on a few "
                    "rows measures r = (largest robust se of a weight) / (largest |weight|) per row; the samples "
                    "are lime_min_samples x (median r / lime_tolerance)^2, within [lime_min_samples, lime_samples]",
    "correlation": "Pearson, pairwise-complete rows; undefined pairs (constant or missing) reported as 0; pairs: "
                   "every pair of model features (seq as its length) with |r| >= correlation_threshold",
}


def stratified_sample(clicked: np.ndarray, size: int, click_share: float, rng: np.random.Generator) -> np.ndarray:
    """``size`` row indices with about ``click_share`` clicked rows (fewer if the file has fewer)."""
    clicks = np.flatnonzero(clicked == 1)
    others = np.flatnonzero(clicked != 1)
    want_clicks = min(len(clicks), max(1 if len(clicks) else 0, round(size * click_share)))
    want_others = min(len(others), size - want_clicks)
    want_clicks = min(len(clicks), size - want_others)  # a file short of non-clicks tops up with clicks
    chosen = np.concatenate([rng.choice(clicks, want_clicks, replace=False),
                             rng.choice(others, want_others, replace=False)])
    return np.sort(chosen)


def _finite(value: float | None, default: float = 0.0) -> float:
    return float(value) if value is not None and math.isfinite(value) else default


def explain(loaded: LoadedModel, data_path: Path, config: ExplainConfig, predictor_factory=None,
            split: SplitSpec | None = None) -> dict[str, Any]:
    """The whole explanation of one model (either kind) on one data file, as a JSON-ready dict."""
    torch.set_num_threads(config.torch_threads)
    # LIME's linear algebra is on small matrices (samples x ~120 features): one BLAS thread is
    # faster than several, and much faster on a busy machine where threads wait for each other.
    with threadpool_limits(limits=1, user_api="blas"):
        return _explain(loaded, data_path, config, predictor_factory, split or SplitSpec())


def _explain(loaded: LoadedModel, data_path: Path, config: ExplainConfig, predictor_factory,
             split: SplitSpec) -> dict[str, Any]:
    timings: dict[str, float] = {}
    started = time.perf_counter()
    data = DataFile(data_path, loaded.preprocess)
    n = len(data)
    if n < 4:
        raise ValueError(f"the data file has {n} rows; at least 4 are needed to explain a model")
    rng = np.random.default_rng(config.seed)
    scorer = Scorer(loaded, config.batch_rows, config.torch_threads)
    names = [*loaded.preprocess.feature_columns, SEQ_FEATURE]

    val = validation_rows(data.clicked, split.validation_split, split.seed)
    train = np.setdiff1d(np.arange(n), val)
    eval_index = np.sort(rng.choice(val, len(val), replace=False)[: config.eval_rows]) if len(val) else val
    evaluation = data.rows(eval_index)
    states = scorer.encode(evaluation.seq, evaluation.lengths)
    timings["load_s"] = time.perf_counter() - started

    t = time.perf_counter()
    sample: dict[str, Any] = {}
    token_effects = None
    if loaded.kind == "gbdt":
        attribution, seq_contrib = tree_shap(scorer, evaluation.x_tab, states)
        attributed = evaluation
        token_effects = gbdt_token_effects(scorer.model, states, seq_contrib)
        method = "treeshap"
        timings["treeshap_s"] = time.perf_counter() - t
        timings["treeshap_ms_per_row"] = 1000 * timings["treeshap_s"] / max(len(evaluation), 1)
    else:
        explained_index = stratified_sample(data.clicked[val], min(config.sample_rows, max(len(val) - 2, 1)),
                                            config.click_share, rng)
        explained_index = val[explained_index]
        pool = train if len(train) >= 2 else np.setdiff1d(np.arange(n), explained_index)
        background_index = np.sort(rng.choice(pool, min(config.background_rows, len(pool)), replace=False))
        attributed = data.rows(explained_index)
        background = data.rows(background_index)
        lime = TabularSeqLime(scorer, background, config.seq_bank_size, config.seed)
        samples, pilot_ratio = lime_sample_size(lime, attributed, config, predictor_factory)
        local = lime.explain(attributed, samples, predictor_factory)
        attribution = local.weights
        method = "lime"
        timings["lime_s"] = time.perf_counter() - t
        timings["lime_ms_per_row"] = 1000 * timings["lime_s"] / max(len(attributed), 1)
        sample.update({
            "explained_rows": len(attributed), "clicked_explained_rows": int(attributed.clicked.sum()),
            "background_rows": len(background), "lime_samples": samples, "lime_pilot_ratio": _finite(pilot_ratio),
            "lime_ratio": _finite(float(np.median(_convergence_ratio(local.weights, local.errors)))),
            "categorical_features": [local.names[j] for j in lime.categorical],
            "mean_local_r2": _finite(float(local.r2.mean())),
            "mean_probability": _finite(float(local.probability.mean())),
        })
    importance, interval, mean_abs = importance_with_interval(attribution, config.bootstrap, config.seed)

    t = time.perf_counter()
    # The AUC does not depend on the click rate, so the test keeps every validation click (up to half its
    # rows) and samples the non-clicks: its power rests on the clicks, its time on the rows.
    tested_index = stratified_sample(data.clicked[val], min(config.permutation_rows, len(val)), 0.5, rng)
    tested = data.rows(val[tested_index])
    heldout = heldout_permutation(scorer, tested.x_tab, scorer.encode(tested.seq, tested.lengths), tested.clicked,
                                  names, config.permutation_repeats, config.bootstrap, config.seed,
                                  skip=scorer.unused(names))
    p_adjusted = benjamini_hochberg(heldout.p_raw)
    timings["permutation_s"] = time.perf_counter() - t

    t = time.perf_counter()
    directions = {}
    # Partial dependence on a seeded random subset (the evaluation rows are sorted by row index:
    # their head would be the file's earliest rows).
    pd_index = np.sort(np.random.default_rng(config.seed + 1).choice(
        len(evaluation), min(config.direction_rows, len(evaluation)), replace=False))
    for j, name in enumerate(names):
        if name == SEQ_FEATURE:
            directions[name] = sequence_direction(token_effects)
        elif loaded.kind == "gbdt":
            directions[name] = direction_of(attributed.raw_tab[:, j], attribution[:, j], attributed.clicked)
        else:  # LIME's few explained rows cannot say which of 24 hours helps: partial dependence on more rows
            values, effect = partial_dependence(scorer, evaluation.x_tab[pd_index], states[pd_index], j,
                                                evaluation.raw_tab[pd_index, j])
            directions[name] = direction_of(values, effect, np.zeros(len(values)),
                                            evidence=(evaluation.raw_tab[:, j], evaluation.clicked))
    timings["direction_s"] = time.perf_counter() - t

    features = []
    for j, name in enumerate(names):
        features.append({
            "feature": name,
            "importance": _finite(importance[j]),
            "pValue": _finite(p_adjusted[j], 1.0),
            "p_value": _finite(p_adjusted[j], 1.0),
            "p_value_raw": _finite(heldout.p_raw[j], 1.0),
            "significant": bool(p_adjusted[j] < SIGNIFICANCE),
            "ci": [_finite(interval[j, 0]), _finite(interval[j, 1])],
            "description": column_description(name),
            "direction": directions[name]["text"],
            "direction_ko": directions[name]["text_ko"],
            "effect": _finite_tree(directions[name]),
            "auc_drop": _finite(heldout.drop[j]),
            "auc_drop_se": _finite(heldout.se[j]),
            "auc_drop_ci": [_finite(heldout.ci[j, 0]), _finite(heldout.ci[j, 1])],
            "p_value_bootstrap": _finite(heldout.p_bootstrap[j], 1.0),
            "mean_abs_attribution": _finite(mean_abs[j]),
            "mean_attribution": _finite(float(attribution[:, j].mean())),
        })
    features.sort(key=lambda f: (-f["importance"], f["feature"]))
    ranking = [f["feature"] for f in features]
    by_drop = sorted(features, key=lambda f: (-f["auc_drop"], f["feature"]))
    top_drop = max(heldout.drop.max(initial=0.0), 0.0)
    permutation = {
        "metric": "roc_auc", "rows": heldout.rows, "clicks": heldout.clicks, "repeats": heldout.repeats,
        "bootstrap": heldout.bootstrap, "baseline": _finite(heldout.baseline_auc),
        "features": [{"feature": f["feature"], "mean_drop": f["auc_drop"], "se": f["auc_drop_se"],
                      "std_drop": _finite(heldout.drop_std[names.index(f["feature"])]),
                      "ci": f["auc_drop_ci"], "p_value": f["pValue"], "p_value_raw": f["p_value_raw"],
                      "importance": max(f["auc_drop"], 0.0) / top_drop if top_drop > 0 else 0.0}
                     for f in by_drop],
    }
    significant = [f["feature"] for f in by_drop if f["significant"]]
    permutation["significant_features"] = significant
    permutation["top10_overlap_with_attribution"] = top_overlap(ranking, [f["feature"] for f in by_drop], 10)
    permutation["top10_overlap_with_lime"] = permutation["top10_overlap_with_attribution"]  # the old key
    permutation["spearman_with_attribution"] = rank_correlation(
        {f["feature"]: f["importance"] for f in features}, {f["feature"]: f["auc_drop"] for f in features})
    # Agreement where it matters: are the features the data supports also high in the model's attribution?
    permutation["significant_in_attribution_top10"] = len(set(significant) & set(ranking[:10]))
    timings["attribution_total_s"] = timings.get("treeshap_s", timings.get("lime_s", 0.0))

    t = time.perf_counter()
    correlation = correlation_of(data, ranking, config.top_k, config.correlation_rows,
                                 config.correlation_threshold, rng)
    timings["correlation_s"] = time.perf_counter() - t
    timings["total_s"] = time.perf_counter() - started

    sample.update({
        "rows": len(attributed),
        "clicked_rows": int(attributed.clicked.sum()),
        "validation_rows": int(len(val)),
        "validation_clicks": int(data.clicked[val].sum()) if len(val) else 0,
        "evaluation_rows": len(evaluation),
        "evaluation_clicks": int(evaluation.clicked.sum()),
        "permutation_rows": heldout.rows,
        "permutation_clicks": heldout.clicks,
        "data_rows": n,
        "missing_columns": data.missing_columns,
        "validation_split": split.validation_split,
        "split_seed": split.seed,
    })
    return {
        "version": RESULT_VERSION,
        "created_at": datetime.now(timezone.utc).isoformat(),
        "model_kind": loaded.kind,
        "attribution": method,
        "features": features,
        "significant_features": [f["feature"] for f in features if f["significant"]],
        "permutation": _finite_tree(permutation),
        "correlation": correlation,
        "sample": sample,
        "method": {
            "config": asdict(config),
            "attribution": method,
            "test": "held-out permutation test of the ROC AUC drop on the validation rows, DeLong standard error, "
                    "one-sided",
            "null": "shuffling the feature across validation rows does not lower the held-out AUC",
            "correction": f"Benjamini-Hochberg across all {len(names)} features (pValue = adjusted); "
                          f"significant = adjusted p < {SIGNIFICANCE}",
            "interval": "importance: row bootstrap of the attributions; auc_drop_ci: stratified bootstrap of the "
                        "validation rows",
            "definitions": DEFINITIONS,
            "lime": "lime.lime_tabular 0.2.0.1" if method == "lime" else None,
        },
        "timings": {k: round(v, 3) for k, v in timings.items()},
    }


def _convergence_ratio(weights: np.ndarray, errors: np.ndarray) -> np.ndarray:
    """Per row: the largest standard error of a weight over the largest |weight| (inf if all weights are 0)."""
    top = np.abs(weights).max(axis=1)
    return np.divide(errors.max(axis=1), top, out=np.full(len(top), np.inf), where=top > 0)


def lime_sample_size(lime: TabularSeqLime, rows: Rows, config: ExplainConfig, predictor_factory=None
                     ) -> tuple[int, float]:
    """LIME samples per row from a pilot: standard errors shrink as 1/sqrt(samples)."""
    low, high = config.lime_min_samples, max(config.lime_samples, config.lime_min_samples)
    if low >= high:
        return high, float("nan")
    pilot = rows.take(np.arange(min(PILOT_ROWS, len(rows))))
    local = lime.explain(pilot, low, predictor_factory)
    ratio = float(np.median(_convergence_ratio(local.weights, local.errors)))
    if not math.isfinite(ratio):
        return low, ratio  # no effect to measure: more samples would not find one
    wanted = math.ceil(low * (ratio / config.lime_tolerance) ** 2 / 100) * 100
    return int(min(max(wanted, low), high)), ratio


def correlation_of(data: DataFile, ranking: list[str], top_k: int, max_rows: int, threshold: float,
                   rng: np.random.Generator) -> dict[str, Any]:
    """Pearson matrix of the ``top_k`` first features of ``ranking`` on (a sample of) the data, and every
    pair of features (of the whole ranking) correlated at |r| >= ``threshold``; ``seq`` enters as its length."""
    index = np.sort(rng.choice(len(data), min(max_rows, len(data)), replace=False))
    rows = data.rows(index)
    position = {name: j for j, name in enumerate(data.preprocess.feature_columns)}
    names, columns = [], []
    for name in ranking:
        if name == SEQ_FEATURE:
            names.append(SEQ_LENGTH)
            columns.append(rows.seq_length)
        elif name in position:
            names.append(name)
            columns.append(rows.raw_tab[:, position[name]])
    full = pearson_matrix(np.column_stack(columns)) if columns else np.zeros((0, 0))
    k = min(top_k, len(names))
    pairs = correlated_pairs(full, names, threshold)
    return {
        "features": names[:k],
        "descriptions": [column_description(name) for name in names[:k]],
        "matrix": [[round(float(v), 6) for v in row[:k]] for row in full[:k]],
        "rows": len(index),
        "threshold": threshold,
        "pairs": [{**p, "descriptions": [column_description(p["features"][0]), column_description(p["features"][1])]}
                  for p in pairs],
        "pairs_note": (f"{len(pairs)} pair(s) of the {len(names)} features have |r| >= {threshold}" if pairs else
                       f"no pair of the {len(names)} features has |r| >= {threshold}"),
        "max_abs_off_diagonal": _finite(float(np.abs(full - np.eye(len(names))).max())) if len(names) > 1 else 0.0,
        "method": DEFINITIONS["correlation"],
    }


def _finite_tree(value: Any) -> Any:
    """Replace NaN/inf anywhere in a JSON-like tree (JSON cannot carry them)."""
    if isinstance(value, float):
        return _finite(value)
    if isinstance(value, dict):
        return {k: _finite_tree(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite_tree(v) for v in value]
    return value
