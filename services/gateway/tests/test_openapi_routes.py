"""Every route the OpenAPI schema lists documents its answer: a response model, an example, its errors.

Two halves, neither needs the broker:

- the schema: each operation's success answer is a ``$ref`` to a component with properties (or an
  array of one), carries an example that validates against that schema, and each error it
  documents says what it means. The exceptions are named in ``NO_MODEL``/``NO_EXAMPLE`` with why;
  an entry that is no longer needed fails the test, so the lists only shrink. /healthz, /readyz,
  /metrics (and the frontend's fallback) are not in the schema at all (``include_in_schema=False``).
- the filter: a response model drops keys it does not declare, so the bodies the routes build
  (from typed events on a real read model, documents in a real file store) must come out of
  their models unchanged, key for key and number for number (3 stays 3, never 3.0).
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from types import SimpleNamespace
from typing import Any

import pytest
from jsonschema import Draft202012Validator
from pydantic import TypeAdapter

from ctrops_common.dataset import profile_path, report_path
from ctrops_common.db import make_engine
from ctrops_common.documents import ReportDoc, write_document
from ctrops_common.events import (
    CalibrationEvidence,
    DataInfo,
    Event,
    FileUploaded,
    MonitorAlert,
    MonitoringPeriod,
    MonitorSnapshot,
    ReportReady,
    ServiceDownEvidence,
    ServiceError,
    ServiceHeartbeat,
    Topic,
    TrainingCancelRequested,
    TrainingConfig,
    TrainingDone,
    TrainingFailed,
    TrainingProgress,
    TrainingRequested,
    TrainingStarted,
    Validation,
    new_id,
)
from ctrops_common.sample_documents import profile_document
from ctrops_ingest.highlights import write_highlights  # the files as ingest writes them
from ctrops_common.storage import FileStore
from ctrops_gateway import api_models, training_live
from ctrops_gateway.app import create_app
from ctrops_gateway.routes.dashboards import client_dashboard, si_dashboard
from ctrops_gateway.routes.upload import upload_response
from ctrops_gateway.settings import GatewaySettings
from ctrops_gateway.traffic import Traffic
from ctrops_gateway.views import ReadModel

# (method, path) -> why its success answer has no model / no example.
NO_MODEL = {
    ("GET", "/api/report/pdf/{run_id}"): "a file download: application/pdf bytes",
    ("GET", "/api/predict/jobs/{job_id}/predictions.csv"): "a file download: text/csv bytes",
}
NO_EXAMPLE = {
    ("GET", "/api/report/pdf/{run_id}"): "PDF bytes have no useful textual example",
}
# Routes that publish an event: a broker that is down answers 503 (broker_gate).
PUBLISHING = [("POST", "/api/upload"), ("POST", "/api/train"), ("POST", "/api/train/{run_id}/cancel"),
              ("DELETE", "/api/train/{run_id}"), ("POST", "/api/train/{run_id}/retrain"),
              ("POST", "/api/report/generate-pdf/{run_id}"), ("GET", "/api/report/pdf/{run_id}"),
              ("POST", "/api/predict/{run_id}/batch")]


@pytest.fixture(scope="module")
def schema() -> dict[str, Any]:
    return create_app(GatewaySettings()).openapi()


def operations(schema: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    return {(method.upper(), path): op for path, ops in schema["paths"].items() for method, op in ops.items()}


def success_of(op: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    codes = [code for code in op["responses"] if code.startswith("2")]
    assert len(codes) == 1, codes
    return codes[0], op["responses"][codes[0]]


def component(schema: dict[str, Any], node: dict[str, Any]) -> dict[str, Any] | None:
    """The component a success schema names (``$ref``, or the items of an array of ``$ref``)."""
    ref = node.get("$ref") or (node.get("items") or {}).get("$ref") if node.get("type") in (None, "array") else None
    ref = ref if isinstance(ref, str) else None
    if not ref:
        return None
    return schema["components"]["schemas"][ref.removeprefix("#/components/schemas/")]


def _stripped_null(error: Any, validator: Draft202012Validator) -> bool:
    """A required key missing from an example because its value is null: FastAPI writes the schema
    document with ``exclude_none``, which drops every null-valued key, examples' included."""
    if error.validator != "required":
        return False
    missing = error.message.split("'")[1]
    prop = error.schema.get("properties", {}).get(missing, {})
    return validator.evolve(schema={**prop, "components": validator.schema["components"]}).is_valid(None)


def test_every_route_has_a_response_model_and_an_example_that_fits_it(schema):
    ops = operations(schema)
    assert len(ops) >= 26
    assert not {"/healthz", "/readyz", "/metrics"} & set(schema["paths"])  # probes: out of the schema
    missing_model, missing_example = set(), set()
    for key, op in ops.items():
        _, answer = success_of(op)
        assert answer.get("description"), key
        body = answer["content"].get("application/json")
        model = component(schema, body["schema"]) if body else None
        if model is None:
            missing_model.add(key)
        else:
            assert model.get("properties"), f"{key}: the model documents no field"
        media = body or next(iter(answer["content"].values()))
        example = media.get("example", (media.get("examples") or {}).get("default", {}).get("value"))
        if example is None:
            missing_example.add(key)
            continue
        if body:  # the example is what the schema describes
            validator = Draft202012Validator({**body["schema"], "components": schema["components"]})
            problems = [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(example)
                        if not _stripped_null(e, validator)]
            assert not problems, f"{key}: the example does not fit the schema: {problems[:5]}"
    assert missing_model == set(NO_MODEL), "update NO_MODEL: " + str(missing_model ^ set(NO_MODEL))
    assert missing_example == set(NO_EXAMPLE), "update NO_EXAMPLE: " + str(missing_example ^ set(NO_EXAMPLE))


def test_every_documented_error_says_what_it_means_and_is_json(schema):
    for key, op in operations(schema).items():
        errors = {code: r for code, r in op["responses"].items() if code[0] in "45"}
        for code, response in errors.items():
            assert response.get("description") and response["description"] != "Error", (key, code)
            assert "application/json" in response.get("content", {}), (key, code)
        if key in PUBLISHING:
            assert "503" in errors, f"{key} publishes: the broker being down (503) is one of its answers"
        if "{" in key[1]:  # an id in the path: unknown ids are a documented 404
            assert "404" in errors, key


RATE_LIMITED = {("POST", "/api/upload"): "CTROPS_RATE_LIMIT_UPLOADS_PER_MIN",
                ("POST", "/api/predict/{run_id}/batch"): "CTROPS_RATE_LIMIT_UPLOADS_PER_MIN",
                ("POST", "/api/train"): "CTROPS_RATE_LIMIT_TRAININGS_PER_MIN",
                ("POST", "/api/train/{run_id}/retrain"): "CTROPS_RATE_LIMIT_TRAININGS_PER_MIN"}


def test_the_rate_limited_operations_document_429_with_retry_after(schema):
    """Read from the routes' limit dependencies: exactly the operations that declare one."""
    ops = operations(schema)
    assert {key for key, op in ops.items() if "429" in op["responses"]} == set(RATE_LIMITED)
    for key, setting in RATE_LIMITED.items():
        responses = ops[key]["responses"]
        assert setting in responses["429"]["description"], key
        assert responses["429"]["headers"]["Retry-After"]["schema"] == {"type": "integer"}, key
        assert ("CTROPS_MAX_ACTIVE_TRAININGS_PER_CLIENT" in responses["429"]["description"]) == ("train" in key[1])
        assert "CTROPS_RATE_LIMIT_STORAGE" in responses["503"]["description"], key  # the store unreachable


def test_a_route_declaring_a_limit_is_documented_from_the_declaration():
    from fastapi import FastAPI

    from ctrops_gateway.hardening import document_security
    from ctrops_gateway.rate_limits import TRAINING_RATE, UPLOAD_RATE

    app = FastAPI()

    @app.post("/api/limited", dependencies=[UPLOAD_RATE])
    async def limited() -> dict[str, bool]:
        return {"ok": True}

    @app.post("/api/also-limited")
    async def also_limited(_: None = TRAINING_RATE) -> dict[str, bool]:  # as a parameter
        return {"ok": True}

    @app.post("/api/open")
    async def not_limited() -> dict[str, bool]:
        return {"ok": True}

    document_security(app, GatewaySettings())
    ops = operations(app.openapi())
    assert "CTROPS_RATE_LIMIT_UPLOADS_PER_MIN" in ops[("POST", "/api/limited")]["responses"]["429"]["description"]
    assert "CTROPS_RATE_LIMIT_TRAININGS_PER_MIN" in ops[("POST", "/api/also-limited")]["responses"]["429"]["description"]
    assert "503" in ops[("POST", "/api/limited")]["responses"]
    assert not {"429", "503"} & set(ops[("POST", "/api/open")]["responses"])


def test_the_report_example_is_a_report_document():
    doc = ReportDoc.model_validate(api_models.REPORT_EXAMPLE)
    assert doc.run_id == api_models.RUN_ID


# -- the filter: what the routes build comes out of their models unchanged --------------------------------


def served(model: Any, body: Any, exclude_unset: bool = True) -> str:
    """The body as FastAPI sends it through ``response_model`` (validated, then dumped by alias)."""
    adapter = TypeAdapter(model)
    dumped = adapter.dump_python(adapter.validate_python(body), mode="json", by_alias=True,
                                 exclude_unset=exclude_unset)
    return json.dumps(dumped, sort_keys=True)


def assert_kept(model: Any, body: Any, exclude_unset: bool = True) -> None:
    raw = json.dumps(json.loads(json.dumps(body)), sort_keys=True)
    out = served(model, body, exclude_unset)
    if out != raw:
        lost = _paths(json.loads(raw)) - _paths(json.loads(out))
        added = _paths(json.loads(out)) - _paths(json.loads(raw))
        pytest.fail(f"{getattr(model, '__name__', model)} changes the body: lost {sorted(lost)[:10]}, "
                    f"added or changed {sorted(added)[:10]}")


def _paths(node: Any, prefix: str = "") -> set[str]:
    if isinstance(node, dict):
        return set().union(*(_paths(v, f"{prefix}/{k}") for k, v in node.items())) if node else {prefix + "={}"}
    if isinstance(node, list):
        return set().union(*(_paths(v, f"{prefix}[{i}]") for i, v in enumerate(node))) if node else {prefix + "=[]"}
    return {f"{prefix}={json.dumps(node)}"}


def _metrics(loss: float, accuracy: float, auc: float | None = 0.74, **more: float) -> dict[str, float | None]:
    return {"train_loss": loss * 0.9, "val_loss": loss, "train_accuracy": accuracy - 0.01, "val_accuracy": accuracy,
            "auc": auc, "ap": 0.07, "logloss": loss, "calibration": 1.02, "precision": 0.16, "recall": 0.12,
            "f1": 0.14, "threshold": 0.05, "score": 0.49, "seconds": 12.5, "samples_per_s": 3100.0, **more}


def _event(topic: Topic, payload: Any, correlation_id: str | None, at: datetime) -> Event:
    return Event(type=topic, payload=payload, correlation_id=correlation_id, time=at)


@pytest.fixture
def platform(tmp_path):
    """A read model and a file store holding what the workers publish and write: an upload and its profile,
    a completed run (two models, a report, monitoring periods), a failed one, one on its second attempt,
    errors, alerts, a scorer's heartbeat, and some API traffic."""
    views = ReadModel(make_engine(f"sqlite:///{tmp_path}/gateway.sqlite3"))
    store = FileStore(tmp_path / "store")
    state = SimpleNamespace(settings=GatewaySettings(), views=views, store=store, traffic=Traffic())
    now = datetime.now(timezone.utc)
    at = iter(now - timedelta(minutes=30) + timedelta(seconds=10 * i) for i in range(1000))
    file_id, done_id, failed_id, retried_id = new_id(), new_id(), new_id(), new_id()
    uploaded = FileUploaded(
        file_id=file_id, filename="train_sample.csv", location=f"uploads/{file_id}/original.csv",
        parquet_location=f"files/{file_id}/data.parquet", encoding="utf-8", rows=20000,
        columns=["gender", "age_group", "hour", "seq", "clicked"],
        validation=Validation(is_valid=True, warnings=["hour: 3 values were treated as missing"]),
        info=DataInfo(total_rows=20000, total_columns=5, missing_values=3, missing_percentage=0.003,
                      duplicate_rows=2, clicked_one=384, clicked_zero=19616, ctr=1.92),
        preview=[{"gender": 1, "age_group": 5, "hour": 14, "seq": "12,57,9", "clicked": 0}],
        column_descriptions={"hour": "시간대"}, profile_location=profile_path(file_id),
    )
    hours = [{"value": float(h), "rows": 800 + 10 * h, "clicks": 12 + (h % 7) * 3} for h in range(24)]
    segments = [{"age_group": 5.0, "gender": 1.0, "rows": 3120, "clicks": 89},
                {"age_group": 4.0, "gender": 2.0, "rows": 9000, "clicks": 160}]
    profile = profile_document(hour=hours, age_group_gender=segments)
    write_document(store, profile_path(file_id), profile)
    write_highlights(store, file_id, profile, uploaded.info.total_rows, uploaded.info.ctr)
    config = TrainingConfig(epochs=2, experiment_name="CTR_Experiment_20260314")
    models = [{"kind": kind, "label": label, "metrics": _metrics(0.086, 0.98, auc), "model_location": f"runs/x/{kind}",
               "auc_ci_low": auc - 0.03, "auc_ci_high": auc + 0.03, "val_rows": 4000, "val_clicks": 77,
               "best_iteration": 2, "iterations_run": 2, "duration_s": 20.5}
              for kind, label, auc in (("lstm", "LSTM+MLP", 0.712), ("gbdt", "LightGBM", 0.7412))]
    batch = {"requested": 4096, "used": 1024, "steps_per_epoch": 16, "train_rows_per_epoch": 16000,
             "reason": "4096 would leave 4 steps per epoch"}
    done = TrainingDone.model_validate({
        "run_id": done_id, "file_id": file_id, "model_location": f"runs/{done_id}/model/gbdt",
        "metrics": _metrics(0.086, 0.9807, 0.7412), "best_epoch": 2, "epochs_run": 2, "duration_s": 41.7,
        "experiment_name": config.experiment_name, "mlflow_run_id": new_id(), "config": config.model_dump(),
        "champion": "gbdt", "models": models, "batch": batch, "registered_model": "ctr-champion",
        "registered_version": 3, "model_uri": "models:/ctr-champion/3",
        "comparison": {"auc_lstm": 0.712, "auc_gbdt": 0.7412, "difference": 0.0292, "ci_low": -0.004,
                       "ci_high": 0.0624, "p_value": 0.087, "val_rows": 4000, "val_clicks": 77},
    })
    events = [
        _event(Topic.FILE_UPLOADED, uploaded, file_id, next(at)),
        _event(Topic.TRAINING_REQUESTED, TrainingRequested(run_id=done_id, file_id=file_id,
                                                           parquet_location=uploaded.parquet_location or "",
                                                           config=config), done_id, next(at)),
        _event(Topic.TRAINING_STARTED, TrainingStarted(run_id=done_id, attempt=1, worker="trainer-1",
                                                       max_attempts=3), done_id, next(at)),
        *[_event(Topic.TRAINING_PROGRESS, TrainingProgress.model_validate({
            "run_id": done_id, "epoch": n, "total_epochs": 2, "metrics": _metrics(0.09 - n / 100, 0.98),
            "batch": batch}), done_id, next(at)) for n in (1, 2)],
        _event(Topic.TRAINING_DONE, done, done_id, next(at)),
        _event(Topic.REPORT_READY,
               ReportReady(run_id=done_id, request_id=f"auto-{done_id}", report_location=report_path(done_id),
                           pdf_location=f"runs/{done_id}/report.pdf", model_used="deterministic-ko-v1"),
               done_id, next(at)),
        _event(Topic.TRAINING_REQUESTED, TrainingRequested(run_id=failed_id, file_id=file_id,
                                                           parquet_location="p", config=config), failed_id, next(at)),
        _event(Topic.TRAINING_FAILED, TrainingFailed(run_id=failed_id, reason="cancelled by the client",
                                                     cancelled=True), failed_id, next(at)),
        _event(Topic.TRAINING_REQUESTED, TrainingRequested(run_id=retried_id, file_id=file_id, parquet_location="p",
                                                           config=config, replaces=done_id), retried_id, next(at)),
        _event(Topic.TRAINING_STARTED, TrainingStarted(run_id=retried_id, attempt=2, worker="trainer-2",
                                                       max_attempts=3, retry_cause="died",
                                                       retry_reason="the training process was killed"),
               retried_id, next(at)),
        _event(Topic.TRAINING_PROGRESS, TrainingProgress.model_validate({
            "run_id": retried_id, "attempt": 2, "epoch": 1, "total_epochs": 2, "metrics": _metrics(0.095, 0.97)}),
            retried_id, next(at)),
        _event(Topic.TRAINING_CANCEL_REQUESTED, TrainingCancelRequested(run_id=retried_id), retried_id, next(at)),
        _event(Topic.SERVICE_ERROR, ServiceError(service="explainer", message="LIME did not converge",
                                                 stack="Traceback ...", run_id=done_id), done_id, next(at)),
        _event(Topic.MONITOR_ALERT, MonitorAlert(alert_id="calibration:x", kind="calibration", subject=done_id,
                                                 state="firing", severity="medium", message="calibration 1.4",
                                                 metrics=CalibrationEvidence(
                                                     period="2026-03", period_id=f"{done_id}:gbdt:2026-03",
                                                     run_id=done_id, model_kind="gbdt", rows=20_000,
                                                     calibration=1.4, calibration_ci_low=1.2,
                                                     calibration_ci_high=1.6, predicted_clicks=560.0,
                                                     actual_clicks=400, band_low=0.8, band_high=1.25)),
               None, now - timedelta(minutes=2)),
        _event(Topic.MONITOR_ALERT, MonitorAlert(alert_id="service_down:scorer", kind="service_down",
                                                 subject="scorer", state="firing", severity="high",
                                                 message="scorer is down",
                                                 metrics=ServiceDownEvidence(service="scorer", last_seen="never",
                                                                             timeout_s=20.0)),
               None, now - timedelta(minutes=1)),
    ]
    for event in events:
        views.record(event)
    views.record_heartbeat(Event(type=Topic.SERVICE_HEARTBEAT, payload=ServiceHeartbeat(
        service="scorer", instance="scorer-1", started_at=now, cpu_percent=4.0, memory_percent=11.0, rss_bytes=1,
        latency_p95_ms=18.4)))
    for route, seconds, failed in (("/api/upload", 0.8, False), ("/api/dashboard/si", 0.03, False),
                                   ("/api/train", 0.05, True)):
        state.traffic.observe(route, seconds, failed)
    report = dict(api_models.REPORT_EXAMPLE, runId=done_id, run_id=done_id)
    report["training"] = dict(report["training"], fileId=file_id)
    return SimpleNamespace(state=state, views=views, file_id=file_id, uploaded=uploaded, done=done_id,
                           failed=failed_id, retried=retried_id, report=ReportDoc.model_validate(report))


def _period(run_id: str, label: str, labelled: bool) -> Event:
    period = MonitoringPeriod.model_validate({
        "period_id": f"{run_id}:gbdt:{label}", "period": label, "bucket": "month", "run_id": run_id,
        "model_kind": "gbdt", "job_ids": [new_id()], "rows": 2000, "labelled": labelled, "baseline_auc": 0.74,
        "metrics": {"auc": 0.73 if labelled else None, "accuracy": 0.97 if labelled else None,
                    "f1": 0.2 if labelled else None, "logloss": 0.09 if labelled else None,
                    "actual_clicks": 40 if labelled else None, "predicted_clicks": 41.5, "mean_probability": 0.02,
                    "estimated_auc": None if labelled else 0.72},
        "drift": [{"feature": "hour", "kind": "numeric", "test": "ks", "statistic": 0.3, "p_value": 0.001,
                   "psi": 0.4, "drifted": True, "importance_rank": 1}],
    })
    return Event(type=Topic.MONITORING_PERIOD, payload=period, correlation_id=run_id)


def test_the_upload_body_keeps_every_key(platform):
    assert_kept(api_models.UploadResult, upload_response(platform.uploaded), exclude_unset=False)


def test_training_status_and_runs_keep_every_key(platform):
    for run_id in (platform.done, platform.failed, platform.retried, "latest"):
        view = training_live.find_view(platform.views, run_id)
        body = training_live.status_body(view)
        assert_kept(api_models.TrainingStatus, body)
    done = training_live.status_body(training_live.find_view(platform.views, platform.done))
    assert {"champion", "models", "comparison", "batch", "model_uri", "best_epoch", "championLabel"} <= set(done)
    runs = training_live.list_runs(platform.views)
    assert len(runs) == 3
    assert_kept(list[api_models.RunSummary], runs, exclude_unset=False)


def test_the_dashboards_keep_every_key(platform):
    state = platform.state
    before = si_dashboard(state)  # the latest run's epochs; health estimated by the gateway
    assert before["performanceData"]["source"] == "training" and before["systemHealth"]["source"] == "gateway"
    assert before["performanceAlert"]["modelAlerts"] and before["bottleneckAnalysis"]
    assert_kept(api_models.SiDashboard, before)
    state.views.record(Event(type=Topic.MONITOR_SNAPSHOT, payload=MonitorSnapshot.model_validate({
        "run_id": platform.done, "metrics": _metrics(0.086, 0.9807),
        "health": {"status": "degraded", "cpu_usage": 41.5, "memory_usage": 63.0, "api_success_rate": 99.2,
                   "error_rate": 0.8, "response_time_ms": 42.7, "requests_in_window": 120, "errors_in_window": 1,
                   "services": {"scorer": {"status": "down", "instances": 0}},
                   "active_alerts": [{"alert_id": "service_down:scorer", "kind": "service_down", "subject": "scorer",
                                      "severity": "high", "message": "scorer is down"}],
                   "generated_at": datetime.now(timezone.utc).isoformat()},
        "pipeline": [{"name": "모델 학습 (trainer)", "service": "trainer", "ms": 41700.0, "share_percent": 78.2,
                      "status": "warning", "recommendation": "Dominant stage: scale this service."}]})))
    monitored = si_dashboard(state)  # health and the pipeline's stages from the monitor's snapshot
    assert monitored["systemHealth"]["source"] == "monitor"
    assert [b["kind"] for b in monitored["bottleneckAnalysis"]].count("pipeline") == 1
    assert_kept(api_models.SiDashboard, monitored)
    for n, labelled in ((1, True), (2, False)):
        state.views.record(_period(platform.done, f"2026-0{n}", labelled))
    after = si_dashboard(state)  # the deployed model's monitoring periods
    assert after["performanceData"]["source"] == "monitoring"
    assert_kept(api_models.SiDashboard, after)

    pending = client_dashboard(state)  # before the report: no money, derived insights
    assert pending["businessMetrics"]["status"] == "pending" and pending["customerSegments"]
    assert_kept(api_models.ClientDashboard, pending)
    write_document(state.store, report_path(platform.done), platform.report)
    ready = client_dashboard(state)  # the report's money, segments marked against it
    assert ready["businessMetrics"]["status"] == "estimated" and ready["marketingStrategies"]
    assert_kept(api_models.ClientDashboard, ready)


def test_the_performance_body_keeps_every_key(platform):
    """Completed, still training (its latest epoch) and ``latest``: every key, the metrics' extra ones too."""
    from ctrops_gateway.routes.performance import performance_of

    bodies = [performance_of(platform.state, run_id) for run_id in (platform.done, platform.retried, "latest")]
    assert [b["status"] for b in bodies] == ["completed", "training", "completed"]
    for body in bodies:
        assert body["f1Score"] == body["f1_score"] == body["f1"] and "valAccuracy" in body
        assert_kept(api_models.PerformanceView, body)
