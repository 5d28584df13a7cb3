"""The report's words: an LLM writes them when one is configured, rules write them otherwise.

Numbers never come from the LLM. The facts (metrics, features, segments, money) and the
candidate actions with their computed impact are fixed here; the LLM only phrases the
summary, the insights and the actions' text, and its answer must pass a pydantic schema.
Any failure - no key, a timeout, an HTTP error, an answer that is not the JSON asked
for - falls back to the deterministic Korean narrative built from the same facts, and
``model_used`` says which one wrote the report.
"""

from __future__ import annotations

import json
import logging
import re
import time
from typing import Any, Literal

from pydantic import BaseModel, Field, ValidationError

from .facts import Facts, Feature, SegmentFinding
from .settings import ReporterSettings

log = logging.getLogger(__name__)

DETERMINISTIC_MODEL = "deterministic-ko-v1"

ICONS = {"success": "📈", "warning": "⚠️", "info": "💡"}
PRIORITY_COLORS = {"high": "#ef4444", "medium": "#f59e0b", "low": "#10b981"}


class Insight(BaseModel):
    icon: str
    type: Literal["success", "warning", "info"]
    title: str
    message: str
    details: list[str] = []
    action: str = ""


class Action(BaseModel):
    id: str
    title: str
    description: str
    priority: Literal["high", "medium", "low"]
    impact: float  # percent, computed
    duration: str
    cost: str
    color: str


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


def priority_of(impact: float) -> Literal["high", "medium", "low"]:
    return "high" if impact >= 10 else "medium" if impact >= 3 else "low"


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


def candidate_actions(facts: Facts) -> list[Action]:
    """Actions whose impact (expected CTR change in percent) follows from the facts."""
    actions = []
    money = facts.money
    if money.computable and money.roi_increase_percent > 0:
        actions.append(_action(
            "model_targeting",
            "모델 기반 타겟팅 파일럿",
            f"노출의 {pct(money.effective_targeted_share)}를 모델이 클릭 가능성이 높다고 판단한 사용자"
            f"(예측 CTR {pct(money.targeted_ctr, 2)}, 전체 {pct(money.base_ctr, 2)})에게 우선 배정합니다. "
            f"같은 비용으로 예상 클릭이 월 {money.clicks_base:,.0f}회에서 {money.clicks_model:,.0f}회로 늘어납니다.",
            money.roi_increase_percent, "2주 파일럿 후 확대", "추가 매체비 없음 (기존 예산 재배분)",
        ))
    share = money.effective_targeted_share or money.targeted_share
    for finding in facts.segments:
        if not finding.best or finding.best[0].lift <= 1:
            continue
        title = SEGMENT_ACTION_TITLES[finding.dimension]
        top = finding.best[0]
        labels = ", ".join(f"{s.label}({s.ctr:.2f}%)" for s in finding.best)
        worst = ", ".join(s.label for s in finding.worst)
        description = (
            f"CTR이 높은 {labels}에 노출의 {pct(share, 0)}를 옮깁니다 "
            f"(해당 표의 평균 CTR {finding.base_ctr:.2f}%, 최고 {top.lift:.2f}배, {p_text(top.p_value)})."
        )
        if worst:
            description += f" 효율이 낮은 {worst}의 입찰은 낮춥니다."
        actions.append(_action(
            f"segment_{finding.dimension}", title, description,
            100 * share * (top.lift - 1), "1주", "추가 비용 없음 (입찰·예산 조정)",
        ))
    calibration = facts.metrics.calibration
    if calibration is not None and abs(calibration - 1) > 0.1:
        direction = "많게" if calibration > 1 else "적게"
        actions.append(_action(
            "calibration",
            "예측 확률 재보정",
            f"모델이 예측한 클릭 수가 실제보다 {abs(calibration - 1) * 100:.1f}% {direction} 나옵니다"
            f"(보정 비율 {calibration:.2f}). 입찰가 산정 전에 실제 CTR 기준으로 확률을 재보정합니다.",
            abs(calibration - 1) * 100, "3일", "ML 엔지니어 공수",
        ))
    actions.sort(key=lambda a: a.impact, reverse=True)
    return actions


# --- the deterministic narrative -------------------------------------------------------------


def _segment_insight(finding: SegmentFinding) -> Insight:
    top = finding.best[0]
    significant = top.p_value is not None and top.p_value < 0.05
    details = [f"{s.label}: CTR {s.ctr:.2f}% ({s.lift:.2f}배, 노출 {s.rows:,}회, {p_text(s.p_value)})" for s in finding.best]
    details += [f"낮음 - {s.label}: CTR {s.ctr:.2f}% ({s.lift:.2f}배, 노출 {s.rows:,}회)" for s in finding.worst]
    return Insight(
        icon=ICONS["success" if significant else "info"],
        type="success" if significant else "info",
        title=finding.title,
        message=(
            f"{top.label}의 CTR이 {top.ctr:.2f}%로 평균 {finding.base_ctr:.2f}%의 {top.lift:.2f}배입니다"
            + (" (통계적으로 유의)." if significant else " (표본이 작아 유의하지 않을 수 있음).")
        ),
        details=details,
        action=f"{top.label} 중심으로 노출을 늘리는 A/B 테스트를 권장합니다.",
    )


def deterministic(facts: Facts, fallback_reason: str | None = None) -> Narrative:
    m = facts.metrics
    base = facts.base_ctr / 100 if facts.base_ctr is not None else None
    insights: list[Insight] = []

    auc = m.auc
    kind = "info" if auc is None else "success" if auc >= 0.75 else "warning" if auc < 0.65 else "info"
    ap_lift = f" (기준 CTR {pct(base, 2)}의 {m.ap / base:.1f}배)" if m.ap is not None and base else ""
    insights.append(Insight(
        icon=ICONS[kind], type=kind, title="모델 변별력",
        message=f"검증 데이터에서 ROC AUC {num(auc)}, 평균 정밀도(AP) {num(m.ap)}{ap_lift}입니다.",
        details=[f"ROC AUC: {num(auc)}", f"AP: {num(m.ap)}", f"로그 손실: {num(m.logloss, 4)}",
                 f"대회 점수(0.5·AP + 0.5/(1+WLL)): {num(m.score, 4)}"],
        action="AUC가 0.65 미만이면 더 많은 데이터나 에폭으로 재학습하세요." if kind == "warning"
        else "이 모델의 점수를 타겟팅 우선순위로 사용할 수 있습니다.",
    ))
    if m.accuracy is not None and base is not None:
        insights.append(Insight(
            icon=ICONS["info"], type="info", title="정확도 해석 주의",
            message=(f"정확도는 {pct(m.accuracy)}이지만 클릭 비율이 {pct(base, 2)}라 모두 '클릭 안 함'으로 "
                     f"예측해도 {pct(1 - base)}입니다. 순위 지표(AUC, AP)로 판단해야 합니다."),
            details=[f"정밀도: {pct(m.precision)}", f"재현율: {pct(m.recall)}", f"F1: {num(m.f1)}",
                     f"판정 임계값: {num(m.threshold)}"],
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
        significant = [f for f in facts.features if f.p_value < 0.05]
        insights.append(Insight(
            icon=ICONS["info"], type="info", title="핵심 클릭 요인",
            message=(f"클릭 예측에 가장 큰 영향을 준 변수는 {', '.join(feature_label(f) for f in facts.features[:3])}"
                     f"입니다. 상위 {len(facts.features)}개 중 {len(significant)}개가 통계적으로 유의합니다(p<0.05)."),
            details=[f"{feature_label(f)}: 중요도 {f.importance:.3f} "
                     f"(95% CI {f.ci_low:.3f}~{f.ci_high:.3f}, {p_text(f.p_value)})" for f in facts.features[:5]],
            action="유의한 변수의 수집 품질을 우선 관리하세요.",
        ))
    for finding in facts.segments:
        if finding.best:
            insights.append(_segment_insight(finding))
    if not facts.segments_available:
        insights.append(Insight(
            icon=ICONS["info"], type="info", title="세그먼트 데이터 없음",
            message="이 데이터에는 시간대·고객군·지면별 통계가 없어 세그먼트 분석을 하지 않았습니다.",
            details=[], action="hour, age_group, gender, inventory_id 열을 포함해 업로드하세요.",
        ))
    money = facts.money
    if money.computable:
        up = money.roi_increase_percent > 0
        insights.append(Insight(
            icon=ICONS["success" if up else "warning"], type="success" if up else "warning",
            title="예상 비즈니스 효과 (추정)",
            message=(f"가정한 조건에서 같은 비용으로 수익이 {money.roi_increase_percent:+.1f}% 변하고 "
                     f"월 추가 매출은 약 {won(money.additional_revenue_krw)}(으)로 추정됩니다."),
            details=[f"월 노출 {money.monthly_impressions:,}회, CPM {won(money.cpm_krw)}, 전환율 {pct(money.conversion_rate)}, "
                     f"전환 가치 {won(money.conversion_value_krw)}",
                     f"유효 CPC: {won(money.effective_cpc_base_krw)} → {won(money.effective_cpc_model_krw)} "
                     f"(CPC 구매 가정 {won(money.cpc_krw)})",
                     f"ROI: {money.roi_base_percent:.1f}% → {money.roi_model_percent:.1f}%"],
            action="파일럿 캠페인으로 실제 효과를 검증한 뒤 확대하세요.",
        ))

    summary = _summary(facts)
    return Narrative(summary=summary, insights=insights, actions=candidate_actions(facts),
                     model_used=DETERMINISTIC_MODEL, source="deterministic", fallback_reason=fallback_reason)


def _summary(facts: Facts) -> str:
    m = facts.metrics
    base = facts.base_ctr / 100 if facts.base_ctr is not None else None
    parts = [
        f"실험 '{facts.experiment_name}'의 CTR 예측 모델(에폭 {facts.best_epoch}/{facts.epochs_run} 채택)은 "
        f"검증 데이터에서 ROC AUC {num(m.auc)}, AP {num(m.ap)}, 로그 손실 {num(m.logloss, 4)}, "
        f"정확도 {pct(m.accuracy)}를 기록했습니다."
    ]
    if base is not None:
        parts.append(f"데이터의 실제 CTR은 {pct(base, 2)}({facts.clicks:,}/{facts.rows:,})입니다.")
    if facts.features:
        parts.append(f"클릭에 가장 큰 영향을 준 변수는 {', '.join(feature_label(f) for f in facts.features[:3])}입니다.")
    for finding in facts.segments:
        if finding.dimension == "hour" and finding.best:
            top = finding.best[0]
            parts.append(f"CTR이 가장 높은 시간대는 {top.label}({top.ctr:.2f}%)입니다.")
    money = facts.money
    if money.computable:
        parts.append(
            f"노출의 {pct(money.effective_targeted_share)}를 모델이 고른 사용자에게 배정하면 같은 비용으로 "
            f"수익이 {money.roi_increase_percent:+.1f}%, 월 매출이 약 {won(money.additional_revenue_krw)} 달라질 것으로 "
            f"추정됩니다(가정: 월 노출 {money.monthly_impressions:,}회, CPM {won(money.cpm_krw)}, "
            f"전환율 {pct(money.conversion_rate)}, 전환 가치 {won(money.conversion_value_krw)})."
        )
    else:
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
    "정확도는 클릭 비율이 낮아 과대평가되므로 AUC·AP·로그 손실·보정 비율을 함께 해석하세요. "
    "금액은 명시된 가정에 따른 추정치라고 밝히세요. 반드시 지정된 JSON 형식으로만 답하세요."
)


def facts_for_prompt(facts: Facts, actions: list[Action]) -> dict[str, Any]:
    """The facts the LLM sees, rounded so the prompt stays short and the numbers recognisable."""
    r = lambda v, d=4: None if v is None else round(v, d)  # noqa: E731
    m = facts.metrics
    return {
        "run": {"run_id": facts.run_id, "experiment_name": facts.experiment_name, "best_epoch": facts.best_epoch,
                "epochs_run": facts.epochs_run, "rows": facts.rows, "clicks": facts.clicks,
                "base_ctr_percent": r(facts.base_ctr)},
        "metrics": {
            "accuracy": r(m.accuracy), "precision": r(m.precision), "recall": r(m.recall), "f1": r(m.f1),
            "roc_auc": r(m.auc), "average_precision": r(m.ap), "logloss": r(m.logloss),
            "calibration_predicted_over_actual": r(m.calibration), "competition_score": r(m.score),
            "threshold": r(m.threshold),
        },
        "top_features": [
            {"feature": f.name, "description": f.description, "importance": r(f.importance), "p_value": r(f.p_value, 6),
             "ci95": [r(f.ci_low), r(f.ci_high)]}
            for f in facts.features[:10]
        ],
        "segments_available": facts.segments_available,
        "segments": [
            {"dimension": s.dimension, "title": s.title, "base_ctr_percent": s.base_ctr,
             "best": [{"segment": x.label, "ctr_percent": x.ctr, "lift": x.lift, "rows": x.rows,
                       "p_value": r(x.p_value, 6)} for x in s.best],
             "worst": [{"segment": x.label, "ctr_percent": x.ctr, "lift": x.lift, "rows": x.rows} for x in s.worst]}
            for s in facts.segments
        ],
        "money_estimate": {
            "computable": facts.money.computable, "reason": facts.money.reason or None,
            "assumptions": {"monthly_impressions": facts.money.monthly_impressions, "cpm_krw": facts.money.cpm_krw,
                            "cpc_krw": facts.money.cpc_krw, "conversion_rate": facts.money.conversion_rate,
                            "conversion_value_krw": facts.money.conversion_value_krw,
                            "targeted_share": r(facts.money.effective_targeted_share or facts.money.targeted_share)},
            "roi_increase_percent": r(facts.money.roi_increase_percent, 2),
            "additional_revenue_krw_per_month": round(facts.money.additional_revenue_krw),
        },
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
