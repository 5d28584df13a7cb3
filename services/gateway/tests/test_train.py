"""Training through the gateway: POST /api/train, status, runs, cancel and WS /ws/training/{run_id}.
The refusals on the in-memory bus (marker inmemory); the live flow against the real broker and a real
trainer process."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest

from ctrops_common.events import DataInfo, FileUploaded, Topic, Validation, new_id
from ctrops_common.testdata import training_parquet
from ctrops_common.testing import publish_events, wait_for, ws_receive, ws_until_end

# A tiny model on a small generated file: these tests are about the API and the live channel.
FAST_CONFIG = {"batchSize": 512, "maxSeqLen": 16, "lstmHidden": 8, "mlpHidden": "16", "learningRate": 0.01}
TRAINER_ENV = {"CTROPS_TRAINER_MLFLOW_ENABLED": "false", "CTROPS_TRAINER_LEASE_TIMEOUT_S": "3"}
BOTH_SPELLINGS = {"train_loss", "val_loss", "train_accuracy", "val_accuracy",
                  "trainLoss", "valLoss", "trainAccuracy", "valAccuracy"}


@pytest.fixture(scope="module")
def generated_parquet(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return training_parquet(tmp_path_factory.mktemp("gen"), 4000, seed=5, ctr=0.08)[0]


def publish(topic: Topic, payload: Any, correlation_id: str) -> None:
    publish_events((topic, payload, correlation_id))


def file_uploaded(data_dir: Path, parquet: Path | None, valid: bool = True,
                  errors: list[str] | None = None) -> FileUploaded:
    """A file as the ingest service announces it: parquet placed in the store, file.uploaded not yet published."""
    file_id = new_id()
    location = None
    if parquet is not None:
        location = f"files/{file_id}/data.parquet"
        (data_dir / location).parent.mkdir(parents=True)
        shutil.copyfile(parquet, data_dir / location)
    payload = FileUploaded(
        file_id=file_id, filename="clicks.csv", location=f"uploads/{file_id}/original.csv",
        parquet_location=location if valid else None, encoding="utf-8", rows=4000, columns=["clicked", "seq"],
        validation=Validation(is_valid=valid, errors=errors or []),
        info=DataInfo(total_rows=4000, total_columns=119, missing_values=0, missing_percentage=0.0,
                      duplicate_rows=0, clicked_one=320, clicked_zero=3680, ctr=8.0),
        preview=[], column_descriptions={},
    )
    return payload


def uploaded(client, data_dir: Path, parquet: Path | None, valid: bool = True, errors: list[str] | None = None) -> str:
    """A file as the ingest service announces it (parquet placed in the store, file.uploaded published)."""
    payload = file_uploaded(data_dir, parquet, valid, errors)
    file_id = payload.file_id
    publish(Topic.FILE_UPLOADED, payload, file_id)
    views = client.app.state.gateway.views
    wait_for(lambda: views.file_record(file_id), lambda record: record is not None)
    return file_id


def receive(ws, timeout_s: float = 120) -> dict[str, Any] | None:
    """The next message, or None if none came within ``timeout_s`` (the socket still open)."""
    return ws_receive(ws, timeout_s)


def until_end(ws, timeout_s: float = 180) -> list[dict[str, Any]]:
    return ws_until_end(ws, timeout_s)


# -- refusals ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("config", "where"),
    [
        ({"epochs": 0}, "config.epochs"),
        ({"epochs": 500}, "config.epochs"),
        ({"dropout": 0.95}, "config.dropout"),
        ({"validationSplit": 0.7}, "config.validationSplit"),
        ({"validation_split": 0.01}, "config.validation_split"),
        ({"mlpHidden": "256,abc"}, "comma-separated integers"),
        ({"batchSize": "big"}, "config.batchSize"),
        ({"learning_rate": 0}, "config.learning_rate"),
    ],
)
@pytest.mark.inmemory
def test_out_of_range_configs_are_422_with_the_field_and_the_rule(memory_gateway, config, where):
    gateway_client = memory_gateway.client
    response = gateway_client.post("/api/train", json={"file_id": new_id(), "config": config})
    assert response.status_code == 422
    assert where in response.json()["detail"]


@pytest.mark.inmemory
def test_unknown_or_malformed_file_ids_are_404_and_a_missing_one_is_422(memory_gateway):
    gateway_client = memory_gateway.client
    for file_id in (new_id(), "../../etc/passwd", "demo-file"):
        response = gateway_client.post("/api/train", json={"file_id": file_id, "config": {}})
        assert response.status_code == 404
        assert "upload the CSV first" in response.json()["detail"]
    response = gateway_client.post("/api/train", json={"config": {"epochs": 3}})
    assert response.status_code == 422 and "file_id" in response.json()["detail"]


@pytest.mark.inmemory
def test_a_file_that_failed_validation_is_422_saying_why(memory_gateway, data_dir):
    gateway_client = memory_gateway.client
    payload = file_uploaded(data_dir, None, valid=False, errors=["the required column 'clicked' is missing"])
    file_id = payload.file_id
    memory_gateway.publish((Topic.FILE_UPLOADED, payload, file_id))
    assert memory_gateway.state.views.file_record(file_id) is not None
    response = gateway_client.post("/api/train", json={"file_id": file_id})
    assert response.status_code == 422
    assert "'clicked' is missing" in response.json()["detail"]


@pytest.mark.inmemory
def test_unknown_run_ids_are_404_and_the_socket_answers_with_one_log_and_stays_open(memory_gateway):
    gateway_client = memory_gateway.client
    for run_id in ("demo-run", "mock-run-1700000000000", "run-abc12345", new_id(), "latest"):
        response = gateway_client.get(f"/api/train/status/{run_id}")
        assert response.status_code == 404 and response.json()["detail"]
        assert gateway_client.post(f"/api/train/{run_id}/cancel").status_code == 404
    assert gateway_client.get("/api/train/runs").json() == []

    with gateway_client.websocket_connect("/ws/training/demo-run") as ws:
        message = receive(ws, 2)  # the contract: within 2 s of connecting
        assert message["type"] == "log"
        assert "알 수 없는" in message["message"] and "Unknown training run" in message["message"]
        assert receive(ws, 1.5) is None  # nothing more, and not closed


# -- the live flow with a real trainer ---------------------------------------------------------------------------


def test_training_streams_every_epoch_to_every_client_then_completes(
        gateway_client, start_service, data_dir, generated_parquet):
    start_service("trainer", TRAINER_ENV)
    file_id = uploaded(gateway_client, data_dir, generated_parquet)
    response = gateway_client.post("/api/train", json={
        "file_id": file_id, "config": {**FAST_CONFIG, "epochs": 3, "experimentName": "gateway-test", "junk": 1}})
    assert response.status_code == 200, response.text
    body = response.json()
    run_id = body["run_id"]
    assert body["status"] == "training"
    # Readable at once, before any trainer event.
    status = gateway_client.get(f"/api/train/status/{run_id}").json()
    assert status["status"] == "training" and status["total_epochs"] == 3
    assert status["config"]["batch_size"] == 512 and status["config"]["mlp_hidden"] == [16]

    with gateway_client.websocket_connect(f"/ws/training/{run_id}") as first, \
            gateway_client.websocket_connect(f"/ws/training/{run_id}") as second:
        streams = [until_end(first), until_end(second)]

    for messages in streams:
        assert messages[0]["type"] == "log" and "상태" in messages[0]["message"]  # status first, in Korean
        epochs = [m for m in messages if m["type"] == "epoch_update"]
        assert [(m["epoch"], m["total_epochs"]) for m in epochs] == [(1, 3), (2, 3), (3, 3)]
        for m in epochs:
            assert BOTH_SPELLINGS <= set(m["metrics"])
            assert 0 <= m["metrics"]["val_accuracy"] <= 1 and m["metrics"]["auc"] is not None
        assert messages[-1]["type"] == "training_complete"
        assert BOTH_SPELLINGS <= set(messages[-1]["metrics"])
        assert all(m["type"] in ("log", "epoch_update", "training_complete") for m in messages)

    status = gateway_client.get(f"/api/train/status/{run_id}").json()
    assert status["status"] == "completed" and status["current_epoch"] == 3
    assert BOTH_SPELLINGS <= set(status["metrics"]) and len(status["history"]) == 3
    assert status["model_location"] == f"runs/{run_id}/model/{status['champion']}"  # the champion's folder
    assert (data_dir / status["model_location"] / "preprocess.json").exists()
    assert gateway_client.get("/api/train/status/latest").json()["run_id"] == run_id

    runs = gateway_client.get("/api/train/runs").json()
    assert runs[0]["run_id"] == run_id and runs[0]["status"] == "completed" and runs[0]["file_id"] == file_id
    assert 0 < runs[0]["accuracy"] <= 1 and runs[0]["created_at"].startswith("20")

    # A client connecting after the end still gets the whole history: status, every epoch, the end.
    with gateway_client.websocket_connect("/ws/training/latest") as late:
        history = until_end(late, 5)
    assert [m["epoch"] for m in history if m["type"] == "epoch_update"] == [1, 2, 3]
    assert "완료" in history[0]["message"]

    # A second run: the list is newest first; a finished run cannot be cancelled.
    second_run = gateway_client.post("/api/train", json={"fileId": file_id, "config": {**FAST_CONFIG, "epochs": 1}})
    runs = gateway_client.get("/api/train/runs").json()
    assert [r["run_id"] for r in runs] == [second_run.json()["run_id"], run_id]
    assert gateway_client.post(f"/api/train/{run_id}/cancel").status_code == 409


def test_a_cancelled_run_ends_failed_and_cancelled_on_the_socket_and_in_the_status(
        gateway_client, start_service, data_dir, generated_parquet):
    start_service("trainer", TRAINER_ENV)
    file_id = uploaded(gateway_client, data_dir, generated_parquet)
    run_id = gateway_client.post("/api/train", json={"file_id": file_id,
                                                     "config": {**FAST_CONFIG, "epochs": 200}}).json()["run_id"]
    with gateway_client.websocket_connect(f"/ws/training/{run_id}") as ws:
        while (message := receive(ws))["type"] != "epoch_update":
            assert message is not None
        response = gateway_client.post(f"/api/train/{run_id}/cancel")
        assert response.status_code == 202 and response.json()["status"] == "cancelling"
        messages = until_end(ws, 60)
    assert messages[-1]["type"] == "training_failed" and messages[-1]["cancelled"] is True
    assert any("취소" in m.get("message", "") for m in messages)
    status = gateway_client.get(f"/api/train/status/{run_id}").json()
    assert status["status"] == "failed" and status["cancelled"] is True and status["error"]
