"""GET /api/performance/{run_id} (+ /api/metrics alias) and WS /ws/performance, on the in-memory bus: what
the read model and the live view make of the events (delivery over Kafka: the gateway_client tests that run
real services, such as test_train.py's live run, and tests/e2e)."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from ctrops_common.events import (
    ModelMetrics,
    MonitorAlert,
    MonitorSnapshot,
    ServiceError,
    Topic,
    TrainingConfig,
    TrainingDone,
    TrainingProgress,
    TrainingRequested,
    new_id,
)


def metrics(accuracy: float = 0.981, auc: float = 0.74, **extra) -> ModelMetrics:
    return ModelMetrics(train_loss=0.31, val_loss=0.088, train_accuracy=0.9, val_accuracy=accuracy, auc=auc,
                        ap=0.081, logloss=0.088, calibration=1.04, score=0.33, precision=0.12, recall=0.35,
                        f1=0.18, threshold=0.05, **extra)


def done(run_id: str, accuracy: float = 0.981, file_id: str | None = None) -> TrainingDone:
    return TrainingDone(run_id=run_id, file_id=file_id or new_id(), model_location=f"runs/{run_id}/model",
                        metrics=metrics(accuracy), best_epoch=2, epochs_run=3, duration_s=93.0,
                        experiment_name="exp", config=TrainingConfig(epochs=3))


def strict_json(text: str) -> Any:
    def refuse(token: str) -> None:
        raise AssertionError(f"non-finite number {token} in JSON")

    return json.loads(text, parse_constant=refuse)


pytestmark = pytest.mark.inmemory


@pytest.fixture
def fast_ws(monkeypatch):
    monkeypatch.setenv("CTROPS_WS_PERFORMANCE_INTERVAL_S", "1")


def test_unknown_runs_and_latest_without_runs_answer_404(memory_gateway):
    gateway_client = memory_gateway.client
    for path in ("/api/performance/latest", "/api/metrics/demo-run", f"/api/performance/{new_id()}",
                 "/api/performance/mock-run-1712345678", "/api/metrics/run-abc12345"):
        response = gateway_client.get(path)
        assert response.status_code == 404, path
        assert response.json()["detail"], path


def test_performance_of_a_finished_run_alias_and_latest(memory_gateway):
    gateway_client = memory_gateway.client
    run_id = new_id()
    memory_gateway.publish((Topic.TRAINING_DONE, done(run_id), run_id))
    response = gateway_client.get(f"/api/performance/{run_id}")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["run_id"] == body["runId"] == run_id and body["status"] == "completed"
    assert body["accuracy"] == pytest.approx(0.981)
    assert (body["precision"], body["recall"]) == (pytest.approx(0.12), pytest.approx(0.35))
    assert body["f1_score"] == body["f1Score"] == pytest.approx(0.18)
    assert body["auc"] == pytest.approx(0.74) and body["ap"] == pytest.approx(0.081)
    assert body["logloss"] == pytest.approx(0.088) and body["calibration"] == pytest.approx(1.04)
    assert body["response_time"] == body["responseTime"] >= 0
    assert "auc" in body["note"]
    alias = gateway_client.get(f"/api/metrics/{run_id}")
    latest = gateway_client.get("/api/performance/latest")
    strict_json(alias.text)
    for other in (alias.json(), latest.json()):
        assert {k: v for k, v in other.items() if "response" not in k} == \
               {k: v for k, v in body.items() if "response" not in k}


def test_a_run_still_training_shows_its_latest_epoch(memory_gateway):
    gateway_client = memory_gateway.client
    run_id = new_id()
    memory_gateway.publish(
        (Topic.TRAINING_REQUESTED, TrainingRequested(run_id=run_id, file_id=new_id(), parquet_location="files/x",
                                                    config=TrainingConfig()), run_id),
        (Topic.TRAINING_PROGRESS, TrainingProgress(run_id=run_id, epoch=1, total_epochs=5,
                                                  metrics=metrics(0.97)), run_id),
    )
    response = gateway_client.get(f"/api/performance/{run_id}")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["status"] == "training" and body["epoch"] == 1 and body["total_epochs"] == 5
    assert body["accuracy"] == pytest.approx(0.97)


def _receive_until(ws, wanted: int, predicate, timeout_s: float = 20) -> list[dict]:
    """Read messages (ticks keep arriving) until ``wanted`` match ``predicate`` or time runs out."""
    found: list[dict] = []
    deadline = time.monotonic() + timeout_s
    while len(found) < wanted and time.monotonic() < deadline:
        message = ws.receive_json()
        if predicate(message):
            found.append(message)
    return found


def test_ws_pushes_metrics_and_health_at_once_then_every_interval(fast_ws, memory_gateway):
    gateway_client = memory_gateway.client
    started = time.monotonic()
    with gateway_client.websocket_connect("/ws/performance") as ws:
        first, second = ws.receive_json(), ws.receive_json()
        assert time.monotonic() - started < 2.0
        assert first["type"] == "metrics_update" and second["type"] == "system_health"
        m = first["metrics"]
        for key in ("accuracy", "precision", "recall", "f1_score", "f1Score", "response_time", "responseTime"):
            assert isinstance(m[key], (int, float)), key
        health = second["health"]
        for snake, camel in (("cpu_usage", "cpuUsage"), ("memory_usage", "memoryUsage"),
                             ("api_success_rate", "apiSuccessRate"), ("error_rate", "errorRate")):
            assert health[snake] == health[camel] and 0 <= health[snake] <= 100
        assert health["status"] in ("healthy", "degraded", "critical")
        ticks = _receive_until(ws, 2, lambda msg: msg["type"] == "metrics_update", timeout_s=6)
        assert len(ticks) == 2  # the periodic push (1 s in this test)


def test_ws_every_client_gets_each_alert_once_and_each_error(fast_ws, memory_gateway):
    gateway_client = memory_gateway.client
    alert = MonitorAlert(alert_id="response_time:gateway:1", kind="response_time", subject="gateway",
                         state="firing", severity="medium", message="p95 900 ms > 500 ms",
                         metrics={"response_time": 900.0, "threshold_ms": 500.0})
    with gateway_client.websocket_connect("/ws/performance") as one, \
            gateway_client.websocket_connect("/ws/performance") as two:
        memory_gateway.publish(
            (Topic.MONITOR_ALERT, alert, None),
            (Topic.MONITOR_ALERT, alert, None),  # an outbox resend after a crash: same incident
            (Topic.SERVICE_ERROR, ServiceError(service="trainer", message="CUDA? no: disk full", stack="Trace"), None),
            (Topic.MONITOR_ALERT, alert.model_copy(update={"state": "resolved", "message": "ok again"}), None),
        )
        for ws in (one, two):
            seen = _receive_until(ws, 3, lambda m: m["type"] in ("performance_alert", "alert_resolved", "error_log"))
            seen += _receive_until(ws, 99, lambda m: m["type"] == "performance_alert", timeout_s=3)
            kinds = [m["type"] for m in seen]
            assert sorted(kinds) == ["alert_resolved", "error_log", "performance_alert"], kinds
            fired = next(m for m in seen if m["type"] == "performance_alert")
            assert fired["severity"] == "medium" and fired["message"] == "p95 900 ms > 500 ms"
            assert fired["metrics"] == {"response_time": 900.0, "threshold_ms": 500.0}
            assert (fired["alert_id"], fired["kind"], fired["subject"], fired["state"]) == (
                "response_time:gateway:1", "response_time", "gateway", "firing")
            assert fired["period"] is None and fired["feature"] is None and fired["timestamp"]
            log = next(m for m in seen if m["type"] == "error_log")["log"]
            assert log["level"] == "ERROR" and "disk full" in log["message"] and log["stack"] == "Trace"
            assert log["timestamp"]


def test_ws_an_alert_handled_while_a_client_connects_is_pushed_to_it_once(fast_ws, memory_gateway, monkeypatch):
    """The race seen in a full run: the alert is handled after the client subscribed but before its first
    state was read, so it is both in that state (an open incident) and in the client's queue."""
    import threading

    from ctrops_gateway import performance_live

    handled, reading = threading.Event(), threading.Event()
    real = performance_live.current_messages

    def read_after_the_alert(state, with_open_alerts=False):
        if with_open_alerts:  # the connecting client's first state: read only once the alert was handled
            reading.set()
            assert handled.wait(10)
        return real(state, with_open_alerts)

    monkeypatch.setattr(performance_live, "current_messages", read_after_the_alert)
    alert = MonitorAlert(alert_id="response_time:gateway:1", kind="response_time", subject="gateway",
                         state="firing", severity="medium", message="p95 900 ms > 500 ms",
                         metrics={"response_time": 900.0, "threshold_ms": 500.0})
    with memory_gateway.client.websocket_connect("/ws/performance") as ws:
        assert reading.wait(10)
        memory_gateway.publish((Topic.MONITOR_ALERT, alert, None))  # handled: in the read model and the queue
        handled.set()
        memory_gateway.publish((Topic.MONITOR_ALERT, alert.model_copy(update={"state": "resolved"}), None))
        seen = _receive_until(ws, 2, lambda m: m["type"] in ("performance_alert", "alert_resolved"))
        seen += _receive_until(ws, 99, lambda m: m["type"] in ("performance_alert", "alert_resolved"), timeout_s=2.5)
    assert [(m["type"], m["alert_id"]) for m in seen] == [
        ("performance_alert", "response_time:gateway:1"), ("alert_resolved", "response_time:gateway:1")]


def test_ws_new_client_learns_of_an_open_incident_once(fast_ws, memory_gateway):
    gateway_client = memory_gateway.client
    run_id = new_id()
    # The evidence as the monitor writes it: the run and its metrics under every spelling the frontend reads.
    evidence = {"run_id": run_id, **metrics(accuracy=0.5).both_spellings()}
    alert = MonitorAlert(alert_id="model_accuracy:model:1", kind="model_accuracy", subject="model",
                         state="firing", severity="high", message="accuracy 0.5 < 0.7", metrics=evidence)
    memory_gateway.publish((Topic.MONITOR_ALERT, alert, None))
    assert gateway_client.get("/api/dashboard/si").json()["performanceAlert"]["show"]
    with gateway_client.websocket_connect("/ws/performance") as ws:
        alerts = _receive_until(ws, 99, lambda m: m["type"] == "performance_alert", timeout_s=3.5)
        assert [a["alert_id"] for a in alerts] == ["model_accuracy:model:1"]
        assert alerts[0]["metrics"] == evidence and alerts[0]["metrics"]["accuracy"] == 0.5
        assert alerts[0]["period"] is None and alerts[0]["feature"] is None


def test_snapshot_of_a_new_run_is_pushed_without_waiting_for_the_tick(memory_gateway):
    gateway_client = memory_gateway.client
    run_id = new_id()
    # Default interval (10 s): the push must come from the snapshot itself.
    with gateway_client.websocket_connect("/ws/performance") as ws:
        ws.receive_json(), ws.receive_json()
        memory_gateway.publish(
            (Topic.TRAINING_DONE, done(run_id, accuracy=0.6), run_id),
            (Topic.MONITOR_SNAPSHOT, MonitorSnapshot(run_id=run_id, metrics={"accuracy": 0.6, "f1_score": 0.2},
                                                     health={"status": "healthy", "response_time_ms": 12.5}), run_id),
        )
        update = _receive_until(ws, 1, lambda m: m["type"] == "metrics_update", timeout_s=8)
        assert update and update[0]["metrics"]["runId"] == run_id
        assert update[0]["metrics"]["accuracy"] == pytest.approx(0.6)
        assert update[0]["metrics"]["responseTime"] == pytest.approx(12.5)
