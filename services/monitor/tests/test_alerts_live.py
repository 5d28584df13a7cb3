"""Must-show of issue 7, with a real monitor process, the real broker and the gateway:

- a run below the accuracy threshold gives exactly one alert on /ws/performance and in
  the monitor's Prometheus metrics, a monitor restart does not re-fire it, and a later
  good run resolves it;
- stopping a service gives a 'service down' alert within the heartbeat timeout.

The monitor's handling of monitoring periods (alert once, restart, resolve) is tested on the
in-memory bus, in test_handlers.py.
"""

from __future__ import annotations

import asyncio
import time
import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

from ctrops_common.events import ModelMetrics, Topic, TrainingConfig, TrainingDone, new_id
from ctrops_common.settings import CommonSettings
from ctrops_common.testing import publish_events


def publish(topic: Topic, payload, correlation_id: str | None = None) -> None:
    publish_events((topic, payload, correlation_id) if correlation_id else (topic, payload))


def scrape(port: int) -> dict[tuple[str, frozenset], float]:
    """The service's /metrics, parsed by the Prometheus text parser: {(sample name, labels): value}."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(samples, name: str, **labels) -> float | None:
    return samples.get((name, frozenset(labels.items())))


def wait_until(predicate, timeout_s: float, what: str, interval_s: float = 0.2):
    deadline = time.monotonic() + timeout_s
    while True:
        result = predicate()
        if result:
            return result
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(interval_s)


def finished_run(accuracy: float, auc: float) -> TrainingDone:
    run_id = new_id()
    return TrainingDone(
        run_id=run_id, file_id=new_id(), model_location=f"runs/{run_id}/model",
        metrics=ModelMetrics(train_loss=0.4, val_loss=0.41, train_accuracy=accuracy, val_accuracy=accuracy, auc=auc,
                             ap=0.05, logloss=0.41, precision=0.04, recall=0.6, f1=0.075),
        best_epoch=1, epochs_run=1, duration_s=12.0, experiment_name="alert-test", config=TrainingConfig(epochs=1),
    )


def alert_messages(ws, seconds: float) -> list[dict]:
    """Every performance_alert / alert_resolved seen during ``seconds`` (ticks arrive each second)."""
    seen = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        message = ws.receive_json()
        if message["type"] in ("performance_alert", "alert_resolved") and message.get("kind") == "model_accuracy":
            seen.append(message)
    return seen


def read_until(ws, predicate, timeout_s: float) -> dict:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        message = ws.receive_json()
        if predicate(message):
            return message
    raise AssertionError("expected WebSocket message never came")


MONITOR_ENV = {"CTROPS_MONITOR_SNAPSHOT_INTERVAL_S": "1", "CTROPS_MONITOR_CHECK_INTERVAL_S": "0.5"}


@pytest.fixture
def fast_ws(monkeypatch):
    monkeypatch.setenv("CTROPS_WS_PERFORMANCE_INTERVAL_S", "1")


def test_low_accuracy_alerts_once_survives_restart_and_recovers(fast_ws, start_service, gateway_client):
    monitor = start_service("monitor", MONITOR_ENV)
    with gateway_client.websocket_connect("/ws/performance") as ws:
        bad = finished_run(accuracy=0.62, auc=0.71)
        publish(Topic.TRAINING_DONE, bad, bad.run_id)

        fired = read_until(ws, lambda m: m["type"] == "performance_alert" and m.get("kind") == "model_accuracy", 30)
        assert fired["severity"] == "high" and "0.620" in fired["message"]
        assert fired["metrics"]["run_id"] == bad.run_id and fired["metrics"]["auc"] == pytest.approx(0.71)
        assert alert_messages(ws, 3) == []  # ticks go on, the alert is not repeated

        samples = scrape(monitor.port)
        assert value(samples, "ctrops_alert_active", kind="model_accuracy", subject="model") == 1
        assert value(samples, "ctrops_alerts_fired_total", kind="model_accuracy") == 1
        assert value(samples, "ctrops_model_accuracy_ratio") == pytest.approx(0.62)
        assert value(samples, "ctrops_model_roc_auc_ratio") == pytest.approx(0.71)

        # A restart keeps the open incident (table monitor_alerts) and does not fire it again.
        monitor.stop()
        monitor = start_service("monitor", MONITOR_ENV)
        samples = scrape(monitor.port)
        assert value(samples, "ctrops_alert_active", kind="model_accuracy", subject="model") == 1
        still_bad = finished_run(accuracy=0.6, auc=0.7)
        publish(Topic.TRAINING_DONE, still_bad, still_bad.run_id)
        wait_until(lambda: value(scrape(monitor.port), "ctrops_model_accuracy_ratio") == pytest.approx(0.6),
                   30, "the restarted monitor to see the second bad run")
        assert alert_messages(ws, 3) == []
        assert value(scrape(monitor.port), "ctrops_alerts_fired_total", kind="model_accuracy") in (None, 0)

        good = finished_run(accuracy=0.93, auc=0.8)
        publish(Topic.TRAINING_DONE, good, good.run_id)
        resolved = read_until(ws, lambda m: m["type"] == "alert_resolved" and m.get("kind") == "model_accuracy", 30)
        assert resolved["alert_id"] == fired["alert_id"] and good.run_id in resolved["message"]
        samples = scrape(monitor.port)
        assert value(samples, "ctrops_alert_active", kind="model_accuracy", subject="model") == 0
        assert value(samples, "ctrops_alerts_resolved_total", kind="model_accuracy") == 1
        assert alert_messages(ws, 2) == []

    # On the bus too: exactly one 'firing' and one 'resolved' for this incident.
    state = gateway_client.app.state.gateway
    alerts = [(e.payload.alert_id, e.payload.state) for e in state.views.events(Topic.MONITOR_ALERT)
              if e.payload.kind == "model_accuracy"]
    assert alerts == [(fired["alert_id"], "firing"), (fired["alert_id"], "resolved")]
    metrics = wait_until(lambda: (b := gateway_client.get("/api/dashboard/si").json())["currentMetrics"]["runId"]
                         == good.run_id and b, 30, "the gateway to record the good run")
    assert metrics["currentMetrics"]["accuracy"] == pytest.approx(0.93)
    assert metrics["performanceAlert"]["show"] is False or metrics["performanceAlert"]["kind"] != "model_accuracy"


def test_stopped_service_raises_service_down_within_the_heartbeat_timeout(start_service):
    timeout_s = 4.0
    env = {**MONITOR_ENV, "CTROPS_MONITOR_HEARTBEAT_TIMEOUT_S": str(timeout_s)}
    monitor = start_service("monitor", env)
    ingest = start_service("ingest")
    wait_until(lambda: value(scrape(monitor.port), "ctrops_service_alive", service="ingest") == 1, 30,
               "the monitor to see ingest's heartbeats")

    stopped_at = time.monotonic()
    ingest.stop()
    wait_until(lambda: value(scrape(monitor.port), "ctrops_alert_active", kind="service_down", subject="ingest") == 1,
               timeout_s + 10, "the service_down alert", interval_s=0.1)
    elapsed = time.monotonic() - stopped_at
    print(f"service_down alert {elapsed:.2f} s after stopping ingest (timeout {timeout_s} s)")
    # Heartbeats come every 1 s (platform_env); the alert may come at most one timeout after the last one.
    assert elapsed <= timeout_s + 1.5, f"alert after {elapsed:.1f} s, timeout {timeout_s} s"
    samples = scrape(monitor.port)
    assert value(samples, "ctrops_service_alive", service="ingest") == 0
    assert value(samples, "ctrops_alerts_fired_total", kind="service_down") >= 1

    alerts = asyncio.run(_read_alerts(lambda a: a.payload.subject == "ingest", count=1))
    assert alerts[0].payload.state == "firing" and alerts[0].payload.severity == "high"
    assert "ingest" in alerts[0].payload.message

    start_service("ingest")
    wait_until(lambda: value(scrape(monitor.port), "ctrops_alert_active", kind="service_down", subject="ingest") == 0,
               30, "recovery")
    alerts = asyncio.run(_read_alerts(lambda a: a.payload.subject == "ingest", count=2))
    assert [a.payload.state for a in alerts] == ["firing", "resolved"]
    assert alerts[0].payload.alert_id == alerts[1].payload.alert_id


async def _read_alerts(predicate, count: int, timeout_s: float = 20) -> list:
    """monitor.alert events from the topic's start (a plain consumer, no group)."""
    from aiokafka import AIOKafkaConsumer, TopicPartition

    from ctrops_common.events import decode_event

    settings = CommonSettings()
    name = settings.topic_prefix + Topic.MONITOR_ALERT.value
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.kafka_bootstrap_servers, enable_auto_commit=False)
    await consumer.start()
    try:
        await consumer.topics()  # loads the cluster metadata, so the partitions are known
        partitions = [TopicPartition(name, p) for p in consumer.partitions_for_topic(name) or ()]
        assert partitions, f"no topic {name}"
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        found = []
        deadline = time.monotonic() + timeout_s
        while len(found) < count and time.monotonic() < deadline:
            for records in (await consumer.getmany(timeout_ms=500)).values():
                for record in records:
                    event = decode_event(Topic.MONITOR_ALERT.value, record.value)
                    if predicate(event):
                        found.append(event)
        return sorted(found, key=lambda e: e.time)
    finally:
        await consumer.stop()
