"""The SI dashboard follows the deployed model over time: monitoring periods, model alerts, serving p95.

Everything is published as the scorer and the monitor would (typed events, on the in-memory bus: each
publish returns once the gateway's consumer handled it); the gateway only chooses and orders what they
produced.
"""

from __future__ import annotations

import json
import time
from datetime import datetime, timezone

import pytest

from ctrops_common.events import (
    ModelMetrics,
    FeatureDrift,
    ModelResult,
    MonitorAlert,
    MonitoringPeriod,
    PeriodMetrics,
    ServiceDownEvidence,
    ServiceHeartbeat,
    Topic,
    TrainingConfig,
    TrainingDone,
    new_id,
)

pytestmark = pytest.mark.inmemory
VAL = {"lstm": (0.95, 0.21, 0.081), "gbdt": (0.96, 0.24, 0.078)}  # validation accuracy, f1, logloss


def run(run_id: str, *, promoted: bool = True, replaces: str | None = None) -> TrainingDone:
    models = [ModelResult(kind=k, label=k, metrics=ModelMetrics(val_loss=0.1, val_accuracy=a, f1=f, logloss=ll, auc=0.75),
                          model_location=f"runs/{run_id}/model/{k}", best_iteration=1, iterations_run=1,
                          duration_s=1.0) for k, (a, f, ll) in VAL.items()]
    return TrainingDone(run_id=run_id, file_id=new_id(), model_location=f"runs/{run_id}/model/gbdt",
                        metrics=models[1].metrics, best_epoch=1, epochs_run=1, duration_s=3.0, experiment_name="exp",
                        config=TrainingConfig(epochs=1), champion="gbdt", models=models, promoted=promoted,
                        replaces=replaces)


def period(run_id: str, label: str, *, kind: str = "gbdt", accuracy: float | None = 0.9, labelled: bool = True,
           drifted: tuple[str, ...] = ()) -> MonitoringPeriod:
    metrics = PeriodMetrics(
        auc=0.74 if labelled else None, accuracy=accuracy if labelled else None, f1=0.2 if labelled else None,
        logloss=0.09 if labelled else None, calibration=1.02 if labelled else None,
        actual_clicks=40 if labelled else None, predicted_clicks=41.0, mean_probability=0.02,
        estimated_auc=None if labelled else 0.73)
    drift = [FeatureDrift(feature=f, kind="numeric", test="ks", statistic=0.3, p_value=0.001, psi=0.4, drifted=True,
                          importance_rank=1) for f in drifted]
    return MonitoringPeriod(period_id=f"{run_id}:{kind}:{label}", period=label, bucket="month", run_id=run_id,
                            model_kind=kind, job_ids=[new_id()], rows=2000, labelled=labelled, metrics=metrics,
                            baseline_auc=0.75, drift=drift)


def si(client) -> dict:
    def refuse(token: str) -> None:
        raise AssertionError(f"non-finite number {token} in JSON")

    return json.loads(client.get("/api/dashboard/si").text, parse_constant=refuse)


def test_performance_data_is_the_champion_lines_periods_in_time_order(memory_gateway):
    gateway_client, publish = memory_gateway.client, memory_gateway.publish
    first, ignored = new_id(), new_id()
    publish((Topic.TRAINING_DONE, run(first), first))
    # Out of time order, a re-scored February (the later report wins), an unlabelled April, and the
    # challenger's own periods of the same months (the run's champion kind is the one shown).
    publish(
        (Topic.MONITORING_PERIOD, period(first, "2026-03", accuracy=0.7, drifted=("l_feat_3",)), first),
        (Topic.MONITORING_PERIOD, period(first, "2026-01", accuracy=0.91), first),
        (Topic.MONITORING_PERIOD, period(first, "2026-02", accuracy=0.5), first),
        (Topic.MONITORING_PERIOD, period(first, "2026-01", kind="lstm", accuracy=0.11), first),
    )
    assert len(si(gateway_client)["performanceData"]["labels"]) == 3
    publish((Topic.MONITORING_PERIOD, period(first, "2026-02", accuracy=0.89), first),
            (Topic.MONITORING_PERIOD, period(first, "2026-04", labelled=False), first))
    data = si(gateway_client)["performanceData"]
    assert data["labels"] == ["2026-01", "2026-02", "2026-03", "2026-04"]
    assert data["source"] == "monitoring" and data["months"] == data["labels"] and data["runId"] == first
    assert data["accuracy"] == [0.91, 0.89, 0.7, None]  # April has no labels: a gap, not a number
    assert data["valAccuracy"] == [0.96] * 4 and data["valF1Score"] == [0.24] * 4 and data["valLoss"] == [0.078] * 4
    assert data["loss"] == [0.09, 0.09, 0.09, None] and data["f1Score"] == [0.2, 0.2, 0.2, None]
    assert data["estimatedAuc"] == [None, None, None, 0.73] and data["modelKinds"] == ["gbdt"] * 4
    assert data["driftedFeatures"] == [[], [], ["l_feat_3"], []] and data["labelled"] == [True, True, True, False]

    # A retrain that was not promoted is not the line; one that was continues it.
    publish((Topic.TRAINING_DONE, run(ignored, promoted=False, replaces=first), ignored),
            (Topic.MONITORING_PERIOD, period(ignored, "2026-05", accuracy=0.2), ignored))
    assert si(gateway_client)["performanceData"]["labels"][-1] == "2026-04"
    second = new_id()
    publish((Topic.TRAINING_DONE, run(second, replaces=first), second),
            (Topic.MONITORING_PERIOD, period(second, "2026-04", accuracy=0.93), second),
            (Topic.MONITORING_PERIOD, period(second, "2026-05", accuracy=0.94), second))
    data = si(gateway_client)["performanceData"]
    assert data["labels"] == ["2026-01", "2026-02", "2026-03", "2026-04", "2026-05"] and data["runId"] == second
    assert data["runIds"] == [first, first, first, second, second]  # April re-scored by the new champion
    assert data["accuracy"] == [0.91, 0.89, 0.7, 0.93, 0.94]


def test_without_periods_performance_data_stays_the_training_curves(memory_gateway):
    gateway_client = memory_gateway.client
    run_id = new_id()
    memory_gateway.publish((Topic.TRAINING_DONE, run(run_id), run_id))
    assert si(gateway_client)["latestRun"]["runId"] == run_id
    data = si(gateway_client)["performanceData"]
    assert data["source"] == "training" and data["labels"] == []


def test_model_alert_names_period_and_feature_and_responsetime_is_the_serving_p95(memory_gateway):
    gateway_client, publish = memory_gateway.client, memory_gateway.publish
    run_id = new_id()
    other = MonitorAlert(alert_id="service_down:explainer:1", kind="service_down", subject="explainer",
                         state="firing", severity="high", message="explainer is down",
                         metrics=ServiceDownEvidence(service="explainer", last_seen="never", timeout_s=20.0))
    # The evidence as the monitor writes it (model_drift.feature_drift): forwarded to the frontend as it is.
    evidence = {"period": "2026-03", "period_id": f"{run_id}:gbdt:2026-03", "run_id": run_id, "model_kind": "gbdt",
                "rows": 20_000, "feature": "l_feat_3", "psi": 0.41, "test": "ks", "statistic": 0.12, "p_value": None,
                "importance_rank": 3, "psi_threshold": 0.2}
    drift = MonitorAlert(alert_id="feature_drift:l_feat_3:1", kind="feature_drift", subject="l_feat_3",
                         state="firing", severity="medium", message="Top feature 'l_feat_3' drifted in 2026-03",
                         metrics=evidence)
    beat = ServiceHeartbeat(service="scorer", instance="s1", started_at=datetime.now(timezone.utc), cpu_percent=3.0,
                            memory_percent=9.0, rss_bytes=1 << 28, latency_p95_ms=12.5)
    with gateway_client.websocket_connect("/ws/performance") as ws:
        ws.receive_json(), ws.receive_json()
        publish((Topic.MONITOR_ALERT, other, None), (Topic.MONITOR_ALERT, drift, None),
                (Topic.SERVICE_HEARTBEAT, beat, None))
        pushed = None
        deadline = time.monotonic() + 20
        while pushed is None and time.monotonic() < deadline:
            message = ws.receive_json()
            if message["type"] == "performance_alert" and message["kind"] == "feature_drift":
                pushed = message
        assert pushed is not None
        assert (pushed["period"], pushed["feature"], pushed["severity"]) == ("2026-03", "l_feat_3", "medium")
        assert json.dumps(pushed["metrics"], sort_keys=True) == json.dumps(evidence, sort_keys=True)  # 20000, not 20000.0
        assert {k: v for k, v in pushed.items() if k != "timestamp"} == {
            "type": "performance_alert", "severity": "medium", "message": "Top feature 'l_feat_3' drifted in 2026-03",
            "metrics": evidence, "alert_id": "feature_drift:l_feat_3:1", "kind": "feature_drift",
            "subject": "l_feat_3", "state": "firing", "period": "2026-03", "feature": "l_feat_3"}

    body = si(gateway_client)
    assert body["performanceAlert"].get("kind") == "feature_drift"
    assert body["currentMetrics"]["responseTimeSource"] == "scorer"
    alert = body["performanceAlert"]
    assert alert["show"] is True and alert["message"] == "Top feature 'l_feat_3' drifted in 2026-03"
    assert (alert["period"], alert["feature"], alert["runId"], alert["modelKind"]) == ("2026-03", "l_feat_3", run_id,
                                                                                        "gbdt")
    assert alert["count"] == 2 and [a["kind"] for a in alert["modelAlerts"]] == ["feature_drift"]
    assert body["currentMetrics"]["responseTime"] == body["currentMetrics"]["response_time"] == 12.5
    assert body["currentMetrics"]["apiResponseTime"] >= 0

    publish((Topic.MONITOR_ALERT, drift.model_copy(update={"state": "resolved", "message": "stable again"}), None))
    alert = si(gateway_client)["performanceAlert"]
    assert alert["show"] is True and alert["kind"] == "service_down"  # today's behaviour once the model is fine
