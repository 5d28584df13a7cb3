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
from ctrops_common.feature_names import FeatureNameMapping, effective_feature_names
from ctrops_common.numbers import finite as _finite
from ctrops_common.storage import FileStore

from .evidence import (
    SIGNIFICANCE,
    VERDICT_KO,
    StrengthInputs,
    Verdict,
    ap_lift,
    benjamini_hochberg,
    hanley_mcneil_interval,
    strength_verdict,
    wilson_interval,
)
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
    """One feature as the explainer judged it, named by the feature-name mapping in effect.

    ``importance`` is the model's attribution (0..1); ``p_value`` the Benjamini-Hochberg
    adjusted p of the held-out permutation test (does shuffling the feature lower the AUC on
    validation rows the model never saw); ``auc_drop`` that drop with its 95% interval;
    ``direction_ko`` which values raise clicks. Older explanations lack the held-out and
    direction fields: they stay None.
    """

    name: str
    description: str  # Korean display name (feature-name mapping)
    group: str = ""
    importance: float
    p_value: float  # adjusted
    ci_low: float
    ci_high: float
    p_value_raw: float | None = None
    auc_drop: float | None = None
    auc_drop_low: float | None = None
    auc_drop_high: float | None = None
    direction: str | None = None  # English, as the explainer wrote it
    direction_ko: str | None = None  # Korean, hours and weekdays spelled out
    effect_ko: str | None = None  # the observed click rates behind the direction, in words

    @property
    def significant(self) -> bool:
        return self.p_value < SIGNIFICANCE

    @property
    def strength(self) -> float:
        """Effect size x confidence: the lower end of the AUC drop's 95% interval (0 when unknown)."""
        return max(0.0, self.auc_drop_low or 0.0)


class CorrelatedPair(BaseModel):
    features: tuple[str, str]
    names: tuple[str, str]  # Korean display names
    r: float


class Correlation(BaseModel):
    """Pearson correlations of the explanation: the top features' matrix and every pair at |r| >= threshold."""

    features: list[str]
    names: list[str]  # Korean display names, in ``features`` order
    matrix: list[list[float]]
    threshold: float | None = None  # None: an older explanation without the pair list
    pairs: list[CorrelatedPair] = []
    rows: int | None = None
    max_abs_off_diagonal: float = 0.0

    @property
    def pairs_known(self) -> bool:
        return self.threshold is not None


class ModelSummary(BaseModel):
    """One model of the run as the report shows it (both the champion and the challenger)."""

    kind: str
    label: str
    champion: bool
    auc: float | None
    auc_ci_low: float | None
    auc_ci_high: float | None
    ap: float | None


class Strength(BaseModel):
    """The champion's strength verdict and the evidence it rests on (evidence.py gives the rule)."""

    verdict: Verdict
    verdict_ko: str
    reasons: list[str]
    champion: str  # "lstm" | "gbdt"
    champion_label: str
    auc: float | None
    auc_ci_low: float | None
    auc_ci_high: float | None
    ci_method: str | None  # "DeLong", "Hanley-McNeil" or None (unknown)
    ap: float | None
    base_rate: float | None  # click rate of the validation rows (AP's random baseline), fraction
    ap_lift: float | None
    val_rows: int | None
    val_clicks: int | None
    val_counts_estimated: bool = False  # rows x validation split (older runs do not send them)
    accuracy: float | None
    majority_baseline: float | None  # accuracy of always answering "no click" = 1 - base rate
    models: list[ModelSummary] = []
    comparison: dict[str, Any] | None = None  # paired DeLong test of the two models' AUCs


class Segment(BaseModel):
    label: str  # Korean, e.g. "14시"
    rows: int
    clicks: int
    ctr: float  # percent
    ctr_low: float | None = None  # Wilson 95% interval of the segment's CTR, percent
    ctr_high: float | None = None
    lift: float  # ctr / overall ctr
    p_value: float | None  # two-proportion z-test against the rest of the data
    p_adjusted: float | None = None  # Benjamini-Hochberg across every segment test of the report

    @property
    def significant(self) -> bool:
        return self.p_adjusted is not None and self.p_adjusted < SIGNIFICANCE


class SegmentFinding(BaseModel):
    dimension: str  # hour, day_of_week, inventory_id, age_group_gender
    title: str  # Korean name of the dimension
    base_ctr: float  # percent: the whole data's CTR when known, else this table's
    best: list[Segment]
    worst: list[Segment]
    segments_considered: int
    tests_in_family: int = 0  # segment tests the Benjamini-Hochberg adjustment ran over (all tables)


class Money(BaseModel):
    """The money estimate: assumptions (settings) in, ranges out; docs/reports.md gives the formulas.

    Every figure has a point value (the validation precision) and a 95% range (the Wilson
    interval of that precision, from the validation rows behind it). ``roi_change_points``
    is a real ROI change: ROI = (revenue - spend) / spend, in percentage points at the same
    spend; ``revenue_change_percent`` is the relative change of revenue (and of clicks).
    """

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
    targeted_ctr_low: float | None = None  # Wilson 95% interval of the precision
    targeted_ctr_high: float | None = None
    targeted_rows: float | None = None  # validation rows the model flagged (the interval's trials)
    targeted_clicks: float | None = None  # clicks among them
    model_ctr: float | None = None  # blended CTR with targeting, fraction
    model_ctr_low: float | None = None
    model_ctr_high: float | None = None
    monthly_spend_krw: float | None = None
    clicks_base: float | None = None
    clicks_model: float | None = None
    clicks_model_low: float | None = None
    clicks_model_high: float | None = None
    revenue_base_krw: float | None = None
    revenue_model_krw: float | None = None
    roi_base_percent: float | None = None
    roi_model_percent: float | None = None
    roi_model_low_percent: float | None = None
    roi_model_high_percent: float | None = None
    roi_change_points: float = 0.0  # ROI(model) - ROI(base), percentage points
    roi_change_low_points: float | None = None
    roi_change_high_points: float | None = None
    revenue_change_percent: float = 0.0  # (revenue model / revenue base - 1) * 100, same spend
    revenue_change_low_percent: float | None = None
    revenue_change_high_percent: float | None = None
    additional_revenue_krw: float = 0.0
    additional_revenue_low_krw: float | None = None
    additional_revenue_high_krw: float | None = None
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
    correlation: Correlation | None
    feature_names_digest: str = ""  # the feature-name mapping the names come from
    curve: list[dict[str, Any]]
    rows: int | None
    clicks: int | None
    base_ctr: float | None  # percent
    segments_available: bool
    segments: list[SegmentFinding]
    strength: Strength
    money: Money


# --- reading the inputs ---------------------------------------------------------


def metrics_from(training_metrics: dict[str, Any]) -> Metrics:
    values = {name: _finite(training_metrics.get(name)) for name in Metrics.model_fields}
    values["accuracy"] = _finite(training_metrics.get("val_accuracy", training_metrics.get("accuracy")))
    return Metrics(**values)


def direction_text(name: str, direction_ko: Any, effect: Any) -> tuple[str | None, str | None]:
    """(direction, observed click rates) in Korean: hours as "20시", weekdays by name."""
    text = str(direction_ko) if direction_ko else None
    effect = effect if isinstance(effect, dict) else {}
    values = effect.get("values") if effect.get("kind") == "values" else None
    if text and isinstance(values, list) and values and name in ("hour", "day_of_week"):
        spelled = [weekday_name(v) if name == "day_of_week" else f"{_code(v)}시" for v in values[:8]]
        text = f"{', '.join(spelled)}에 클릭 증가"
    rates = None
    named, rest = _finite(effect.get("ctr_named")), _finite(effect.get("ctr_rest"))
    top, bottom = _finite(effect.get("ctr_top_quartile")), _finite(effect.get("ctr_bottom_quartile"))
    if named is not None and rest is not None:
        rates = f"해당 값 CTR {100 * named:.2f}% vs 나머지 {100 * rest:.2f}%"
    elif top is not None and bottom is not None and effect.get("kind") == "monotone":
        rates = f"상위 25% CTR {100 * top:.2f}% vs 하위 25% {100 * bottom:.2f}%"
    return text, rates


def features_from(top_features: list[dict[str, Any]], names: FeatureNameMapping | None = None,
                  limit: int = 15, limit_with_significant: int = 20) -> list[Feature]:
    """The most important features (``limit``), plus every significant one beyond them (up to
    ``limit_with_significant`` in all), by importance. Names come from ``names`` (the mapping in
    effect), not from the explanation, so a user's uploaded mapping applies to older runs too."""
    found = []
    for item in top_features:
        name = str(item.get("feature") or item.get("name") or "")
        importance = _finite(item.get("importance"))
        if not name or importance is None:
            continue
        p_value = _finite(item.get("pValue", item.get("p_value")))
        ci = item.get("ci") or [importance, importance]
        low, high = (_finite(ci[0]), _finite(ci[1])) if len(ci) == 2 else (None, None)
        drop_ci = item.get("auc_drop_ci")
        drop_low, drop_high = ((_finite(drop_ci[0]), _finite(drop_ci[1]))
                               if isinstance(drop_ci, list) and len(drop_ci) == 2 else (None, None))
        direction_ko, effect_ko = direction_text(name, item.get("direction_ko"), item.get("effect"))
        entry = names.get(name) if names is not None else None
        found.append(Feature(
            name=name,
            description=column_description(name, names),
            group=entry.group if entry else "",
            importance=max(0.0, min(1.0, importance)),
            p_value=1.0 if p_value is None else max(0.0, min(1.0, p_value)),
            ci_low=importance if low is None else low,
            ci_high=importance if high is None else high,
            p_value_raw=_finite(item.get("p_value_raw")),
            auc_drop=_finite(item.get("auc_drop")),
            auc_drop_low=drop_low,
            auc_drop_high=drop_high,
            direction=str(item["direction"]) if item.get("direction") else None,
            direction_ko=direction_ko,
            effect_ko=effect_ko,
        ))
    found.sort(key=lambda f: (-f.importance, f.name))
    chosen = found[:limit]
    chosen += [f for f in found[limit:] if f.significant][: max(0, limit_with_significant - len(chosen))]
    return sorted(chosen, key=lambda f: (-f.importance, f.name))


def drivers(features: list[Feature]) -> list[Feature]:
    """The features the held-out test supports (adjusted p < 0.05), strongest evidence first:
    by the lower end of the AUC drop's 95% interval (effect x confidence), then the adjusted p."""
    return sorted((f for f in features if f.significant), key=lambda f: (-f.strength, f.p_value, f.name))


def correlation_from(explanation: dict[str, Any] | None, names: FeatureNameMapping | None = None
                     ) -> Correlation | None:
    """The correlation block of explanation.json (matrix and correlated pairs), if well formed."""
    if not isinstance(explanation, dict):
        return None
    block = explanation.get("correlation")
    block = block if isinstance(block, dict) else explanation
    features, matrix = block.get("features"), block.get("matrix")
    if not isinstance(features, list) or not isinstance(matrix, list) or not features or len(matrix) != len(features):
        return None
    if any(not isinstance(n, str) for n in features):
        return None  # e.g. a list of feature-importance objects, not a correlation block
    clean = []
    for row in matrix:
        if not isinstance(row, list) or len(row) != len(features):
            return None
        clean.append([max(-1.0, min(1.0, _finite(v) or 0.0)) for v in row])
    pairs = []
    for item in block.get("pairs") or []:
        pair = item.get("features") if isinstance(item, dict) else None
        r = _finite(item.get("r")) if isinstance(item, dict) else None
        if isinstance(pair, list) and len(pair) == 2 and all(isinstance(x, str) for x in pair) and r is not None:
            pairs.append(CorrelatedPair(features=(pair[0], pair[1]), r=max(-1.0, min(1.0, r)),
                                        names=(column_description(pair[0], names), column_description(pair[1], names))))
    pairs.sort(key=lambda p: (-abs(p.r), p.features))
    off = [abs(v) for i, row in enumerate(clean) for j, v in enumerate(row) if i != j]
    rows = _finite(block.get("rows"))
    return Correlation(
        features=[str(n) for n in features], names=[column_description(str(n), names) for n in features],
        matrix=clean, threshold=_finite(block.get("threshold")), pairs=pairs,
        rows=None if rows is None else int(rows), max_abs_off_diagonal=max(off, default=0.0),
    )


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
        return weekday_name(entry.get("value"))
    if dimension == "inventory_id":
        return f"지면 {_code(entry.get('value'))}"
    if dimension == "age_group_gender":
        return f"연령대 {_code(entry.get('age_group'))} · 성별 {_code(entry.get('gender'))}"
    return _code(entry.get("value"))


# ISO 8601 weekday numbers (1 = Monday ... 7 = Sunday), as the generator uses them (days 6-7 are its weekend).
WEEKDAYS = {1: "월요일", 2: "화요일", 3: "수요일", 4: "목요일", 5: "금요일", 6: "토요일", 7: "일요일"}


def weekday_name(value: Any) -> str:
    """Korean weekday of an ISO day number; an unknown code is shown as it is."""
    number = _finite(value)
    if number is not None and number == int(number) and int(number) in WEEKDAYS:
        return WEEKDAYS[int(number)]
    return f"요일 코드 {_code(value)}"


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

    Every ranked segment of every table is one test (its CTR against the rest of the data);
    the Benjamini-Hochberg adjustment runs over all of them together, since the report
    picks its findings from all tables at once.
    """
    tables = []
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
        usable = [(e, r, c) for e, r, c in parsed if r >= min_rows]
        if not usable:
            continue
        ranked = sorted(usable, key=lambda t: (t[2] / t[1], t[1]), reverse=True)
        p_values = [two_proportion_p_value(c, r, total_clicks, total_rows) for _, r, c in ranked]
        tables.append((dimension, title, total_rows, total_clicks, ranked, p_values))

    family = [p for *_, p_values in tables for p in p_values]
    adjusted = iter(benjamini_hochberg(family))
    tests = sum(p is not None for p in family)
    findings = []
    for dimension, title, total_rows, total_clicks, ranked, p_values in tables:
        base = total_clicks / total_rows
        built = []
        for (entry, rows, clicks), p_value in zip(ranked, p_values):
            interval = wilson_interval(clicks, rows)
            built.append(Segment(
                label=_label(dimension, entry),
                rows=rows,
                clicks=clicks,
                ctr=round(100 * clicks / rows, 3),
                ctr_low=None if interval is None else round(100 * interval[0], 3),
                ctr_high=None if interval is None else round(100 * interval[1], 3),
                lift=round((clicks / rows) / base, 3) if base else 0.0,
                p_value=p_value,
                p_adjusted=next(adjusted),
            ))
        best = built[:top]
        worst = [s for s in built[::-1][:top] if s not in best]
        findings.append(SegmentFinding(
            dimension=dimension, title=title, base_ctr=round(100 * base, 3),
            best=best, worst=worst, segments_considered=len(ranked), tests_in_family=tests,
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


def estimate_money(
    metrics: Metrics,
    base_ctr_fraction: float | None,
    assumptions: MoneyAssumptions,
    *,
    val_clicks: int | None = None,
    verdict: Verdict | None = None,
) -> Money:
    """Return of moving a share of the impressions to the audience the model flags, at fixed spend.

    With the spend fixed by CPM, more clicks from the same impressions means more
    conversions for the same money. The model's audience clicks at its precision (the CTR
    among the validation impressions it flags); the moved share is capped by how much
    traffic the model flags at its threshold. The range comes from the Wilson interval of
    that precision: the validation clicks found (recall x val_clicks) among the rows
    flagged (found / precision). A weak model (``verdict="weak"``) gets no estimate, nor
    does a run without validation click counts (no range can be given).
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
    if verdict == "weak":
        money.reason = ("모델 신뢰도가 '약함'이라 금액을 추정하지 않았습니다: 검증 데이터가 타겟팅에 쓸 만한 "
                        "신호를 보여 주지 않았습니다.")
        return money
    if base is None or base <= 0:
        money.reason = "데이터의 기준 CTR을 알 수 없어 금액을 계산하지 않았습니다."
        return money
    if precision is None or recall is None or precision <= 0:
        money.reason = "모델의 정밀도/재현율이 없어 금액을 계산하지 않았습니다."
        return money
    if not val_clicks:
        money.reason = "검증 데이터의 클릭 수를 알 수 없어 금액의 범위를 계산할 수 없으므로 금액을 싣지 않았습니다."
        return money
    found = recall * val_clicks
    flagged_rows = found / precision
    interval = wilson_interval(found, flagged_rows)
    if interval is None:
        money.reason = "모델이 고른 검증 노출이 없어 금액을 계산하지 않았습니다."
        return money

    flagged = min(1.0, recall * base / precision)
    share = min(assumptions.report_targeted_share, flagged)
    impressions = assumptions.report_monthly_impressions
    spend = impressions / 1000 * assumptions.report_cpm_krw
    per_click = assumptions.report_conversion_rate * assumptions.report_conversion_value_krw

    def at(targeted: float) -> tuple[float, float, float, float, float]:
        """(model CTR, clicks, revenue, ROI percent, revenue change percent) at a targeted CTR."""
        ctr = base + share * (targeted - base)
        clicks = impressions * ctr
        revenue = clicks * per_click
        return ctr, clicks, revenue, 100 * (revenue - spend) / spend, 100 * (ctr / base - 1)

    clicks_base = impressions * base
    revenue_base = clicks_base * per_click
    roi_base = 100 * (revenue_base - spend) / spend
    model_ctr, clicks_model, revenue_model, roi_model, change = at(precision)
    low, high = at(interval[0]), at(interval[1])
    money.computable = True
    money.flagged_share = flagged
    money.effective_targeted_share = share
    money.base_ctr = base
    money.targeted_ctr, money.targeted_ctr_low, money.targeted_ctr_high = precision, interval[0], interval[1]
    money.targeted_rows, money.targeted_clicks = flagged_rows, found
    money.model_ctr, money.model_ctr_low, money.model_ctr_high = model_ctr, low[0], high[0]
    money.monthly_spend_krw = spend
    money.clicks_base = clicks_base
    money.clicks_model, money.clicks_model_low, money.clicks_model_high = clicks_model, low[1], high[1]
    money.revenue_base_krw = revenue_base
    money.revenue_model_krw = revenue_model
    money.roi_base_percent = roi_base
    money.roi_model_percent, money.roi_model_low_percent, money.roi_model_high_percent = roi_model, low[3], high[3]
    money.roi_change_points = roi_model - roi_base
    money.roi_change_low_points, money.roi_change_high_points = low[3] - roi_base, high[3] - roi_base
    money.revenue_change_percent = change
    money.revenue_change_low_percent, money.revenue_change_high_percent = low[4], high[4]
    money.additional_revenue_krw = revenue_model - revenue_base
    money.additional_revenue_low_krw = low[2] - revenue_base
    money.additional_revenue_high_krw = high[2] - revenue_base
    money.effective_cpc_base_krw = spend / clicks_base if clicks_base else None
    money.effective_cpc_model_krw = spend / clicks_model if clicks_model else None
    return money


# --- model strength ----------------------------------------------------------------------

MODEL_LABELS = {"lstm": "LSTM+MLP", "gbdt": "LightGBM"}


def strength_from(
    training_done: dict[str, Any], metrics: Metrics, totals: tuple[int, int] | None
) -> Strength:
    """The champion's verdict: DeLong interval from training.done, else Hanley-McNeil, else unknown.

    The validation rows and clicks come from the champion's ModelResult; older runs do not
    send them, so they are estimated as the data's rows and clicks x the validation split
    (the split is stratified by click) and the Strength says so.
    """
    champion = str(training_done.get("champion") or "lstm")
    raw_models = [m for m in training_done.get("models") or [] if isinstance(m, dict)]
    chosen = next((m for m in raw_models if m.get("kind") == champion), None)
    auc, ap, accuracy = metrics.auc, metrics.ap, metrics.accuracy
    low = high = None
    method: str | None = None
    val_rows = val_clicks = None
    estimated = False
    if chosen is not None:
        val_rows = _int_or_none(chosen.get("val_rows"))
        val_clicks = _int_or_none(chosen.get("val_clicks"))
        low, high = _finite(chosen.get("auc_ci_low")), _finite(chosen.get("auc_ci_high"))
        if low is not None and high is not None:
            method = "DeLong"
        else:
            low = high = None
    if val_rows is None or val_clicks is None:
        split = _finite((training_done.get("config") or {}).get("validation_split"))
        if totals is not None and split is not None and 0 < split < 1:
            val_rows, val_clicks = round(totals[0] * split), round(totals[1] * split)
            estimated = True
        else:
            val_rows = val_clicks = None
    if method is None and auc is not None and val_rows is not None and val_clicks is not None:
        interval = hanley_mcneil_interval(auc, val_clicks, val_rows - val_clicks)
        if interval is not None:
            (low, high), method = interval, "Hanley-McNeil"
    if val_rows and val_clicks is not None:
        base_rate: float | None = val_clicks / val_rows
    elif totals and totals[0]:
        base_rate = totals[1] / totals[0]
    else:
        base_rate = None
    verdict, reasons = strength_verdict(StrengthInputs(auc=auc, auc_low=low, ap=ap, base_rate=base_rate))
    models = []
    for m in raw_models:
        values = m.get("metrics") or {}
        kind = str(m.get("kind", ""))
        models.append(ModelSummary(
            kind=kind, label=str(m.get("label") or MODEL_LABELS.get(kind, kind)), champion=kind == champion,
            auc=_finite(values.get("auc")), auc_ci_low=_finite(m.get("auc_ci_low")),
            auc_ci_high=_finite(m.get("auc_ci_high")), ap=_finite(values.get("ap")),
        ))
    comparison = training_done.get("comparison")
    label = next((m.label for m in models if m.champion), MODEL_LABELS.get(champion, champion))
    return Strength(
        verdict=verdict, verdict_ko=VERDICT_KO[verdict], reasons=reasons, champion=champion, champion_label=label,
        auc=auc, auc_ci_low=low, auc_ci_high=high, ci_method=method, ap=ap, base_rate=base_rate,
        ap_lift=ap_lift(ap, base_rate), val_rows=val_rows, val_clicks=val_clicks, val_counts_estimated=estimated,
        accuracy=accuracy, majority_baseline=None if base_rate is None else 1 - base_rate,
        models=models, comparison=comparison if isinstance(comparison, dict) else None,
    )


def _int_or_none(value: Any) -> int | None:
    number = _finite(value)
    return None if number is None else int(number)


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
    # The explanation file has every feature with its held-out test and direction; the event only the top ones.
    top = []
    if isinstance(explanation, dict):
        for key in ("features", "feature_importance", "importances", "top_features"):
            if isinstance(explanation.get(key), list) and explanation[key]:
                top = explanation[key]
                break
    if not top:
        top = explanation_done.get("top_features") or []
    names = effective_feature_names(store)

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
    strength = strength_from(training_done, metrics, totals)
    return Facts(
        run_id=run_id,
        file_id=file_id,
        experiment_name=str(training_done.get("experiment_name", "")),
        best_epoch=int(training_done.get("best_epoch", 0) or 0),
        epochs_run=int(training_done.get("epochs_run", 0) or 0),
        duration_s=float(training_done.get("duration_s", 0.0) or 0.0),
        config=dict(training_done.get("config") or {}),
        metrics=metrics,
        features=features_from(top, names),
        correlation=correlation_from(explanation, names),
        feature_names_digest=names.digest(),
        curve=curve,
        rows=rows,
        clicks=clicks,
        base_ctr=round(100 * base_fraction, 4) if base_fraction is not None else None,
        segments_available=bool(findings),
        segments=findings,
        strength=strength,
        money=estimate_money(metrics, base_fraction, assumptions, val_clicks=strength.val_clicks,
                             verdict=strength.verdict),
    )
