"""Claims conditioned on evidence: the strength verdict, intervals, Benjamini-Hochberg, and what the
report (JSON, narrative, PDF) says or leaves out for a weak and a strong model."""

from __future__ import annotations

import io
import re

import pytest
from pypdf import PdfReader

from ctrops_common.documents import Explanation, ProfileSegments, write_document
from ctrops_reporter.evidence import (
    StrengthInputs,
    benjamini_hochberg,
    hanley_mcneil_interval,
    strength_verdict,
)
from ctrops_reporter.facts import gather, segment_findings, weekday_name
from ctrops_reporter.narrative import (
    DETERMINISTIC_MODEL,
    PRIORITY_RULE,
    build_prompt,
    candidate_actions,
    priority_of,
    write_narrative,
)
from ctrops_reporter.pdf import PdfInputs, render_pdf, seoul_time
from ctrops_reporter.report import build_report
from ctrops_reporter.settings import ReporterSettings

METRICS = {  # the champion's validation metrics of the sample run (conftest.METRICS)
    "train_loss": 0.5213, "val_loss": 0.0921, "train_accuracy": 0.7402, "val_accuracy": 0.9791,
    "auc": 0.7386, "ap": 0.0874, "logloss": 0.0921, "calibration": 1.0731, "score": 0.4813,
    "precision": 0.0812, "recall": 0.3478, "f1": 0.1317, "threshold": 0.0612,
}
WEAK_METRICS = {**METRICS, "auc": 0.531, "ap": 0.0205, "precision": 0.021, "recall": 0.31, "val_accuracy": 0.9817,
                "calibration": 1.4}
STRONG_METRICS = {**METRICS, "auc": 0.772, "ap": 0.0712, "precision": 0.0655, "recall": 0.42}
COMPARISON = {"method": "DeLong paired", "auc_lstm": 0.531, "auc_gbdt": 0.512, "difference": -0.019,
              "ci_low": -0.05, "ci_high": 0.012, "p_value": 0.23, "val_rows": 12000, "val_clicks": 220}
MONEY = re.compile(r"[0-9][0-9,]*원")  # any won amount


def model_result(kind: str, metrics: dict, ci: tuple[float, float] | None, val_rows: int, val_clicks: int) -> dict:
    """A ModelResult payload as training.done carries it."""
    return {
        "kind": kind, "label": {"lstm": "LSTM+MLP", "gbdt": "LightGBM"}[kind], "metrics": metrics,
        "model_location": f"runs/x/model/{kind}", "auc_ci_low": None if ci is None else ci[0],
        "auc_ci_high": None if ci is None else ci[1], "val_rows": val_rows, "val_clicks": val_clicks,
        "best_iteration": 3, "iterations_run": 3, "duration_s": 10.0,
    }


def _settings(**overrides) -> ReporterSettings:
    return ReporterSettings(**({"openai_api_key": None} | overrides))


def weak_run(factory):
    """AUC 0.531 whose DeLong interval (0.492, 0.570) crosses 0.55; AP barely above the 1.83% click rate."""
    models = [model_result("lstm", WEAK_METRICS, (0.492, 0.570), 12000, 220),
              model_result("gbdt", {**WEAK_METRICS, "auc": 0.512, "ap": 0.019}, (0.473, 0.551), 12000, 220)]
    return factory(metrics=WEAK_METRICS, models=models, comparison=COMPARISON)


def strong_run(factory):
    models = [model_result("lstm", {**STRONG_METRICS, "auc": 0.741}, (0.708, 0.774), 12000, 220),
              model_result("gbdt", STRONG_METRICS, (0.741, 0.803), 12000, 220)]
    comparison = {**COMPARISON, "auc_lstm": 0.741, "auc_gbdt": 0.772, "difference": 0.031, "ci_low": 0.008,
                  "ci_high": 0.054, "p_value": 0.008}
    return factory(metrics=STRONG_METRICS, models=models, champion="gbdt", comparison=comparison)


def report_and_pdf(run, generated_at: str | None = None) -> tuple[dict, list[str]]:
    settings = _settings()
    facts = gather(run.store, run.training_done, run.explanation_done, run.curve, settings)
    report = build_report(facts, write_narrative(facts, settings))
    if generated_at is not None:
        report = report.model_copy(update={"generated_at": generated_at})
    pdf = render_pdf(PdfInputs(report, run.curve, None))
    # the document as report.json holds it (the frontend's keys)
    return report.model_dump(mode="json"), [page.extract_text() for page in PdfReader(io.BytesIO(pdf)).pages]


# --- the statistics, against hand-computed values ------------------------------------------------


def test_benjamini_hochberg_against_hand_computed_values():
    # m = 5 tests (None is no test). Sorted: .005 .01 .03 .04 .5 -> p*m/rank = .025 .025 .05 .05 .5,
    # then the running minimum from the largest down leaves them as they are.
    assert benjamini_hochberg([0.01, 0.04, 0.03, 0.005, None, 0.5]) == pytest.approx(
        [0.025, 0.05, 0.05, 0.025, None, 0.5])
    # Monotone step-up: .02*3/1 = .06 exceeds .021*3/2 = .0315, so the smaller p gets .0315 too.
    assert benjamini_hochberg([0.02, 0.021, 0.9]) == pytest.approx([0.0315, 0.0315, 0.9])
    assert benjamini_hochberg([0.8, 0.9]) == pytest.approx([0.9, 0.9])  # .8*2 = 1.6 -> capped by .9's value
    assert benjamini_hochberg([0.04]) == [0.04] and benjamini_hochberg([]) == []


def test_hanley_mcneil_interval_against_hand_computed_values():
    # AUC .7, 100 clicks, 900 non-clicks: Q1 = .7/1.3, Q2 = .98/1.7, variance 82.745/90000, se .03032.
    low, high = hanley_mcneil_interval(0.7, 100, 900)
    assert (low, high) == (pytest.approx(0.64057, abs=1e-5), pytest.approx(0.75943, abs=1e-5))
    assert hanley_mcneil_interval(0.7, 0, 900) is None


@pytest.mark.parametrize("auc_low, ap, verdict", [
    (0.492, 0.0205, "weak"),  # the interval crosses 0.55
    (0.55, 0.10, "weak"),  # the bound itself is not enough
    (0.60, 0.025, "weak"),  # AP only 1.25x the 2% base rate
    (0.60, 0.03, "usable"),  # 1.5x exactly
    (0.70, 0.059, "usable"),  # 2.95x: not yet strong
    (0.70, 0.06, "strong"),
    (None, 0.10, "weak"),  # unknown interval: no claim
])
def test_verdict_thresholds(auc_low, ap, verdict):
    got, reasons = strength_verdict(StrengthInputs(auc=0.75 if auc_low is None else auc_low + 0.03,
                                                   auc_low=auc_low, ap=ap, base_rate=0.02))
    assert got == verdict and reasons


# --- what the report says --------------------------------------------------------------------------


def test_weak_model_gives_no_money_and_no_model_action_and_says_what_data_would_help(sample_factory):
    run = weak_run(sample_factory)
    report, pages = report_and_pdf(run)
    strength = report["modelStrength"]
    assert strength["verdict"] == "weak" and strength["verdictKo"] == "약함"
    assert strength["aucCi"] == [0.492, 0.57] and strength["aucCiMethod"] == "DeLong"
    assert report["assumptions"]["computable"] is False and report["moneyRange"] is None
    assert report["additionalRevenue"] == 0 and report["roiIncrease"] == 0
    ids = {a["id"] for a in report["actionPlan"]}
    assert not ids & {"model_targeting", "calibration"}  # calibration 1.4 would call for one on a usable model
    assert ids <= {"segment_hour", "segment_inventory_id", "segment_age_group_gender"}  # data findings only

    text = "\n".join(pages)
    assert MONEY.search(text) is None, MONEY.search(text)  # no won figure anywhere in the PDF
    assert "ROI" not in text
    assert "모델 신뢰도: 약함" in pages[0] and "금액 추정: 하지 않음" in pages[0]
    assert "쓸 만한 신호를 보여 주지 않았" in text
    for needed in ("클릭이 더 많은 데이터", "더 많은 행", "클릭과 관련 있을 만한 변수"):
        assert needed in text, needed
    assert "0.492~0.570" in text  # the interval that makes it weak is printed


def test_strong_model_gives_money_as_a_range_with_its_assumptions(sample_factory):
    run = strong_run(sample_factory)
    report, pages = report_and_pdf(run)
    strength = report["modelStrength"]
    assert strength["verdict"] == "strong" and strength["champion"] == "gbdt"
    assert strength["championLabel"] == "LightGBM" and strength["aucCi"] == [0.741, 0.803]
    assert strength["apLift"] == pytest.approx(0.0712 / (220 / 12000), abs=1e-3)
    low, high = report["moneyRange"]["additionalRevenueKrw"]
    assert low < report["additionalRevenue"] < high
    roi_low, roi_high = report["moneyRange"]["roiChangePoints"]
    assert roi_low < report["roiIncrease"] < roi_high
    targeting = next(a for a in report["actionPlan"] if a["id"] == "model_targeting")
    assert targeting["impact"] == pytest.approx(report["moneyRange"]["revenueChangePercent"][0], abs=0.01)

    summary_page = pages[1]
    assert f"{low:+,.0f}원 ~" in summary_page and f"{high:+,.0f}원" in summary_page.replace("\n", " ")
    assert "금액 가정: 월 노출 1,000,000회, CPM 6,000원, 전환율 3.0%, 전환 가치 40,000원" in summary_page.replace("\n", "")
    assert "Wilson 95%" in summary_page.replace("\n", " ")
    assert "ROI 증가" not in "\n".join(pages)  # the revenue change is not called ROI


def test_cover_and_summary_lead_with_auc_ap_and_verdict_accuracy_only_beside_its_baseline(sample_factory):
    report, pages = report_and_pdf(strong_run(sample_factory), generated_at="2025-03-01T09:04:00+00:00")
    cover = pages[0].replace("\n", " ")
    assert "모델 신뢰도: 강함" in cover and "ROC AUC 0.772 (95% CI 0.741~0.803)" in cover
    assert "AP 0.071 (기준 클릭률 1.83%" in cover
    assert "정확도" not in cover and "97.91" not in cover
    assert DETERMINISTIC_MODEL not in cover and "규칙 기반 자동 작성" in cover
    assert "생성 시각: 2025-03-01 18:04 KST" in cover  # 09:04 UTC in Asia/Seoul

    summary = pages[1].replace("\n", "")
    assert summary.index("모델 신뢰도: 강함") < summary.index("ROC AUC 0.772") < summary.index("정확도")
    baseline = f"{100 * (1 - 220 / 12000):.2f}%"  # always answering "no click" on the validation rows
    for match in re.finditer(r"정확도 ?97\.91%", summary):
        assert baseline in summary[match.end():match.end() + 40], summary[match.start():match.end() + 40]
    assert DETERMINISTIC_MODEL not in summary


def test_segments_are_findings_only_after_benjamini_hochberg(sample_factory):
    """24 flat hours but one at 2.48% vs 1.8%: raw p=0.013, adjusted over 24 tests 0.31 -> no finding, no action."""
    hours = [{"value": float(h), "rows": 2500, "clicks": (c := 62 if h == 14 else 45), "ctr": c / 25} for h in range(24)]
    profile = {"columns": {}, "seq": {}, "segments": {"hour": hours, "day_of_week": [], "inventory_id": [],
                                                       "age_group_gender": []}}
    run = sample_factory(profile=profile)
    facts = gather(run.store, run.training_done, run.explanation_done, run.curve, _settings())
    (hour,) = facts.segments
    top = hour.best[0]
    assert top.label == "14시" and top.p_value == pytest.approx(0.0130, abs=5e-4)
    assert hour.tests_in_family == 24
    # BH by hand: the smallest of 24 p-values, x 24 / 1, unless a larger rank gives less (here none does).
    assert top.p_adjusted == pytest.approx(min(1.0, top.p_value * 24), rel=1e-6) and not top.significant
    assert all(a.id != "segment_hour" for a in candidate_actions(facts))
    narrative = write_narrative(facts, _settings())
    insight = next(i for i in narrative.insights if i.title == "시간대별 CTR")
    assert "유의하지 않습니다" in insight.message and "A/B" not in insight.action
    assert "다중검정 보정 후 유의하지 않았습니다" in narrative.summary

    sample = sample_factory()  # the conftest profile: hours 20-22 planted at about twice the CTR
    planted = gather(sample.store, sample.training_done, sample.explanation_done, sample.curve, _settings())
    peak = next(s for s in planted.segments if s.dimension == "hour").best[0]
    assert peak.significant and any(a.id == "segment_hour" for a in candidate_actions(planted))


def test_weekday_names_and_seoul_time():
    days = [{"value": float(d), "rows": 1000, "clicks": 10 + d, "ctr": (10 + d) / 10} for d in range(1, 8)]
    (finding,) = segment_findings(ProfileSegments(day_of_week=days), min_rows=30)
    labels = [s.label for s in finding.best + finding.worst]
    assert labels == ["일요일", "토요일", "금요일", "월요일", "화요일", "수요일"]
    assert [weekday_name(v) for v in (1, 4.0, 7)] == ["월요일", "목요일", "일요일"]
    assert weekday_name(9) == "요일 코드 9"
    assert seoul_time("2025-03-01T23:30:00+00:00") == "2025-03-02 08:30 KST"
    assert seoul_time("2025-03-01T23:30:00") == "2025-03-02 08:30 KST"  # naive means UTC


def test_prompt_carries_the_verdict_and_the_rules(sample_factory):
    run = weak_run(sample_factory)
    facts = gather(run.store, run.training_done, run.explanation_done, run.curve, _settings())
    prompt = build_prompt(facts, candidate_actions(facts))
    assert '"verdict": "weak"' in prompt and '"verdict_ko": "약함"' in prompt
    assert '"auc_ci95": [\n   0.492,\n   0.57\n  ]' in prompt or "0.492" in prompt
    assert '"computable": false' in prompt and "additional_revenue" not in prompt
    assert '"p_adjusted_bh"' in prompt and "data_needed" in prompt
    from ctrops_reporter.narrative import SYSTEM_PROMPT
    assert "computable이 false이면 금액" in SYSTEM_PROMPT and "verdict가 weak이면" in SYSTEM_PROMPT


def test_an_llm_answer_that_states_unsupported_money_is_refused(sample_factory, fake_llm):
    fake_llm.mode = "money"
    run = weak_run(sample_factory)
    settings = _settings(openai_api_key="test-key", openai_base_url=fake_llm.base_url, llm_max_attempts=2,
                         llm_backoff_s=0.01, llm_timeout_s=5)
    facts = gather(run.store, run.training_done, run.explanation_done, run.curve, settings)
    narrative = write_narrative(facts, settings)
    assert len(fake_llm.requests) == 2  # refused, retried, refused
    assert narrative.source == "deterministic" and "states money" in (narrative.fallback_reason or "")
    assert MONEY.search(narrative.summary) is None

    strong = strong_run(sample_factory)
    facts = gather(strong.store, strong.training_done, strong.explanation_done, strong.curve, settings)
    assert write_narrative(facts, settings).source == "llm"  # money is supported there: the answer stands


def test_action_priority_is_effect_times_confidence_and_stated_in_the_appendix(sample_factory):
    run = sample_factory(metrics={**METRICS, "calibration": 1.4})
    report, pages = report_and_pdf(run)
    plan = report["actionPlan"]
    assert [a["id"] for a in plan][:2] == ["model_targeting", "segment_hour"] and plan[-1]["id"] == "calibration"
    impacts = [a["impact"] for a in plan]
    assert impacts == sorted(impacts, reverse=True)
    for action in plan:  # the stated rule, applied: the low end of the 95% range of the CTR change
        assert action["priority"] == priority_of(action["impact"])
    assert plan[-1]["impact"] == 0 and plan[-1]["priority"] == "low"  # recalibration does not move CTR
    hour = next(a for a in plan if a["id"] == "segment_hour")
    assert "변수 검정도 같은 결론입니다: hour(시간대) 21시, 20시, 22시에 클릭 증가 (보정 p=0.004)" in hour["description"]
    assert report["priorityRule"] == PRIORITY_RULE
    appendix = "".join(pages[pages.index(next(p for p in pages if "분석 방법 및 가정" in p)):]).replace("\n", "")
    assert "우선순위는 효과 크기 × 신뢰도로 정합니다" in appendix
    assert "Benjamini-Hochberg 보정을 한 값(보정 p)" in appendix  # the features' test, stated


def test_an_action_on_a_column_the_feature_test_does_not_support_says_so(sample_factory):
    """The hour segments differ (profile) but the held-out test calls hour not significant: the action
    says it rests on the segment test only, and nothing calls hour a driver."""
    run = sample_factory()
    explanation = run.explanation.model_dump(mode="json")
    for feature in explanation["features"]:
        if feature["feature"] == "hour":
            feature.update(p_value=0.4, pValue=0.4, significant=False, auc_drop_ci=[-0.002, 0.004])
    write_document(run.store, run.explanation_location, Explanation.model_validate(explanation))
    facts = gather(run.store, run.training_done, run.explanation_done, run.curve, _settings())
    narrative = write_narrative(facts, _settings())
    hour = next(a for a in narrative.actions if a.id == "segment_hour")
    assert "모델의 변수 검정에서는 hour(시간대)(보정 p=0.400)이 유의하지 않아" in hour.description
    assert "hour(시간대) —" not in narrative.summary
    drivers = next(i for i in narrative.insights if i.title == "핵심 클릭 요인")
    assert not any(d.startswith("hour(") for d in drivers.details)
    for action in narrative.actions:  # no action leans on a feature the report calls not significant
        for feature in facts.features:
            if not feature.significant and f"{feature.name}(" in action.description:
                assert "유의하지 않아" in action.description, (action.id, feature.name)
