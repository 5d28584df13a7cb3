"""Complete stored documents for tests and benchmarks that need an explanation.json or a
profile.json without running the explainer or ingest (``testdata`` does the same for data).

The caller names the numbers its assertions are about (each feature's importance, adjusted
p-value, interval and name; each segment's rows and clicks); every other field the document
requires gets a neutral value: no direction of effect, the raw p-value equal to the adjusted
one, an identity correlation matrix unless one is given. What comes back is the model
(``Explanation``, ``Profile``), so a sample can never be a partial file: store it with
``documents.write_document``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from .dataset import column_description
from .documents import Explanation, Profile

NO_EFFECT = {"kind": "none", "text": "no value stands out", "text_ko": "두드러지는 값 없음"}


def _feature(f: Mapping[str, Any]) -> dict[str, Any]:
    """One ``ExplainedFeature``: the given fields over neutral defaults."""
    importance, p_value = f["importance"], f["p_value"]
    drop = round(0.05 * importance, 6)
    p_raw = f.get("p_value_raw", p_value)
    return {
        "description": column_description(f["feature"]),
        "p_value_raw": p_raw,
        "significant": p_value < 0.05,
        "direction": NO_EFFECT["text"],
        "direction_ko": NO_EFFECT["text_ko"],
        "effect": NO_EFFECT,
        "auc_drop": drop,
        "auc_drop_se": 0.002,
        "auc_drop_ci": [drop - 0.004, drop + 0.004],
        "p_value_bootstrap": p_raw,
        "mean_abs_attribution": importance / 10,
        "mean_attribution": 0.0,
        **f,
    }


def explanation_document(
    run_id: str,
    file_id: str,
    features: Sequence[Mapping[str, Any]],
    matrix: Sequence[Sequence[float]] | None = None,
    correlated: Sequence[str] | None = None,
    pairs: Sequence[tuple[tuple[str, str], float]] = (),
    model_kind: str = "lstm",
) -> Explanation:
    """explanation.json of a run whose champion uses ``features`` (dicts with at least
    ``feature``, ``importance``, ``p_value``, ``ci``; any other ``ExplainedFeature`` field
    overrides its default). ``matrix``: the correlation of ``correlated`` (default: the
    features, in order), the identity when not given; ``pairs``: the correlated pairs listed
    (``((a, b), r)``)."""
    explained = [_feature(f) for f in features]
    names = list(correlated) if correlated is not None else [f["feature"] for f in explained]
    if matrix is None:
        matrix = [[1.0 if i == j else 0.0 for j in range(len(names))] for i in range(len(names))]
    by_drop = sorted(explained, key=lambda f: -f["auc_drop"])
    largest = by_drop[0]["auc_drop"] if by_drop and by_drop[0]["auc_drop"] > 0 else 1.0
    significant = [f["feature"] for f in explained if f["significant"]]
    attribution = "lime" if model_kind == "lstm" else "treeshap"
    off_diagonal = [abs(v) for i, row in enumerate(matrix) for j, v in enumerate(row) if i != j]
    return Explanation.model_validate({
        "run_id": run_id, "file_id": file_id, "model_location": f"runs/{run_id}/model/{model_kind}", "version": 2,
        "created_at": "2026-03-01T09:00:00+00:00", "model_kind": model_kind, "attribution": attribution,
        "features": explained, "significant_features": significant,
        "permutation": {
            "metric": "roc_auc", "rows": 12000, "clicks": 240, "repeats": 2, "bootstrap": 500, "baseline": 0.7386,
            "features": [{"feature": f["feature"], "mean_drop": f["auc_drop"], "se": f["auc_drop_se"],
                          "std_drop": 0.001, "ci": f["auc_drop_ci"], "p_value": f["p_value"],
                          "p_value_raw": f["p_value_raw"], "importance": f["auc_drop"] / largest} for f in by_drop],
            "significant_features": [f["feature"] for f in by_drop if f["significant"]],
            "top10_overlap_with_attribution": 1.0, "top10_overlap_with_lime": 1.0,
            "spearman_with_attribution": 1.0, "significant_in_attribution_top10": len(significant[:10]),
        },
        "correlation": {
            "features": names, "descriptions": [column_description(n) for n in names],
            "matrix": [list(row) for row in matrix], "rows": 60000, "threshold": 0.3,
            "pairs": [{"features": list(pair), "r": r, "descriptions": [column_description(n) for n in pair]}
                      for pair, r in pairs],
            "pairs_note": f"{len(pairs)} pair(s) have |r| >= 0.3",
            "max_abs_off_diagonal": max(off_diagonal, default=0.0), "method": "Pearson, pairwise-complete rows",
        },
        "sample": {"rows": 100, "clicked_rows": 50, "validation_rows": 12000, "validation_clicks": 240,
                   "evaluation_rows": 12000, "evaluation_clicks": 240, "permutation_rows": 12000,
                   "permutation_clicks": 240, "data_rows": 60000, "missing_columns": [], "validation_split": 0.2,
                   "split_seed": 42},
        "method": {"config": {"sample_rows": 100}, "attribution": attribution, "test": "held-out permutation test",
                   "null": "shuffling the feature does not lower the AUC", "correction": "Benjamini-Hochberg",
                   "interval": "percentile bootstrap", "definitions": {}},
        "timings": {"total_s": 1.0},
    })


def _segments(rows: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Segment rows with ``ctr`` (percent) computed from their rows and clicks, as ingest writes it."""
    return [{**r, "ctr": 100.0 * r["clicks"] / r["rows"] if r["rows"] else 0.0} for r in rows]


def profile_document(
    hour: Sequence[Mapping[str, Any]] = (),
    day_of_week: Sequence[Mapping[str, Any]] = (),
    inventory_id: Sequence[Mapping[str, Any]] = (),
    age_group_gender: Sequence[Mapping[str, Any]] = (),
) -> Profile:
    """profile.json with these segment tables (``value`` or ``age_group``/``gender``, ``rows``,
    ``clicks``; ``ctr`` is computed) and no column statistics."""
    return Profile.model_validate({"columns": {}, "seq": {}, "segments": {
        "hour": _segments(hour), "day_of_week": _segments(day_of_week),
        "inventory_id": _segments(inventory_id), "age_group_gender": _segments(age_group_gender)}})


def hours_and_audience_profile(rows_per_hour: int = 2500) -> Profile:
    """A profile with 24 hours and four audience segments whose ranking the dashboard tests know: 20h,
    21h and 9h click most; 3h has 20 rows at 45% (lucky noise, never "best"); the 15-row segment is
    too small to rank. Ingest's highlights tests and the gateway's dashboard tests share it."""
    hours = []
    for hour in range(24):
        clicks = {20: 125, 21: 110, 9: 90}.get(hour, 45)
        rows = 20 if hour == 3 else rows_per_hour
        clicks = 9 if hour == 3 else clicks
        hours.append({"value": float(hour), "rows": rows, "clicks": clicks})
    segments = [
        {"age_group": 4.0, "gender": 1.0, "rows": 12000, "clicks": 300},
        {"age_group": 5.0, "gender": 2.0, "rows": 20000, "clicks": 340},
        {"age_group": 6.0, "gender": 1.0, "rows": 15, "clicks": 5},  # too small to rank
        {"age_group": 7.0, "gender": 2.0, "rows": 8000, "clicks": 120},
    ]
    return profile_document(hour=hours, age_group_gender=segments)
