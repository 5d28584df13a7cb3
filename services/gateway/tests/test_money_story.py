"""One money model, one story: the marketer dashboard, /api/report/ai, the PDF and ``make demo``
show the same verdict, money figures, spend and top segment for the same run (issue 13).

The report is written by a real reporter process from a run's events; the other three
surfaces read it back. A weak run shows no money figure on any of them.
"""

from __future__ import annotations

import importlib.util
import io
from pathlib import Path

from pypdf import PdfReader

from ctrops_common.dataset import explanation_path, profile_path
from ctrops_common.documents import ReportDoc, write_document
from ctrops_common.events import ModelMetrics, ExplanationDone, Topic, TrainingDone, new_id
from ctrops_common.sample_documents import explanation_document, profile_document
from ctrops_common.storage import FileStore
from ctrops_common.testing import publish_events as publish
from ctrops_common.testing import wait_for
from ctrops_ingest.highlights import write_highlights  # the files as ingest writes them

ROOT = Path(__file__).resolve().parents[3]
METRICS = {"train_loss": 0.52, "val_loss": 0.0921, "train_accuracy": 0.74, "val_accuracy": 0.9791, "auc": 0.7386,
           "ap": 0.0874, "logloss": 0.0921, "calibration": 1.0731, "score": 0.4813, "precision": 0.0812,
           "recall": 0.3478, "f1": 0.1317, "threshold": 0.0612}
FEATURES = [
    {"feature": "history_a_1", "importance": 1.0, "p_value": 0.0009, "ci": [0.83, 1.0], "description": "과거 인기도 1"},
    {"feature": "age_group", "importance": 0.29, "p_value": 0.03, "ci": [0.17, 0.40], "description": "연령대"},
]


def pdf_text(content: bytes) -> str:
    return "\n".join(page.extract_text() for page in PdfReader(io.BytesIO(content)).pages)


def demo_module():
    spec = importlib.util.spec_from_file_location("ctrops_demo", ROOT / "scripts" / "demo.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run_with_segments(data_dir: str, metrics: dict) -> tuple[str, TrainingDone, ExplanationDone]:
    """A finished run whose data has one audience segment that clearly clicks more (4% vs ~1.9%)."""
    store = FileStore(Path(data_dir))
    run_id, file_id = new_id(), new_id()
    write_document(store, explanation_path(run_id), explanation_document(run_id, file_id, FEATURES))
    hours = [{"value": h, "rows": 1000, "clicks": 40 if h == 21 else 18} for h in range(24)]
    audience = [
        {"age_group": 4.0, "gender": 1.0, "rows": 6000, "clicks": 240},
        {"age_group": 5.0, "gender": 2.0, "rows": 8000, "clicks": 120},
        {"age_group": 3.0, "gender": 1.0, "rows": 10000, "clicks": 94},
    ]
    profile = profile_document(hour=hours, age_group_gender=audience)
    write_document(store, profile_path(file_id), profile)
    write_highlights(store, file_id, profile)
    done = TrainingDone(run_id=run_id, file_id=file_id, model_location=f"runs/{run_id}/model",
                        metrics=ModelMetrics(**metrics), best_epoch=2, epochs_run=2, duration_s=12.0,
                        experiment_name="money_story", config={"epochs": 2})
    return run_id, done, ExplanationDone(run_id=run_id, location=explanation_path(run_id), top_features=FEATURES)


def flat(text: str) -> str:
    return text.replace("\n", "")


def surfaces(gateway_client, views, run_id: str) -> tuple[dict, dict, str, str]:
    """(report.json via /api/report/ai, the dashboard's businessMetrics + segments, PDF text, demo lines)."""
    wait_for(lambda: views.latest(Topic.TRAINING_DONE, run_id), lambda done: done is not None, timeout_s=60)
    report = gateway_client.get(f"/api/report/ai/{run_id}")  # waits for the reporter
    assert report.status_code == 200, report.text
    dashboard = gateway_client.get("/api/dashboard/client").json()
    assert dashboard["runId"] == run_id and dashboard["reportStatus"] == "ready"
    pdf = gateway_client.get(f"/api/report/pdf/{run_id}")
    assert pdf.status_code == 200, pdf.text
    demo = "\n".join(demo_module().money_summary(report.json()))
    return report.json(), dashboard, flat(pdf_text(pdf.content)), demo


def test_dashboard_report_pdf_and_demo_tell_the_same_money_story(start_service, gateway_client, platform_env):
    start_service("reporter", {"CTROPS_OPENAI_API_KEY": ""})
    views = gateway_client.app.state.gateway.views
    run_id, done, explained = run_with_segments(platform_env["data_dir"], METRICS)
    publish((Topic.TRAINING_DONE, done), (Topic.EXPLANATION_DONE, explained))
    report, dashboard, pdf, demo = surfaces(gateway_client, views, run_id)

    doc = ReportDoc.model_validate(report)
    assert doc.has_money and doc.model_strength.verdict != "weak"
    low, high = doc.money_range.additional_revenue_krw
    roi_low, roi_high = doc.money_range.roi_change_points
    spend = doc.assumptions.monthly_spend_krw
    finding, top = doc.top_segment()
    assert top.label == "연령대 4 · 성별 1"

    money = dashboard["businessMetrics"]
    assert money["status"] == "estimated" and money["verdictKo"] == doc.model_strength.verdict_ko
    assert money["additionalRevenue"] == report["additionalRevenue"] and money["additionalRevenue"] > 0
    assert money["additionalRevenueRange"] == [low, high]
    assert money["roiIncrease"] == report["roiIncrease"] and money["roiIncreaseRange"] == [roi_low, roi_high]
    assert money["revenueChangePercent"] == report["revenueChangePercent"]
    assert money["estimatedMonthlyCost"] == spend == 6_000_000
    assert money["topSegment"]["label"] == top.label == dashboard["customerSegments"][0]["label"]
    assert money["topSegment"]["pAdjusted"] == top.p_adjusted

    revenue_range = f"{low:+,.0f}원 ~ {high:+,.0f}원"
    roi_range = f"{roi_low:+.2f}%p ~ {roi_high:+.2f}%p"
    for surface in (pdf, demo):
        assert revenue_range in surface and roi_range in surface and f"{spend:,.0f}원" in surface
        assert doc.model_strength.verdict_ko in surface and top.label in surface
    assert f"{report['additionalRevenue']:+,.0f}원" in demo


def test_a_weak_run_has_no_money_on_any_surface(start_service, gateway_client, platform_env):
    start_service("reporter", {"CTROPS_OPENAI_API_KEY": ""})
    views = gateway_client.app.state.gateway.views
    weak = {**METRICS, "auc": 0.531, "ap": 0.021, "precision": 0.02, "recall": 0.5}
    run_id, done, explained = run_with_segments(platform_env["data_dir"], weak)
    publish((Topic.TRAINING_DONE, done), (Topic.EXPLANATION_DONE, explained))
    report, dashboard, pdf, demo = surfaces(gateway_client, views, run_id)

    assert report["modelStrength"]["verdict"] == "weak" and report["moneyRange"] is None
    money = dashboard["businessMetrics"]
    assert money["status"] == "no_estimate" and money["verdict"] == "weak"
    for key in ("additionalRevenue", "additionalRevenueRange", "roiIncrease", "roiIncreaseRange",
                "estimatedMonthlyCost", "estimatedMonthlyRevenue", "modelMonthlyRevenue", "revenueChangePercent"):
        assert money[key] is None, key
    for surface in (pdf, demo):
        assert "원 ~" not in surface and "%p ~" not in surface and "월 광고비" not in surface
    assert "money: no estimate" in demo and "금액 추정: 하지 않음" in pdf
