"""One explanation of one trained model: sample rows, LIME, statistics, permutation check, correlations.

Pure work: files in, a JSON-ready dict out; nothing here knows about Kafka. The handler
runs ``explain_run`` in a worker thread and stores the result atomically.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import torch
from threadpoolctl import threadpool_limits

from ctrops_common.dataset import column_description
from ctrops_common.model_loading import LoadedModel

from .correlation import pearson_matrix
from .inputs import DataFile
from .lime import SEQ_FEATURE, TabularSeqLime
from .permutation import permutation_importance
from .scoring import Scorer
from .statistics import aggregate, rank_correlation, top_overlap

SEQ_LENGTH = "seq_length"  # the numeric stand-in for ``seq`` in the correlation matrix
RESULT_VERSION = 1

DEFINITIONS = {
    "importance": "mean over explained rows of |LIME weight|, divided by the largest such mean (top feature = 1)",
    "pValue": "P(chi2_n >= sum_i (w_i/se_i)^2): H0 = the feature has no local effect on any of the n explained "
              "rows; w_i its LIME weight on row i, se_i the robust (HC1) standard error from LIME's ridge fit",
    "ci": "95% percentile bootstrap interval of importance, resampling explained rows (seeded)",
    "seq": "one LIME switch: own sequence vs another user's (from a bank of data rows), drawn 50/50; "
           "its encoding (the LSTM's state, or the GBDT's seq features) is computed once per row and reused",
    "permutation": "drop in average precision when the feature is shuffled across evaluation rows, "
                   "mean and std over repeats",
    "correlation": "Pearson, pairwise-complete rows; undefined pairs (constant or missing) reported as 0",
}


@dataclass(frozen=True)
class ExplainConfig:
    sample_rows: int = 200
    click_share: float = 0.5
    lime_samples: int = 5000
    background_rows: int = 2000
    seq_bank_size: int = 256
    seed: int = 42
    bootstrap: int = 1000
    permutation_repeats: int = 5
    eval_rows: int = 10_000
    top_k: int = 10
    correlation_rows: int = 50_000
    batch_rows: int = 8192
    torch_threads: int = 2


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


def _finite(value: float, default: float = 0.0) -> float:
    return float(value) if value is not None and math.isfinite(value) else default


def explain(loaded: LoadedModel, data_path: Path, config: ExplainConfig, predictor_factory=None) -> dict[str, Any]:
    """The whole explanation of one model (either kind) on one data file, as a JSON-ready dict."""
    torch.set_num_threads(config.torch_threads)
    # LIME's linear algebra is on small matrices (samples x ~120 features): one BLAS thread is
    # faster than several, and much faster on a busy machine where threads wait for each other.
    with threadpool_limits(limits=1, user_api="blas"):
        return _explain(loaded, data_path, config, predictor_factory)


def _explain(loaded: LoadedModel, data_path: Path, config: ExplainConfig, predictor_factory=None) -> dict[str, Any]:
    timings: dict[str, float] = {}
    started = time.perf_counter()
    data = DataFile(data_path, loaded.preprocess)
    n = len(data)
    if n < 4:
        raise ValueError(f"the data file has {n} rows; at least 4 are needed to explain a model")
    rng = np.random.default_rng(config.seed)
    scorer = Scorer(loaded, config.batch_rows)

    explained_index = stratified_sample(data.clicked, min(config.sample_rows, n - 2), config.click_share, rng)
    rest = np.setdiff1d(np.arange(n), explained_index)
    background_index = np.sort(rng.choice(rest, min(config.background_rows, len(rest)), replace=False))
    explained = data.rows(explained_index)
    background = data.rows(background_index)
    timings["load_s"] = time.perf_counter() - started

    t = time.perf_counter()
    lime = TabularSeqLime(scorer, background, config.seq_bank_size, config.seed)
    local = lime.explain(explained, config.lime_samples, predictor_factory)
    timings["lime_s"] = time.perf_counter() - t

    stats = aggregate(local.names, local.weights, local.errors, config.bootstrap, config.seed)
    ranking = [s.feature for s in stats]

    t = time.perf_counter()
    eval_index = np.sort(rng.choice(n, min(config.eval_rows, n), replace=False))
    evaluation = data.rows(eval_index)
    permutation = permutation_importance(
        scorer, evaluation.x_tab, scorer.encode(evaluation.seq, evaluation.lengths), evaluation.clicked,
        local.names, config.permutation_repeats, config.seed,
    )
    timings["permutation_s"] = time.perf_counter() - t
    if permutation["features"]:
        permutation_ranking = [f["feature"] for f in permutation["features"]]
        permutation["top10_overlap_with_lime"] = top_overlap(ranking, permutation_ranking, 10)
        permutation["spearman_with_lime"] = rank_correlation(
            {s.feature: s.importance for s in stats}, {f["feature"]: f["mean_drop"] for f in permutation["features"]}
        )

    t = time.perf_counter()
    correlation = correlation_of(data, ranking[: config.top_k], config.correlation_rows, rng)
    timings["correlation_s"] = time.perf_counter() - t
    timings["total_s"] = time.perf_counter() - started

    features = [
        {
            "feature": s.feature,
            "importance": _finite(s.importance),
            "pValue": _finite(s.p_value, 1.0),
            "p_value": _finite(s.p_value, 1.0),
            "ci": [_finite(s.ci[0]), _finite(s.ci[1])],
            "description": column_description(s.feature),
            "mean_abs_weight": _finite(s.mean_abs_weight),
            "mean_weight": _finite(s.mean_weight),
            "chi2": _finite(s.chi2),
        }
        for s in stats
    ]
    return {
        "version": RESULT_VERSION,
        "created_at": datetime.now(timezone.utc).isoformat(),
        "model_kind": loaded.kind,
        "features": features,
        "permutation": _finite_tree(permutation),
        "correlation": correlation,
        "sample": {
            "rows": len(explained),
            "clicked_rows": int(explained.clicked.sum()),
            "background_rows": len(background),
            "data_rows": n,
            "missing_columns": data.missing_columns,
            "categorical_features": [local.names[j] for j in lime.categorical],
            "mean_local_r2": _finite(float(local.r2.mean())),
            "mean_probability": _finite(float(local.probability.mean())),
        },
        "method": {"config": asdict(config), "definitions": DEFINITIONS, "lime": "lime.lime_tabular 0.2.0.1"},
        "timings": {k: round(v, 3) for k, v in timings.items()},
    }


def correlation_of(data: DataFile, features: list[str], max_rows: int, rng: np.random.Generator) -> dict[str, Any]:
    """Pearson matrix of the given features on (a sample of) the data; ``seq`` enters as its length."""
    index = np.sort(rng.choice(len(data), min(max_rows, len(data)), replace=False))
    rows = data.rows(index)
    position = {name: j for j, name in enumerate(data.preprocess.feature_columns)}
    names, columns = [], []
    for name in features:
        if name == SEQ_FEATURE:
            names.append(SEQ_LENGTH)
            columns.append(rows.seq_length)
        elif name in position:
            names.append(name)
            columns.append(rows.raw_tab[:, position[name]])
    matrix = pearson_matrix(np.column_stack(columns)) if columns else np.zeros((0, 0))
    return {
        "features": names,
        "descriptions": [column_description(name) for name in names],
        "matrix": [[round(float(v), 6) for v in row] for row in matrix],
        "rows": len(index),
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
