"""Report routes through the gateway: the answers the gateway gives by itself (unknown runs, runs without a
report yet, a stored file that is not a report) on the in-memory bus (marker inmemory); PDFs and reports
through a real reporter process on the real broker."""

from __future__ import annotations

import io
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from pypdf import PdfReader

from ctrops_common.dataset import explanation_path, profile_path, report_path
from ctrops_common.documents import ReportDoc, read_document, write_document
from ctrops_common.events import (
    ModelMetrics,
    ExplanationDone,
    Topic,
    TrainingDone,
    TrainingRequested,
    new_id,
)
from ctrops_common.sample_documents import explanation_document, profile_document
from ctrops_common.storage import FileStore
from ctrops_common.testing import publish_events as publish

METRICS = {"train_loss": 0.52, "val_loss": 0.0921, "train_accuracy": 0.74, "val_accuracy": 0.9791, "auc": 0.7386,
           "ap": 0.0874, "logloss": 0.0921, "calibration": 1.0731, "score": 0.4813, "precision": 0.0812,
           "recall": 0.3478, "f1": 0.1317, "threshold": 0.0612}
FEATURES = [
    {"feature": "history_a_1", "importance": 1.0, "p_value": 0.0009, "ci": [0.83, 1.0], "description": "과거 인기도 1"},
    {"feature": "hour", "importance": 0.62, "p_value": 0.004, "ci": [0.51, 0.74], "description": "시간대"},
    {"feature": "age_group", "importance": 0.29, "p_value": 0.03, "ci": [0.17, 0.40], "description": "연령대"},
]


def completed_run(data_dir: str) -> tuple[str, TrainingDone, ExplanationDone]:
    """A finished run's files (explanation, data profile) and its two events, not yet published."""
    store = FileStore(Path(data_dir))
    run_id, file_id = new_id(), new_id()
    write_document(store, explanation_path(run_id), explanation_document(
        run_id, file_id, FEATURES, matrix=[[1.0, 0.2, -0.1], [0.2, 1.0, 0.05], [-0.1, 0.05, 1.0]]))
    hours = [{"value": h, "rows": 1000, "clicks": 40 if h == 21 else 18} for h in range(24)]
    write_document(store, profile_path(file_id), profile_document(hour=hours))
    done = TrainingDone(run_id=run_id, file_id=file_id, model_location=f"runs/{run_id}/model",
                        metrics=ModelMetrics(**METRICS), best_epoch=2, epochs_run=2, duration_s=12.0,
                        experiment_name="CTR_Experiment_gateway_report", config={"epochs": 2})
    explained = ExplanationDone(run_id=run_id, location=explanation_path(run_id), top_features=FEATURES)
    return run_id, done, explained


def wait_until(predicate, timeout_s: float = 60, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


def pdf_text(content: bytes) -> str:
    return "\n".join(page.extract_text() for page in PdfReader(io.BytesIO(content)).pages)


def assert_json_error(response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert isinstance(body["detail"], str) and body["detail"]
    return body


@pytest.mark.inmemory
def test_unknown_runs_are_404_json_never_a_pdf(memory_gateway):
    gateway_client = memory_gateway.client
    for path in ("/api/report/ai/demo-run", f"/api/report/ai/{new_id()}", "/api/report/pdf/mock-run-1700000000",
                 "/api/report/pdf/latest", "/api/report/ai/latest"):
        assert_json_error(gateway_client.get(path), 404)
    assert_json_error(gateway_client.post("/api/report/generate-pdf/run-abc12345"), 404)
    assert_json_error(gateway_client.post(f"/api/report/generate-pdf/{new_id()}", json={}), 404)


@pytest.mark.inmemory
def test_runs_without_a_report_yet_answer_409_with_retry_after(memory_gateway, data_dir):
    gateway_client = memory_gateway.client
    views = memory_gateway.state.views
    memory_gateway.state.settings.report_timeout_s = 1.0  # no explainer: each request waits this long
    run_id, done, _ = completed_run(str(data_dir))
    training = new_id()
    memory_gateway.publish(
        (Topic.TRAINING_DONE, done),
        (Topic.TRAINING_REQUESTED, TrainingRequested(run_id=training, file_id=new_id(),
                                                     parquet_location="files/x/data.parquet", config={})))
    assert views.latest(Topic.TRAINING_REQUESTED, training) is not None  # events recorded
    assert views.latest(Topic.TRAINING_DONE, run_id) is not None
    for path in (f"/api/report/ai/{run_id}", f"/api/report/pdf/{run_id}", "/api/report/pdf/latest",
                 f"/api/report/ai/{training}"):
        response = gateway_client.get(path)
        assert_json_error(response, 409)
        assert int(response.headers["retry-after"]) > 0
    response = gateway_client.post(f"/api/report/generate-pdf/{run_id}", json={"includeCharts": False})
    assert_json_error(response, 409)
    assert "explanation" in response.json()["detail"]


@pytest.mark.inmemory
def test_a_stored_report_that_is_not_a_report_document_answers_502_json(memory_gateway, data_dir):
    gateway_client = memory_gateway.client
    store = FileStore(data_dir)
    run_id = new_id()
    for stored in ('{"run_id": "%s", "summary": "a report.json of an older schema"}' % run_id, "{not json"):
        store.write_bytes(report_path(run_id), stored.encode())
        body = assert_json_error(gateway_client.get(f"/api/report/ai/{run_id}"), 502)
        assert run_id in body["detail"] and "does not match the report document" in body["detail"]


def test_pdf_latest_works_without_a_generate_call_and_options_are_honoured(
    start_service, gateway_client, platform_env
):
    start_service("reporter", {"CTROPS_OPENAI_API_KEY": ""})
    views = gateway_client.app.state.gateway.views
    store = FileStore(Path(platform_env["data_dir"]))
    run_id, done, explained = completed_run(platform_env["data_dir"])
    publish((Topic.TRAINING_DONE, done), (Topic.EXPLANATION_DONE, explained))
    wait_until(lambda: views.latest(Topic.EXPLANATION_DONE, run_id) is not None, what="explanation recorded")

    response = gateway_client.get("/api/report/pdf/latest")  # no generate-pdf call before
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/pdf"
    text = pdf_text(response.content)
    assert "경영진 요약" in text and "0.7386" in text and "97.91%" in text and "학습 곡선" in text

    report = gateway_client.get("/api/report/ai/latest").json()
    assert ReportDoc.model_validate(report) == read_document(store, report_path(run_id), ReportDoc)  # the reporter's
    assert report["run_id"] == run_id and report["accuracy"] == 97.91
    assert report["topFeatures"][0]["name"] == "history_a_1" and report["topFeatures"][0]["pValue"] == 0.0009
    assert report["model_used"] == "deterministic-ko-v1"
    assert {"monthlyImpressions", "cpcKrw", "cpmKrw", "conversionRate", "conversionValueKrw"} <= set(
        report["assumptions"])

    # No PDF on disk at all: the GET generates one on demand through the reporter.
    for pdf in store.path(f"runs/{run_id}").glob("report*.pdf"):
        pdf.unlink()
    response = gateway_client.get(f"/api/report/pdf/{run_id}")
    assert response.status_code == 200 and response.content.startswith(b"%PDF-")
    assert store.exists(f"runs/{run_id}/report.pdf")

    # Options: the generated PDF, then served by GET, lacks the switched-off sections.
    response = gateway_client.post(f"/api/report/generate-pdf/{run_id}",
                                   json={"includeCharts": False, "include_insights": False})
    assert response.status_code == 200, response.text
    assert response.json()["pdf_url"] == f"/api/report/pdf/{run_id}" and response.json()["status"] == "generated"
    text = pdf_text(gateway_client.get(response.json()["pdf_url"]).content)
    assert "학습 곡선" not in text and "AI 인사이트" not in text and "실행 계획" in text

    assert_json_error(gateway_client.post(f"/api/report/generate-pdf/{run_id}", json={"includeCharts": "maybe"}), 422)

    # No body at all: every section, the full PDF (reused, already rendered above).
    response = gateway_client.post(f"/api/report/generate-pdf/{run_id}")
    assert response.status_code == 200, response.text
    assert "학습 곡선" in pdf_text(gateway_client.get(f"/api/report/pdf/{run_id}").content)


def test_a_pdf_asked_the_moment_training_completes_waits_for_the_report(start_service, gateway_client, platform_env):
    """The frontend asks for the PDF as soon as training completes, never retries: it gets 200, not 409."""
    start_service("reporter", {"CTROPS_OPENAI_API_KEY": ""})
    views = gateway_client.app.state.gateway.views
    for ask in (lambda run_id: gateway_client.get(f"/api/report/pdf/{run_id}"),
                lambda run_id: gateway_client.post(f"/api/report/generate-pdf/{run_id}", json={"includeCharts": False})):
        run_id, done, explained = completed_run(platform_env["data_dir"])
        publish((Topic.TRAINING_DONE, done))
        wait_until(lambda: views.latest(Topic.TRAINING_DONE, run_id) is not None, what="training.done recorded")
        # The explainer finishes 2 s after the click; the request waits for it and for the report.
        later = threading.Timer(2.0, publish, args=((Topic.EXPLANATION_DONE, explained),))
        later.start()
        started = time.monotonic()
        response = ask(run_id)
        later.join()
        assert response.status_code == 200, response.text
        assert time.monotonic() - started >= 2.0  # it did wait for the explanation
        if response.headers["content-type"] == "application/pdf":
            assert f"ctr-report-{run_id}.pdf" in response.headers["content-disposition"]
            assert "0.7386" in pdf_text(response.content)
        else:
            assert response.json()["run_id"] == run_id and response.json()["status"] == "generated"
            assert "학습 곡선" not in pdf_text(gateway_client.get(response.json()["pdf_url"]).content)


def test_latest_report_is_the_newest_run_that_has_one_while_a_newer_run_is_explained(
    start_service, gateway_client, platform_env
):
    start_service("reporter", {"CTROPS_OPENAI_API_KEY": ""})
    views = gateway_client.app.state.gateway.views
    older, done, explained = completed_run(platform_env["data_dir"])
    publish((Topic.TRAINING_DONE, done), (Topic.EXPLANATION_DONE, explained))
    wait_until(lambda: views.latest(Topic.TRAINING_DONE, older) is not None, what="training.done recorded")
    assert gateway_client.get(f"/api/report/ai/{older}").status_code == 200  # waits for the report
    newer, done, explained = completed_run(platform_env["data_dir"])
    publish((Topic.TRAINING_DONE, done))  # trained, being explained
    wait_until(lambda: views.latest(Topic.TRAINING_DONE, newer) is not None, what="training.done recorded")

    started = time.monotonic()
    pdf = gateway_client.get("/api/report/pdf/latest")
    assert pdf.status_code == 200 and f"ctr-report-{older}.pdf" in pdf.headers["content-disposition"]
    assert gateway_client.get("/api/report/ai/latest").json()["run_id"] == older
    generated = gateway_client.post("/api/report/generate-pdf/latest", json={})
    assert generated.status_code == 200 and generated.json()["run_id"] == older
    assert time.monotonic() - started < 20  # served at once, not after the newer run's wait
    # Training and performance: latest stays the newest completed run.
    assert gateway_client.get("/api/train/status/latest").json()["run_id"] == newer

    publish((Topic.EXPLANATION_DONE, explained))
    assert gateway_client.get(f"/api/report/ai/{newer}").status_code == 200
    assert gateway_client.get("/api/report/ai/latest").json()["run_id"] == newer
