"""GET /api/dashboard/si and /api/dashboard/client from real events and files, and with nothing yet."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ctrops_common.events import (
    DataInfo,
    FileUploaded,
    MonitorAlert,
    MonitorSnapshot,
    ServiceError,
    Topic,
    TrainingConfig,
    TrainingProgress,
    TrainingRequested,
    TrainingStarted,
    Validation,
    new_id,
)

from ctrops_common.events import EpochMetrics, TrainingDone
from ctrops_common.testing import publish_events as publish, wait_for


def strict_json(text: str):
    def refuse(token: str) -> None:
        raise AssertionError(f"non-finite number {token} in JSON")

    return json.loads(text, parse_constant=refuse)


def metrics(accuracy: float = 0.981) -> EpochMetrics:
    return EpochMetrics(train_loss=0.31, val_loss=0.088, train_accuracy=0.9, val_accuracy=accuracy, auc=0.74,
                        ap=0.081, logloss=0.088, calibration=1.04, score=0.33, precision=0.12, recall=0.35,
                        f1=0.18, threshold=0.05)


def done(run_id: str, file_id: str) -> TrainingDone:
    return TrainingDone(run_id=run_id, file_id=file_id, model_location=f"runs/{run_id}/model",
                        metrics=metrics(), best_epoch=2, epochs_run=3, duration_s=93.0,
                        experiment_name="exp", config=TrainingConfig(epochs=3))

SI_KEYS = {"currentMetrics", "systemHealth", "performanceData", "latestRun", "errorLogs", "bottleneckAnalysis",
           "performanceAlert"}
CLIENT_KEYS = {"businessMetrics", "aiInsights", "customerSegments", "optimalTimeSlots", "marketingStrategies",
               "performanceSummary"}


def test_dashboards_answer_neutral_values_before_any_data(gateway_client):
    si = gateway_client.get("/api/dashboard/si")
    client = gateway_client.get("/api/dashboard/client")
    assert si.status_code == 200 and client.status_code == 200
    si_body, client_body = strict_json(si.text), strict_json(client.text)
    assert SI_KEYS <= set(si_body) and CLIENT_KEYS <= set(client_body)
    assert si_body["currentMetrics"]["accuracy"] == 0.0 and si_body["currentMetrics"]["runId"] is None
    assert si_body["performanceData"]["labels"] == [] and si_body["performanceData"]["valLoss"] == []
    assert si_body["latestRun"]["runId"] is None and si_body["errorLogs"] == []
    assert si_body["performanceAlert"] == {"show": False, "message": "", "severity": "low", "count": 0}
    for key in ("cpuUsage", "memoryUsage", "apiSuccessRate", "errorRate"):
        assert 0 <= si_body["systemHealth"][key] <= 100
    assert client_body["customerSegments"] == [] and client_body["optimalTimeSlots"] == []
    assert client_body["marketingStrategies"] == [] and client_body["businessMetrics"]["isEstimate"] is True


def _profile(rows_per_hour: int = 2500) -> dict:
    hours = []
    for hour in range(24):
        clicks = {20: 125, 21: 110, 9: 90}.get(hour, 45)
        rows = 20 if hour == 3 else rows_per_hour
        clicks = 9 if hour == 3 else clicks  # 45% CTR on 20 rows: lucky noise, never "best"
        hours.append({"value": float(hour), "rows": rows, "clicks": clicks, "ctr": clicks / rows})
    segments = [
        {"age_group": 4.0, "gender": 1.0, "rows": 12000, "clicks": 300, "ctr": 0.025},
        {"age_group": 5.0, "gender": 2.0, "rows": 20000, "clicks": 340, "ctr": 0.017},
        {"age_group": 6.0, "gender": 1.0, "rows": 15, "clicks": 5, "ctr": 0.33},  # too small to rank
        {"age_group": None, "gender": 2.0, "rows": 8000, "clicks": 120, "ctr": 0.015},
    ]
    return {"segments": {"hour": hours, "age_group_gender": segments, "inventory_id": [], "day_of_week": []}}


def _upload(file_id: str) -> FileUploaded:
    return FileUploaded(
        file_id=file_id, filename="CTR_60000_renamed.csv", location=f"uploads/{file_id}/original.csv",
        parquet_location=f"files/{file_id}/data.parquet", encoding="utf-8", rows=55220, columns=["clicked", "seq"],
        validation=Validation(is_valid=True),
        info=DataInfo(total_rows=55220, total_columns=119, missing_values=0, missing_percentage=0.0,
                      duplicate_rows=0, clicked_one=1100, clicked_zero=54120, ctr=1.992),
        preview=[], column_descriptions={}, profile_location=f"files/{file_id}/profile.json",
    )


@pytest.fixture
def trained_run(gateway_client, data_dir: Path):
    """A file, its profile, one 3-epoch run with its events, an error and a report on disk."""
    file_id, run_id = new_id(), new_id()
    (data_dir / "files" / file_id).mkdir(parents=True)
    (data_dir / "files" / file_id / "profile.json").write_text(json.dumps(_profile()))
    requested = TrainingRequested(run_id=run_id, file_id=file_id, parquet_location=f"files/{file_id}/data.parquet",
                                  config=TrainingConfig(epochs=3))
    events = [
        (Topic.FILE_UPLOADED, _upload(file_id), file_id),
        (Topic.TRAINING_REQUESTED, requested, run_id),
        (Topic.TRAINING_STARTED, TrainingStarted(run_id=run_id, attempt=1, worker="w1"), run_id),
    ]
    for epoch, (loss, val_acc) in enumerate([(0.5, 0.95), (0.4, 0.97), (0.35, 0.981)], start=1):
        m = metrics(val_acc).model_copy(update={"train_loss": loss, "val_loss": loss / 4})
        events.append((Topic.TRAINING_PROGRESS, TrainingProgress(run_id=run_id, epoch=epoch, total_epochs=3,
                                                                 metrics=m), run_id))
    events += [
        (Topic.TRAINING_DONE, done(run_id, file_id=file_id), run_id),
        (Topic.SERVICE_ERROR, ServiceError(service="explainer", message="LIME sample failed", stack="tb"), run_id),
    ]
    publish(*events)
    # Topics are consumed in no particular order: wait until every event has landed.
    wait_for(lambda: gateway_client.get("/api/dashboard/si").json(),
             lambda b: b["errorLogs"] and len(b["performanceData"]["labels"]) == 3
             and b["latestRun"]["runId"] == run_id)
    wait_for(lambda: gateway_client.get("/api/dashboard/client").json(),
             lambda b: b["fileId"] == file_id and len(b["performanceSummary"]) == 2)
    return {"file_id": file_id, "run_id": run_id, "data_dir": data_dir}


def test_engineer_dashboard_from_real_runs_errors_and_traffic(gateway_client, trained_run):
    for _ in range(3):
        gateway_client.get(f"/api/performance/{trained_run['run_id']}")
    body = strict_json(gateway_client.get("/api/dashboard/si").text)
    current = body["currentMetrics"]
    assert current["runId"] == trained_run["run_id"]
    assert current["accuracy"] == pytest.approx(0.981) and current["f1Score"] == pytest.approx(0.18)
    assert current["auc"] == pytest.approx(0.74) and current["responseTime"] >= 0
    curves = body["performanceData"]
    assert curves["labels"] == ["Epoch 1", "Epoch 2", "Epoch 3"] == curves["months"]
    assert curves["valAccuracy"] == [0.95, 0.97, 0.981] and curves["loss"] == [0.5, 0.4, 0.35]
    assert len(curves["valLoss"]) == len(curves["f1Score"]) == len(curves["valF1Score"]) == 3
    run = body["latestRun"]
    assert run["runId"] == trained_run["run_id"] and run["trainingTime"] == pytest.approx(1.55)
    assert (run["epochs"], run["batchSize"], run["optimizer"]) == (3, 4096, "Adam")
    assert run["bestAccuracy"] == pytest.approx(98.1) and run["finalLoss"] == pytest.approx(0.088)
    errors = body["errorLogs"]
    assert errors[0]["level"] == "ERROR" and "LIME sample failed" in errors[0]["message"] and errors[0]["stack"] == "tb"
    components = {b["component"]: b for b in body["bottleneckAnalysis"]}
    api = components["API /api/performance/{run_id}"]
    assert api["kind"] == "api" and api["requests"] >= 3 and api["maxTime"] >= api["avgTime"] > 0
    assert api["status"] in ("good", "warning", "critical") and api["recommendation"]
    assert components["모델 학습 (trainer)"]["avgTime"] == pytest.approx(93000.0)
    assert sum(b["percentage"] for b in body["bottleneckAnalysis"] if b["kind"] == "pipeline") == pytest.approx(100, abs=0.5)


def test_engineer_dashboard_health_and_alert_come_from_the_monitor(gateway_client):
    alert = MonitorAlert(alert_id="service_down:trainer:1", kind="service_down", subject="trainer", state="firing",
                         severity="high", message="trainer is down")
    snapshot = MonitorSnapshot(run_id=None, metrics={"response_time": 321.0},
                               health={"status": "critical", "cpu_usage": 37.5, "memory_usage": 61.0,
                                       "api_success_rate": 99.5, "error_rate": 0.5})
    publish((Topic.MONITOR_ALERT, alert, None), (Topic.MONITOR_SNAPSHOT, snapshot, None))
    body = wait_for(lambda: gateway_client.get("/api/dashboard/si").json(),
                    lambda b: b["systemHealth"].get("source") == "monitor" and b["performanceAlert"]["show"])
    health = body["systemHealth"]
    assert (health["status"], health["cpuUsage"], health["memoryUsage"]) == ("critical", 37.5, 61.0)
    assert (health["apiSuccessRate"], health["errorRate"]) == (99.5, 0.5)
    assert body["currentMetrics"]["responseTime"] == 321.0
    assert body["performanceAlert"]["message"] == "trainer is down" and body["performanceAlert"]["severity"] == "high"


def test_client_dashboard_segments_hours_money_and_strategies(gateway_client, trained_run):
    body = strict_json(gateway_client.get("/api/dashboard/client").text)
    assert body["runId"] == trained_run["run_id"] and body["fileId"] == trained_run["file_id"]
    slots = body["optimalTimeSlots"]
    assert len(slots) == 24 and slots[0]["period"] == "00:00-01:00"
    assert {s["hour"] for s in slots if s["isBest"]} == {20, 21, 9}  # not hour 3: 20 rows are noise
    assert slots[20]["ctr"] == pytest.approx(5.0) and slots[20]["traffic"] == 2500
    segments = body["customerSegments"]
    assert [s["name"] for s in segments][:1] == ["age_4_gender_1"]
    assert "age_6_gender_1" not in {s["name"] for s in segments}
    assert all(0 <= s["potential"] <= 100 for s in segments) and segments[0]["potential"] == 100.0
    assert segments[0]["ctr"] == pytest.approx(2.5) and segments[0]["ctrLow"] < 2.5 < segments[0]["ctrHigh"]
    assert any(s["label"].startswith("연령대 미상") for s in segments)
    money = body["businessMetrics"]
    assert money["isEstimate"] is True and money["actualCtr"] == pytest.approx(1.992)
    assert money["predictedCtr"] == pytest.approx(1.992 * 1.04, abs=1e-3)  # calibration of the run
    assert money["assumptions"] == {"cpcKrw": 300.0, "conversionRate": 0.03, "conversionValueKrw": 40000.0,
                                    "monthlyImpressions": 1000000}
    assert money["expectedMonthlyClicks"] == round(1_000_000 * 0.01992)
    assert money["estimatedMonthlyRevenue"] == round(1_000_000 * 0.01992 * 0.03 * 40000)
    assert money["ctrLift"] > 0 and money["additionalRevenue"] > 0
    # No report yet: strategies and insights come from the data itself.
    assert body["marketingStrategies"] and all(s["source"] == "data" for s in body["marketingStrategies"])
    assert any("최적 시간대" in i["title"] for i in body["aiInsights"])
    assert [s["title"] for s in body["performanceSummary"]][:2] == ["모델 학습 완료", "데이터 업로드"]

    report = {"aiInsights": [{"icon": "💡", "type": "success", "title": "from the reporter", "message": "m",
                              "details": [], "action": "a"}],
              "actionPlan": [{"title": "Shift budget to 20-22h", "description": "d", "priority": "high",
                              "impact": 12.5, "duration": "2주", "cost": "낮음", "color": "#f00"}]}
    run_folder = trained_run["data_dir"] / "runs" / trained_run["run_id"]
    run_folder.mkdir(parents=True, exist_ok=True)
    (run_folder / "report.json").write_text(json.dumps(report, ensure_ascii=False))
    body = gateway_client.get("/api/dashboard/client").json()
    assert body["aiInsights"][0]["title"] == "from the reporter"
    assert body["marketingStrategies"] == [{"id": 1, "priority": "high", "title": "Shift budget to 20-22h",
                                            "description": "d", "impact": 12.5, "duration": "2주", "cost": "낮음",
                                            "source": "report"}]


def test_client_dashboard_survives_a_corrupt_profile(gateway_client, trained_run):
    (trained_run["data_dir"] / "files" / trained_run["file_id"] / "profile.json").write_text("{not json")
    response = gateway_client.get("/api/dashboard/client")
    assert response.status_code == 200
    assert response.json()["optimalTimeSlots"] == [] and response.json()["sources"]["profile"] is False
