"""The facts a report is written from: the run's metrics, its explanation, the data's segments.

Everything here is read or computed from what the platform stored (the ``training.done``
and ``explanation.done`` payloads, the training curve, ``profile.json``, the data's
``clicked`` column); nothing is made up. When a source is missing the fact says so
(``None`` or an empty list) and the narrative reports it as unavailable.
"""

from __future__ import annotations

import logging
import math
from typing import Any

from pydantic import BaseModel

from ctrops_common.dataset import column_description, explanation_path, parquet_path, profile_path
from ctrops_common.numbers import finite as _finite
from ctrops_common.storage import FileStore

from .settings import MoneyAssumptions

log = logging.getLogger(__name__)

METRIC_NAMES = ("accuracy", "precision", "recall", "f1", "auc", "ap", "logloss", "calibration", "score", "threshold")


class Metrics(BaseModel):
    """Validation metrics of the kept epoch (fractions; log loss and calibration as they are)."""

    accuracy: float | None = None
    precision: float | None = None
    recall: float | None = None
    f1: float | None = None
    auc: float | None = None
    ap: float | None = None
    logloss: float | None = None
    calibration: float | None = None  # predicted clicks / actual clicks
    score: float | None = None  # 0.5*AP + 0.5/(1+WLL)
    threshold: float | None = None
    train_loss: float | None = None
    val_loss: float | None = None


class Feature(BaseModel):
    name: str
    description: str
    importance: float
    p_value: float
    ci_low: float
    ci_high: float


class Segment(BaseModel):
    label: str  # Korean, e.g. "14시"
    rows: int
    clicks: int
    ctr: float  # percent
    lift: float  # ctr / overall ctr
    p_value: float | None  # two-proportion z-test against the rest of the data


class SegmentFinding(BaseModel):
    dimension: str  # hour, day_of_week, inventory_id, age_group_gender
    title: str  # Korean name of the dimension
    base_ctr: float  # percent: the whole data's CTR when known, else this table's
    best: list[Segment]
    worst: list[Segment]
    segments_considered: int


class Money(BaseModel):
    """The ROI estimate: assumptions (settings) in, figures out; docs/reports.md gives the formulas."""

    computable: bool
    reason: str = ""
    monthly_impressions: int
    cpm_krw: float
    cpc_krw: float
    conversion_rate: float
    conversion_value_krw: float
    targeted_share: float  # as configured
    effective_targeted_share: float | None = None  # capped by the share of traffic the model flags
    flagged_share: float | None = None  # recall * base / precision
    base_ctr: float | None = None  # fraction
    targeted_ctr: float | None = None  # precision at the threshold, fraction
    model_ctr: float | None = None  # blended CTR with targeting, fraction
    monthly_spend_krw: float | None = None
    clicks_base: float | None = None
    clicks_model: float | None = None
    revenue_base_krw: float | None = None
    revenue_model_krw: float | None = None
    roi_base_percent: float | None = None
    roi_model_percent: float | None = None
    roi_increase_percent: float = 0.0
    additional_revenue_krw: float = 0.0
    effective_cpc_base_krw: float | None = None
    effective_cpc_model_krw: float | None = None


class Facts(BaseModel):
    run_id: str
    file_id: str
    experiment_name: str
    best_epoch: int
    epochs_run: int
    duration_s: float
    config: dict[str, Any]
    metrics: Metrics
    features: list[Feature]
    correlation: dict[str, Any] | None  # {"features": [...], "matrix": [[...]]}
    curve: list[dict[str, Any]]
    rows: int | None
    clicks: int | None
    base_ctr: float | None  # percent
    segments_available: bool
    segments: list[SegmentFinding]
    money: Money


# --- reading the inputs ---------------------------------------------------------


def metrics_from(training_metrics: dict[str, Any]) -> Metrics:
    values = {name: _finite(training_metrics.get(name)) for name in Metrics.model_fields}
    values["accuracy"] = _finite(training_metrics.get("val_accuracy", training_metrics.get("accuracy")))
    return Metrics(**values)


def features_from(top_features: list[dict[str, Any]], limit: int = 15) -> list[Feature]:
    found = []
    for item in top_features:
        name = str(item.get("feature") or item.get("name") or "")
        importance = _finite(item.get("importance"))
        if not name or importance is None:
            continue
        p_value = _finite(item.get("p_value", item.get("pValue")))
        ci = item.get("ci") or [importance, importance]
        low, high = (_finite(ci[0]), _finite(ci[1])) if len(ci) == 2 else (None, None)
        found.append(Feature(
            name=name,
            description=str(item.get("description") or column_description(name)),
            importance=max(0.0, min(1.0, importance)),
            p_value=1.0 if p_value is None else max(0.0, min(1.0, p_value)),
            ci_low=importance if low is None else low,
            ci_high=importance if high is None else high,
        ))
    found.sort(key=lambda f: f.importance, reverse=True)
    return found[:limit]


def correlation_from(explanation: dict[str, Any] | None) -> dict[str, Any] | None:
    """The correlation matrix of explanation.json, if it is there and well formed."""
    if not isinstance(explanation, dict):
        return None
    block = explanation.get("correlation")
    block = block if isinstance(block, dict) else explanation
    names, matrix = block.get("features"), block.get("matrix")
    if not isinstance(names, list) or not isinstance(matrix, list) or not names or len(matrix) != len(names):
        return None
    if any(not isinstance(n, str) for n in names):
        return None  # e.g. a list of feature-importance objects, not a correlation block
    clean = []
    for row in matrix:
        if not isinstance(row, list) or len(row) != len(names):
            return None
        clean.append([max(-1.0, min(1.0, _finite(v) or 0.0)) for v in row])
    return {"features": [str(n) for n in names], "matrix": clean}


def _read_json(store: FileStore, relative: str) -> Any:
    try:
        return store.read_json(relative)
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        log.warning("cannot read %s: %s", relative, exc)
        return None


def clicks_from_parquet(store: FileStore, file_id: str) -> tuple[int, int] | None:
    """(rows, clicks) from the training layout's ``clicked`` column, when profile.json lacks them."""
    try:
        import pyarrow.compute as pc
        import pyarrow.parquet as pq

        table = pq.read_table(store.path(parquet_path(file_id)), columns=["clicked"])
    except Exception as exc:  # noqa: BLE001 - a missing or odd file only removes this fact
        log.info("no click totals for %s: %s", file_id, exc)
        return None
    return table.num_rows, int(pc.sum(table.column("clicked")).as_py() or 0)


# --- segments ---------------------------------------------------------------------


def _code(value: Any) -> str:
    number = _finite(value)
    if number is None:
        return str(value)
    return str(int(number)) if number == int(number) else f"{number:g}"


def _label(dimension: str, entry: dict[str, Any]) -> str:
    if dimension == "hour":
        return f"{_code(entry.get('value'))}시"
    if dimension == "day_of_week":
        return f"요일 코드 {_code(entry.get('value'))}"
    if dimension == "inventory_id":
        return f"지면 {_code(entry.get('value'))}"
    if dimension == "age_group_gender":
        return f"연령대 {_code(entry.get('age_group'))} · 성별 {_code(entry.get('gender'))}"
    return _code(entry.get("value"))


SEGMENT_TITLES = {
    "hour": "시간대별 CTR",
    "day_of_week": "요일별 CTR",
    "inventory_id": "광고 지면별 CTR",
    "age_group_gender": "연령대 × 성별 CTR",
}


def two_proportion_p_value(clicks: int, rows: int, total_clicks: int, total_rows: int) -> float | None:
    """Two-sided p-value that a segment's CTR differs from the rest of the data (normal approximation)."""
    other_rows, other_clicks = total_rows - rows, total_clicks - clicks
    if rows <= 0 or other_rows <= 0:
        return None
    pooled = total_clicks / total_rows
    spread = math.sqrt(pooled * (1 - pooled) * (1 / rows + 1 / other_rows))
    if spread == 0:
        return None
    z = (clicks / rows - other_clicks / other_rows) / spread
    return math.erfc(abs(z) / math.sqrt(2))


def segment_findings(
    segments: dict[str, Any], min_rows: int, top: int = 3, totals: tuple[int, int] | None = None
) -> list[SegmentFinding]:
    """Best and worst segments per table; ``totals`` (rows, clicks of the whole data) is the baseline.

    Without totals each table's own sums are the baseline. Ingest truncates the inventory
    and age x gender tables to their busiest values and leaves out rows where the column is
    missing, so the whole data's totals are the better baseline when known.
    """
    findings = []
    for dimension, title in SEGMENT_TITLES.items():
        entries = segments.get(dimension) if isinstance(segments, dict) else None
        if not isinstance(entries, list) or not entries:
            continue
        parsed = []
        for entry in entries:
            if not isinstance(entry, dict):
                continue
            rows, clicks = _finite(entry.get("rows")), _finite(entry.get("clicks"))
            if rows is None or clicks is None or rows <= 0:
                continue
            parsed.append((entry, int(rows), int(clicks)))
        total_rows = sum(r for _, r, _ in parsed)
        total_clicks = sum(c for _, _, c in parsed)
        if not total_rows:
            continue
        if totals is not None and totals[0] >= total_rows and totals[1] >= total_clicks:
            total_rows, total_clicks = totals
        base = total_clicks / total_rows
        usable = [(e, r, c) for e, r, c in parsed if r >= min_rows]
        if not usable:
            continue

        def segment(entry: dict[str, Any], rows: int, clicks: int) -> Segment:
            return Segment(
                label=_label(dimension, entry),
                rows=rows,
                clicks=clicks,
                ctr=round(100 * clicks / rows, 3),
                lift=round((clicks / rows) / base, 3) if base else 0.0,
                p_value=two_proportion_p_value(clicks, rows, total_clicks, total_rows),
            )

        ranked = sorted(usable, key=lambda t: (t[2] / t[1], t[1]), reverse=True)
        best = [segment(*t) for t in ranked[:top]]
        worst = [segment(*t) for t in ranked[::-1][:top] if t not in ranked[:top]]
        findings.append(SegmentFinding(
            dimension=dimension, title=title, base_ctr=round(100 * base, 3),
            best=best, worst=worst, segments_considered=len(usable),
        ))
    return findings


def totals_from_profile(profile: dict[str, Any]) -> tuple[int, int] | None:
    """(rows, clicks) of the whole file from any complete segment table of profile.json."""
    segments = profile.get("segments") if isinstance(profile, dict) else None
    for dimension in ("hour", "day_of_week", "inventory_id", "age_group_gender"):
        entries = segments.get(dimension) if isinstance(segments, dict) else None
        if isinstance(entries, list) and entries:
            rows = sum(int(_finite(e.get("rows")) or 0) for e in entries if isinstance(e, dict))
            clicks = sum(int(_finite(e.get("clicks")) or 0) for e in entries if isinstance(e, dict))
            if rows:
                return rows, clicks
    return None


# --- money -----------------------------------------------------------------------------


def estimate_money(metrics: Metrics, base_ctr_fraction: float | None, assumptions: MoneyAssumptions) -> Money:
    """ROI of moving a share of the impressions to the audience the model flags, at fixed spend.

    With the spend fixed by CPM, more clicks from the same impressions means more
    conversions for the same money. The model's audience converts clicks at its
    precision (the CTR among the impressions it flags, measured on validation data);
    the moved share is capped by how much traffic the model flags at its threshold.
    """
    money = Money(
        computable=False,
        monthly_impressions=assumptions.report_monthly_impressions,
        cpm_krw=assumptions.report_cpm_krw,
        cpc_krw=assumptions.report_cpc_krw,
        conversion_rate=assumptions.report_conversion_rate,
        conversion_value_krw=assumptions.report_conversion_value_krw,
        targeted_share=assumptions.report_targeted_share,
    )
    base, precision, recall = base_ctr_fraction, metrics.precision, metrics.recall
    if base is None or base <= 0:
        money.reason = "데이터의 기준 CTR을 알 수 없어 금액을 계산하지 않았습니다."
        return money
    if precision is None or recall is None or precision <= 0:
        money.reason = "모델의 정밀도/재현율이 없어 금액을 계산하지 않았습니다."
        return money

    flagged = min(1.0, recall * base / precision)
    share = min(assumptions.report_targeted_share, flagged)
    model_ctr = base + share * (precision - base)
    impressions = assumptions.report_monthly_impressions
    spend = impressions / 1000 * assumptions.report_cpm_krw
    per_click = assumptions.report_conversion_rate * assumptions.report_conversion_value_krw
    clicks_base, clicks_model = impressions * base, impressions * model_ctr
    revenue_base, revenue_model = clicks_base * per_click, clicks_model * per_click
    money.computable = True
    money.flagged_share = flagged
    money.effective_targeted_share = share
    money.base_ctr = base
    money.targeted_ctr = precision
    money.model_ctr = model_ctr
    money.monthly_spend_krw = spend
    money.clicks_base = clicks_base
    money.clicks_model = clicks_model
    money.revenue_base_krw = revenue_base
    money.revenue_model_krw = revenue_model
    money.roi_base_percent = 100 * (revenue_base - spend) / spend
    money.roi_model_percent = 100 * (revenue_model - spend) / spend
    # Return on the same spend rises exactly as the revenue does: (ROAS_model / ROAS_base - 1).
    money.roi_increase_percent = 100 * (revenue_model / revenue_base - 1)
    money.additional_revenue_krw = revenue_model - revenue_base
    money.effective_cpc_base_krw = spend / clicks_base if clicks_base else None
    money.effective_cpc_model_krw = spend / clicks_model if clicks_model else None
    return money


# --- assembling ---------------------------------------------------------------------------


def gather(
    store: FileStore,
    training_done: dict[str, Any],
    explanation_done: dict[str, Any],
    curve: list[dict[str, Any]],
    assumptions: MoneyAssumptions,
) -> Facts:
    """All facts of one run, from the two event payloads, the curve and the files they point to."""
    run_id = str(training_done["run_id"])
    file_id = str(training_done.get("file_id", ""))
    explanation = _read_json(store, str(explanation_done.get("location") or explanation_path(run_id)))
    top = explanation_done.get("top_features") or []
    if isinstance(explanation, dict) and not top:
        for key in ("features", "feature_importance", "importances", "top_features"):
            if isinstance(explanation.get(key), list):
                top = explanation[key]
                break

    profile = _read_json(store, profile_path(file_id)) if file_id else None
    segments_block = profile.get("segments") if isinstance(profile, dict) else None
    # Exact totals from the data's clicked column; the profile's hour table (rows with an hour) otherwise.
    totals = clicks_from_parquet(store, file_id) if file_id else None
    if totals is None and isinstance(profile, dict):
        totals = totals_from_profile(profile)
    findings = segment_findings(segments_block or {}, assumptions.report_min_segment_rows, totals=totals)
    rows, clicks = totals if totals else (None, None)
    base_fraction = clicks / rows if rows else None

    metrics = metrics_from(training_done.get("metrics") or {})
    return Facts(
        run_id=run_id,
        file_id=file_id,
        experiment_name=str(training_done.get("experiment_name", "")),
        best_epoch=int(training_done.get("best_epoch", 0) or 0),
        epochs_run=int(training_done.get("epochs_run", 0) or 0),
        duration_s=float(training_done.get("duration_s", 0.0) or 0.0),
        config=dict(training_done.get("config") or {}),
        metrics=metrics,
        features=features_from(top),
        correlation=correlation_from(explanation),
        curve=curve,
        rows=rows,
        clicks=clicks,
        base_ctr=round(100 * base_fraction, 4) if base_fraction is not None else None,
        segments_available=bool(findings),
        segments=findings,
        money=estimate_money(metrics, base_fraction, assumptions),
    )
