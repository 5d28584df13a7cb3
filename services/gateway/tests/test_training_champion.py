"""A run with a challenger: the WebSocket says the challenger's result and the champion before
``training_complete``, which carries both models; status, runs list and /api/performance name the
champion; the first epoch says when the batch size used differs from the one asked for.

The real gateway app on the in-memory bus; the trainer's events are published by the test.
"""

from __future__ import annotations

import pytest

from ctrops_common.events import (
    AucComparison,
    BatchPlan,
    ModelMetrics,
    ModelResult,
    Topic,
    TrainingConfig,
    TrainingDone,
    TrainingProgress,
    TrainingRequested,
    TrainingStarted,
    new_id,
)

pytestmark = pytest.mark.inmemory


def publish_all(gateway, items, run_id):
    """Publish as the trainer would; returns once the gateway handled them."""
    gateway.publish(*[(topic, payload, run_id) for topic, payload in items])


def until_end(ws):
    messages = [ws.receive_json()]
    while messages[-1]["type"] not in ("training_complete", "training_failed"):
        messages.append(ws.receive_json())
    return messages


def assert_recorded(gateway, topic, run_id):
    assert gateway.state.views.events(topic, correlation_id=run_id)

LSTM = ModelMetrics(train_loss=0.5, val_loss=0.09, train_accuracy=0.7, val_accuracy=0.98, auc=0.81, ap=0.12)
GBDT = ModelMetrics(train_loss=0.08, val_loss=0.08, train_accuracy=0.98, val_accuracy=0.98, auc=0.86, ap=0.18)
BATCH = BatchPlan(requested=4096, used=90, steps_per_epoch=32, train_rows_per_epoch=2880,
                  reason="4096 would give 1 optimizer step per epoch on 2,880 training rows")


def events(run_id: str, file_id: str):
    progress = [(Topic.TRAINING_PROGRESS, TrainingProgress(run_id=run_id, epoch=e, total_epochs=2, metrics=LSTM,
                                                           batch=BATCH)) for e in (1, 2)]
    done = TrainingDone(
        run_id=run_id, file_id=file_id, model_location=f"runs/{run_id}/model/gbdt", metrics=GBDT, best_epoch=2,
        epochs_run=2, duration_s=30.0, experiment_name="champion", config=TrainingConfig(epochs=2),
        champion="gbdt",
        models=[ModelResult(kind="lstm", label="LSTM+MLP", metrics=LSTM, model_location=f"runs/{run_id}/model/lstm",
                            best_iteration=2, iterations_run=2, duration_s=25.0),
                ModelResult(kind="gbdt", label="LightGBM", metrics=GBDT, model_location=f"runs/{run_id}/model/gbdt",
                            best_iteration=120, iterations_run=170, duration_s=5.0)],
        comparison=AucComparison(auc_lstm=0.81, auc_gbdt=0.86, difference=0.05, ci_low=0.02, ci_high=0.08,
                                 p_value=0.001, val_rows=12000, val_clicks=240),
        batch=BATCH,
    )
    return [
        (Topic.TRAINING_REQUESTED, TrainingRequested(run_id=run_id, file_id=file_id,
                                                     parquet_location=f"files/{file_id}/data.parquet",
                                                     config=TrainingConfig(epochs=2))),
        (Topic.TRAINING_STARTED, TrainingStarted(run_id=run_id, attempt=1, worker="test")),
        *progress,
        (Topic.TRAINING_DONE, done),
    ]


def check_stream(messages):
    types = [m["type"] for m in messages]
    assert types.count("epoch_update") == 2
    batch_logs = [m for m in messages if m["type"] == "log" and "배치 크기: 요청 4096, 사용 90" in m["message"]]
    assert len(batch_logs) == 1, messages  # said once, with the first epoch
    challenger = [i for i, m in enumerate(messages) if m["type"] == "log" and "도전 모델 LightGBM" in m["message"]]
    assert len(challenger) == 1, messages
    text = messages[challenger[0]]["message"]
    assert "0.860" in text and "0.810" in text and "DeLong p=0.001" in text and "챔피언 모델: LightGBM" in text
    assert challenger[0] > max(i for i, t in enumerate(types) if t == "epoch_update")
    end = messages[-1]
    assert end["type"] == "training_complete"
    assert end["champion"] == "gbdt" and end["metrics"]["auc"] == 0.86
    assert {m["kind"]: m["metrics"]["auc"] for m in end["models"]} == {"lstm": 0.81, "gbdt": 0.86}
    assert end["comparison"]["p_value"] == 0.001


def test_a_live_client_sees_the_challenger_and_the_champion(memory_gateway):
    gateway_client = memory_gateway.client
    run_id, file_id = new_id(), new_id()
    story = events(run_id, file_id)
    publish_all(memory_gateway, story[:2], run_id)  # requested and started: the run is known
    assert_recorded(memory_gateway, Topic.TRAINING_STARTED, run_id)
    with gateway_client.websocket_connect(f"/ws/training/{run_id}") as ws:
        publish_all(memory_gateway, story[2:], run_id)
        messages = until_end(ws)
    check_stream(messages)


def test_a_late_client_gets_the_same_story_and_status_and_performance_name_the_champion(memory_gateway):
    gateway_client = memory_gateway.client
    run_id, file_id = new_id(), new_id()
    publish_all(memory_gateway, events(run_id, file_id), run_id)
    assert_recorded(memory_gateway, Topic.TRAINING_DONE, run_id)
    with gateway_client.websocket_connect(f"/ws/training/{run_id}") as ws:
        check_stream(until_end(ws))

    status = gateway_client.get(f"/api/train/status/{run_id}").json()
    assert status["champion"] == "gbdt" and status["champion_label"] == "LightGBM"
    assert status["metrics"]["auc"] == 0.86  # the champion's numbers
    assert status["batch"]["used"] == 90 and status["batch"]["requested"] == 4096
    assert [m["kind"] for m in status["models"]] == ["lstm", "gbdt"]
    runs = gateway_client.get("/api/train/runs").json()
    listed = runs["runs"] if isinstance(runs, dict) else runs
    assert next(r for r in listed if r["run_id"] == run_id)["champion"] == "gbdt"
    performance = gateway_client.get(f"/api/performance/{run_id}").json()
    assert performance["champion"] == "gbdt" and performance["model"] == "LightGBM" and performance["auc"] == 0.86
