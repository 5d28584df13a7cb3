"""ModelMetrics is the one metrics model: a metric added to it, and nowhere else, reaches every reader.

The test adds a field (``brier``) to ``ModelMetrics`` for its duration and follows a value through
the real code of each room: the event on the wire (JSON and back), the gateway's WebSocket
``epoch_update`` and ``/api/performance`` (its real routes, read from its real read model), the
monitor's Prometheus gauges and snapshot, and the reporter's report.json and PDF metric table.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Annotated

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from prometheus_client import REGISTRY, generate_latest
from pydantic import BaseModel
from pydantic.fields import FieldInfo
from pypdf import PdfReader

from ctrops_common.db import make_engine
from ctrops_common.documents import ReportDoc, read_document, write_document
from ctrops_common.events import (
    Event,
    ExplanationDone,
    ModelResult,
    MonitorSnapshot,
    Topic,
    TrainingConfig,
    TrainingDone,
    TrainingProgress,
    TrainingRequested,
    new_id,
)
from ctrops_common.model_metrics import Metric, ModelMetrics
from ctrops_common.storage import FileStore

BRIER = Metric("브라이어 점수 (Brier)", "Validation Brier score", "lower", "ratio", gauge="ctrops_model_brier_score",
               epoch=True, report=True, meaning="예측 확률과 실제 클릭의 평균 제곱 오차 (낮을수록 좋음)")
VALUE = 0.0187
# Every model that holds ModelMetrics, inner ones first (a model's schema copies those of its fields).
HOLDERS: tuple[type[BaseModel], ...] = (ModelResult, TrainingProgress, TrainingDone, MonitorSnapshot, ReportDoc)


def _rebuild() -> None:
    ModelMetrics.model_rebuild(force=True)
    for model in HOLDERS:
        model.model_rebuild(force=True)


@contextmanager
def added_metric(name: str, info: Metric) -> Iterator[None]:
    """``ModelMetrics`` with one more field, declared as the model's own fields are."""
    ModelMetrics.__pydantic_fields__[name] = FieldInfo.from_annotated_attribute(Annotated[float | None, info], None)
    _rebuild()
    try:
        yield
    finally:
        del ModelMetrics.__pydantic_fields__[name]
        _rebuild()


@pytest.fixture
def brier() -> Iterator[None]:
    with added_metric("brier", BRIER):
        yield


def _wire(payload: BaseModel) -> BaseModel:
    """The payload as a consumer reads it off the broker."""
    return type(payload).model_validate_json(payload.model_dump_json())


def _run(run_id: str) -> tuple[TrainingRequested, TrainingProgress, TrainingDone]:
    config = TrainingConfig(epochs=2)
    metrics = ModelMetrics(train_loss=0.3, val_loss=0.09, train_accuracy=0.9, val_accuracy=0.98, auc=0.71, ap=0.06,
                           logloss=0.09, precision=0.1, recall=0.4, f1=0.16, threshold=0.05, brier=VALUE)
    file_id = new_id()
    requested = TrainingRequested(run_id=run_id, file_id=file_id, parquet_location=f"files/{file_id}/data.parquet",
                                  config=config)
    progress = TrainingProgress(run_id=run_id, epoch=1, total_epochs=2, metrics=metrics)
    done = TrainingDone(run_id=run_id, file_id=requested.file_id, model_location=f"runs/{run_id}/model",
                        metrics=metrics, best_epoch=1, epochs_run=2, duration_s=3.0, experiment_name="brier",
                        config=config)
    return requested, _wire(progress), _wire(done)


def test_the_added_field_is_a_declared_metric_and_leaves_again(brier):
    assert ModelMetrics.described()["brier"] is BRIER
    assert ModelMetrics(brier=VALUE).both_spellings()["brier"] == VALUE
    with pytest.raises(ValueError):  # still strict: an undeclared metric is an error, not dropped
        ModelMetrics.model_validate({"brier_typo": 1.0})


def test_without_the_field_a_new_metric_is_refused_not_dropped():
    assert "brier" not in ModelMetrics.model_fields
    with pytest.raises(ValueError, match="brier"):
        ModelMetrics.model_validate({"val_loss": 0.1, "brier": VALUE})


def test_an_added_metric_reaches_the_websocket_the_performance_route_the_gauges_and_the_report(brier, tmp_path):
    from ctrops_gateway.auth import AuthMiddleware
    from ctrops_gateway.routes import performance, train
    from ctrops_gateway.settings import GatewaySettings
    from ctrops_gateway.state import GatewayState
    from ctrops_gateway.views import ReadModel
    from ctrops_monitor.monitor import Monitor
    from ctrops_monitor.settings import MonitorSettings
    from ctrops_monitor.store import MonitorStore

    run_id = new_id()
    requested, progress, done = _run(run_id)
    assert progress.metrics.brier == VALUE and done.metrics.brier == VALUE  # survives the wire

    # -- the monitor: its gauges and its snapshot for the gateway
    monitor = Monitor(MonitorSettings(data_dir=tmp_path), MonitorStore(make_engine(f"sqlite:///{tmp_path}/m.db")))
    monitor.on_training_progress(progress)
    monitor.on_training_done(done, datetime.now(timezone.utc))
    exposition = generate_latest(REGISTRY).decode()
    assert f"ctrops_model_brier_score {VALUE}" in exposition
    assert f'ctrops_training_epoch_quality_ratio{{metric="brier"}} {VALUE}' in exposition
    assert "# HELP ctrops_model_brier_score Validation Brier score of the latest finished run" in exposition
    snapshot = _wire(monitor.snapshot())
    assert snapshot.metrics.brier == VALUE

    # -- the gateway: its read model (stored as JSON, read back as the topic's model) and its routes
    views = ReadModel(make_engine(f"sqlite:///{tmp_path}/gw.db"))
    for topic, payload in ((Topic.TRAINING_REQUESTED, requested), (Topic.TRAINING_PROGRESS, progress),
                           (Topic.TRAINING_DONE, done), (Topic.MONITOR_SNAPSHOT, snapshot)):
        assert views.record(Event(type=topic, payload=payload, correlation_id=run_id))
    settings = GatewaySettings(data_dir=tmp_path)  # auth off, as by default: the caller is the anonymous operator
    app = FastAPI()
    app.include_router(performance.router)
    app.include_router(train.router)
    app.add_middleware(AuthMiddleware, settings=settings)  # it names the caller the routes' roles check
    app.state.gateway = GatewayState(settings=settings, runtime=None, views=views)
    with TestClient(app) as client:
        body = client.get(f"/api/performance/{run_id}").json()
        assert body["brier"] == VALUE and body["accuracy"] == 0.98 and body["f1_score"] == 0.16
        with client.websocket_connect(f"/ws/training/{run_id}") as ws:
            updates = []
            while not updates:
                message = ws.receive_json()
                updates += [message] if message["type"] == "epoch_update" else []
        assert updates[0]["epoch"] == 1 and updates[0]["metrics"]["brier"] == VALUE
        assert updates[0]["metrics"]["valAccuracy"] == updates[0]["metrics"]["val_accuracy"] == 0.98

    # -- the reporter: report.json and the PDF's metric table
    from ctrops_reporter.facts import gather
    from ctrops_reporter.narrative import deterministic
    from ctrops_reporter.pdf import PdfInputs, metric_rows, render_pdf
    from ctrops_reporter.report import build_report
    from ctrops_reporter.settings import MoneyAssumptions

    store = FileStore(Path(tmp_path) / "store")
    explained = ExplanationDone(run_id=run_id, location=f"runs/{run_id}/explanation.json", top_features=[])
    facts = gather(store, done, explained, curve=[], assumptions=MoneyAssumptions())
    report = build_report(facts, deterministic(facts))
    write_document(store, ReportDoc.path(run_id), report)
    assert b'"brier":0.0187' in store.path(ReportDoc.path(run_id)).read_bytes()
    stored = read_document(store, ReportDoc.path(run_id), ReportDoc)
    assert stored.metrics.brier == VALUE
    rows = {label: (value, meaning) for label, value, meaning in metric_rows(stored.metrics, stored.model_strength)}
    assert rows[BRIER.label] == (f"{VALUE:.4f}", BRIER.meaning)
    pdf = render_pdf(PdfInputs(report=stored, curve=[], correlation=None))
    text = "\n".join(page.extract_text() for page in PdfReader(io.BytesIO(pdf)).pages)
    assert "브라이어 점수" in text and f"{VALUE:.4f}" in text


def test_our_payloads_refuse_undeclared_fields_in_the_test_suite(brier):
    """conftest.py sets CTROPS_STRICT_PAYLOADS=1: a field a payload does not declare is an error in tests
    (production ignores it). The frontend's training config stays lenient: it is the API's body."""
    from ctrops_common import events

    assert events.STRICT_PAYLOADS
    run_id = new_id()
    _, _, done = _run(run_id)
    with pytest.raises(ValueError, match="bogus"):
        TrainingDone.model_validate({**done.model_dump(), "bogus": 1})
    assert TrainingConfig.model_validate({"epochs": 3, "modelType": "lstm"}).epochs == 3
