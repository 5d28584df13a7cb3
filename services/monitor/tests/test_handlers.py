"""The monitor's handlers on the in-memory bus: events in as the real consumer decodes them, alerts
and snapshots out on the bus, each incident once across redeliveries and restarts, the alert outbox
kept until the broker takes it. (test_alerts_live.py keeps the monitor as a real process on the real
broker, with the gateway's WebSocket and the service-down timing.)"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest
from prometheus_client import REGISTRY

from ctrops_common.events import (
    ExplanationDone,
    FeatureDrift,
    ModelMetrics,
    MonitoringPeriod,
    PeriodMetrics,
    ReportReady,
    ReportRequested,
    ServiceError,
    ServiceHeartbeat,
    Topic,
    TrainingConfig,
    TrainingDone,
    TrainingRequested,
    TrainingStarted,
    new_id,
    utcnow,
)
from ctrops_common.memory_bus import InMemoryBroker, InMemoryBus
from ctrops_common.service import ServiceRuntime
from ctrops_common.testing import root_logging_kept, until
from ctrops_monitor import handlers
from ctrops_monitor import metrics as m
from ctrops_monitor.handlers import MonitorWorker
from ctrops_monitor.pipeline import TRAINING_DOMINATES, WITHIN_BUDGET
from ctrops_monitor.settings import MonitorSettings

pytestmark = pytest.mark.inmemory


@pytest.fixture(autouse=True)
def logging_kept():
    """The ServiceRuntime built here sets up the process's logging: put the session's back after."""
    with root_logging_kept():
        yield


@pytest.fixture
def settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> MonitorSettings:
    monkeypatch.setenv("CTROPS_LOG_JSON", "false")
    return MonitorSettings(data_dir=tmp_path, topic_prefix=f"m{new_id()[:8]}.", consumer_max_attempts=3,
                           consumer_backoff_s=0.01, monitor_snapshot_interval_s=0.1, monitor_check_interval_s=0.05)


@pytest.fixture
def broker() -> InMemoryBroker:
    return InMemoryBroker()


@pytest.fixture
async def producer(broker: InMemoryBroker, settings: MonitorSettings) -> InMemoryBus:
    bus = InMemoryBus(settings, "test-producer", broker=broker)
    await bus.start()
    return bus


async def monitor_on(broker: InMemoryBroker, settings: MonitorSettings) -> MonitorWorker:
    """The monitor as its __main__ wires it, on the in-memory bus; its consumer driven by ``settle``.
    A second call on the same data dir is the monitor restarted (same database, same group)."""
    runtime = ServiceRuntime("monitor", settings, bus_factory=broker.bus_factory)
    worker = handlers.register(runtime, settings)
    await runtime.bus.start()
    return worker


def sample(name: str, **labels: str) -> float | None:
    return REGISTRY.get_sample_value(name, labels)


def finished_run(accuracy: float, auc: float) -> TrainingDone:
    run_id = new_id()
    return TrainingDone(
        run_id=run_id, file_id=new_id(), model_location=f"runs/{run_id}/model",
        metrics=ModelMetrics(train_loss=0.4, val_loss=0.41, train_accuracy=accuracy, val_accuracy=accuracy, auc=auc,
                             ap=0.05, logloss=0.41, precision=0.04, recall=0.6, f1=0.075),
        best_epoch=1, epochs_run=1, duration_s=12.0, experiment_name="alert-test", config=TrainingConfig(epochs=1),
    )


def accuracy_alerts(broker: InMemoryBroker) -> list[tuple[str, str]]:
    return [(e.payload.alert_id, e.payload.state) for e in broker.events(Topic.MONITOR_ALERT)
            if e.payload.kind == "model_accuracy"]


async def test_a_low_accuracy_run_alerts_once_across_redelivery_and_restart_and_a_good_run_resolves(
    broker, settings, producer
):
    worker = await monitor_on(broker, settings)
    bad = finished_run(accuracy=0.62, auc=0.71)
    sent = await producer.publish_and_settle(Topic.TRAINING_DONE, bad, correlation_id=bad.run_id)

    [fired] = broker.events(Topic.MONITOR_ALERT)
    assert fired.producer == "monitor" and fired.correlation_id == bad.run_id
    alert = fired.payload
    assert (alert.kind, alert.subject, alert.state, alert.severity) == ("model_accuracy", "model", "firing", "high")
    assert "0.620" in alert.message and alert.metrics.run_id == bad.run_id
    assert alert.metrics.quality.auc == pytest.approx(0.71)
    [snapshot] = broker.events(Topic.MONITOR_SNAPSHOT)  # published right after the run, not at the next tick
    assert snapshot.payload.run_id == bad.run_id and snapshot.payload.metrics.val_accuracy == pytest.approx(0.62)
    assert [a.alert_id for a in snapshot.payload.health.active_alerts] == [alert.alert_id]
    assert sample("ctrops_alert_active", kind="model_accuracy", subject="model") == 1
    assert sample("ctrops_model_accuracy_ratio") == pytest.approx(0.62)

    broker.redeliver(sent)  # the same event again (a crash before the commit): skipped, nothing re-published
    await broker.settle()
    assert len(broker.events(Topic.MONITOR_ALERT)) == 1 and len(broker.events(Topic.MONITOR_SNAPSHOT)) == 1

    await worker.runtime.bus.stop()
    m.ALERT_ACTIVE.labels("model_accuracy", "model").set(0)  # the gauges of a fresh process
    restarted = await monitor_on(broker, settings)
    assert sample("ctrops_alert_active", kind="model_accuracy", subject="model") == 1  # read back from its table
    still_bad = finished_run(accuracy=0.6, auc=0.7)
    await producer.publish_and_settle(Topic.TRAINING_DONE, still_bad, correlation_id=still_bad.run_id)
    assert accuracy_alerts(broker) == [(alert.alert_id, "firing")]  # the open incident is not fired again
    assert broker.events(Topic.MONITOR_SNAPSHOT)[-1].payload.run_id == still_bad.run_id

    good = finished_run(accuracy=0.93, auc=0.8)
    await producer.publish_and_settle(Topic.TRAINING_DONE, good, correlation_id=good.run_id)
    assert accuracy_alerts(broker) == [(alert.alert_id, "firing"), (alert.alert_id, "resolved")]
    resolved = broker.events(Topic.MONITOR_ALERT)[-1]
    assert good.run_id in resolved.payload.message and resolved.correlation_id == good.run_id
    assert sample("ctrops_alert_active", kind="model_accuracy", subject="model") == 0
    assert broker.events(Topic.MONITOR_SNAPSHOT)[-1].payload.health.active_alerts == []
    assert restarted.runtime.bus.handled_total == 2


async def test_an_alert_stays_in_the_outbox_until_the_broker_takes_it_and_goes_out_once(broker, settings, producer):
    """The broker goes away while the monitor handles a bad run: the alert cannot be published, the
    event stays uncommitted; once the broker is back it is delivered again and the alert goes out once."""
    worker = await monitor_on(broker, settings)
    bad = finished_run(accuracy=0.5, auc=0.6)
    await producer.publish(Topic.TRAINING_DONE, bad, correlation_id=bad.run_id)
    broker.set_up(False)
    with pytest.raises(TimeoutError):
        await broker.settle(timeout_s=0.5)
    assert broker.events(Topic.MONITOR_ALERT) == [] and broker.position("monitor") == 0
    [(_, pending)] = worker.store.pending_messages()
    assert pending["alert"]["state"] == "firing"

    broker.set_up(True)
    await broker.settle()
    [fired] = broker.events(Topic.MONITOR_ALERT)
    assert fired.payload.state == "firing" and fired.payload.metrics.run_id == bad.run_id
    assert worker.store.pending_messages() == []  # acknowledged, so out of the outbox
    assert broker.events(Topic.DEAD_LETTER) == []


def ms_between(start, end) -> float:
    return (end.time - start.time).total_seconds() * 1000


async def test_the_snapshot_carries_the_latest_runs_pipeline_stages_and_a_redelivery_changes_nothing(
    broker, settings, producer
):
    """The run's events as the services publish them: the snapshot after training.done has the queue
    wait and the training; the explanation and a report ready after the run finished each publish a
    snapshot with their stage at once; the same event again (redelivered, or handled again after a
    crash before its commit) publishes nothing and changes no stage; a restart keeps them."""
    worker = await monitor_on(broker, settings)
    run = finished_run(accuracy=0.95, auc=0.8)
    run_id = run.run_id
    requested = await producer.publish_and_settle(Topic.TRAINING_REQUESTED, TrainingRequested(
        run_id=run_id, file_id=run.file_id, parquet_location=f"files/{run.file_id}/data.parquet",
        config=TrainingConfig(epochs=1)), correlation_id=run_id)
    await asyncio.sleep(0.01)
    started = await producer.publish_and_settle(Topic.TRAINING_STARTED, TrainingStarted(
        run_id=run_id, attempt=1, worker="w1"), correlation_id=run_id)
    assert broker.events(Topic.MONITOR_SNAPSHOT) == []  # no finished run yet: nothing to show
    done = await producer.publish_and_settle(Topic.TRAINING_DONE, run, correlation_id=run_id)

    [first] = broker.events(Topic.MONITOR_SNAPSHOT)
    assert [(s.name, s.service) for s in first.payload.pipeline] == [
        ("학습 대기 (queue)", "trainer"), ("모델 학습 (trainer)", "trainer")]
    queue, training = first.payload.pipeline
    assert queue.ms == pytest.approx(ms_between(requested, started)) and queue.ms > 0
    assert training.ms == pytest.approx(12_000.0)  # the run's duration_s
    assert training.status == "warning" and training.recommendation == TRAINING_DOMINATES
    assert queue.status == "good" and queue.recommendation == WITHIN_BUDGET

    explained = await producer.publish_and_settle(Topic.EXPLANATION_DONE, ExplanationDone(
        run_id=run_id, location=f"runs/{run_id}/explanation.json", top_features=[]), correlation_id=run_id)
    stages = broker.events(Topic.MONITOR_SNAPSHOT)[-1].payload.pipeline
    assert len(broker.events(Topic.MONITOR_SNAPSHOT)) == 2  # at once, not at the next tick
    assert stages[2].name == "LIME 설명 (explainer)" and stages[2].ms == pytest.approx(ms_between(done, explained))

    request_id = new_id()
    report_requested = await producer.publish_and_settle(Topic.REPORT_REQUESTED, ReportRequested(
        run_id=run_id, request_id=request_id), correlation_id=run_id)
    await asyncio.sleep(0.01)
    ready = await producer.publish_and_settle(Topic.REPORT_READY, ReportReady(
        run_id=run_id, request_id=request_id, report_location=f"runs/{run_id}/report.json",
        pdf_location=f"runs/{run_id}/report.pdf", model_used="gbdt"), correlation_id=run_id)
    latest = broker.events(Topic.MONITOR_SNAPSHOT)[-1].payload
    assert latest.run_id == run_id and [s.name for s in latest.pipeline] == [
        "학습 대기 (queue)", "모델 학습 (trainer)", "LIME 설명 (explainer)", "리포트 생성 (reporter)"]
    assert latest.pipeline[3].ms == pytest.approx(ms_between(report_requested, ready)) and latest.pipeline[3].ms > 0
    assert sum(s.share_percent for s in latest.pipeline) == pytest.approx(100.0)
    published = len(broker.events(Topic.MONITOR_SNAPSHOT))

    broker.redeliver(ready)  # the same event again: skipped by the processed-events record
    await broker.settle()
    await worker.on_run_event(Topic.REPORT_READY, ready)  # handled again (a crash before the mark): a no-op
    await worker.on_run_event(Topic.TRAINING_REQUESTED, requested)
    assert len(broker.events(Topic.MONITOR_SNAPSHOT)) == published
    assert (await worker.call(worker.monitor.snapshot)).pipeline == latest.pipeline

    other = new_id()  # another run's event does not touch the latest run's stages
    await producer.publish_and_settle(Topic.TRAINING_STARTED, TrainingStarted(run_id=other, attempt=1, worker="w2"),
                                      correlation_id=other)
    assert len(broker.events(Topic.MONITOR_SNAPSHOT)) == published

    await worker.runtime.bus.stop()
    restarted = await monitor_on(broker, settings)  # the times are in its database
    assert (await restarted.call(restarted.monitor.snapshot)).pipeline == latest.pipeline


def _period(run_id: str, label: str, psi: float, calibration: float) -> MonitoringPeriod:
    low, high = calibration * 0.9, calibration * 1.1
    return MonitoringPeriod(
        period_id=f"{run_id}:gbdt:{label}", period=label, bucket="month", run_id=run_id, model_kind="gbdt",
        job_ids=[new_id()], rows=20_000, labelled=True,
        metrics=PeriodMetrics(predicted_clicks=400 * calibration, actual_clicks=400, calibration=calibration,
                              calibration_ci_low=low, calibration_ci_high=high, auc=0.8, auc_ci_low=0.78,
                              auc_ci_high=0.82, mean_probability=0.02),
        baseline_auc=0.8, baseline_auc_ci_low=0.78,
        drift=[FeatureDrift(feature="history_a_1", kind="numeric", test="psi", statistic=psi, p_value=None, psi=psi,
                            drifted=psi > 0.2, importance_rank=1)],
        reference_rows=48_000,
    )


async def test_monitoring_periods_alert_once_survive_restart_and_resolve(broker, settings, producer):
    """monitoring.period through the bus: the shifted month fires feature_drift and calibration once
    (named), a restart does not re-fire, a later month in band resolves both."""
    run_id = new_id()
    worker = await monitor_on(broker, settings)
    await producer.publish(Topic.MONITORING_PERIOD, _period(run_id, "2031-01", psi=0.03, calibration=1.0),
                           correlation_id=run_id)
    await producer.publish_and_settle(Topic.MONITORING_PERIOD, _period(run_id, "2031-02", psi=0.9, calibration=0.45),
                                      correlation_id=run_id)
    fired = broker.events(Topic.MONITOR_ALERT)
    assert sorted((a.payload.kind, a.payload.subject, a.payload.state) for a in fired) == [
        ("calibration", "model", "firing"), ("feature_drift", "history_a_1", "firing")]
    assert all("2031-02" in a.payload.message and a.payload.metrics.period == "2031-02" for a in fired)
    assert all(a.payload.metrics.run_id == run_id and a.correlation_id == run_id for a in fired)
    assert sample("ctrops_feature_psi", model_kind="gbdt", feature="history_a_1") == pytest.approx(0.9)
    assert sample("ctrops_model_period_calibration_ratio", model_kind="gbdt") == pytest.approx(0.45)

    await worker.runtime.bus.stop()
    m.ALERT_ACTIVE.labels("feature_drift", "history_a_1").set(0)  # the gauges of a fresh process
    m.FEATURE_PSI.labels("gbdt", "history_a_1").set(0)
    await monitor_on(broker, settings)
    assert sample("ctrops_alert_active", kind="feature_drift", subject="history_a_1") == 1
    assert sample("ctrops_feature_psi", model_kind="gbdt", feature="history_a_1") == pytest.approx(0.9)
    await producer.publish_and_settle(Topic.MONITORING_PERIOD, _period(run_id, "2031-03", psi=0.8, calibration=0.5),
                                      correlation_id=run_id)
    assert sample("ctrops_feature_psi", model_kind="gbdt", feature="history_a_1") == pytest.approx(0.8)
    assert len(broker.events(Topic.MONITOR_ALERT)) == 2  # still the same two incidents
    await producer.publish_and_settle(Topic.MONITORING_PERIOD,
                                      _period(new_id(), "2031-04", psi=0.02, calibration=1.01), correlation_id=run_id)
    assert sample("ctrops_alert_active", kind="calibration", subject="model") == 0
    fired_ids = {a.payload.alert_id for a in fired}
    alerts = [a for a in broker.events(Topic.MONITOR_ALERT) if a.payload.alert_id in fired_ids]
    assert [a.payload.state for a in alerts] == ["firing", "firing", "resolved", "resolved"]


async def test_heartbeats_and_errors_on_the_bus_drive_liveness_and_the_published_health(broker, settings, producer):
    """The runtime as it runs (consumer, checks and snapshots as tasks): a service whose heartbeats
    stop is reported down within the timeout and up again at its next heartbeat; errors and the
    gateway's traffic reach the snapshot the gateway reads."""
    settings = settings.model_copy(update={"monitor_heartbeat_timeout_s": 0.6})
    runtime = ServiceRuntime("monitor", settings, bus_factory=broker.bus_factory)
    handlers.register(runtime, settings)
    await runtime.start(serve_http=False, handle_signals=False)

    def beat(service: str, **extra) -> ServiceHeartbeat:
        return ServiceHeartbeat(service=service, instance=f"{service}-1", started_at=utcnow(), cpu_percent=5.0,
                                memory_percent=30.0, rss_bytes=10_000_000, host_cpu_percent=20.0, **extra)

    def down_alerts() -> list[tuple[str, str]]:
        return [(e.payload.alert_id, e.payload.state) for e in broker.events(Topic.MONITOR_ALERT)
                if e.payload.kind == "service_down" and e.payload.subject == "ingest"]

    try:
        await until(lambda: runtime.ready, "the monitor to be ready", timeout_s=5)
        await producer.publish_and_settle(Topic.SERVICE_HEARTBEAT, beat("ingest"))
        await producer.publish_and_settle(Topic.SERVICE_HEARTBEAT, beat(
            "gateway", requests_total=100, request_errors_total=0, latency_p95_ms=42.0))
        await producer.publish_and_settle(Topic.SERVICE_ERROR, ServiceError(service="trainer", message="boom"))
        health = (await until(lambda: [s for s in broker.events(Topic.MONITOR_SNAPSHOT)
                                       if s.payload.health.errors_in_window == 1
                                       and "ingest" in s.payload.health.services],
                              "a snapshot with both", timeout_s=5))[-1]
        assert health.payload.health.services["ingest"].status == "up"
        assert health.payload.health.response_time_ms == pytest.approx(42.0)
        # heartbeats leave no processed-events row (subscribed with remember=False); the error does
        record, group = runtime.bus.processed, runtime.bus.group_id
        assert not any(record.seen(group, b.event_id) for b in broker.events(Topic.SERVICE_HEARTBEAT))
        assert [record.seen(group, e.event_id) for e in broker.events(Topic.SERVICE_ERROR)] == [True]

        stopped = time.monotonic()
        [(alert_id, state)] = await until(down_alerts, "the service_down alert", timeout_s=5)
        assert state == "firing" and time.monotonic() - stopped <= 0.6 + 1.0
        assert sample("ctrops_service_alive", service="ingest") == 0
        await producer.publish(Topic.SERVICE_HEARTBEAT, beat("ingest"))
        await until(lambda: len(down_alerts()) == 2, "the recovery", timeout_s=5)
        assert down_alerts() == [(alert_id, "firing"), (alert_id, "resolved")]
        # the monitor's own heartbeats went out on the bus too, counting what it handled
        assert any(b.payload.service == "monitor" for b in broker.events(Topic.SERVICE_HEARTBEAT))
    finally:
        await runtime.shutdown()
