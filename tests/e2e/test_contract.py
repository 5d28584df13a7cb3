"""The whole gateway contract (/work/shared/spec/api-contract.md) on the real stack, as a client sees it.

One journey on a small generated file: upload -> train (2 epochs) watched over
/ws/training -> status, runs -> explanation (feature importance, correlation) -> AI
report -> PDF -> performance -> both dashboards -> /ws/performance; then ``latest`` on
every run path, the frontend's made-up ids, and CORS. The stack's HTTP client fails a
test at the first 5xx; the last test also reads the gateway's own request counter.
"""

from __future__ import annotations

import asyncio
import io
import json
import re
import time
from typing import Any

import pytest
import websockets

from ctrops_common.dataset import explanation_path
from ctrops_common.documents import Explanation, read_document
from ctrops_common.events import Topic
from ctrops_common.storage import FileStore


HANGUL = re.compile(r"[\uac00-\ud7a3]")
BOTH_SPELLINGS = {"train_loss", "val_loss", "train_accuracy", "val_accuracy",
                  "trainLoss", "valLoss", "trainAccuracy", "valAccuracy"}
# Ids the frontend sends that never existed, and a well-formed id nobody issued.
UNKNOWN_IDS = ["demo-run", f"mock-run-{int(time.time() * 1000)}", "run-abc12345", "0123456789abcdef0123456789abcdef"]
RUN_PATHS = ["/api/train/status/{}", "/api/report/ai/{}", "/api/report/feature-importance/{}", "/api/features/{}",
             "/api/report/correlation/{}", "/api/report/pdf/{}", "/api/performance/{}", "/api/metrics/{}"]


async def ws_messages(url: str, until: Any, timeout_s: float) -> list[tuple[float, dict[str, Any]]]:
    """(seconds since connect, message) until ``until(message)`` is true; JSON refused with NaN."""
    found = []
    async with websockets.connect(url, open_timeout=30) as socket:
        opened = time.monotonic()
        async with asyncio.timeout(timeout_s):
            while True:
                message = json.loads(await socket.recv(), parse_constant=lambda c: pytest.fail(f"{c} on {url}"))
                found.append((time.monotonic() - opened, message))
                if until(message):
                    return found


async def ws_first_and_quiet(url: str, quiet_s: float = 1.5) -> tuple[list[dict[str, Any]], bool]:
    """Messages sent at once on connect, and whether the socket was still open after ``quiet_s`` more."""
    found = []
    async with websockets.connect(url, open_timeout=30) as socket:
        found.append(json.loads(await asyncio.wait_for(socket.recv(), 10)))
        try:
            while True:
                found.append(json.loads(await asyncio.wait_for(socket.recv(), quiet_s)))
        except TimeoutError:
            pass
        await socket.ping()  # raises if the server closed the socket
        return found, True


@pytest.fixture(scope="module")
def journey(stack, sample_csv) -> dict[str, Any]:
    """Upload, train while watching the run's WebSocket from the first second, wait for the report."""
    csv, truth = sample_csv
    t0 = time.monotonic()
    upload = stack.upload(csv)
    run_id = stack.train(upload["file_id"], stack.fast_training)
    live = asyncio.run(ws_messages(f"{stack.ws_url}/ws/training/{run_id}",
                                   lambda m: m["type"] in ("training_complete", "training_failed"), 300))
    trained_s = time.monotonic() - t0
    report = stack.wait_ready_200(f"/api/report/ai/{run_id}", 300)
    print(f"\nupload+training {trained_s:.1f}s, explanation+report {time.monotonic() - t0 - trained_s:.1f}s")
    return {"truth": truth, "upload": upload, "run_id": run_id, "live": live, "report": report}


@pytest.fixture(scope="module")
def stack_env() -> dict[str, str]:
    """MLflow on (the embedded SQLite store under the stack's data dir): the journey checks the registry."""
    return {"CTROPS_TRAINER_MLFLOW_ENABLED": "true"}


def test_health_lists_seven_services_up_and_the_broker(stack):
    body = stack.health()
    assert body["status"] == "healthy"
    assert set(body["services"]) == {"ingest", "trainer", "explainer", "reporter", "monitor", "scorer", "gateway"}
    assert all(s["status"] == "up" for s in body["services"].values())
    assert body["broker"]["reachable"] is True
    assert body["timestamp"]


def test_upload_answers_every_contract_field(journey):
    body, truth = journey["upload"], journey["truth"]
    assert re.fullmatch(r"[0-9a-f]{32}", body["file_id"])
    assert body["filename"] == "e2e_clicks.csv"
    assert body["rows"] == truth["rows"] == 4000
    assert len(body["columns"]) == 119 and {"clicked", "seq", "hour", "age_group"} <= set(body["columns"])
    assert body["validation"]["isValid"] is True
    assert isinstance(body["validation"]["errors"], list) and isinstance(body["validation"]["warnings"], list)
    info = body["info"]
    assert info["totalRows"] == 4000 and info["totalColumns"] == 119
    assert info["clickedOne"] == truth["clicks"] and info["clickedOne"] + info["clickedZero"] == 4000
    assert info["ctr"] == pytest.approx(100 * truth["clicks"] / 4000, abs=0.01)  # percent
    assert 0 <= info["missingPercentage"] <= 100 and isinstance(info["missingValues"], int)
    assert isinstance(info["duplicateRows"], int)
    assert len(body["preview"]) == 10 and set(body["preview"][0]) == set(body["columns"])
    assert body["column_descriptions"]["hour"] == "시간대"
    assert HANGUL.search(body["column_descriptions"]["seq"])


def test_training_websocket_streams_live_epochs_with_both_spellings_then_completes(stack, journey):
    messages = [m for _, m in journey["live"]]
    first = messages[0]
    assert first["type"] == "log" and HANGUL.search(first["message"]), first  # the status, at once
    assert journey["live"][0][0] < 2.0  # pushed within 2 s of connecting, the client sends nothing
    epochs = [m for m in messages if m["type"] == "epoch_update"]
    assert [m["epoch"] for m in epochs] == [1, 2]  # one per finished epoch, 1-based, no repeats
    for m in epochs:
        assert m["total_epochs"] == 2
        assert BOTH_SPELLINGS <= set(m["metrics"]), m["metrics"]
        assert m["metrics"]["train_loss"] == m["metrics"]["trainLoss"]
        assert m["metrics"]["val_accuracy"] == m["metrics"]["valAccuracy"]
        assert 0 <= m["metrics"]["val_accuracy"] <= 1 and "auc" in m["metrics"]
    # The status log said how many epochs were done at connect time; the rest came live.
    done_at_connect = int(re.search(r"(\d+)/2", first["message"]).group(1)) if "/2" in first["message"] else 0
    assert done_at_connect < 2, "the whole run finished before the socket opened: nothing was live"
    assert any(m["type"] == "log" for m in messages[1:])  # Korean progress lines
    final = messages[-1]
    assert final["type"] == "training_complete", final
    assert BOTH_SPELLINGS <= set(final["metrics"]) and stack.all_finite(final["metrics"])


async def test_training_websocket_replays_the_history_to_a_late_client(stack, journey):
    run_id = journey["run_id"]
    history = await ws_messages(f"{stack.ws_url}/ws/training/{run_id}", lambda m: m["type"] == "training_complete", 30)
    kinds = [m["type"] for _, m in history]
    assert kinds[0] == "log" and "완료" in history[0][1]["message"]
    assert [m["epoch"] for _, m in history if m["type"] == "epoch_update"] == [1, 2]
    assert kinds[-1] == "training_complete"
    assert history[0][0] < 2.0 and history[-1][0] < 5.0  # the whole history at once, nothing waited for


def test_status_and_runs(stack, journey):
    run_id, file_id = journey["run_id"], journey["upload"]["file_id"]
    status = stack.json(f"/api/train/status/{run_id}")
    assert status["status"] == "completed"
    assert status["current_epoch"] == status["total_epochs"] == 2
    assert BOTH_SPELLINGS <= set(status["metrics"]) and stack.all_finite(status)
    runs = stack.json("/api/train/runs")
    assert isinstance(runs, list)
    ours = next(r for r in runs if r["run_id"] == run_id)
    assert ours["status"] == "completed" and ours["file_id"] == file_id
    assert 0 <= ours["accuracy"] <= 1
    assert re.match(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d", ours["created_at"])
    created = [r["created_at"] for r in runs]
    assert created == sorted(created, reverse=True)  # newest first


def test_the_champion_is_registered_in_mlflow_and_is_the_model_explained(stack, journey):
    """Issue 18: both models trained, the better one registered (alias champion), and the explainer
    loaded exactly that registered version through the tracking store."""
    from mlflow.tracking import MlflowClient

    run_id = journey["run_id"]
    status = stack.json(f"/api/train/status/{run_id}")
    assert {m["kind"] for m in status["models"]} == {"lstm", "gbdt"}
    assert status["champion"] in ("lstm", "gbdt")
    assert status["model_uri"] == f"models:/ctrops-ctr/{status['registered_version']}"
    client = MlflowClient(f"sqlite:///{stack.data_dir / 'mlflow' / 'mlflow.db'}")
    version = client.get_model_version("ctrops-ctr", str(status["registered_version"]))
    assert version.run_id == status["mlflow_run_id"] and version.tags["ctrops.kind"] == status["champion"]
    assert "champion" in version.aliases
    stack.wait_ready_200(f"/api/report/feature-importance/{run_id}")
    explanation = read_document(FileStore(stack.data_dir), explanation_path(run_id), Explanation)
    assert explanation.model_uri == status["model_uri"]
    assert explanation.model_version == status["registered_version"]
    assert explanation.model_kind == status["champion"]


def test_feature_importance_and_its_alias(stack, journey):
    run_id = journey["run_id"]
    features = stack.json(f"/api/report/feature-importance/{run_id}")
    assert stack.json(f"/api/features/{run_id}") == features
    assert len(features) >= 5
    importances = [f["importance"] for f in features]
    assert importances == sorted(importances, reverse=True) and importances[0] == 1.0
    for f in features:
        assert 0 <= f["importance"] <= 1 and 0 <= f["pValue"] <= 1
        low, high = f["ci"]
        assert 0 <= low <= high <= 1
        assert HANGUL.search(f["description"]), f
    assert "seq" in {f["feature"] for f in features}  # the behaviour sequence is explained too


def test_correlation_is_square_symmetric_with_unit_diagonal(stack, journey):
    body = stack.json(f"/api/report/correlation/{journey['run_id']}")
    names, matrix = body["features"], body["matrix"]
    assert len(names) >= 2 and len(matrix) == len(names)
    for i, row in enumerate(matrix):
        assert len(row) == len(names)
        assert row[i] == pytest.approx(1.0)
        for j, value in enumerate(row):
            assert value is not None and -1 <= value <= 1
            assert value == pytest.approx(matrix[j][i])


def test_ai_report_has_the_contract_shape(stack, journey):
    report = journey["report"]
    assert HANGUL.search(report["summary"])
    assert 0 <= report["accuracy"] <= 100  # percent
    for key in ("roiIncrease", "additionalRevenue"):
        assert isinstance(report[key], (int, float))
    assert report["topFeatures"]
    for f in report["topFeatures"]:
        assert {"name", "description", "importance", "pValue", "color"} <= set(f)
        assert 0 <= f["importance"] <= 1
    for insight in report["aiInsights"]:
        assert {"icon", "type", "title", "message", "details", "action"} <= set(insight)
        assert insight["type"] in ("success", "warning", "info")
    for item in report["actionPlan"]:
        assert {"title", "description", "priority", "impact", "duration", "cost", "color"} <= set(item)
        assert item["priority"] in ("high", "medium", "low")
    assert stack.all_finite(report)


def test_generate_pdf_then_download_it_with_korean_text(stack, journey):
    from pypdf import PdfReader

    run_id = journey["run_id"]
    response = stack.http.post(f"/api/report/generate-pdf/{run_id}",
                               json={"includeCharts": True, "includeInsights": True, "includeActionPlan": True})
    assert response.status_code == 200, response.text
    body = stack.strict_json(response)
    assert body["pdf_url"] == f"/api/report/pdf/{run_id}" and body["status"] == "generated"
    pdf = stack.get(body["pdf_url"])
    assert pdf.status_code == 200 and pdf.headers["content-type"] == "application/pdf"
    assert pdf.content.startswith(b"%PDF")
    text = "".join(page.extract_text() for page in PdfReader(io.BytesIO(pdf.content)).pages)
    assert "CTR 예측 AI 마케팅 리포트" in text
    assert journey["report"]["topFeatures"][0]["description"] in text  # the run's own numbers and labels


def test_performance_and_its_alias(stack, journey):
    run_id = journey["run_id"]
    perf = stack.json(f"/api/performance/{run_id}")
    alias = stack.json(f"/api/metrics/{run_id}")
    for key in ("accuracy", "precision", "recall", "f1_score"):
        assert 0 <= perf[key] <= 1 and alias[key] == perf[key]
    assert perf["response_time"] >= 0  # ms
    status = stack.json(f"/api/train/status/{run_id}")
    assert perf["accuracy"] == pytest.approx(status["metrics"]["val_accuracy"])
    assert "auc" in perf and stack.all_finite(perf)


def test_engineer_dashboard_is_built_from_the_run_and_the_services(stack, journey):
    si = stack.json("/api/dashboard/si")
    current = si["currentMetrics"]
    for key in ("accuracy", "precision", "recall", "f1Score", "responseTime"):
        assert isinstance(current[key], (int, float)), key
    for key in ("status", "cpuUsage", "memoryUsage", "apiSuccessRate", "errorRate"):
        assert key in si["systemHealth"], key
    for key in ("cpuUsage", "memoryUsage", "apiSuccessRate", "errorRate"):
        assert 0 <= si["systemHealth"][key] <= 100
    data = si["performanceData"]
    assert len(data["accuracy"]) == len(data["valAccuracy"]) == len(data["loss"]) == 2
    assert si["latestRun"]["runId"] == journey["run_id"] and si["latestRun"]["epochs"] == 2
    assert 0 <= si["latestRun"]["bestAccuracy"] <= 100
    assert isinstance(si["errorLogs"], list) and isinstance(si["bottleneckAnalysis"], list)
    assert {"show", "message", "severity"} <= set(si["performanceAlert"])
    assert stack.all_finite(si)


def test_marketer_dashboard_uses_the_real_data(stack, journey):
    client = stack.json("/api/dashboard/client")
    assert client["businessMetrics"]
    assert isinstance(client["aiInsights"], list) and client["aiInsights"]
    segments = client["customerSegments"]
    assert segments and all({"name", "label", "ctr", "potential"} <= set(s) for s in segments)
    assert all(0 <= s["ctr"] <= 100 and 0 <= s["potential"] <= 100 for s in segments)
    slots = client["optimalTimeSlots"]
    assert slots and sum(1 for s in slots if s["isBest"]) >= 1
    assert all({"period", "ctr", "traffic", "isBest"} <= set(s) for s in slots)
    assert isinstance(client["marketingStrategies"], list) and isinstance(client["performanceSummary"], list)
    assert stack.all_finite(client)


async def test_performance_websocket_pushes_metrics_and_health_within_two_seconds(stack, journey):
    seen: dict[str, tuple[float, dict[str, Any]]] = {}

    def both_seen_twice(message: dict[str, Any]) -> bool:
        kind = message["type"]
        seen[kind] = seen.get(kind, (0, message))[0] + 1, message
        return seen.get("metrics_update", (0,))[0] >= 2 and seen.get("system_health", (0,))[0] >= 2

    messages = await ws_messages(f"{stack.ws_url}/ws/performance", both_seen_twice, 20)
    first_of = {}
    for at, m in messages:
        first_of.setdefault(m["type"], at)
    assert first_of["metrics_update"] < 2.0 and first_of["system_health"] < 2.0
    metrics = seen["metrics_update"][1]["metrics"]
    for key in ("accuracy", "precision", "recall", "f1_score", "f1Score", "response_time", "responseTime"):
        assert key in metrics, key
    health = seen["system_health"][1]["health"]
    for key in ("cpu_usage", "memory_usage", "api_success_rate", "error_rate",
                "cpuUsage", "memoryUsage", "apiSuccessRate", "errorRate", "status"):
        assert key in health, key
    perf = stack.json(f"/api/performance/{journey['run_id']}")
    assert metrics["accuracy"] == pytest.approx(perf["accuracy"])  # the latest run's numbers


async def test_latest_is_the_newest_completed_run_on_every_run_path(stack, journey):
    run_id = journey["run_id"]
    assert stack.json("/api/train/status/latest")["run_id"] == run_id
    for path in ("/api/report/ai/{}", "/api/report/feature-importance/{}", "/api/features/{}",
                 "/api/report/correlation/{}"):
        assert stack.json(path.format("latest")) == stack.json(path.format(run_id)), path
    for path in ("/api/performance/{}", "/api/metrics/{}"):
        assert stack.json(path.format("latest"))["run_id"] == run_id
    generated = stack.http.post("/api/report/generate-pdf/latest", json={})
    assert generated.status_code == 200 and stack.strict_json(generated)["pdf_url"] == f"/api/report/pdf/{run_id}"
    pdf = stack.get("/api/report/pdf/latest")
    assert pdf.status_code == 200 and pdf.headers["content-type"] == "application/pdf"
    history = await ws_messages(f"{stack.ws_url}/ws/training/latest", lambda m: m["type"] == "training_complete", 30)
    assert history[-1][1]["run_id"] == run_id


async def test_unknown_ids_are_404_on_rest_and_a_log_on_the_websocket(stack, journey):
    for run_id in UNKNOWN_IDS:
        for path in RUN_PATHS:
            response = stack.get(path.format(run_id))
            assert response.status_code == 404, (path.format(run_id), response.status_code)
            assert stack.strict_json(response)["detail"]
        response = stack.http.post(f"/api/report/generate-pdf/{run_id}", json={})
        assert response.status_code == 404 and stack.strict_json(response)["detail"]
    for run_id in UNKNOWN_IDS[:3]:
        messages, still_open = await ws_first_and_quiet(f"{stack.ws_url}/ws/training/{run_id}")
        assert len(messages) == 1 and messages[0]["type"] == "log", messages
        assert "알 수 없는" in messages[0]["message"] and "Unknown" in messages[0]["message"]
        assert still_open
    response = stack.http.post("/api/train", json={"file_id": UNKNOWN_IDS[3], "config": {}})
    assert response.status_code == 404 and "upload" in stack.strict_json(response)["detail"]


def test_cors_preflight_of_a_json_post_and_the_actual_post(stack, journey):
    origin = "http://localhost:3000"
    preflight = stack.http.options("/api/train", headers={
        "Origin": origin, "Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "content-type"})
    assert preflight.status_code == 200
    assert preflight.headers["access-control-allow-origin"] == origin
    assert "POST" in preflight.headers["access-control-allow-methods"]
    assert "content-type" in preflight.headers["access-control-allow-headers"].lower()
    post = stack.http.post(f"/api/report/generate-pdf/{journey['run_id']}", json={"includeCharts": False},
                           headers={"Origin": origin})
    assert post.status_code == 200 and post.headers["access-control-allow-origin"] == origin
    other = stack.http.options("/api/train", headers={
        "Origin": "http://evil.example", "Access-Control-Request-Method": "POST"})
    assert other.headers.get("access-control-allow-origin") != "http://evil.example"


def test_no_5xx_anywhere_and_nothing_dead_lettered(stack, journey):
    assert stack.server_errors == []
    assert stack.gateway_5xx() == []
    dead = stack.topic_events(Topic.DEAD_LETTER)
    assert dead == [], [d.payload for d in dead]
    assert stack.health()["status"] == "healthy"
