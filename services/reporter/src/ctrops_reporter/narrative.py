"""The report's words: an LLM writes them when one is configured, rules write them otherwise.

Numbers never come from the LLM. The facts (metrics, features, segments, money) and the
candidate actions with their computed impact are fixed here; the LLM only phrases the
summary, the insights and the actions' text, and its answer must pass a pydantic schema.
Any failure - no key, a timeout, an HTTP error, an answer that is not the JSON asked
for - falls back to the deterministic Korean narrative built from the same facts, and
``model_used`` says which one wrote the report.

Claims follow the evidence (evidence.py): the model's strength verdict leads; a weak
model gets no money figure and no action built on it, only what data would help; money
is always a range with its assumptions; a segment is a finding only at a
Benjamini-Hochberg adjusted p < 0.05, and no action is built on one that is not. The LLM
gets the same rules and an answer that states money the facts do not support is refused.

Features: only those the held-out test supports (adjusted p < 0.05) are called click
drivers, each with its direction of effect, strongest evidence first (the lower end of the
AUC drop's 95% interval); the correlation insight names the most correlated pairs or says
none reaches the threshold. Actions are ordered by ``PRIORITY_RULE`` (effect x confidence).
"""

from __future__ import annotations

import json
import logging
import re
import time
from typing import Any, Literal

from pydantic import BaseModel, Field, ValidationError

from ctrops_common.documents import ActionDoc as Action
from ctrops_common.documents import InsightDoc as Insight

from .evidence import SIGNIFICANCE
from .facts import Facts, Feature, SegmentFinding, drivers
from .settings import ReporterSettings

log = logging.getLogger(__name__)

DETERMINISTIC_MODEL = "deterministic-ko-v1"

ICONS = {"success": "📈", "warning": "⚠️", "info": "💡"}
PRIORITY_COLORS = {"high": "#ef4444", "medium": "#f59e0b", "low": "#10b981"}


class Narrative(BaseModel):
    summary: str
    insights: list[Insight]
    actions: list[Action]
    model_used: str
    source: Literal["llm", "deterministic"]
    fallback_reason: str | None = None


# --- formatting ---------------------------------------------------------------------


def pct(fraction: float | None, digits: int = 1) -> str:
    return "없음" if fraction is None else f"{100 * fraction:.{digits}f}%"


def num(value: float | None, digits: int = 3) -> str:
    return "없음" if value is None else f"{value:.{digits}f}"


def won(value: float | None) -> str:
    return "없음" if value is None else f"{value:,.0f}원"


def p_text(p: float | None) -> str:
    if p is None:
        return "p=없음"
    return "p<0.001" if p < 0.001 else f"p={p:.3f}"


def feature_label(feature: Feature) -> str:
    return feature.name if feature.description == feature.name else f"{feature.name}({feature.description})"


def won_range(low: float | None, high: float | None) -> str:
    if low is None or high is None:
        return "없음"
    return f"{low:+,.0f}원 ~ {high:+,.0f}원"


def ci_text(low: float | None, high: float | None, digits: int = 3) -> str:
    return "95% 신뢰구간 알 수 없음" if low is None or high is None else f"95% CI {low:.{digits}f}~{high:.{digits}f}"


def strength_line(facts: Facts) -> str:
    """The headline: verdict, AUC with its interval, AP beside the base rate (cover and summary lead with it)."""
    s = facts.strength
    lift = f", 기준 클릭률 {pct(s.base_rate, 2)}의 {s.ap_lift:.1f}배" if s.ap_lift is not None else ""
    return (f"모델 신뢰도: {s.verdict_ko}. ROC AUC {num(s.auc)} ({ci_text(s.auc_ci_low, s.auc_ci_high)}), "
            f"평균 정밀도(AP) {num(s.ap)}{lift}.")


def accuracy_line(facts: Facts) -> str | None:
    """Accuracy only beside the majority-class baseline (always answering 'no click')."""
    s = facts.strength
    if s.accuracy is None or s.majority_baseline is None:
        return None
    return (f"정확도 {pct(s.accuracy, 2)}는 모두 '클릭 안 함'으로 답해도 얻는 {pct(s.majority_baseline, 2)}와 "
            f"비교해야 하는 값이라 모델 평가에 쓰지 않습니다.")


def data_needed(facts: Facts) -> list[str]:
    """What data would let a weak model show a signal, with the run's own numbers."""
    s = facts.strength
    clicks = f"현재 검증 클릭 {s.val_clicks:,}회" if s.val_clicks is not None else "검증 클릭 수 불명"
    items = [
        f"클릭이 더 많은 데이터: {clicks}. AUC 신뢰구간의 폭은 클릭 수의 제곱근에 반비례하므로 폭을 절반으로 "
        "줄이려면 클릭이 약 4배 필요합니다.",
        f"더 많은 행(기간): 현재 {facts.rows:,}행." if facts.rows else "더 많은 행(기간)의 로그.",
        "클릭과 관련 있을 만한 변수: 광고 소재·지면 맥락, 사용자의 과거 클릭·관심사, 노출 시각 등.",
    ]
    return items


HIGH_PRIORITY, MEDIUM_PRIORITY = 10.0, 3.0  # percent of CTR change at the low end of the 95% range

PRIORITY_RULE = (
    "실행 과제의 우선순위는 효과 크기 × 신뢰도로 정합니다: 과제를 실행할 때 같은 노출에서 기대되는 CTR(매출) "
    "변화율의 95% 범위 하한(보수적 추정)이 예상 효과이고, 그 값이 "
    f"{HIGH_PRIORITY:g}% 이상이면 높음, {MEDIUM_PRIORITY:g}% 이상이면 중간, 그 밖은 낮음입니다. 과제는 예상 효과가 큰 "
    "순서로 싣습니다. 보정 p ≥ 0.05인 세그먼트, 하한이 평균을 넘지 못하는 세그먼트, '약함' 모델로는 과제를 만들지 "
    "않습니다. 예측 확률 재보정은 CTR을 바꾸지 않으므로 예상 효과 0(낮음)입니다."
)


def priority_of(impact: float) -> Literal["high", "medium", "low"]:
    return "high" if impact >= HIGH_PRIORITY else "medium" if impact >= MEDIUM_PRIORITY else "low"


def driver_line(f: Feature) -> str:
    """'시간대(hour): 20시, 21시에 클릭 증가 (해당 값 CTR ...), AUC 감소 0.0123 (95% CI ...), 보정 p<0.001'."""
    parts = [f"{feature_label(f)}: {f.direction_ko or '방향 정보 없음'}"]
    if f.effect_ko:
        parts[0] += f" ({f.effect_ko})"
    if f.auc_drop is not None:
        interval = (f" (95% CI {f.auc_drop_low:.4f}~{f.auc_drop_high:.4f})"
                    if f.auc_drop_low is not None and f.auc_drop_high is not None else "")
        parts.append(f"AUC 감소 {f.auc_drop:.4f}{interval}")
    parts.append(f"보정 {p_text(f.p_value)}")
    return ", ".join(parts)


def correlation_sentence(facts: Facts) -> str | None:
    """The correlated pairs in one sentence, or that none reaches the threshold; None without a matrix."""
    c = facts.correlation
    if c is None:
        return None
    if not c.pairs_known:
        return (f"상위 {len(c.features)}개 변수 사이의 상관계수 절댓값은 최대 {c.max_abs_off_diagonal:.2f}입니다 "
                "(상관 쌍 목록이 없는 이전 형식의 분석).")
    if not c.pairs:
        return (f"분석한 변수 중 |r| ≥ {c.threshold:g}인 쌍은 없습니다(상위 변수 사이 최대 |r| = "
                f"{c.max_abs_off_diagonal:.2f}). 변수들이 서로 거의 독립이라 각 변수의 효과를 따로 읽어도 됩니다.")
    top = c.pairs[0]
    return (f"|r| ≥ {c.threshold:g}인 변수 쌍이 {len(c.pairs)}개 있습니다. 가장 강한 쌍은 {top.names[0]}({top.features[0]})와 "
            f"{top.names[1]}({top.features[1]}) (r = {top.r:+.2f})입니다.")


# --- actions with computed impact -------------------------------------------------------


SEGMENT_ACTION_TITLES = {
    "hour": "최적 시간대 집중 노출",
    "day_of_week": "요일별 예산 조정",
    "inventory_id": "고효율 광고 지면 확대",
    "age_group_gender": "핵심 고객군 타겟팅",
}


def _action(id_: str, title: str, description: str, impact: float, duration: str, cost: str) -> Action:
    priority = priority_of(impact)
    return Action(id=id_, title=title, description=description, priority=priority, impact=round(impact, 2),
                  duration=duration, cost=cost, color=PRIORITY_COLORS[priority])


SEGMENT_FEATURES = {"hour": ("hour",), "day_of_week": ("day_of_week",), "inventory_id": ("inventory_id",),
                    "age_group_gender": ("age_group", "gender")}


def _feature_evidence(facts: Facts, dimension: str) -> str:
    """What the held-out feature test says about the segment's columns, so no page contradicts another."""
    shown = {f.name: f for f in facts.features}
    tested = [shown[c] for c in SEGMENT_FEATURES.get(dimension, ()) if c in shown]
    if not tested:
        return ""
    supported = [f for f in tested if f.significant]
    if supported:
        return " 변수 검정도 같은 결론입니다: " + "; ".join(
            f"{feature_label(f)} {f.direction_ko or ''} (보정 {p_text(f.p_value)})".replace("  ", " ")
            for f in supported) + "."
    return (" 모델의 변수 검정에서는 " + ", ".join(f"{feature_label(f)}(보정 {p_text(f.p_value)})" for f in tested)
            + "이 유의하지 않아, 이 과제는 세그먼트 CTR 차이만을 근거로 합니다.")


def candidate_actions(facts: Facts) -> list[Action]:
    """Actions whose impact (expected CTR change in percent, the conservative end) follows from the facts.

    Model targeting and recalibration only when the model is not weak and (targeting) the
    lower end of its revenue range is a gain; a segment action only for segments whose
    Benjamini-Hochberg adjusted p < 0.05 and whose CTR interval's lower end beats the
    average. Impact is the lower end of the 95% range, so priority is effect x confidence.
    """
    actions = []
    money = facts.money
    weak = facts.strength.verdict == "weak"
    if not weak and money.computable and (money.revenue_change_low_percent or 0) > 0:
        actions.append(_action(
            "model_targeting",
            "모델 기반 타겟팅 파일럿",
            f"노출의 {pct(money.effective_targeted_share)}를 모델이 클릭 가능성이 높다고 판단한 사용자"
            f"(예측 대상의 CTR {pct(money.targeted_ctr, 2)}, 95% 범위 {pct(money.targeted_ctr_low, 2)}~"
            f"{pct(money.targeted_ctr_high, 2)}; 전체 {pct(money.base_ctr, 2)})에게 우선 배정합니다. "
            f"같은 비용으로 예상 클릭이 월 {money.clicks_base:,.0f}회에서 {money.clicks_model_low:,.0f}~"
            f"{money.clicks_model_high:,.0f}회로 늘어납니다(추정).",
            money.revenue_change_low_percent or 0.0, "2주 파일럿 후 확대", "추가 매체비 없음 (기존 예산 재배분)",
        ))
    share = money.targeted_share
    for finding in facts.segments:
        base = finding.base_ctr
        holding = [x for x in finding.best if x.significant and base > 0 and (x.ctr_low or 0) > base]
        if not holding:
            continue
        title = SEGMENT_ACTION_TITLES[finding.dimension]
        top = holding[0]
        labels = ", ".join(f"{x.label}({x.ctr:.2f}%)" for x in holding)
        worst = ", ".join(x.label for x in finding.worst if x.significant and (x.ctr_high or base) < base)
        description = (
            f"CTR이 높은 {labels}에 노출의 {pct(share, 0)}를 옮깁니다 "
            f"(평균 CTR {base:.2f}%, 최고 {top.lift:.2f}배, CTR 95% 범위 {top.ctr_low:.2f}~{top.ctr_high:.2f}%, "
            f"보정 p {p_text(top.p_adjusted)})."
        )
        if worst:
            description += f" 효율이 낮은 {worst}의 입찰은 낮춥니다."
        description += _feature_evidence(facts, finding.dimension)
        actions.append(_action(
            f"segment_{finding.dimension}", title, description,
            100 * share * ((top.ctr_low or base) / base - 1), "1주", "추가 비용 없음 (입찰·예산 조정)",
        ))
    calibration = facts.metrics.calibration
    if not weak and calibration is not None and abs(calibration - 1) > 0.1:
        direction = "많게" if calibration > 1 else "적게"
        actions.append(_action(
            "calibration",
            "예측 확률 재보정",
            f"모델이 예측한 클릭 수가 실제보다 {abs(calibration - 1) * 100:.1f}% {direction} 나옵니다"
            f"(보정 비율 {calibration:.2f}). 입찰가 산정 전에 실제 CTR 기준으로 확률을 재보정합니다. "
            "CTR 자체를 바꾸는 과제가 아니라 예상 효과는 0입니다(입찰가 오차를 줄임).",
            0.0, "3일", "ML 엔지니어 공수",
        ))
    actions.sort(key=lambda a: a.impact, reverse=True)
    return actions


# --- the deterministic narrative -------------------------------------------------------------


def _segment_insight(finding: SegmentFinding) -> Insight:
    top = finding.best[0]
    significant = top.significant and top.lift > 1
    family = f"세그먼트 검정 {finding.tests_in_family}개에 Benjamini-Hochberg 보정"

    def line(x) -> str:
        return (f"{x.label}: CTR {x.ctr:.2f}% (95% 범위 {x.ctr_low:.2f}~{x.ctr_high:.2f}%, {x.lift:.2f}배, "
                f"노출 {x.rows:,}회, 보정 {p_text(x.p_adjusted)})")

    details = [line(x) for x in finding.best] + [f"낮음 - {line(x)}" for x in finding.worst]
    if significant:
        message = (f"{top.label}의 CTR이 {top.ctr:.2f}%로 평균 {finding.base_ctr:.2f}%의 {top.lift:.2f}배이며, "
                   f"{family} 후에도 유의합니다(보정 {p_text(top.p_adjusted)}).")
        action = f"{top.label} 중심으로 노출을 늘리는 A/B 테스트를 권장합니다."
    else:
        message = (f"가장 높은 {top.label}의 CTR은 {top.ctr:.2f}%(평균 {finding.base_ctr:.2f}%)지만 {family} 후 "
                   f"유의하지 않습니다(보정 {p_text(top.p_adjusted)}). 데이터가 이 차이를 보여 주지 않았습니다.")
        action = "이 표를 근거로 한 실행 과제는 없습니다. 같은 세그먼트의 노출·클릭이 더 쌓이면 다시 확인하세요."
    return Insight(
        icon=ICONS["success" if significant else "info"], type="success" if significant else "info",
        title=finding.title, message=message, details=details, action=action,
    )


def _strength_insight(facts: Facts) -> Insight:
    s = facts.strength
    kind = {"strong": "success", "usable": "info", "weak": "warning"}[s.verdict]
    method = {"DeLong": "DeLong", "Hanley-McNeil": "Hanley-McNeil 근사"}.get(s.ci_method or "", "없음")
    details = [f"판정 근거: {r}" for r in s.reasons]
    details += [f"ROC AUC: {num(s.auc)} ({ci_text(s.auc_ci_low, s.auc_ci_high)}, 구간 계산: {method})",
                f"AP: {num(s.ap)} (무작위 순위의 AP = 기준 클릭률 {pct(s.base_rate, 2)})"]
    if s.val_rows is not None and s.val_clicks is not None:
        details.append(f"검증 데이터: {s.val_rows:,}행, 클릭 {s.val_clicks:,}회"
                       + (" (전체 데이터 x 검증 비율로 추정)" if s.val_counts_estimated else ""))
    details.append("기준: AUC 하한 ≤ 0.55 또는 AP/기준 클릭률 < 1.5 → 약함; 하한 ≥ 0.70 이고 3배 이상 → 강함; "
                   "그 외 → 사용 가능")
    if s.verdict == "weak":
        message = (f"{s.champion_label} 모델의 신뢰도는 '약함'입니다. 검증 데이터가 타겟팅에 쓸 만한 신호를 보여 주지 "
                   "않았으므로 이 모델에 근거한 금액 추정과 실행 과제를 싣지 않았습니다.")
        details += [f"도움이 될 데이터: {d}" for d in data_needed(facts)]
        action = "위의 데이터를 보강해 다시 학습한 뒤 판정을 확인하세요."
    elif s.verdict == "usable":
        message = (f"{s.champion_label} 모델의 신뢰도는 '사용 가능'입니다. 순위 구분력이 우연 이상임이 확인되었으나 "
                   "효과의 크기는 범위로 읽고 파일럿으로 검증해야 합니다.")
        action = "작은 파일럿(A/B)으로 효과를 확인한 뒤 확대하세요."
    else:
        message = (f"{s.champion_label} 모델의 신뢰도는 '강함'입니다. 95% 신뢰구간 전체가 충분한 변별력을 보이고 "
                   "상위 순위에 클릭이 기준의 3배 이상 모입니다.")
        action = "이 모델의 점수를 타겟팅 우선순위로 사용할 수 있습니다."
    return Insight(icon=ICONS[kind], type=kind, title=f"모델 신뢰도: {s.verdict_ko}", message=message,
                   details=details, action=action)


def _comparison_insight(facts: Facts) -> Insight | None:
    s = facts.strength
    c = s.comparison
    if len(s.models) < 2 or c is None:
        return None
    diff, low, high, p = c.difference, c.ci_low, c.ci_high, c.p_value
    significant = p < SIGNIFICANCE
    return Insight(
        icon=ICONS["info"], type="info", title="모델 비교 (같은 검증 데이터)",
        message=(f"챔피언은 {s.champion_label}입니다. LightGBM - LSTM+MLP AUC 차이 {diff:+.3f} "
                 f"(95% CI {low:+.3f}~{high:+.3f}, DeLong 대응 검정 {p_text(p)}): "
                 + ("차이가 유의합니다." if significant else "두 모델의 차이는 유의하지 않습니다.")),
        details=[f"{m.label}{' (챔피언)' if m.champion else ''}: AUC {num(m.auc)} "
                 f"({ci_text(m.auc_ci_low, m.auc_ci_high)}), AP {num(m.ap)}" for m in s.models],
        action="두 모델의 차이가 유의하지 않으면 운영이 단순한 쪽을 써도 됩니다." if not significant
        else "챔피언 모델을 사용합니다.",
    )


def _money_insight(facts: Facts) -> Insight | None:
    money = facts.money
    if not money.computable:
        return None
    up = (money.revenue_change_low_percent or 0) > 0
    return Insight(
        icon=ICONS["success" if up else "warning"], type="success" if up else "warning",
        title="예상 비즈니스 효과 (추정 범위)",
        message=("가정한 조건에서 같은 비용으로 월 매출이 "
                 f"{won_range(money.additional_revenue_low_krw, money.additional_revenue_high_krw)}"
                 f"({money.revenue_change_low_percent:+.1f}%~{money.revenue_change_high_percent:+.1f}%) 달라질 것으로 "
                 "추정됩니다(95% 범위)."
                 + ("" if up else " 범위가 0을 포함하므로 이득이 확인되지 않았습니다.")),
        details=[money_assumptions_text(facts),
                 f"ROI(=(매출-비용)/비용): {money.roi_base_percent:.1f}% → {money.roi_model_low_percent:.1f}%~"
                 f"{money.roi_model_high_percent:.1f}% (변화 {money.roi_change_low_points:+.1f}~"
                 f"{money.roi_change_high_points:+.1f}%p)",
                 f"유효 CPC: {won(money.effective_cpc_base_krw)} → {won(money.effective_cpc_model_krw)} "
                 f"(CPC 구매 가정 {won(money.cpc_krw)})"],
        action="파일럿 캠페인으로 실제 효과를 검증한 뒤 확대하세요.",
    )


def money_assumptions_text(facts: Facts) -> str:
    money = facts.money
    return (f"가정: 월 노출 {money.monthly_impressions:,}회, CPM {won(money.cpm_krw)}, 전환율 {pct(money.conversion_rate)}, "
            f"전환 가치 {won(money.conversion_value_krw)}, 모델 타겟팅 비중 {pct(money.effective_targeted_share)}; "
            f"범위는 모델이 고른 검증 노출의 CTR {pct(money.targeted_ctr, 2)}의 Wilson 95% 구간 "
            f"{pct(money.targeted_ctr_low, 2)}~{pct(money.targeted_ctr_high, 2)}에서 나옵니다.")


def _drivers_insight(facts: Facts) -> Insight:
    """Which features the held-out test supports, with their direction; the rest are not called drivers."""
    weak = facts.strength.verdict == "weak"
    found = drivers(facts.features)
    others = [f for f in facts.features if not f.significant]
    if found:
        message = (f"모델이 학습하지 않은 검증 데이터에서 클릭 신호가 확인된 변수(보정 p<{SIGNIFICANCE:g})는 "
                   f"{len(found)}개입니다. 근거가 강한 순서(AUC 감소의 95% 하한)로: "
                   + "; ".join(f"{feature_label(f)} — {f.direction_ko or '방향 정보 없음'}" for f in found[:3]) + ".")
        action = "확인된 요인의 방향(위)을 타겟팅·소재 조건에 반영하고 A/B 테스트로 효과를 확인하세요."
    else:
        message = (f"검증 데이터에서 클릭 신호가 확인된 변수는 없습니다(보정 p<{SIGNIFICANCE:g}인 변수 없음). "
                   "모델의 중요도 순위를 클릭 요인으로 읽을 수 없습니다.")
        action = "클릭과 관련 있을 만한 변수나 더 많은 클릭을 모은 뒤 다시 확인하세요."
    if weak:
        message += " 다만 모델 신뢰도가 '약함'이라 이 결과에 근거한 실행 과제는 싣지 않았습니다."
        action = "모델을 보강한 뒤 다시 확인하세요."
    details = [driver_line(f) for f in found[:6]]
    if others:
        details.append("모델이 썼지만 검증에서 유의하지 않은 변수(클릭 요인으로 보지 않음): "
                       + ", ".join(f"{feature_label(f)}(보정 {p_text(f.p_value)})" for f in others[:5]))
    return Insight(icon=ICONS["success" if found and not weak else "info"],
                   type="success" if found and not weak else "info",
                   title="핵심 클릭 요인", message=message, details=details, action=action)


def _correlation_insight(facts: Facts) -> Insight | None:
    sentence = correlation_sentence(facts)
    if sentence is None:
        return None
    c = facts.correlation
    assert c is not None
    details = [f"{p.names[0]}({p.features[0]}) ↔ {p.names[1]}({p.features[1]}): r = {p.r:+.2f}" for p in c.pairs[:5]]
    if c.rows:
        details.append(f"피어슨 상관계수, {c.rows:,}행 기준" + (f", 기준 |r| ≥ {c.threshold:g}" if c.threshold else ""))
    action = ("상관이 큰 두 변수는 효과를 나눠 가지므로 한쪽의 중요도나 p-value만 보고 다른 쪽을 버리지 마세요."
              if c.pairs else "변수를 하나씩 해석해도 됩니다.")
    return Insight(icon=ICONS["info"], type="info", title="변수 간 상관관계", message=sentence, details=details,
                   action=action)


def deterministic(facts: Facts, fallback_reason: str | None = None) -> Narrative:
    m = facts.metrics
    s = facts.strength
    weak = s.verdict == "weak"
    insights: list[Insight] = [_strength_insight(facts)]
    comparison = _comparison_insight(facts)
    if comparison is not None:
        insights.append(comparison)
    accuracy = accuracy_line(facts)
    if accuracy is not None:
        insights.append(Insight(
            icon=ICONS["info"], type="info", title="정확도 해석 주의",
            message=accuracy + " 순위 지표(AUC, AP)로 판단해야 합니다.",
            details=[f"정밀도: {pct(m.precision)}", f"재현율: {pct(m.recall)}", f"F1: {num(m.f1)}",
                     f"판정 임계값: {num(m.threshold)}", f"로그 손실: {num(m.logloss, 4)}"],
            action="캠페인 평가는 AUC·AP와 실제 CTR 향상으로 하세요.",
        ))
    if m.calibration is not None:
        off = abs(m.calibration - 1) > 0.2
        insights.append(Insight(
            icon=ICONS["warning" if off else "success"], type="warning" if off else "success",
            title="예측 확률 보정",
            message=f"예측 클릭 수 / 실제 클릭 수 = {m.calibration:.2f}"
                    + (" 로 보정이 필요합니다." if off else " 로 예측 CTR을 그대로 써도 됩니다."),
            details=[f"보정 비율: {m.calibration:.3f}", f"로그 손실: {num(m.logloss, 4)}"],
            action="입찰 전에 확률을 재보정하세요." if off else "정기적으로 보정 비율을 모니터링하세요.",
        ))
    if facts.features:
        insights.append(_drivers_insight(facts))
    correlation = _correlation_insight(facts)
    if correlation is not None:
        insights.append(correlation)
    for finding in facts.segments:
        if finding.best:
            insights.append(_segment_insight(finding))
    if not facts.segments_available:
        insights.append(Insight(
            icon=ICONS["info"], type="info", title="세그먼트 데이터 없음",
            message="이 데이터에는 시간대·고객군·지면별 통계가 없어 세그먼트 분석을 하지 않았습니다.",
            details=[], action="hour, age_group, gender, inventory_id 열을 포함해 업로드하세요.",
        ))
    money = _money_insight(facts)
    if money is not None:
        insights.append(money)

    return Narrative(summary=_summary(facts), insights=insights, actions=candidate_actions(facts),
                     model_used=DETERMINISTIC_MODEL, source="deterministic", fallback_reason=fallback_reason)


def _summary(facts: Facts) -> str:
    s = facts.strength
    base = facts.base_ctr / 100 if facts.base_ctr is not None else None
    parts = [
        f"실험 '{facts.experiment_name}'의 CTR 예측 모델({s.champion_label}) — {strength_line(facts)}",
    ]
    accuracy = accuracy_line(facts)
    if accuracy is not None:
        parts.append(accuracy)
    if base is not None:
        parts.append(f"데이터의 실제 CTR은 {pct(base, 2)}({facts.clicks:,}/{facts.rows:,})입니다.")
    if s.verdict == "weak":
        parts.append("검증 데이터는 타겟팅에 쓸 만한 신호를 보여 주지 않았으므로 이 모델에 근거한 금액과 실행 과제는 "
                     "싣지 않았습니다. 도움이 될 데이터: 클릭이 더 많은 데이터, 더 많은 행, 클릭과 관련 있을 만한 변수.")
    elif facts.features:
        supported = drivers(facts.features)
        if supported:
            parts.append("검증 데이터에서 확인된 클릭 요인(보정 p<0.05, 근거가 강한 순): "
                         + "; ".join(f"{feature_label(f)} — {f.direction_ko or '방향 정보 없음'}" for f in supported[:3])
                         + ".")
        else:
            parts.append("검증 데이터에서 클릭 신호가 확인된 변수는 없었습니다(모든 변수의 보정 p≥0.05).")
    found = [(finding, x) for finding in facts.segments for x in finding.best[:1] if x.significant and x.lift > 1]
    for finding, top in found:
        parts.append(f"{finding.title}: {top.label}의 CTR이 {top.ctr:.2f}%로 평균의 {top.lift:.2f}배입니다"
                     f"(보정 {p_text(top.p_adjusted)}).")
    if facts.segments and not found:
        parts.append("세그먼트별 CTR 차이는 다중검정 보정 후 유의하지 않았습니다.")
    c = facts.correlation
    if c is not None and c.pairs_known:
        if c.pairs:
            top = c.pairs[0]
            parts.append(f"변수 간 상관: |r| ≥ {c.threshold:g}인 쌍 {len(c.pairs)}개, 가장 강한 쌍은 "
                         f"{top.names[0]}–{top.names[1]} (r = {top.r:+.2f})입니다.")
        else:
            parts.append(f"분석한 변수 중 |r| ≥ {c.threshold:g}인 상관 쌍은 없습니다.")
    money = facts.money
    if money.computable:
        parts.append(
            f"노출의 {pct(money.effective_targeted_share)}를 모델이 고른 사용자에게 배정하면 같은 비용으로 "
            f"월 매출이 {won_range(money.additional_revenue_low_krw, money.additional_revenue_high_krw)}"
            f"({money.revenue_change_low_percent:+.1f}%~{money.revenue_change_high_percent:+.1f}%) 달라질 것으로 "
            f"추정됩니다(95% 범위; 가정: 월 노출 {money.monthly_impressions:,}회, CPM {won(money.cpm_krw)}, "
            f"전환율 {pct(money.conversion_rate)}, 전환 가치 {won(money.conversion_value_krw)})."
        )
    elif s.verdict != "weak":
        parts.append(money.reason)
    return " ".join(parts)


# --- the LLM narrative ---------------------------------------------------------------------------


class LlmInsight(BaseModel):
    type: Literal["success", "warning", "info"]
    title: str = Field(min_length=1, max_length=200)
    message: str = Field(min_length=1, max_length=2000)
    details: list[str] = Field(default_factory=list, max_length=10)
    action: str = Field("", max_length=1000)


class LlmAction(BaseModel):
    id: str
    title: str = Field(min_length=1, max_length=200)
    description: str = Field(min_length=1, max_length=2000)
    duration: str = Field("", max_length=100)
    cost: str = Field("", max_length=200)


class LlmAnswer(BaseModel):
    summary: str = Field(min_length=10, max_length=4000)
    insights: list[LlmInsight] = Field(min_length=1, max_length=10)
    actions: list[LlmAction] = Field(default_factory=list, max_length=20)


ANSWER_SCHEMA = {
    "type": "object",
    "additionalProperties": False,
    "required": ["summary", "insights", "actions"],
    "properties": {
        "summary": {"type": "string"},
        "insights": {"type": "array", "items": {
            "type": "object", "additionalProperties": False,
            "required": ["type", "title", "message", "details", "action"],
            "properties": {
                "type": {"type": "string", "enum": ["success", "warning", "info"]},
                "title": {"type": "string"}, "message": {"type": "string"},
                "details": {"type": "array", "items": {"type": "string"}}, "action": {"type": "string"},
            },
        }},
        "actions": {"type": "array", "items": {
            "type": "object", "additionalProperties": False,
            "required": ["id", "title", "description", "duration", "cost"],
            "properties": {k: {"type": "string"} for k in ("id", "title", "description", "duration", "cost")},
        }},
    },
}

SYSTEM_PROMPT = (
    "당신은 SK Planet 광고 플랫폼의 시니어 마케팅 데이터 분석가입니다. 마케터가 읽을 CTR 예측 모델 "
    "보고서를 한국어로 씁니다. 아래 사실(JSON)에 있는 숫자만 사용하고 새로운 숫자를 만들지 마세요. "
    "규칙: (1) 요약은 model_strength의 판정(verdict_ko)을 말로 밝히고 ROC AUC와 그 95% 신뢰구간, AP와 기준 "
    "클릭률로 시작합니다. (2) 정확도는 majority_baseline(모두 '클릭 안 함'의 정확도) 옆에서만 언급하고 성과로 "
    "내세우지 마세요. (3) money_estimate.computable이 false이면 금액·ROI·매출 변화를 어떤 형태로도 쓰지 마세요. "
    "true이면 금액은 제공된 범위(low~high)로만, 가정과 함께 추정치라고 밝히세요. (4) verdict가 weak이면 데이터가 "
    "쓸 만한 신호를 보여 주지 않았다고 말하고, 모델에 근거한 효과나 실행을 권하지 말고 data_needed의 데이터를 "
    "권하세요. (5) 세그먼트 차이는 significant가 true(보정 p<0.05)인 것만 유의하다고 말하고, 나머지는 데이터가 "
    "차이를 보여 주지 않았다고 쓰세요. (6) 변수는 top_features의 significant가 true인 것(drivers)만 클릭 요인이라 "
    "부르고, 각 요인의 direction_ko(어떤 값에서 클릭이 느는지)를 함께 쓰세요. significant가 false인 변수를 요인이라 "
    "부르거나 그것으로 실행을 권하지 마세요. (7) correlation.pairs가 있으면 가장 강한 쌍과 r을, 없으면 note_ko처럼 "
    "기준 이상인 쌍이 없다고 쓰세요. (8) 실행 과제의 순서와 우선순위는 priority_rule대로 이미 정해져 있습니다. "
    "반드시 지정된 JSON 형식으로만 답하세요."
)


def facts_for_prompt(facts: Facts, actions: list[Action]) -> dict[str, Any]:
    """The facts the LLM sees, rounded so the prompt stays short and the numbers recognisable."""
    r = lambda v, d=4: None if v is None else round(v, d)  # noqa: E731
    m, st, money = facts.metrics, facts.strength, facts.money
    money_block: dict[str, Any] = {"computable": money.computable, "reason": money.reason or None}
    if money.computable:
        money_block |= {
            "assumptions": {"monthly_impressions": money.monthly_impressions, "cpm_krw": money.cpm_krw,
                            "cpc_krw": money.cpc_krw, "conversion_rate": money.conversion_rate,
                            "conversion_value_krw": money.conversion_value_krw,
                            "targeted_share": r(money.effective_targeted_share)},
            "targeted_ctr_range_percent": [r(100 * (money.targeted_ctr_low or 0), 3),
                                           r(100 * (money.targeted_ctr_high or 0), 3)],
            "additional_revenue_krw_per_month_range": [round(money.additional_revenue_low_krw or 0),
                                                       round(money.additional_revenue_high_krw or 0)],
            "revenue_change_percent_range": [r(money.revenue_change_low_percent, 2),
                                             r(money.revenue_change_high_percent, 2)],
            "roi_percent_base": r(money.roi_base_percent, 1),
            "roi_change_points_range": [r(money.roi_change_low_points, 1), r(money.roi_change_high_points, 1)],
            "range_method": "Wilson 95% interval of the precision among the validation rows the model targets",
        }
    return {
        "run": {"run_id": facts.run_id, "experiment_name": facts.experiment_name, "best_epoch": facts.best_epoch,
                "epochs_run": facts.epochs_run, "rows": facts.rows, "clicks": facts.clicks,
                "base_ctr_percent": r(facts.base_ctr)},
        "model_strength": {
            "verdict": st.verdict, "verdict_ko": st.verdict_ko, "reasons": st.reasons,
            "champion": st.champion_label, "roc_auc": r(st.auc), "auc_ci95": [r(st.auc_ci_low), r(st.auc_ci_high)],
            "auc_ci_method": st.ci_method, "average_precision": r(st.ap),
            "base_rate_percent": r(None if st.base_rate is None else 100 * st.base_rate),
            "ap_lift": r(st.ap_lift, 2), "validation_rows": st.val_rows, "validation_clicks": st.val_clicks,
            "accuracy": r(st.accuracy), "majority_baseline": r(st.majority_baseline),
            "rule": "weak: AUC CI low <= 0.55 or AP/base < 1.5; strong: CI low >= 0.70 and AP/base >= 3; else usable",
            "data_needed": data_needed(facts) if st.verdict == "weak" else [],
            "models": [mm.model_dump() for mm in st.models],
            "comparison": None if st.comparison is None else st.comparison.model_dump(mode="json"),
        },
        "metrics": {
            "accuracy": r(m.val_accuracy), "precision": r(m.precision), "recall": r(m.recall), "f1": r(m.f1),
            "roc_auc": r(m.auc), "average_precision": r(m.ap), "logloss": r(m.logloss),
            "calibration_predicted_over_actual": r(m.calibration), "competition_score": r(m.score),
            "threshold": r(m.threshold),
        },
        "top_features": [
            {"feature": f.name, "description": f.description, "group": f.group, "importance": r(f.importance),
             "p_value": r(f.p_value, 6), "p_value_raw": r(f.p_value_raw, 6), "significant": f.significant,
             "ci95": [r(f.ci_low), r(f.ci_high)], "auc_drop": r(f.auc_drop, 5),
             "auc_drop_ci95": [r(f.auc_drop_low, 5), r(f.auc_drop_high, 5)], "direction_ko": f.direction_ko,
             "observed_ctr": f.effect_ko}
            for f in facts.features[:10]
        ],
        "drivers": [f.name for f in drivers(facts.features)],
        "drivers_rule": "significant = Benjamini-Hochberg adjusted p (held-out permutation test of the AUC drop) "
                        "< 0.05; drivers ordered by the lower end of the AUC drop's 95% interval",
        "correlation": None if facts.correlation is None else {
            "threshold": facts.correlation.threshold,
            "pairs": [{"features": list(p.features), "names": list(p.names), "r": r(p.r, 3)}
                      for p in facts.correlation.pairs[:10]],
            "note_ko": correlation_sentence(facts),
        },
        "priority_rule": PRIORITY_RULE,
        "segments_available": facts.segments_available,
        "segments": [
            {"dimension": s.dimension, "title": s.title, "base_ctr_percent": s.base_ctr,
             "tests_in_family": s.tests_in_family,
             "best": [{"segment": x.label, "ctr_percent": x.ctr, "lift": x.lift, "rows": x.rows,
                       "p_value": r(x.p_value, 6), "p_adjusted_bh": r(x.p_adjusted, 6),
                       "significant": x.significant} for x in s.best],
             "worst": [{"segment": x.label, "ctr_percent": x.ctr, "lift": x.lift, "rows": x.rows,
                        "p_adjusted_bh": r(x.p_adjusted, 6), "significant": x.significant} for x in s.worst]}
            for s in facts.segments
        ],
        "money_estimate": money_block,
        "candidate_actions": [{"id": a.id, "default_title": a.title, "impact_percent": a.impact,
                               "priority": a.priority, "default_description": a.description} for a in actions],
    }


def build_prompt(facts: Facts, actions: list[Action]) -> str:
    return (
        "다음은 CTR 예측 모델 학습 결과와 데이터 분석 사실입니다.\n"
        f"```json\n{json.dumps(facts_for_prompt(facts, actions), ensure_ascii=False, indent=1)}\n```\n\n"
        "다음 JSON 객체 하나로 답하세요:\n"
        '{"summary": "경영진 요약 3~5문장", '
        '"insights": [{"type": "success|warning|info", "title": "...", "message": "...", "details": ["..."], "action": "..."}] (3~6개), '
        '"actions": [{"id": "candidate_actions의 id", "title": "...", "description": "...", "duration": "...", "cost": "..."}]}\n'
        "actions에는 candidate_actions에 있는 id만 쓰고, 영향도(impact)와 우선순위는 바꾸지 마세요."
    )


_FENCE = re.compile(r"^```(?:json)?\s*|\s*```$")


def parse_answer(content: str | None) -> LlmAnswer:
    if not content:
        raise ValueError("empty answer")
    return LlmAnswer.model_validate_json(_FENCE.sub("", content.strip()))


_MONEY = re.compile(r"[0-9][0-9,.]*\s*(?:만|억|천)?\s*원|₩\s*[0-9]|ROI[^.]{0,15}?[0-9]")


def check_claims(answer: LlmAnswer, facts: Facts) -> None:
    """Refuse an answer that states money the facts do not support (retried, then the rules write)."""
    if facts.money.computable:
        return
    texts = [answer.summary] + [t for i in answer.insights for t in (i.title, i.message, i.action, *i.details)]
    texts += [t for a in answer.actions for t in (a.title, a.description)]
    for text in texts:
        if _MONEY.search(text):
            raise ValueError(f"the answer states money although no estimate is supported: {text[:120]!r}")


def merge(answer: LlmAnswer, actions: list[Action], model: str) -> Narrative:
    by_id = {a.id: a for a in answer.actions}
    merged = []
    for action in actions:  # keep computed impact/priority; take only the LLM's wording
        text = by_id.get(action.id)
        merged.append(action if text is None else action.model_copy(update={
            "title": text.title, "description": text.description,
            "duration": text.duration or action.duration, "cost": text.cost or action.cost,
        }))
    insights = [Insight(icon=ICONS[i.type], **i.model_dump()) for i in answer.insights]
    return Narrative(summary=answer.summary, insights=insights, actions=merged, model_used=model, source="llm")


def llm_narrative(facts: Facts, settings: ReporterSettings) -> Narrative:
    """Ask the configured OpenAI-compatible server; raises after the last failed attempt."""
    from openai import OpenAI  # imported here: a report without a key never needs it

    assert settings.openai_api_key is not None
    actions = candidate_actions(facts)
    client = OpenAI(
        api_key=settings.openai_api_key.get_secret_value(),
        base_url=settings.openai_base_url or None,
        timeout=settings.llm_timeout_s,
        max_retries=0,  # retries below, so malformed answers are retried too
    )
    response_format: dict[str, Any] = (
        {"type": "json_schema", "json_schema": {"name": "ctr_report", "strict": True, "schema": ANSWER_SCHEMA}}
        if settings.llm_response_format == "json_schema" else {"type": "json_object"}
    )
    messages = [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": build_prompt(facts, actions)}]
    delay = settings.llm_backoff_s
    last_error: Exception | None = None
    try:
        for attempt in range(1, settings.llm_max_attempts + 1):
            try:
                response = client.chat.completions.create(
                    model=settings.llm_model, messages=messages, response_format=response_format, temperature=0.3,
                )
                answer = parse_answer(response.choices[0].message.content)
                check_claims(answer, facts)
                return merge(answer, actions, response.model or settings.llm_model)
            except (ValidationError, ValueError) as exc:
                last_error = exc
                log.warning("LLM answer %d/%d malformed: %s", attempt, settings.llm_max_attempts, str(exc)[:300])
            except Exception as exc:  # noqa: BLE001 - any client error: retry, then fall back
                last_error = exc
                log.warning("LLM call %d/%d failed: %s: %s", attempt, settings.llm_max_attempts,
                            type(exc).__name__, str(exc)[:300])
            if attempt < settings.llm_max_attempts:
                time.sleep(delay)
                delay *= 2
    finally:
        client.close()
    raise RuntimeError(f"LLM failed after {settings.llm_max_attempts} attempts: {type(last_error).__name__}: {last_error}")


def write_narrative(facts: Facts, settings: ReporterSettings) -> Narrative:
    """The LLM's narrative when a key is set and it answers well; the deterministic one otherwise."""
    if settings.openai_api_key is None or not settings.openai_api_key.get_secret_value():
        return deterministic(facts)
    try:
        return llm_narrative(facts, settings)
    except Exception as exc:  # noqa: BLE001 - the report must still be written
        reason = str(exc)[:500]
        log.warning("narrative falls back to rules: %s", reason)
        return deterministic(facts, fallback_reason=reason)
