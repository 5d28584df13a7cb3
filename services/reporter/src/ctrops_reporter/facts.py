"""The facts a report is written from: the run's metrics, its explanation, the data's segments.

Everything here is read or computed from what the platform stored (the ``TrainingDone``
and ``ExplanationDone`` payloads, the training curve, ``profile.json`` and ``explanation.json``
read back as ``ctrops_common.documents.Profile`` and ``Explanation``, the data's ``clicked``
column); nothing is made up and no key is guessed. When a source is missing or does not match
its model, the fact says so (``None`` or an empty list) and the narrative reports it as unavailable.
"""

from __future__ import annotations

import logging
import math
from typing import Any

from pydantic import BaseModel, ValidationError

from ctrops_common.dataset import column_description, parquet_path, profile_path
from ctrops_common.documents import (
    Effect,
    ExplainedFeature,
    Explanation,
    PairSegment,
    Profile,
    ProfileSegments,
    ValueSegment,
    read_document,
)
from ctrops_common.events import (
    AucComparison,
    ModelMetrics,
    ExplanationDone,
    FeatureImportance,
    TrainingConfig,
    TrainingDone,
)
from ctrops_common.feature_names import FeatureNameMapping, effective_feature_names
from ctrops_common.intervals import wilson_interval
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
)
from .settings import MoneyAssumptions

log = logging.getLogger(__name__)

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
    comparison: AucComparison | None = None  # paired DeLong test of the two models' AUCs


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
    config: TrainingConfig
    metrics: ModelMetrics
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


def metrics_from(training_metrics: ModelMetrics) -> ModelMetrics:
    """The report's metrics of the kept epoch, every one finite or None."""
    return ModelMetrics.model_validate(training_metrics.values())


def direction_text(name: str, direction_ko: str | None, effect: Effect | None) -> tuple[str | None, str | None]:
    """(direction, observed click rates) in Korean: hours as "20시", weekdays by name."""
    text = direction_ko or None
    if text and effect is not None and effect.kind == "values" and effect.values and name in ("hour", "day_of_week"):
        spelled = [weekday_name(v) if name == "day_of_week" else f"{_code(v)}시" for v in effect.values[:8]]
        text = f"{', '.join(spelled)}에 클릭 증가"
    rates = None
    if effect is not None and effect.kind == "values" and effect.ctr_named is not None and effect.ctr_rest is not None:
        rates = f"해당 값 CTR {100 * effect.ctr_named:.2f}% vs 나머지 {100 * effect.ctr_rest:.2f}%"
    elif (effect is not None and effect.kind == "monotone" and effect.ctr_top_quartile is not None
          and effect.ctr_bottom_quartile is not None):
        rates = f"상위 25% CTR {100 * effect.ctr_top_quartile:.2f}% vs 하위 25% {100 * effect.ctr_bottom_quartile:.2f}%"
    return text, rates


def feature_from(item: ExplainedFeature | FeatureImportance, names: FeatureNameMapping | None = None) -> Feature:
    """One feature of the report: from explanation.json (with the held-out test and the direction of
    effect), or from the event's top features when the file cannot be read (without them)."""
    explained = item if isinstance(item, ExplainedFeature) else None
    direction_ko, effect_ko = (direction_text(item.feature, explained.direction_ko, explained.effect)
                               if explained is not None else (None, None))
    entry = names.get(item.feature) if names is not None else None
    low, high = item.ci
    return Feature(
        name=item.feature,
        description=column_description(item.feature, names),
        group=entry.group if entry else "",
        importance=item.importance,
        p_value=item.p_value,
        ci_low=low,
        ci_high=high,
        p_value_raw=explained.p_value_raw if explained else None,
        auc_drop=explained.auc_drop if explained else None,
        auc_drop_low=explained.auc_drop_ci[0] if explained else None,
        auc_drop_high=explained.auc_drop_ci[1] if explained else None,
        direction=explained.direction if explained else None,
        direction_ko=direction_ko,
        effect_ko=effect_ko,
    )


def features_from(items: list[ExplainedFeature] | list[FeatureImportance], names: FeatureNameMapping | None = None,
                  limit: int = 15, limit_with_significant: int = 20) -> list[Feature]:
    """The most important features (``limit``), plus every significant one beyond them (up to
    ``limit_with_significant`` in all), by importance. Names come from ``names`` (the mapping in
    effect), not from the explanation, so a user's uploaded mapping applies to older runs too."""
    found = sorted((feature_from(item, names) for item in items), key=lambda f: (-f.importance, f.name))
    chosen = found[:limit]
    chosen += [f for f in found[limit:] if f.significant][: max(0, limit_with_significant - len(chosen))]
    return sorted(chosen, key=lambda f: (-f.importance, f.name))


def drivers(features: list[Feature]) -> list[Feature]:
    """The features the held-out test supports (adjusted p < 0.05), strongest evidence first:
    by the lower end of the AUC drop's 95% interval (effect x confidence), then the adjusted p."""
    return sorted((f for f in features if f.significant), key=lambda f: (-f.strength, f.p_value, f.name))


def correlation_from(explanation: Explanation | None, names: FeatureNameMapping | None = None
                     ) -> Correlation | None:
    """The correlation block of explanation.json (matrix and correlated pairs), names from ``names``."""
    if explanation is None:
        return None
    block = explanation.correlation
    if not block.features:
        return None
    pairs = [CorrelatedPair(features=p.features, r=p.r,
                            names=(column_description(p.features[0], names), column_description(p.features[1], names)))
             for p in block.pairs]
    pairs.sort(key=lambda p: (-abs(p.r), p.features))
    return Correlation(
        features=list(block.features), names=[column_description(n, names) for n in block.features],
        matrix=[list(row) for row in block.matrix], threshold=block.threshold, pairs=pairs,
        rows=block.rows, max_abs_off_diagonal=block.max_abs_off_diagonal,
    )


def read_explanation(store: FileStore, location: str) -> Explanation | None:
    """explanation.json as its model; None (logged) when missing or not matching the model."""
    return _read(store, location, Explanation)


def read_profile(store: FileStore, file_id: str) -> Profile | None:
    """profile.json as its model; None (logged) when missing or not matching the model."""
    return _read(store, profile_path(file_id), Profile)


def _read(store: FileStore, relative: str, model: type[Explanation] | type[Profile]) -> Any:
    try:
        return read_document(store, relative, model)
    except FileNotFoundError:
        return None
    except (OSError, ValueError, ValidationError) as exc:  # ValidationError: a file of another schema
        log.warning("cannot read %s as %s: %s", relative, model.__name__, exc)
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


def _label(dimension: str, entry: ValueSegment | PairSegment) -> str:
    if isinstance(entry, PairSegment):
        return f"연령대 {_code(entry.age_group)} · 성별 {_code(entry.gender)}"
    if dimension == "hour":
        return f"{_code(entry.value)}시"
    if dimension == "day_of_week":
        return weekday_name(entry.value)
    if dimension == "inventory_id":
        return f"지면 {_code(entry.value)}"
    return _code(entry.value)


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
    segments: ProfileSegments, min_rows: int, top: int = 3, totals: tuple[int, int] | None = None
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
        parsed = [(entry, entry.rows, entry.clicks) for entry in segments.table(dimension) if entry.rows > 0]
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


# --- money -----------------------------------------------------------------------------


def estimate_money(
    metrics: ModelMetrics,
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


def strength_from(training_done: TrainingDone, metrics: ModelMetrics, totals: tuple[int, int] | None) -> Strength:
    """The champion's verdict: DeLong interval from training.done, else Hanley-McNeil, else unknown.

    The validation rows and clicks come from the champion's ModelResult; older runs do not
    send them, so they are estimated as the data's rows and clicks x the validation split
    (the split is stratified by click) and the Strength says so.
    """
    champion = training_done.champion
    chosen = next((m for m in training_done.models if m.kind == champion), None)
    auc, ap, accuracy = metrics.auc, metrics.ap, metrics.val_accuracy
    low = high = None
    method: str | None = None
    val_rows = val_clicks = None
    estimated = False
    if chosen is not None:
        val_rows, val_clicks = chosen.val_rows, chosen.val_clicks
        low, high = _finite(chosen.auc_ci_low), _finite(chosen.auc_ci_high)
        if low is not None and high is not None:
            method = "DeLong"
        else:
            low = high = None
    if val_rows is None or val_clicks is None:
        split = training_done.config.validation_split
        if totals is not None and 0 < split < 1:
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
    models = [
        ModelSummary(
            kind=m.kind, label=m.label, champion=m.kind == champion,
            auc=_finite(m.metrics.auc), auc_ci_low=_finite(m.auc_ci_low), auc_ci_high=_finite(m.auc_ci_high),
            ap=_finite(m.metrics.ap),
        )
        for m in training_done.models
    ]
    label = next((m.label for m in models if m.champion), MODEL_LABELS[champion])
    return Strength(
        verdict=verdict, verdict_ko=VERDICT_KO[verdict], reasons=reasons, champion=champion, champion_label=label,
        auc=auc, auc_ci_low=low, auc_ci_high=high, ci_method=method, ap=ap, base_rate=base_rate,
        ap_lift=ap_lift(ap, base_rate), val_rows=val_rows, val_clicks=val_clicks, val_counts_estimated=estimated,
        accuracy=accuracy, majority_baseline=None if base_rate is None else 1 - base_rate,
        models=models, comparison=training_done.comparison,
    )


# --- assembling ---------------------------------------------------------------------------


def gather(
    store: FileStore,
    training_done: TrainingDone,
    explanation_done: ExplanationDone,
    curve: list[dict[str, Any]],
    assumptions: MoneyAssumptions,
) -> Facts:
    """All facts of one run, from the two event payloads, the curve and the files they point to."""
    run_id, file_id = training_done.run_id, training_done.file_id
    explanation = read_explanation(store, explanation_done.location)
    names = effective_feature_names(store)
    # The explanation file has every feature with its held-out test and direction; the event only the top ones.
    items = explanation.features if explanation is not None else explanation_done.top_features

    profile = read_profile(store, file_id) if file_id else None
    # Exact totals from the data's clicked column; the profile's hour table (rows with an hour) otherwise.
    totals = clicks_from_parquet(store, file_id) if file_id else None
    if totals is None and profile is not None:
        totals = profile.totals()
    findings = (segment_findings(profile.segments, assumptions.report_min_segment_rows, totals=totals)
                if profile is not None else [])
    rows, clicks = totals if totals else (None, None)
    base_fraction = clicks / rows if rows else None

    metrics = metrics_from(training_done.metrics)
    strength = strength_from(training_done, metrics, totals)
    return Facts(
        run_id=run_id,
        file_id=file_id,
        experiment_name=training_done.experiment_name,
        best_epoch=training_done.best_epoch,
        epochs_run=training_done.epochs_run,
        duration_s=training_done.duration_s,
        config=training_done.config,
        metrics=metrics,
        features=features_from(items, names),
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
