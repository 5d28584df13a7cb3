"""What a monitoring period says about the deployed model (pure: no database, no Kafka).

``assess`` turns one ``MonitoringPeriod`` into conditions, each "bad" or "in band", that the
monitor feeds into its incidents (one incident per kind and subject: it fires once, and a later
period in band resolves it):

- ``calibration`` (subject ``model``): predicted / actual clicks outside
  [CTROPS_MONITOR_CALIBRATION_LOW, CTROPS_MONITOR_CALIBRATION_HIGH] (0.8, 1.25) AND its 95%
  interval (Poisson on the actual clicks) excludes 1, so a small period's noise does not fire it.
- ``auc_drop`` (subject ``model``): the period's AUC is below the model's validation AUC by more
  than the two AUCs' joint uncertainty: baseline - AUC > 1.96 * sqrt(se_period^2 + se_baseline^2),
  each se read off its 95% interval (``auc_drop_limit``). Both are estimates from a few hundred
  clicks: comparing the period's interval with the baseline's point alone fired on ordinary months
  (a February 0.735 [0.708, 0.761] against a validation 0.768 [0.700, 0.836] in the e2e run).
- ``feature_drift`` (subject: the feature): a top feature (importance rank <=
  CTROPS_MONITOR_DRIFT_TOP_K, or any feature when the period has no ranks) has PSI above
  CTROPS_MONITOR_DRIFT_PSI (0.2). Every feature of the period gets a condition, so an open
  incident resolves once its feature is back under the threshold (or no longer a top feature).

An unlabelled period says nothing about calibration or AUC (no condition: open incidents stay
open until labels arrive); its feature drift counts like any other.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from ctrops_common.events import (
    AucDropEvidence,
    CalibrationEvidence,
    FeatureDrift,
    FeatureDriftEvidence,
    MonitoringPeriod,
)
from ctrops_common.intervals import Z95

ModelAlertKind = Literal["calibration", "auc_drop", "feature_drift"]


@dataclass(frozen=True)
class Thresholds:
    calibration_low: float = 0.8
    calibration_high: float = 1.25
    drift_top_k: int = 10
    drift_psi: float = 0.2


@dataclass(frozen=True)
class Condition:
    kind: ModelAlertKind
    subject: str
    bad: bool
    fire: str  # the message when it opens (Korean, then English)
    resolve: str  # the message when it closes
    evidence: CalibrationEvidence | AucDropEvidence | FeatureDriftEvidence  # the alert's ``metrics``


def _r(value: float | None, digits: int = 4) -> float | None:
    return None if value is None else round(float(value), digits)


def _where(period: MonitoringPeriod) -> dict[str, Any]:
    """The ``PeriodEvidence`` fields every model alert's evidence starts with."""
    return {"period": period.period, "period_id": period.period_id, "run_id": period.run_id,
            "model_kind": period.model_kind, "rows": period.rows}


def calibration(period: MonitoringPeriod, t: Thresholds) -> Condition | None:
    m = period.metrics
    if not period.labelled or m.calibration is None or m.calibration_ci_low is None:
        return None
    ratio, low, high = m.calibration, m.calibration_ci_low, m.calibration_ci_high
    excludes_one = low > 1 or (high is not None and high < 1)
    bad = (ratio < t.calibration_low or ratio > t.calibration_high) and excludes_one
    ci = f"{low:.2f}-{'inf' if high is None else f'{high:.2f}'}"
    where = f"{period.model_kind} run {period.run_id}"
    return Condition(
        "calibration", "model", bad,
        fire=(
            f"{period.period} 기간 모델 보정 비율(예측 클릭/실제 클릭) {ratio:.2f}이(가) 허용 범위 "
            f"[{t.calibration_low:g}, {t.calibration_high:g}]를 벗어났습니다 (95% CI {ci}, "
            f"예측 {m.predicted_clicks:.0f} / 실제 {m.actual_clicks}, {where}). "
            f"Calibration in {period.period}: predicted/actual clicks {ratio:.2f} is outside "
            f"[{t.calibration_low:g}, {t.calibration_high:g}] and its 95% CI {ci} excludes 1."
        ),
        resolve=(
            f"{period.period} 기간 모델 보정 비율이 {ratio:.2f}로 정상 범위입니다 ({where}). "
            f"Resolved: calibration {ratio:.2f} in {period.period} is back in band."
        ),
        evidence=CalibrationEvidence(
            **_where(period), calibration=_r(ratio), calibration_ci_low=_r(low), calibration_ci_high=_r(high),
            predicted_clicks=_r(m.predicted_clicks, 2), actual_clicks=m.actual_clicks,
            band_low=t.calibration_low, band_high=t.calibration_high),
    )


def auc_drop_limit(period: MonitoringPeriod) -> float | None:
    """The period AUC below which its fall from the validation AUC exceeds the joint 95% uncertainty
    of the two (independent rows): baseline - 1.96 * sqrt(se_period^2 + se_baseline^2)."""
    m = period.metrics
    if not period.labelled or m.auc is None or period.baseline_auc is None:
        return None
    if m.auc_ci_low is None or m.auc_ci_high is None:
        return None
    se_period = max(m.auc_ci_high - m.auc_ci_low, 0.0) / (2 * Z95)
    low = period.baseline_auc_ci_low
    se_baseline = max(period.baseline_auc - low, 0.0) / Z95 if low is not None else 0.0
    return period.baseline_auc - Z95 * (se_period ** 2 + se_baseline ** 2) ** 0.5


def auc_drop(period: MonitoringPeriod) -> Condition | None:
    m = period.metrics
    limit = auc_drop_limit(period)
    if limit is None or m.auc is None or period.baseline_auc is None:
        return None
    baseline = period.baseline_auc
    bad = m.auc < limit
    where = f"{period.model_kind} run {period.run_id}"
    ci = f"{m.auc_ci_low:.3f}-{m.auc_ci_high:.3f}"
    return Condition(
        "auc_drop", "model", bad,
        fire=(
            f"{period.period} 기간 AUC {m.auc:.3f} (95% CI {ci})이(가) 학습 시 검증 AUC {baseline:.3f}보다 "
            f"두 추정의 95% 불확실성({limit:.3f} 미만) 이상으로 떨어졌습니다 ({where}). 재학습을 검토하세요. "
            f"AUC in {period.period} fell to {m.auc:.3f} (95% CI {ci}) from the validation AUC {baseline:.3f}: "
            f"below {limit:.3f}, a drop beyond the joint 95% uncertainty of both; consider retraining."
        ),
        resolve=(
            f"{period.period} 기간 AUC {m.auc:.3f}가 학습 시 수준으로 돌아왔습니다 ({where}). "
            f"Resolved: AUC {m.auc:.3f} in {period.period} is back within its interval of {baseline:.3f}."
        ),
        evidence=AucDropEvidence(
            **_where(period), auc=_r(m.auc), auc_ci_low=_r(m.auc_ci_low), auc_ci_high=_r(m.auc_ci_high),
            baseline_auc=_r(baseline), baseline_auc_ci_low=_r(period.baseline_auc_ci_low),
            auc_drop_limit=_r(limit), estimated_auc=_r(m.estimated_auc)),
    )


def top_features(period: MonitoringPeriod, top_k: int) -> list[FeatureDrift]:
    """The features whose drift alerts: rank <= top_k, or every feature when no rank is known."""
    ranked = [d for d in period.drift if d.importance_rank is not None]
    if not ranked:
        return list(period.drift)
    return [d for d in ranked if d.importance_rank <= top_k]


def feature_drift(period: MonitoringPeriod, t: Thresholds) -> list[Condition]:
    top = {d.feature for d in top_features(period, t.drift_top_k)}
    conditions = []
    where = f"{period.model_kind} run {period.run_id}"
    for d in period.drift:
        rank = f"중요도 {d.importance_rank}위" if d.importance_rank is not None else "중요도 미상"
        rank_en = f"importance rank {d.importance_rank}" if d.importance_rank is not None else "rank unknown"
        test = "" if d.p_value is None else f", {d.test} p={d.p_value:.2g}"
        conditions.append(Condition(
            "feature_drift", d.feature, d.feature in top and d.psi > t.drift_psi,
            fire=(
                f"{period.period} 기간 주요 피처 '{d.feature}'({rank})의 분포가 학습 데이터와 달라졌습니다 "
                f"(PSI {d.psi:.2f} > {t.drift_psi:g}{test}, {where}). "
                f"Top feature '{d.feature}' ({rank_en}) drifted in {period.period}: PSI {d.psi:.2f} > {t.drift_psi:g}."
            ),
            resolve=(
                f"{period.period} 기간 피처 '{d.feature}'의 분포가 안정되었습니다 (PSI {d.psi:.2f}). "
                f"Resolved: feature '{d.feature}' is stable in {period.period} (PSI {d.psi:.2f})."
            ),
            evidence=FeatureDriftEvidence(
                **_where(period), feature=d.feature, psi=_r(d.psi), test=d.test, statistic=_r(d.statistic),
                p_value=d.p_value, importance_rank=d.importance_rank, psi_threshold=t.drift_psi),
        ))
    return conditions


def assess(period: MonitoringPeriod, thresholds: Thresholds | None = None) -> list[Condition]:
    """Every condition the period decides, calibration and AUC first, then features by PSI."""
    t = thresholds or Thresholds()
    found = [calibration(period, t), auc_drop(period)]
    return [c for c in found if c is not None] + feature_drift(period, t)


def is_newer_or_same(period: str, newest: str | None) -> bool:
    """Labels of one bucket sort in time order ("2026-03" < "2026-04", "2026-W09" < "2026-W10")."""
    return newest is None or period >= newest
