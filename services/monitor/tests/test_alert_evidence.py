"""Each kind of alert the monitor raises carries its evidence as the model of its kind (events.EVIDENCE),
with exactly the keys and values the monitor has always written under ``metrics``; the evidence
round-trips through the outbox and the wire as that model; a restarted monitor resumes its open
incidents as typed alerts, rows stored by older monitors included. The monitor runs on a real
(SQLite) database, as in test_monitor.py."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import insert

from ctrops_common.db import make_engine
from ctrops_common.events import (
    EVIDENCE,
    AucDropEvidence,
    Event,
    FeatureDrift,
    ModelAccuracyEvidence,
    ModelMetrics,
    MonitorAlert,
    MonitoringPeriod,
    PeriodMetrics,
    ServiceHeartbeat,
    Topic,
    TrainingConfig,
    TrainingDone,
    decode_event,
)
from ctrops_monitor.model_drift import auc_drop_limit
from ctrops_monitor.monitor import Monitor
from ctrops_monitor.settings import MonitorSettings
from ctrops_monitor.store import MonitorStore, OpenIncident, alerts

T0 = datetime(2026, 1, 1, 12, 0, tzinfo=timezone.utc)
RUN = "a" * 32


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


# The keys each kind's ``metrics`` had before the evidence was typed (the wire contract: the gateway
# forwards them to the frontend as they are).
WHERE = ["period", "period_id", "run_id", "model_kind", "rows"]
WIRE_KEYS = {
    "model_accuracy": ["run_id", "threshold", "val_accuracy", "valAccuracy", "accuracy", "precision", "recall", "f1",
                       "f1_score", "f1Score", "auc", "ap", "logloss", "calibration", "score", "train_loss",
                       "trainLoss", "val_loss", "valLoss", "train_accuracy", "trainAccuracy", "seconds",
                       "samples_per_s", "samplesPerS"],
    "service_down": ["service", "last_seen", "timeout_s"],
    "response_time": ["response_time", "threshold_ms"],
    "error_rate": ["error_rate", "requests", "errors", "threshold_percent"],
    "calibration": WHERE + ["calibration", "calibration_ci_low", "calibration_ci_high", "predicted_clicks",
                            "actual_clicks", "band_low", "band_high"],
    "auc_drop": WHERE + ["auc", "auc_ci_low", "auc_ci_high", "baseline_auc", "baseline_auc_ci_low", "auc_drop_limit",
                         "estimated_auc"],
    "feature_drift": WHERE + ["feature", "psi", "test", "statistic", "p_value", "importance_rank", "psi_threshold"],
}


@pytest.fixture
def settings(tmp_path) -> MonitorSettings:
    return MonitorSettings(data_dir=tmp_path, monitor_heartbeat_timeout_s=10, monitor_response_time_ms=500,
                           monitor_accuracy_threshold=0.7, monitor_error_rate_percent=5,
                           monitor_error_rate_min_requests=20, monitor_expected_services="trainer")


@pytest.fixture
def engine(tmp_path):
    return make_engine(f"sqlite:///{tmp_path / 'monitor.sqlite3'}")


def finished(accuracy: float) -> TrainingDone:
    return TrainingDone(
        run_id=RUN, file_id="f" * 32, model_location="runs/x/model",
        metrics=ModelMetrics(train_loss=0.3, val_loss=0.35, train_accuracy=accuracy, val_accuracy=accuracy, auc=0.71,
                             ap=0.08, logloss=0.09, precision=0.1, recall=0.4, f1=0.16, threshold=0.31),
        best_epoch=2, epochs_run=3, duration_s=42.0, experiment_name="exp", config=TrainingConfig(),
    )


def gateway_beat(requests: int, errors: int, p95_ms: float) -> ServiceHeartbeat:
    return ServiceHeartbeat(service="gateway", instance="g1", started_at=T0, cpu_percent=5.0, memory_percent=20.0,
                            rss_bytes=1, requests_total=requests, request_errors_total=errors, latency_p95_ms=p95_ms)


def shifted_period() -> MonitoringPeriod:
    """A month whose calibration, AUC and top feature are all out of band."""
    return MonitoringPeriod(
        period_id=f"{RUN}:gbdt:2026-02", period="2026-02", bucket="month", run_id=RUN, model_kind="gbdt",
        job_ids=["job"], rows=20_000, labelled=True,
        metrics=PeriodMetrics(predicted_clicks=180.0, actual_clicks=400, calibration=0.45, calibration_ci_low=0.41,
                              calibration_ci_high=0.5, auc=0.66, auc_ci_low=0.63, auc_ci_high=0.69,
                              estimated_auc=0.7712345, mean_probability=0.009),
        baseline_auc=0.8, baseline_auc_ci_low=0.78,
        drift=[FeatureDrift(feature="history_a_1", kind="numeric", test="ks", statistic=0.31234567, p_value=1e-9,
                            psi=1.1, drifted=True, importance_rank=1)],
        reference_rows=48_000,
    )


def every_kind(monitor: Monitor) -> dict[str, MonitorAlert]:
    """Drive the monitor through its real handlers until each of the seven kinds has fired once."""
    fired = [monitor.on_training_done(finished(0.55), at(1))]
    fired += monitor.on_period(shifted_period(), at(2))
    monitor.on_heartbeat(gateway_beat(100, 0, 120.0), at(3), now=at(3))
    monitor.on_heartbeat(gateway_beat(200, 20, 900.0), at(4), now=at(4))
    fired += monitor.check(at(11))  # trainer (expected, never seen) is down after the 10 s timeout
    by_kind = {a.kind: a for a in fired if a is not None}
    assert sorted(by_kind) == sorted(EVIDENCE) and all(a.state == "firing" for a in by_kind.values())
    return by_kind


def exact(value: object) -> str:
    """JSON text with sorted keys: 20000 and 20000.0 differ, as they would for the frontend."""
    return json.dumps(value, sort_keys=True)


def test_each_kind_carries_its_evidence_model_with_the_keys_and_values_it_always_had(settings, engine):
    by_kind = every_kind(Monitor(settings, MonitorStore(engine), now=at(0)))
    for kind, alert in by_kind.items():
        assert type(alert.metrics) is EVIDENCE[kind], kind
        assert sorted(alert.metrics.model_dump(mode="json")) == sorted(WIRE_KEYS[kind]), kind

    where = {"period": "2026-02", "period_id": f"{RUN}:gbdt:2026-02", "run_id": RUN, "model_kind": "gbdt",
             "rows": 20_000}
    expected = {
        # threshold: the run's decision threshold (it always overwrote the accuracy threshold under that key)
        "model_accuracy": {"run_id": RUN, **finished(0.55).metrics.both_spellings()},
        "service_down": {"service": "trainer", "last_seen": "never", "timeout_s": 10.0},
        "response_time": {"response_time": 900.0, "threshold_ms": 500.0},
        "error_rate": {"error_rate": 20.0, "requests": 100, "errors": 20, "threshold_percent": 5.0},
        "calibration": {**where, "calibration": 0.45, "calibration_ci_low": 0.41, "calibration_ci_high": 0.5,
                        "predicted_clicks": 180.0, "actual_clicks": 400, "band_low": 0.8, "band_high": 1.25},
        "auc_drop": {**where, "auc": 0.66, "auc_ci_low": 0.63, "auc_ci_high": 0.69, "baseline_auc": 0.8,
                     "baseline_auc_ci_low": 0.78, "auc_drop_limit": round(auc_drop_limit(shifted_period()), 4),
                     "estimated_auc": 0.7712},
        "feature_drift": {**where, "feature": "history_a_1", "psi": 1.1, "test": "ks", "statistic": 0.3123,
                          "p_value": 1e-9, "importance_rank": 1, "psi_threshold": 0.2},
    }
    assert expected["model_accuracy"]["threshold"] == 0.31 and expected["model_accuracy"]["accuracy"] == 0.55
    for kind, alert in by_kind.items():
        assert exact(alert.metrics.model_dump(mode="json")) == exact(expected[kind]), kind


@pytest.mark.parametrize("kind", sorted(EVIDENCE))
def test_each_kinds_evidence_round_trips_through_the_outbox_and_the_wire_as_its_model(settings, engine, kind):
    store = MonitorStore(engine)
    alert = every_kind(Monitor(settings, store, now=at(0)))[kind]
    # The outbox row (JSON in the database) reads back as the same typed alert ...
    [outgoing] = [m["alert"] for _, m in store.pending_messages() if m["alert"]["kind"] == kind]
    from_outbox = MonitorAlert.model_validate(outgoing)
    assert from_outbox == alert and type(from_outbox.metrics) is EVIDENCE[kind]
    # ... and so do the bytes on the bus, with the same JSON under "metrics".
    raw = Event(type=Topic.MONITOR_ALERT, producer="monitor", payload=from_outbox).to_bytes()
    decoded = decode_event(Topic.MONITOR_ALERT.value, raw).payload
    assert decoded == alert and type(decoded.metrics) is EVIDENCE[kind]
    assert exact(json.loads(raw)["payload"]["metrics"]) == exact(outgoing["metrics"])
    assert exact(decoded.model_dump(mode="json")) == exact(outgoing)


def test_a_restarted_monitor_resumes_its_open_incidents_as_typed_alerts(settings, engine):
    fired = every_kind(Monitor(settings, MonitorStore(engine), now=at(0)))
    store = MonitorStore(engine)
    restarted = Monitor(settings, store, now=at(100))
    assert sorted(restarted.open) == sorted((a.kind, a.subject) for a in fired.values())
    for (kind, subject), incident in restarted.open.items():
        assert isinstance(incident, OpenIncident) and isinstance(incident.alert, MonitorAlert)
        assert type(incident.alert.metrics) is EVIDENCE[kind]
        assert incident.alert == fired[kind]  # evidence, message, severity: as it fired
    assert {i.opened_at for i in store.open_alerts()} == {at(1), at(2), at(11)}
    # The typed incident drives the rest: the health lists it, and a good run resolves it under its id.
    assert [a.alert_id for a in restarted.health(at(101)).active_alerts] == sorted(a.alert_id for a in fired.values())
    resolved = restarted.on_training_done(finished(0.93), at(102))
    assert resolved is not None and resolved.alert_id == fired["model_accuracy"].alert_id
    assert resolved.state == "resolved" and isinstance(resolved.metrics, ModelAccuracyEvidence)


def test_rows_stored_by_older_monitors_still_resume(settings, engine):
    """A model_accuracy incident stored before ModelMetrics (the contract's names only) and an auc_drop
    incident stored before auc_drop_limit existed read back as typed alerts."""
    store = MonitorStore(engine)
    legacy_accuracy = {"run_id": RUN, "threshold": 0.5, "accuracy": 0.55, "precision": 0.1, "recall": 0.4,
                       "f1_score": 0.16, "auc": 0.71, "ap": 0.08, "logloss": 0.09, "calibration": None, "score": None,
                       "val_loss": 0.35}
    legacy_auc = {"period": "2025-12", "period_id": f"{RUN}:lstm:2025-12", "run_id": RUN, "model_kind": "lstm",
                  "rows": 9000, "auc": 0.61, "auc_ci_low": 0.58, "auc_ci_high": 0.64, "baseline_auc": 0.8,
                  "baseline_auc_ci_low": None, "estimated_auc": None}
    with engine.begin() as conn:
        for kind, evidence in (("model_accuracy", legacy_accuracy), ("auc_drop", legacy_auc)):
            conn.execute(insert(alerts).values(
                alert_id=f"{kind}:model:1", kind=kind, subject="model", state="firing", severity="high",
                message="older", metrics=json.dumps(evidence), opened_at=at(-50), resolved_at=None))
    restarted = Monitor(settings, store, now=at(0))
    accuracy = restarted.open[("model_accuracy", "model")].alert.metrics
    assert isinstance(accuracy, ModelAccuracyEvidence)
    assert (accuracy.quality.val_accuracy, accuracy.quality.f1, accuracy.quality.threshold) == (0.55, 0.16, 0.5)
    auc = restarted.open[("auc_drop", "model")].alert.metrics
    assert isinstance(auc, AucDropEvidence) and auc.auc_drop_limit is None and auc.period == "2025-12"
    assert restarted.on_training_done(finished(0.55), at(1)) is None  # still the same open incident
