"""Facts and money: computed from the run's inputs with the stated formulas, never invented."""

from __future__ import annotations

import math

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from ctrops_common.documents import ProfileSegments
from ctrops_common.feature_names import parse_mapping_csv, save_override, shipped_feature_names
from ctrops_common.model_metrics import ModelMetrics
from ctrops_reporter.facts import (
    drivers,
    estimate_money,
    gather,
    segment_findings,
    two_proportion_p_value,
)
from ctrops_reporter.settings import MoneyAssumptions


def test_facts_carry_the_runs_metrics_features_and_segments(sample_run):
    facts = gather(sample_run.store, sample_run.training_done, sample_run.explanation_done, sample_run.curve,
                   MoneyAssumptions())
    metrics = sample_run.METRICS
    assert facts.metrics.auc == metrics["auc"] and facts.metrics.val_accuracy == metrics["val_accuracy"]
    assert [f.name for f in facts.features][:3] == ["history_a_1", "hour", "l_feat_14"]
    assert facts.features[1].p_value == 0.004 and (facts.features[1].ci_low, facts.features[1].ci_high) == (0.51, 0.74)
    profile = sample_run.profile
    rows = sum(h.rows for h in profile.segments.hour)
    clicks = sum(h.clicks for h in profile.segments.hour)
    assert (facts.rows, facts.clicks) == (rows, clicks)
    hour = next(s for s in facts.segments if s.dimension == "hour")
    assert {s.label for s in hour.best} == {"20시", "21시", "22시"}  # the planted peak hours
    assert hour.best[0].p_value < 0.001
    assert facts.correlation.features[0] == "history_a_1" and facts.correlation.names[0] == "과거 인기도 1"
    assert [(p.features, p.r) for p in facts.correlation.pairs][0] == (("history_a_1", "history_a_2"), 0.82)
    assert facts.correlation.threshold == 0.3
    assert len(facts.curve) == len(sample_run.CURVE)


def test_features_carry_the_held_out_evidence_and_direction_in_korean(sample_run):
    facts = gather(sample_run.store, sample_run.training_done, sample_run.explanation_done, sample_run.curve,
                   MoneyAssumptions())
    by_name = {f.name: f for f in facts.features}
    hour = by_name["hour"]
    assert hour.description == "시간대" and hour.group == "지면·시간"
    assert hour.direction_ko == "21시, 20시, 22시에 클릭 증가"  # hours spelled out, not "값 21"
    assert hour.effect_ko == "해당 값 CTR 3.31% vs 나머지 1.62%"
    assert (hour.auc_drop, hour.auc_drop_low, hour.auc_drop_high, hour.p_value_raw) == (0.018, 0.011, 0.025, 0.0004)
    assert by_name["history_a_1"].effect_ko == "상위 25% CTR 3.40% vs 하위 25% 0.90%"
    # 15 by importance, plus inventory_id: significant though 26th by importance.
    assert len(facts.features) == 16 and facts.features[-1].name == "inventory_id"
    assert "gender" not in by_name  # neither top 15 nor significant
    # Drivers: significant only, by the lower end of the AUC drop's interval (effect x confidence).
    assert [f.name for f in drivers(facts.features)] == ["history_a_1", "hour", "l_feat_14", "inventory_id",
                                                         "age_group"]


def test_names_follow_the_users_uploaded_mapping(sample_run):
    save_override(sample_run.store, parse_mapping_csv(
        "column,name,group\nhour,노출 시각,시간\nhistory_a_2,재방문 점수,이력\n".encode()))
    facts = gather(sample_run.store, sample_run.training_done, sample_run.explanation_done, sample_run.curve,
                   MoneyAssumptions())
    hour = next(f for f in facts.features if f.name == "hour")
    assert (hour.description, hour.group) == ("노출 시각", "시간")  # the explanation's "시간대" is not used
    assert facts.correlation.pairs[0].names == ("과거 인기도 1", "재방문 점수")
    assert facts.feature_names_digest != shipped_feature_names().digest()


def test_missing_profile_means_no_segments_and_base_ctr_from_the_data(sample_factory):
    run = sample_factory(with_profile=False)
    facts = gather(run.store, run.training_done, run.explanation_done, [], MoneyAssumptions())
    assert facts.segments == [] and facts.segments_available is False and facts.base_ctr is None
    assert facts.money.computable is False and facts.money.roi_change_points == 0.0

    table = pa.table({"clicked": pa.array([1] * 20 + [0] * 980, pa.int8())})
    target = run.store.path(f"files/{run.file_id}/data.parquet")
    target.parent.mkdir(parents=True)
    pq.write_table(table, target)
    facts = gather(run.store, run.training_done, run.explanation_done, [], MoneyAssumptions())
    assert (facts.rows, facts.clicks, facts.base_ctr) == (1000, 20, 2.0)
    assert facts.segments_available is False
    # No ModelResult (an older run): 4 validation clicks (20 x split 0.2) behind the AUC, so its
    # Hanley-McNeil interval is wide, the model is weak whatever its point AUC, and no money is shown.
    assert (facts.strength.val_rows, facts.strength.val_clicks, facts.strength.val_counts_estimated) == (200, 4, True)
    assert facts.strength.ci_method == "Hanley-McNeil" and facts.strength.auc_ci_low < 0.55
    assert facts.strength.verdict == "weak" and facts.money.computable is False
    assert "약함" in facts.money.reason


def test_the_whole_datas_clicks_are_the_segment_baseline_when_known(sample_run):
    """Ingest truncates some tables to their busiest values: the data's totals win over a table's sums."""
    clicked = [1] * 1500 + [0] * 98500  # 1.5% over 100,000 rows, more than the profile's tables hold
    target = sample_run.store.path(f"files/{sample_run.file_id}/data.parquet")
    pq.write_table(pa.table({"clicked": pa.array(clicked, pa.int8())}), target)
    facts = gather(sample_run.store, sample_run.training_done, sample_run.explanation_done, [], MoneyAssumptions())
    assert (facts.rows, facts.clicks, facts.base_ctr) == (100_000, 1500, 1.5)
    hour = next(s for s in facts.segments if s.dimension == "hour")
    assert hour.base_ctr == 1.5
    assert hour.best[0].lift == pytest.approx(hour.best[0].ctr / 1.5, abs=1e-3)


def test_money_follows_the_stated_formulas():
    assumptions = MoneyAssumptions(report_monthly_impressions=1_000_000, report_cpm_krw=6000,
                                   report_conversion_rate=0.03, report_conversion_value_krw=40000,
                                   report_targeted_share=0.2)
    metrics = ModelMetrics(precision=0.08, recall=0.5)
    money = estimate_money(metrics, 0.02, assumptions, val_clicks=400, verdict="usable")
    flagged = 0.5 * 0.02 / 0.08  # 12.5% of traffic is flagged: caps the 20% asked for
    assert money.flagged_share == pytest.approx(flagged) and money.effective_targeted_share == pytest.approx(flagged)
    model_ctr = 0.02 + flagged * (0.08 - 0.02)
    assert money.model_ctr == pytest.approx(model_ctr)
    spend = 6000 * 1000
    revenue_base, revenue_model = 1e6 * 0.02 * 0.03 * 40000, 1e6 * model_ctr * 0.03 * 40000
    assert money.additional_revenue_krw == pytest.approx(revenue_model - revenue_base)
    assert money.revenue_change_percent == pytest.approx(100 * (model_ctr / 0.02 - 1))
    assert money.monthly_spend_krw == spend
    assert money.roi_base_percent == pytest.approx(100 * (revenue_base - spend) / spend)
    # "ROI" is the real return on spend: the change is in percentage points, not the revenue ratio.
    assert money.roi_change_points == pytest.approx(100 * (revenue_model - revenue_base) / spend)
    assert money.roi_change_points != pytest.approx(money.revenue_change_percent)

    # The range: 200 of 400 validation clicks found among 2,500 flagged rows; Wilson interval by hand.
    assert (money.targeted_clicks, money.targeted_rows) == (pytest.approx(200), pytest.approx(2500))
    z, n, p = 1.959963984540054, 2500, 0.08
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    assert (money.targeted_ctr_low, money.targeted_ctr_high) == (pytest.approx(centre - half),
                                                                  pytest.approx(centre + half))
    assert money.targeted_ctr_low == pytest.approx(0.0700, abs=1e-4)
    assert money.targeted_ctr_high == pytest.approx(0.0913, abs=1e-4)
    low_ctr = 0.02 + flagged * (money.targeted_ctr_low - 0.02)
    assert money.additional_revenue_low_krw == pytest.approx(1e6 * (low_ctr - 0.02) * 0.03 * 40000)
    assert money.additional_revenue_low_krw < money.additional_revenue_krw < money.additional_revenue_high_krw

    worse = estimate_money(ModelMetrics(precision=0.01, recall=0.5), 0.02, assumptions, val_clicks=400, verdict="usable")
    assert worse.revenue_change_percent < 0  # a model worse than random says so, it is not hidden

    assert estimate_money(metrics, 0.02, assumptions, val_clicks=400, verdict="weak").computable is False
    unknown = estimate_money(metrics, 0.02, assumptions, val_clicks=None, verdict="usable")
    assert unknown.computable is False and "범위" in unknown.reason  # no range, no figure


def test_small_segments_are_not_recommended_and_p_value_is_a_two_proportion_test():
    segments = {"hour": [{"value": 1, "rows": 5, "clicks": 5, "ctr": 100.0},
                         {"value": 2, "rows": 1000, "clicks": 40, "ctr": 4.0},
                         {"value": 3, "rows": 1000, "clicks": 10, "ctr": 1.0}]}
    (finding,) = segment_findings(ProfileSegments.model_validate(segments), min_rows=30)
    assert [s.label for s in finding.best] == ["2시", "3시"]  # the 5-row hour is too small
    assert finding.base_ctr == pytest.approx(100 * 55 / 2005, abs=1e-3)
    assert two_proportion_p_value(40, 1000, 55, 2005) < 0.001
    assert two_proportion_p_value(10, 1000, 20, 2000) == pytest.approx(1.0)


def test_the_report_document_round_trips_and_rejects_an_unknown_key(sample_run):
    """report.json as the reporter writes it validates as ``ReportDoc``, reads back equal, keeps the keys the
    frontend reads (camelCase, ``run_id`` beside ``runId``, ``f1_score`` beside ``f1``), and an undeclared
    key is an error, at the top and inside."""
    import json

    from pydantic import ValidationError

    from ctrops_common.documents import ReportDoc
    from ctrops_reporter.narrative import write_narrative
    from ctrops_reporter.report import build_report
    from ctrops_reporter.settings import ReporterSettings

    settings = ReporterSettings(openai_api_key=None)
    facts = gather(sample_run.store, sample_run.training_done, sample_run.explanation_done, sample_run.curve, settings)
    report = build_report(facts, write_narrative(facts, settings), "digest-1")
    written = report.model_dump_json()
    assert ReportDoc.model_validate_json(written) == report
    document = json.loads(written)
    assert document["runId"] == document["run_id"] == sample_run.run_id and document["inputsDigest"] == "digest-1"
    assert document["metrics"]["f1_score"] == document["metrics"]["f1"] == 0.1317
    assert {"summary", "accuracy", "roiIncrease", "additionalRevenue", "topFeatures", "aiInsights",
            "actionPlan", "model_used"} <= set(document)  # the contract's fields (api-contract.md)
    assert set(document["topFeatures"][0]) >= {"name", "description", "importance", "pValue", "color"}
    with pytest.raises(ValidationError, match="extra_forbidden"):
        ReportDoc.model_validate({**document, "surprise": 1})
    document["modelStrength"]["surprise"] = 1
    with pytest.raises(ValidationError, match="extra_forbidden"):
        ReportDoc.model_validate(document)
    document["modelStrength"].pop("surprise")
    document["run_id"] = "another"  # the two spellings of one value must agree
    with pytest.raises(ValidationError, match="differs"):
        ReportDoc.model_validate(document)
