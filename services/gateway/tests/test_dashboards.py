"""GET /api/dashboard/si and /api/dashboard/client from real events and files, and with nothing yet.

The events are published as the services would, on the in-memory bus (each publish returns once the
gateway's consumer handled it); the files are written as ingest and the reporter write them.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ctrops_common.dataset import highlights_path, profile_path, report_path
from ctrops_common.documents import AudienceHighlights, ReportDoc, read_document, write_document
from ctrops_common.events import (
    DataInfo,
    FileUploaded,
    MonitorAlert,
    MonitorSnapshot,
    PipelineStage,
    ServiceDownEvidence,
    ServiceError,
    Topic,
    TrainingConfig,
    TrainingProgress,
    TrainingRequested,
    TrainingStarted,
    Validation,
    new_id,
)

from ctrops_common.events import ModelMetrics, TrainingDone
from ctrops_common.sample_documents import hours_and_audience_profile
from ctrops_common.storage import FileStore
from ctrops_ingest.highlights import write_highlights  # the files as ingest writes them


pytestmark = pytest.mark.inmemory


def strict_json(text: str):
    def refuse(token: str) -> None:
        raise AssertionError(f"non-finite number {token} in JSON")

    return json.loads(text, parse_constant=refuse)


def metrics(accuracy: float = 0.981) -> ModelMetrics:
    return ModelMetrics(train_loss=0.31, val_loss=0.088, train_accuracy=0.9, val_accuracy=accuracy, auc=0.74,
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


def test_dashboards_answer_neutral_values_before_any_data(memory_gateway):
    gateway_client = memory_gateway.client
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
    money = client_body["businessMetrics"]
    assert money["status"] == "no_run" and money["statusMessage"]
    assert money["additionalRevenue"] is None and money["estimatedMonthlyCost"] is None and money["verdict"] is None


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
def trained_run(memory_gateway, data_dir: Path):
    """A file, its profile and highlights (as ingest writes them), one 3-epoch run with its events, an error."""
    file_id, run_id = new_id(), new_id()
    store = FileStore(data_dir)
    write_document(store, profile_path(file_id), hours_and_audience_profile())
    info = _upload(file_id).info
    write_highlights(store, file_id, hours_and_audience_profile(), info.total_rows, info.ctr)
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
    memory_gateway.publish(*events)  # returns once the gateway handled every event
    si = memory_gateway.client.get("/api/dashboard/si").json()
    assert si["errorLogs"] and len(si["performanceData"]["labels"]) == 3 and si["latestRun"]["runId"] == run_id, si
    client = memory_gateway.client.get("/api/dashboard/client").json()
    assert client["fileId"] == file_id and len(client["performanceSummary"]) == 2, client
    return {"file_id": file_id, "run_id": run_id, "data_dir": data_dir}


def test_engineer_dashboard_from_real_runs_errors_and_traffic(memory_gateway, trained_run):
    gateway_client = memory_gateway.client
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
    # the pipeline's stages are the monitor's (its snapshot's ``pipeline``): none before it published one
    assert [b for b in body["bottleneckAnalysis"] if b["kind"] == "pipeline"] == []


def test_the_pipeline_rows_of_the_bottlenecks_are_the_monitors_stages_as_published(memory_gateway, trained_run):
    run_id = trained_run["run_id"]
    training = PipelineStage(name="모델 학습 (trainer)", service="trainer", ms=93000.04, share_percent=86.91588,
                             status="warning", recommendation="Dominant stage: tune epochs/batch size.")
    queue = PipelineStage(name="학습 대기 (queue)", service="trainer", ms=4000.0, share_percent=3.73832,
                          status="good", recommendation="정상 범위입니다. Within budget.")
    report = PipelineStage(name="리포트 생성 (reporter)", service="reporter", ms=10000.0, share_percent=9.34579,
                           status="good", recommendation="정상 범위입니다. Within budget.")
    memory_gateway.publish((Topic.MONITOR_SNAPSHOT, MonitorSnapshot(run_id=run_id, metrics=metrics(),
                                                                    pipeline=[queue, training, report]), run_id))
    body = strict_json(memory_gateway.client.get("/api/dashboard/si").text)
    pipeline = [b for b in body["bottleneckAnalysis"] if b["kind"] == "pipeline"]
    assert pipeline == [
        {"component": "학습 대기 (queue)", "kind": "pipeline", "avgTime": 4000.0, "maxTime": 4000.0,
         "percentage": 3.7, "status": "good", "recommendation": "정상 범위입니다. Within budget."},
        {"component": "모델 학습 (trainer)", "kind": "pipeline", "avgTime": 93000.0, "maxTime": 93000.0,
         "percentage": 86.9, "status": "warning", "recommendation": "Dominant stage: tune epochs/batch size."},
        {"component": "리포트 생성 (reporter)", "kind": "pipeline", "avgTime": 10000.0, "maxTime": 10000.0,
         "percentage": 9.3, "status": "good", "recommendation": "정상 범위입니다. Within budget."},
    ]
    # a newer snapshot replaces them (a report ready later, say); one without stages shows none
    memory_gateway.publish((Topic.MONITOR_SNAPSHOT, MonitorSnapshot(run_id=run_id, metrics=metrics()), run_id))
    body = memory_gateway.client.get("/api/dashboard/si").json()
    assert [b for b in body["bottleneckAnalysis"] if b["kind"] == "pipeline"] == []


def test_engineer_dashboard_health_and_alert_come_from_the_monitor(memory_gateway):
    gateway_client = memory_gateway.client
    alert = MonitorAlert(alert_id="service_down:trainer:1", kind="service_down", subject="trainer", state="firing",
                         severity="high", message="trainer is down",
                         metrics=ServiceDownEvidence(service="trainer", last_seen="never", timeout_s=20.0))
    snapshot = MonitorSnapshot(run_id=None,
                               health={"status": "critical", "response_time_ms": 321.0, "cpu_usage": 37.5, "memory_usage": 61.0,
                                       "api_success_rate": 99.5, "error_rate": 0.5})
    memory_gateway.publish((Topic.MONITOR_ALERT, alert, None), (Topic.MONITOR_SNAPSHOT, snapshot, None))
    body = gateway_client.get("/api/dashboard/si").json()
    assert body["systemHealth"].get("source") == "monitor" and body["performanceAlert"]["show"], body
    health = body["systemHealth"]
    assert (health["status"], health["cpuUsage"], health["memoryUsage"]) == ("critical", 37.5, 61.0)
    assert (health["apiSuccessRate"], health["errorRate"]) == (99.5, 0.5)
    assert body["currentMetrics"]["responseTime"] == 321.0
    assert body["performanceAlert"]["message"] == "trainer is down" and body["performanceAlert"]["severity"] == "high"


MONEY_FIELDS = ("expectedMonthlyClicks", "modelMonthlyClicks", "modelMonthlyClicksRange", "additionalClicks",
                "estimatedMonthlyCost", "estimatedMonthlyRevenue", "modelMonthlyRevenue", "estimatedRoas",
                "additionalRevenue", "additionalRevenueRange", "roiIncrease", "roiIncreaseRange",
                "revenueChangePercent", "revenueChangeRange")


def report_doc(run_id: str, file_id: str, verdict: str = "usable") -> ReportDoc:
    """A report.json as the reporter writes it (``ReportDoc``): the money, verdict and segments the
    dashboard reads, with insights and a plan; the parts the dashboard does not read are plain."""
    weak = verdict == "weak"
    segment = lambda label, ctr, low, high, p_adj: {  # noqa: E731
        "label": label, "rows": 12000, "clicks": 300, "ctr": ctr, "ctr_low": low, "ctr_high": high,
        "lift": round(ctr / 1.992, 3), "p_value": p_adj / 4, "p_adjusted": p_adj}
    return ReportDoc.model_validate({
        "run_id": run_id, "runId": run_id, "experimentName": "exp", "generatedAt": "2026-03-01T09:00:00+00:00",
        "summary": "요약", "accuracy": 98.1,
        "roiIncrease": 0 if weak else 37.21, "additionalRevenue": 0 if weak else 2_232_640,
        "revenueChangePercent": 0 if weak else 9.34,
        "moneyRange": None if weak else {
            "additionalRevenueKrw": [1_061_234, 3_496_789], "revenueChangePercent": [4.44, 14.63],
            "roiChangePoints": [17.69, 58.28], "roiModelPercent": [416.1, 456.7], "targetedCtr": [0.05, 0.08],
            "clicksModel": [20_884.4, 22_913.9], "level": 0.95, "method": "Wilson"},
        "modelStrength": {"verdict": verdict, "verdictKo": {"weak": "약함", "usable": "사용 가능"}[verdict],
                          "reasons": ["r"], "champion": "gbdt", "championLabel": "LightGBM", "auc": 0.74,
                          "aucCi": [0.71, 0.77], "aucCiMethod": "DeLong", "ap": 0.081, "baseRate": 0.02,
                          "apLift": 4.05},
        "topFeatures": [{"name": "hour", "description": "시간대", "group": "지면·시간", "importance": 1.0,
                         "pValue": 0.001, "significant": True, "ci": [0.8, 1.0], "color": "#4f46e5"}],
        "drivers": ["hour"], "priorityRule": "impact", "featureNamesDigest": "shipped",
        "model_used": "deterministic-ko-v1", "narrativeSource": "deterministic",
        "metrics": {"accuracy": 0.981, "auc": 0.74, "ap": 0.081, "f1": 0.18},
        "training": {"bestEpoch": 2, "epochsRun": 3, "durationS": 93.0, "fileId": file_id},
        "data": {"rows": 55220, "clicks": 1100, "ctr": 1.992},
        "assumptions": {"currency": "KRW", "computable": not weak,
                        "reason": "모델 신뢰도가 '약함'이라 금액을 추정하지 않았습니다." if weak else None,
                        "monthlyImpressions": 1_000_000, "cpmKrw": 6000.0, "cpcKrw": 300.0, "conversionRate": 0.03,
                        "conversionValueKrw": 40000.0, "targetedShare": 0.2,
                        "effectiveTargetedShare": None if weak else 0.2,
                        "monthlySpendKrw": None if weak else 6_000_000, "clicksBase": None if weak else 19_920.0,
                        "clicksModel": None if weak else 21_780.6, "revenueBaseKrw": None if weak else 23_904_000,
                        "revenueModelKrw": None if weak else 26_136_640},
        "segments": {"available": True, "findings": [{
            "dimension": "age_group_gender", "title": "연령대 × 성별 CTR", "base_ctr": 1.992,
            "best": [segment("연령대 5 · 성별 2", 2.6, 2.1, 3.1, 0.2),  # highest CTR, not significant
                     segment("연령대 4 · 성별 1", 2.5, 2.23, 2.8, 0.0004)],
            "worst": [], "segments_considered": 3, "tests_in_family": 30}]},
        "aiInsights": [{"icon": "💡", "type": "success", "title": "from the reporter", "message": "m",
                        "details": [], "action": "a"}],
        "actionPlan": [{"id": "segment_shift", "title": "Shift budget to 20-22h", "description": "d",
                        "priority": "high", "impact": 12.5, "duration": "2주", "cost": "낮음", "color": "#f00"}],
    })


def test_client_dashboard_segments_hours_and_no_money_before_the_report(memory_gateway, trained_run):
    gateway_client = memory_gateway.client
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
    assert [s["label"] for s in segments] == ["연령대 4 · 성별 1", "연령대 5 · 성별 2", "연령대 7 · 성별 2"]
    money = body["businessMetrics"]
    assert money["isEstimate"] is True and money["actualCtr"] == pytest.approx(1.992)
    assert money["predictedCtr"] == pytest.approx(1.992 * 1.04, abs=1e-3)  # calibration of the run
    assert money["ctrLift"] > 0 and money["modelAuc"] == pytest.approx(0.74)
    # No report yet: the dashboard says so and shows no money figure of its own, no verdict, no actions.
    assert body["reportStatus"] == money["status"] == "pending" and "리포트" in money["statusMessage"]
    assert all(money[key] is None for key in MONEY_FIELDS) and money["assumptions"] is None
    assert money["verdict"] is None and money["topSegment"] is None
    assert body["marketingStrategies"] == []
    titles = [i["title"] for i in body["aiInsights"]]
    assert any("시간대" in t for t in titles) and "리포트 상태" in titles
    assert not any("AUC" in i["title"] for i in body["aiInsights"])  # no verdict beside the reporter's
    assert [s["title"] for s in body["performanceSummary"]][:2] == ["모델 학습 완료", "데이터 업로드"]


def _write_report(trained_run, report: ReportDoc | str) -> None:
    """The run's report.json: a document as the reporter writes it, or (str) a file that is not one."""
    store = FileStore(trained_run["data_dir"])
    if isinstance(report, str):
        store.write_bytes(report_path(trained_run["run_id"]), report.encode())
    else:
        write_document(store, report_path(trained_run["run_id"]), report)


def test_client_dashboard_money_is_the_reports_own(memory_gateway, trained_run):
    gateway_client = memory_gateway.client
    _write_report(trained_run, report_doc(trained_run["run_id"], trained_run["file_id"]))
    body = strict_json(gateway_client.get("/api/dashboard/client").text)
    money = body["businessMetrics"]
    assert money["status"] == "estimated" and (money["verdict"], money["verdictKo"]) == ("usable", "사용 가능")
    assert money["additionalRevenue"] == 2_232_640 and money["additionalRevenueRange"] == [1_061_234, 3_496_789]
    assert money["roiIncrease"] == 37.21 and money["roiIncreaseRange"] == [17.69, 58.28]
    assert money["revenueChangePercent"] == 9.34 and money["revenueChangeRange"] == [4.44, 14.63]
    assert money["estimatedMonthlyCost"] == 6_000_000 and money["estimatedMonthlyRevenue"] == 23_904_000
    assert money["modelMonthlyRevenue"] == 26_136_640 and money["expectedMonthlyClicks"] == 19_920
    assert money["additionalClicks"] == round(21_780.6 - 19_920.0) and money["modelMonthlyClicksRange"] == [20_884, 22_914]
    assert money["assumptions"]["cpmKrw"] == 6000.0 and money["assumptions"]["monthlyImpressions"] == 1_000_000
    assert money["modelAucCi"] == [0.71, 0.77]
    # The top segment is the report's: the best one that holds after BH, not the highest raw CTR.
    assert money["topSegment"]["label"] == "연령대 4 · 성별 1" and money["topSegment"]["pAdjusted"] == 0.0004
    segments = body["customerSegments"]
    assert segments[0]["label"] == "연령대 4 · 성별 1" and segments[0]["isTop"] and segments[0]["significant"]
    tested = {s["label"]: s for s in segments if "pAdjusted" in s}
    assert tested["연령대 5 · 성별 2"]["significant"] is False
    assert body["aiInsights"][0]["title"] == "from the reporter"
    assert body["marketingStrategies"] == [{"id": 1, "priority": "high", "title": "Shift budget to 20-22h",
                                            "description": "d", "impact": 12.5, "duration": "2주", "cost": "낮음",
                                            "source": "report"}]


def test_client_dashboard_has_no_money_for_a_weak_model_or_an_unreadable_report(memory_gateway, trained_run):
    gateway_client = memory_gateway.client
    _write_report(trained_run, report_doc(trained_run["run_id"], trained_run["file_id"], "weak"))
    money = strict_json(gateway_client.get("/api/dashboard/client").text)["businessMetrics"]
    assert money["status"] == "no_estimate" and money["verdict"] == "weak" and "약함" in money["statusMessage"]
    assert all(money[key] is None for key in MONEY_FIELDS)

    # A report.json from before the verdict (no modelStrength) is not a report document: nothing of it is
    # shown (no money, none of its insights or actions); the dashboard says the report is unreadable.
    old = report_doc(trained_run["run_id"], trained_run["file_id"]).model_dump(mode="json")
    del old["modelStrength"]
    _write_report(trained_run, json.dumps(old, ensure_ascii=False))
    body = strict_json(gateway_client.get("/api/dashboard/client").text)
    assert body["reportStatus"] == "unreadable" and all(body["businessMetrics"][k] is None for k in MONEY_FIELDS)
    assert body["sources"]["report"] is True and body["marketingStrategies"] == []
    assert "from the reporter" not in [i["title"] for i in body["aiInsights"]]
    status = next(i for i in body["aiInsights"] if i["title"] == "리포트 상태")
    assert status["type"] == "warning" and status["message"] == body["businessMetrics"]["statusMessage"]


def test_client_dashboard_serves_ingests_highlights_as_stored(memory_gateway, trained_run):
    """The segments, hours, best-hours CTR and data cards are highlights.json's, not recomputed from the
    profile: a changed document shows as changed."""
    gateway_client = memory_gateway.client
    store = FileStore(trained_run["data_dir"])
    location = highlights_path(trained_run["file_id"])
    stored = read_document(store, location, AudienceHighlights)
    first = stored.segments[0].model_copy(update={"label": "stored label", "ctr": 9.876})
    changed = stored.model_copy(update={"segments": [first], "best_hours_ctr": 7.5, "best_hours_lift": 12.3,
                                        "hours": stored.hours[:2]})
    write_document(store, location, changed)
    body = strict_json(gateway_client.get("/api/dashboard/client").text)
    assert [(s["label"], s["ctr"]) for s in body["customerSegments"]] == [("stored label", 9.876)]
    assert body["optimalTimeSlots"] == [h.model_dump() for h in stored.hours[:2]]
    assert (body["businessMetrics"]["bestHoursCtr"], body["businessMetrics"]["ctrLift"]) == (7.5, 12.3)
    assert body["aiInsights"][:2] == [i.model_dump() for i in stored.data_insights]
    assert body["sources"]["profile"] is True


def test_client_dashboard_survives_corrupt_or_missing_highlights(memory_gateway, trained_run):
    gateway_client = memory_gateway.client
    store = FileStore(trained_run["data_dir"])
    location = highlights_path(trained_run["file_id"])
    not_highlights = read_document(store, location, AudienceHighlights).model_dump(mode="json")
    not_highlights["segments"][0]["ctrLow"] = None
    for stored in ("{not json", json.dumps(not_highlights)):  # not JSON; JSON but not the model (a null bound)
        store.write_bytes(location, stored.encode())
        response = gateway_client.get("/api/dashboard/client")
        assert response.status_code == 200
        body = response.json()
        assert body["optimalTimeSlots"] == [] and body["customerSegments"] == []
        assert body["sources"]["profile"] is False
    # An upload stored before ingest wrote highlights: its profile alone is not read; the CTR is its verdict's.
    store.delete(location)
    assert store.exists(profile_path(trained_run["file_id"]))
    body = strict_json(gateway_client.get("/api/dashboard/client").text)
    assert body["optimalTimeSlots"] == [] and body["customerSegments"] == [] and body["sources"]["profile"] is False
    money = body["businessMetrics"]
    assert (money["actualCtr"], money["bestHoursCtr"], money["ctrLift"]) == (1.992, 1.992, 0.0)
    assert [i["title"] for i in body["aiInsights"]] == ["리포트 상태"]
