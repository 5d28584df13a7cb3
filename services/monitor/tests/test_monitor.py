"""The monitor's logic on a real (SQLite) database: incidents open once, resolve once,
survive a restart, and liveness / latency / error-rate follow the heartbeats."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from prometheus_client import REGISTRY

from ctrops_common.db import make_engine
from ctrops_common.events import ModelMetrics, ServiceError, ServiceHeartbeat, TrainingConfig, TrainingDone, new_id
from ctrops_monitor.monitor import Monitor
from ctrops_monitor.settings import MonitorSettings
from ctrops_monitor.store import MonitorStore

T0 = datetime(2026, 1, 1, 12, 0, tzinfo=timezone.utc)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def sample(name: str, **labels: str) -> float | None:
    return REGISTRY.get_sample_value(name, labels)


@pytest.fixture
def settings(tmp_path) -> MonitorSettings:
    return MonitorSettings(
        data_dir=tmp_path,
        monitor_heartbeat_timeout_s=10,
        monitor_response_time_ms=500,
        monitor_accuracy_threshold=0.7,
        monitor_error_rate_percent=5,
        monitor_error_rate_min_requests=20,
    )


@pytest.fixture
def engine(tmp_path):
    return make_engine(f"sqlite:///{tmp_path / 'monitor.sqlite3'}")


def done(accuracy: float, auc: float = 0.71, run_id: str | None = None) -> TrainingDone:
    return TrainingDone(
        run_id=run_id or new_id(), file_id=new_id(), model_location="runs/x/model",
        metrics=ModelMetrics(train_loss=0.3, val_loss=0.35, train_accuracy=accuracy, val_accuracy=accuracy,
                             auc=auc, ap=0.08, logloss=0.09, precision=0.1, recall=0.4, f1=0.16),
        best_epoch=2, epochs_run=3, duration_s=42.0, experiment_name="exp", config=TrainingConfig(),
    )


def beat(service: str, instance: str = "i1", **extra) -> ServiceHeartbeat:
    return ServiceHeartbeat(service=service, instance=instance, started_at=T0, cpu_percent=12.0,
                            memory_percent=40.0, rss_bytes=100_000_000, host_cpu_percent=30.0, **extra)


def pending_alerts(store: MonitorStore) -> list[dict]:
    return [message["alert"] for _, message in store.pending_messages()]


def test_low_accuracy_fires_once_and_a_good_run_resolves(settings, engine):
    store = MonitorStore(engine)
    monitor = Monitor(settings, store, now=at(0))
    fired_before = sample("ctrops_alerts_fired_total", kind="model_accuracy") or 0.0

    first = monitor.on_training_done(done(0.55), at(1))
    assert first is not None and first.state == "firing" and first.severity == "high"
    assert first.metrics.quality.auc == pytest.approx(0.71)  # the honest signal travels with the alert
    assert monitor.on_training_done(done(0.60), at(2)) is None  # same incident: no second alert
    assert sample("ctrops_alert_active", kind="model_accuracy", subject="model") == 1
    assert sample("ctrops_alerts_fired_total", kind="model_accuracy") == fired_before + 1

    recovered = monitor.on_training_done(done(0.93), at(3))
    assert recovered is not None and recovered.state == "resolved" and recovered.alert_id == first.alert_id
    assert sample("ctrops_alert_active", kind="model_accuracy", subject="model") == 0
    assert [(a["alert_id"], a["state"]) for a in pending_alerts(store)] == [
        (first.alert_id, "firing"), (first.alert_id, "resolved")]

    again = monitor.on_training_done(done(0.5), at(4))  # a new incident gets a new id
    assert again is not None and again.alert_id != first.alert_id
    assert sample("ctrops_model_accuracy_ratio") == pytest.approx(0.5)
    assert sample("ctrops_model_roc_auc_ratio") == pytest.approx(0.71)


def test_an_older_run_arriving_late_does_not_overrule_the_newer_one(settings, engine):
    monitor = Monitor(settings, MonitorStore(engine), now=at(0))
    assert monitor.on_training_done(done(0.9), at(10)) is None
    assert monitor.on_training_done(done(0.4), at(5)) is None  # older: stored, not judged
    assert monitor.snapshot(at(11)).metrics.val_accuracy == pytest.approx(0.9)


def test_open_incident_survives_a_restart_without_refiring(settings, engine):
    store = MonitorStore(engine)
    first = Monitor(settings, store, now=at(0)).on_training_done(done(0.5), at(1))
    for seq, _ in store.pending_messages():
        store.message_sent(seq)

    restarted = Monitor(settings, MonitorStore(engine), now=at(100))
    assert restarted.on_training_done(done(0.45), at(101)) is None
    assert pending_alerts(store) == []
    snapshot = restarted.snapshot(at(102))
    assert [a.alert_id for a in snapshot.health.active_alerts] == [first.alert_id]
    resolved = restarted.on_training_done(done(0.8), at(103))
    assert resolved is not None and resolved.alert_id == first.alert_id and resolved.state == "resolved"


def test_service_down_after_timeout_and_back_up(settings, engine):
    store = MonitorStore(engine)
    monitor = Monitor(settings, store, now=at(0))
    monitor.on_heartbeat(beat("reporter"), at(1), now=at(1))
    assert monitor.check(at(5)) == []
    assert sample("ctrops_service_alive", service="reporter") == 1
    down = monitor.check(at(12))  # 11 s since the last heartbeat, timeout 10 s
    assert [(a.kind, a.subject, a.state) for a in down] == [("service_down", "reporter", "firing")]
    assert monitor.check(at(13)) == []  # still down: no repeat
    assert monitor.snapshot(at(13)).health.status == "critical"
    monitor.on_heartbeat(beat("reporter", instance="i2"), at(14), now=at(14))
    up = monitor.check(at(14))
    assert [(a.kind, a.state) for a in up] == [("service_down", "resolved")]
    assert monitor.snapshot(at(14)).health.services["reporter"].status == "up"


def test_a_restarted_monitor_waits_one_timeout_before_judging_liveness(settings, engine):
    store = MonitorStore(engine)
    Monitor(settings, store, now=at(0)).on_heartbeat(beat("ingest"), at(1), now=at(1))
    restarted = Monitor(settings, MonitorStore(engine), now=at(500))
    assert restarted.check(at(505)) == []  # within the grace: backlog heartbeats may still come
    assert [a.subject for a in restarted.check(at(511))] == ["ingest"]


def test_expected_service_never_seen_is_reported(tmp_path, engine):
    settings = MonitorSettings(data_dir=tmp_path, monitor_heartbeat_timeout_s=10, monitor_expected_services="trainer")
    monitor = Monitor(settings, MonitorStore(engine), now=at(0))
    assert monitor.check(at(5)) == []
    alerts = monitor.check(at(11))
    assert [(a.kind, a.subject) for a in alerts] == [("service_down", "trainer")]
    assert alerts[0].metrics.last_seen == "never"


def test_response_time_and_error_rate_from_gateway_heartbeats(settings, engine):
    monitor = Monitor(settings, MonitorStore(engine), now=at(0))
    monitor.on_heartbeat(beat("gateway", requests_total=100, request_errors_total=0, latency_p95_ms=120.0), at(1), now=at(1))
    assert monitor.check(at(1)) == []
    monitor.on_heartbeat(beat("gateway", requests_total=200, request_errors_total=20, latency_p95_ms=900.0), at(2), now=at(2))
    alerts = {a.kind: a for a in monitor.check(at(2))}
    assert set(alerts) == {"response_time", "error_rate"}
    assert alerts["response_time"].severity == "medium"
    assert alerts["error_rate"].metrics.error_rate == pytest.approx(20.0)  # 20 of 100 in the window
    health = monitor.snapshot(at(2)).health
    assert health.api_success_rate == pytest.approx(80.0) and health.error_rate == pytest.approx(20.0)
    assert health.cpu_usage == pytest.approx(30.0) and health.memory_usage == pytest.approx(40.0)
    assert health.response_time_ms == pytest.approx(900.0)
    monitor.on_heartbeat(beat("gateway", requests_total=5000, request_errors_total=20, latency_p95_ms=80.0), at(3), now=at(3))
    resolved = {a.kind: a.state for a in monitor.check(at(3))}
    assert resolved == {"response_time": "resolved", "error_rate": "resolved"}


def test_gateway_restart_resets_counters_without_negative_traffic(settings, engine):
    monitor = Monitor(settings, MonitorStore(engine), now=at(0))
    monitor.on_heartbeat(beat("gateway", requests_total=1000, request_errors_total=10), at(1), now=at(1))
    monitor.on_heartbeat(beat("gateway", requests_total=30, request_errors_total=0), at(2), now=at(2))
    health = monitor.health(at(2))
    assert health.requests_in_window == 30 and health.error_rate == 0.0


def test_replayed_old_heartbeat_does_not_revive_a_service(settings, engine):
    monitor = Monitor(settings, MonitorStore(engine), now=at(0))
    monitor.on_heartbeat(beat("trainer"), at(1), now=at(1))
    monitor.check(at(20))
    monitor.on_heartbeat(beat("trainer"), at(0.5), now=at(21))  # redelivered, older
    assert monitor.snapshot(at(21)).health.services["trainer"].status == "down"


def test_errors_are_counted_per_service(settings, engine):
    monitor = Monitor(settings, MonitorStore(engine), now=at(0))
    before = sample("ctrops_service_errors_total", service="trainer", level="ERROR") or 0.0
    monitor.on_error(ServiceError(service="trainer", message="boom"), at(1))
    assert sample("ctrops_service_errors_total", service="trainer", level="ERROR") == before + 1
    assert monitor.health(at(2)).errors_in_window == 1


def test_snapshot_without_runs_is_neutral(settings, engine):
    snapshot = Monitor(settings, MonitorStore(engine), now=at(0)).snapshot(at(1))
    assert snapshot.run_id is None
    assert snapshot.metrics.val_accuracy is None
    assert snapshot.health.status == "healthy"
    assert snapshot.health.api_success_rate == 100.0


def test_known_counters_are_born_at_zero_so_their_first_increase_alerts(tmp_path, engine):
    from ctrops_monitor.monitor import SEVERITY

    settings = MonitorSettings(data_dir=tmp_path, monitor_expected_services="born-zero-a")
    monitor = Monitor(settings, MonitorStore(engine))
    for outcome in ("completed", "failed"):
        assert sample("ctrops_training_runs_total", outcome=outcome) is not None
    for kind in SEVERITY:
        assert sample("ctrops_alerts_fired_total", kind=kind) is not None
        assert sample("ctrops_alerts_resolved_total", kind=kind) is not None
    assert sample("ctrops_service_errors_total", service="born-zero-a", level="ERROR") == 0
    assert sample("ctrops_service_errors_total", service="born-zero-b", level="ERROR") is None
    monitor.on_heartbeat(beat("born-zero-b"), T0, now=T0)  # a service seen for the first time
    assert sample("ctrops_service_errors_total", service="born-zero-b", level="CRITICAL") == 0


def test_quality_gauges_are_one_per_metric_in_base_units_and_absent_before_a_run(settings, engine):
    from ctrops_monitor import metrics as m

    m.MODEL_QUALITY.set(ModelMetrics())  # the registry is process-wide: start from "no run seen"
    Monitor(settings, MonitorStore(engine))
    assert sample("ctrops_model_accuracy_ratio") is None  # no 0 that would fire CtropsModelAccuracyLow
    monitor = Monitor(settings, MonitorStore(engine))
    monitor.on_training_done(done(0.9, auc=0.8), T0)
    assert sample("ctrops_model_accuracy_ratio") == pytest.approx(0.9)
    assert sample("ctrops_model_roc_auc_ratio") == pytest.approx(0.8)
    assert sample("ctrops_model_average_precision_ratio") == pytest.approx(0.08)
    assert sample("ctrops_model_log_loss") == pytest.approx(0.09)
    assert sample("ctrops_model_f1_ratio") == pytest.approx(0.16)
    assert sample("ctrops_model_calibration_ratio") is None  # not reported by this run: absent
    monitor.on_heartbeat(beat("cpu-svc"), T0, now=T0)  # 12 % of a core in the heartbeat
    monitor.check(T0)
    assert sample("ctrops_service_cpu_usage_ratio", service="cpu-svc") == pytest.approx(0.12)
    assert sample("ctrops_api_response_time_p95_seconds") is None  # latency is the gateway's histogram
