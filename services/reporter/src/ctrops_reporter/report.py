"""The report JSON of the contract (``GET /api/report/ai/{run_id}``), from facts and narrative.

Contract fields: ``summary``, ``accuracy`` (percent), ``roiIncrease`` (the ROI change in
percentage points at the same spend, ROI = (revenue - spend) / spend; 0 when no estimate is
supported), ``additionalRevenue`` (KRW per month, the point of the range; 0 when none),
``topFeatures``, ``aiInsights``, ``actionPlan``. Beside them: ``modelStrength`` (the
verdict and the AUC interval and AP lift it rests on), ``moneyRange`` (every money figure
as a 95% range, or null), ``model_used``, ``metrics`` (AUC, AP, log loss, calibration next
to accuracy), ``assumptions`` (every input of the money figures, with the formulas) and
``segments`` (with Benjamini-Hochberg adjusted p), so a reader can check each number.

Each of ``topFeatures`` carries the held-out evidence and the direction of effect
(``significant``, ``pValueRaw``, ``aucDrop``/``aucDropCi``, ``directionKo``, ``group``);
``drivers`` lists the significant ones strongest first (by the AUC drop's lower 95% bound);
``correlation`` the correlated pairs (|r| >= its threshold) or none; ``priorityRule`` how the
action plan is ordered. Display names come from the feature-name mapping in effect
(``featureNamesDigest`` identifies it).
"""

from __future__ import annotations

import math
from datetime import datetime, timezone
from typing import Any

from ctrops_common.documents import ReportDoc

from .facts import Facts, drivers
from .narrative import PRIORITY_RULE, Narrative

# Blue to purple, the SK AX / SK Planet AIOps gradient, one step per ranked feature.
GRADIENT_START, GRADIENT_END = "#2563eb", "#7c3aed"


def gradient(steps: int) -> list[str]:
    a = [int(GRADIENT_START[i:i + 2], 16) for i in (1, 3, 5)]
    b = [int(GRADIENT_END[i:i + 2], 16) for i in (1, 3, 5)]
    colors = []
    for k in range(steps):
        t = k / (steps - 1) if steps > 1 else 0.0
        colors.append("#" + "".join(f"{round(x + (y - x) * t):02x}" for x, y in zip(a, b)))
    return colors


def _clean(value: Any) -> Any:
    """No NaN or infinity in JSON: they become null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_clean(v) for v in value]
    return value


def _round(value: float | None, digits: int = 4) -> float | None:
    return None if value is None else round(value, digits)


def build_report(facts: Facts, narrative: Narrative, inputs_digest: str = "") -> ReportDoc:
    """The report document; every key is checked against ``ReportDoc`` (an undeclared one is an error)."""
    m, money, strength = facts.metrics, facts.money, facts.strength
    colors = gradient(len(facts.features))
    pair = lambda low, high, d=0: None if low is None or high is None else [round(low, d), round(high, d)]  # noqa: E731
    report = {
        "run_id": facts.run_id,
        "runId": facts.run_id,
        "experimentName": facts.experiment_name,
        "generatedAt": datetime.now(timezone.utc).isoformat(),
        "summary": narrative.summary,
        "accuracy": round(100 * m.val_accuracy, 2) if m.val_accuracy is not None else None,
        "roiIncrease": round(money.roi_change_points, 2),
        "additionalRevenue": round(money.additional_revenue_krw),
        "revenueChangePercent": round(money.revenue_change_percent, 2),
        "moneyRange": {
            "additionalRevenueKrw": pair(money.additional_revenue_low_krw, money.additional_revenue_high_krw),
            "revenueChangePercent": pair(money.revenue_change_low_percent, money.revenue_change_high_percent, 2),
            "roiChangePoints": pair(money.roi_change_low_points, money.roi_change_high_points, 2),
            "roiModelPercent": pair(money.roi_model_low_percent, money.roi_model_high_percent, 2),
            "targetedCtr": pair(money.targeted_ctr_low, money.targeted_ctr_high, 6),
            "clicksModel": pair(money.clicks_model_low, money.clicks_model_high, 1),
            "level": 0.95,
            "method": "Wilson interval of the precision among the validation rows the model targets",
        } if money.computable else None,
        "modelStrength": {
            "verdict": strength.verdict, "verdictKo": strength.verdict_ko, "reasons": strength.reasons,
            "champion": strength.champion, "championLabel": strength.champion_label,
            "auc": _round(strength.auc), "aucCi": pair(strength.auc_ci_low, strength.auc_ci_high, 4),
            "aucCiMethod": strength.ci_method, "ap": _round(strength.ap),
            "baseRate": _round(strength.base_rate, 6), "apLift": _round(strength.ap_lift, 3),
            "valRows": strength.val_rows, "valClicks": strength.val_clicks,
            "valCountsEstimated": strength.val_counts_estimated,
            "accuracy": _round(strength.accuracy), "majorityBaseline": _round(strength.majority_baseline, 6),
            "models": [x.model_dump() for x in strength.models], "comparison": strength.comparison,
        },
        "topFeatures": [
            {"name": f.name, "description": f.description, "group": f.group, "importance": round(f.importance, 4),
             "pValue": f.p_value, "pValueRaw": f.p_value_raw, "significant": f.significant,
             "ci": [round(f.ci_low, 4), round(f.ci_high, 4)],
             "aucDrop": _round(f.auc_drop, 5), "aucDropCi": pair(f.auc_drop_low, f.auc_drop_high, 5),
             "direction": f.direction, "directionKo": f.direction_ko, "effectKo": f.effect_ko, "color": color}
            for f, color in zip(facts.features, colors)
        ],
        "drivers": [f.name for f in drivers(facts.features)],
        "correlation": None if facts.correlation is None else {
            "threshold": facts.correlation.threshold,
            "rows": facts.correlation.rows,
            "maxAbsOffDiagonal": round(facts.correlation.max_abs_off_diagonal, 4),
            "pairs": [{"features": list(p.features), "names": list(p.names), "r": round(p.r, 4)}
                      for p in facts.correlation.pairs],
        },
        "priorityRule": PRIORITY_RULE,
        "featureNamesDigest": facts.feature_names_digest,
        "aiInsights": [i.model_dump() for i in narrative.insights],
        "actionPlan": [
            {k: v for k, v in a.model_dump().items() if k != "id"} | {"id": a.id} for a in narrative.actions
        ],
        "model_used": narrative.model_used,
        "narrativeSource": narrative.source,
        "narrativeFallbackReason": narrative.fallback_reason,
        "metrics": {name: _round(value) for name, value in m.values().items()},
        "training": {"bestEpoch": facts.best_epoch, "epochsRun": facts.epochs_run,
                     "durationS": round(facts.duration_s, 1), "fileId": facts.file_id},
        "data": {"rows": facts.rows, "clicks": facts.clicks, "ctr": facts.base_ctr},
        "assumptions": {
            "currency": "KRW",
            "computable": money.computable,
            "reason": money.reason or None,
            "monthlyImpressions": money.monthly_impressions,
            "cpmKrw": money.cpm_krw,
            "cpcKrw": money.cpc_krw,
            "conversionRate": money.conversion_rate,
            "conversionValueKrw": money.conversion_value_krw,
            "targetedShare": money.targeted_share,
            "effectiveTargetedShare": _round(money.effective_targeted_share),
            "flaggedShare": _round(money.flagged_share),
            "baseCtr": _round(money.base_ctr, 6),
            "targetedCtr": _round(money.targeted_ctr, 6),
            "targetedCtrLow": _round(money.targeted_ctr_low, 6),
            "targetedCtrHigh": _round(money.targeted_ctr_high, 6),
            "targetedRows": _round(money.targeted_rows, 1),
            "targetedClicks": _round(money.targeted_clicks, 1),
            "modelCtr": _round(money.model_ctr, 6),
            "monthlySpendKrw": _round(money.monthly_spend_krw, 0),
            "clicksBase": _round(money.clicks_base, 1),
            "clicksModel": _round(money.clicks_model, 1),
            "revenueBaseKrw": _round(money.revenue_base_krw, 0),
            "revenueModelKrw": _round(money.revenue_model_krw, 0),
            "roiBasePercent": _round(money.roi_base_percent, 2),
            "roiModelPercent": _round(money.roi_model_percent, 2),
            "effectiveCpcBaseKrw": _round(money.effective_cpc_base_krw, 1),
            "effectiveCpcModelKrw": _round(money.effective_cpc_model_krw, 1),
            "formulas": {
                "flaggedShare": "recall * baseCtr / precision (share of traffic the model flags at its threshold)",
                "effectiveTargetedShare": "min(targetedShare, flaggedShare)",
                "modelCtr": "baseCtr + effectiveTargetedShare * (precision - baseCtr)",
                "monthlySpendKrw": "monthlyImpressions / 1000 * cpmKrw",
                "revenue": "monthlyImpressions * ctr * conversionRate * conversionValueKrw",
                "roi": "(revenue - monthlySpendKrw) / monthlySpendKrw * 100",
                "roiIncrease": "roiModel - roiBase (percentage points, same spend)",
                "revenueChangePercent": "(revenueModel / revenueBase - 1) * 100, same spend",
                "additionalRevenue": "revenueModel - revenueBase (KRW per month)",
                "ranges": "each figure at the low and high end of the Wilson 95% interval of precision, "
                          "from targetedClicks = recall * valClicks among targetedRows = targetedClicks / precision",
                "noEstimate": "weak model verdict, or no validation click counts: no figures (computable=false)",
            },
            "note": "추정치입니다: 금액은 위 가정(설정값)과 검증 데이터의 정밀도·CTR로 계산했고, 범위는 정밀도의 "
                    "Wilson 95% 구간에서 나옵니다.",
        },
        "segments": {
            "available": facts.segments_available,
            "findings": [s.model_dump() for s in facts.segments],
        },
        "inputsDigest": inputs_digest,
    }
    return ReportDoc.model_validate(_clean(report))
