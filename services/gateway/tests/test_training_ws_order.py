"""WS /ws/training keeps the run's end after its epochs when the gateway consumes them out of order.

Topics are consumed in no global order: a gateway catching up on a backlog (after a
restart) can read ``training.done`` before the last ``training.progress`` events. A
client must still get every epoch, then ``training_complete`` last (found by the
end-to-end gateway-restart test). The real gateway app on the in-memory bus, whose one log
delivers in publish order: the trainer's events are published by the test in the order that
used to break it, and each publish returns once the gateway handled it.
"""

from __future__ import annotations

import time
from typing import Any

import pytest

from ctrops_common.events import (
    ModelMetrics,
    Topic,
    TrainingConfig,
    TrainingDone,
    TrainingProgress,
    TrainingRequested,
    TrainingStarted,
    new_id,
)
from ctrops_common.testing import ws_receive, ws_until_end

pytestmark = pytest.mark.inmemory
METRICS = ModelMetrics(train_loss=0.5, val_loss=0.1, train_accuracy=0.7, val_accuracy=0.97, auc=0.7)


def publish_all(gateway, events: list[tuple[Topic, Any]], run_id: str) -> None:
    """Publish as the trainer would; returns once the gateway handled them."""
    gateway.publish(*[(topic, payload, run_id) for topic, payload in events])


def progress(run_id: str, epoch: int) -> tuple[Topic, TrainingProgress]:
    return Topic.TRAINING_PROGRESS, TrainingProgress(run_id=run_id, epoch=epoch, total_epochs=3, metrics=METRICS)


def done(run_id: str, file_id: str) -> tuple[Topic, TrainingDone]:
    return Topic.TRAINING_DONE, TrainingDone(
        run_id=run_id, file_id=file_id, model_location=f"runs/{run_id}/model", metrics=METRICS, best_epoch=3,
        epochs_run=3, duration_s=4.2, experiment_name="order", config=TrainingConfig(epochs=3))


def assert_recorded(gateway, topic: Topic, run_id: str, count: int = 1) -> None:
    """The gateway's read model holds ``count`` events of ``topic`` for the run."""
    found = gateway.state.views.events(topic, correlation_id=run_id)
    assert len(found) >= count, found






def start_run(gateway) -> tuple[str, str]:
    run_id, file_id = new_id(), new_id()
    publish_all(gateway, [
        (Topic.TRAINING_REQUESTED, TrainingRequested(run_id=run_id, file_id=file_id,
                                                     parquet_location=f"files/{file_id}/data.parquet",
                                                     config=TrainingConfig(epochs=3))),
        (Topic.TRAINING_STARTED, TrainingStarted(run_id=run_id, attempt=1, worker="test")),
        progress(run_id, 1),
    ], run_id)
    assert_recorded(gateway, Topic.TRAINING_PROGRESS, run_id)
    return run_id, file_id


def test_a_live_client_gets_the_late_epochs_before_the_end(memory_gateway):
    gateway_client = memory_gateway.client
    run_id, file_id = start_run(memory_gateway)
    with gateway_client.websocket_connect(f"/ws/training/{run_id}") as ws:
        publish_all(memory_gateway, [done(run_id, file_id)], run_id)  # consumed before epochs 2 and 3
        assert_recorded(memory_gateway, Topic.TRAINING_DONE, run_id)
        publish_all(memory_gateway, [progress(run_id, 2), progress(run_id, 3)], run_id)
        messages = ws_until_end(ws)
    assert [m["epoch"] for m in messages if m["type"] == "epoch_update"] == [1, 2, 3]
    assert messages[-1]["type"] == "training_complete"
    completed_log = next(i for i, m in enumerate(messages) if m["type"] == "log" and "완료되었습니다" in m["message"])
    assert completed_log > max(i for i, m in enumerate(messages) if m["type"] == "epoch_update")


def test_a_client_connecting_mid_catch_up_gets_the_history_then_the_missing_epochs_then_the_end(memory_gateway):
    gateway_client = memory_gateway.client
    run_id, file_id = start_run(memory_gateway)
    publish_all(memory_gateway, [done(run_id, file_id)], run_id)
    assert_recorded(memory_gateway, Topic.TRAINING_DONE, run_id)
    with gateway_client.websocket_connect(f"/ws/training/{run_id}") as ws:
        first = ws_receive(ws, 2)
        assert first["type"] == "log"  # the status at once, as always
        publish_all(memory_gateway, [progress(run_id, 2), progress(run_id, 3)], run_id)
        messages = [first, *ws_until_end(ws)]
    assert [m["epoch"] for m in messages if m["type"] == "epoch_update"] == [1, 2, 3]
    assert messages[-1]["type"] == "training_complete"


def test_the_end_is_not_held_forever_when_epochs_never_arrive(memory_gateway, monkeypatch):
    from ctrops_gateway import training_live

    gateway_client = memory_gateway.client
    monkeypatch.setattr(training_live, "FINAL_HOLD_S", 1.0)
    run_id, file_id = start_run(memory_gateway)
    publish_all(memory_gateway, [progress(run_id, 2), done(run_id, file_id)], run_id)  # epoch 3's event was lost
    assert_recorded(memory_gateway, Topic.TRAINING_DONE, run_id)
    with gateway_client.websocket_connect(f"/ws/training/{run_id}") as ws:
        started = time.monotonic()
        messages = ws_until_end(ws, 10)
    assert 0.8 < time.monotonic() - started < 8
    assert [m["epoch"] for m in messages if m["type"] == "epoch_update"] == [1, 2]
    assert messages[-1]["type"] == "training_complete"
