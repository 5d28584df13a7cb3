"""WS /ws/training keeps the run's end after its epochs when the gateway consumes them out of order.

Topics are consumed in no global order: a gateway catching up on a backlog (after a
restart) can read ``training.done`` before the last ``training.progress`` events. A
client must still get every epoch, then ``training_complete`` last (found by the
end-to-end gateway-restart test). Real broker, real gateway app; the trainer's events
are published by the test in the order that used to break it.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import anyio

from ctrops_common.bus import Bus
from ctrops_common.events import (
    EpochMetrics,
    Topic,
    TrainingConfig,
    TrainingDone,
    TrainingProgress,
    TrainingRequested,
    TrainingStarted,
    new_id,
)
from ctrops_common.settings import CommonSettings

METRICS = EpochMetrics(train_loss=0.5, val_loss=0.1, train_accuracy=0.7, val_accuracy=0.97, auc=0.7)


def publish_all(events: list[tuple[Topic, Any]], run_id: str) -> None:
    async def go() -> None:
        bus = Bus(CommonSettings(), "test-producer")
        await bus.start()
        try:
            for topic, payload in events:
                await bus.publish(topic, payload, correlation_id=run_id)
        finally:
            await bus.stop()

    asyncio.run(go())


def progress(run_id: str, epoch: int) -> tuple[Topic, TrainingProgress]:
    return Topic.TRAINING_PROGRESS, TrainingProgress(run_id=run_id, epoch=epoch, total_epochs=3, metrics=METRICS)


def done(run_id: str, file_id: str) -> tuple[Topic, TrainingDone]:
    return Topic.TRAINING_DONE, TrainingDone(
        run_id=run_id, file_id=file_id, model_location=f"runs/{run_id}/model", metrics=METRICS, best_epoch=3,
        epochs_run=3, duration_s=4.2, experiment_name="order", config=TrainingConfig(epochs=3))


def wait_recorded(client, topic: Topic, run_id: str, count: int = 1) -> None:
    views = client.app.state.gateway.views
    deadline = time.monotonic() + 30
    while len(views.events(topic, correlation_id=run_id)) < count:
        assert time.monotonic() < deadline, f"gateway never recorded {count} {topic}"
        time.sleep(0.1)


def receive(ws, timeout_s: float) -> dict[str, Any] | None:
    async def next_message():
        with anyio.move_on_after(timeout_s):
            return await ws._send_rx.receive()
        return None

    message = ws.portal.call(next_message)
    if message is None:
        return None
    assert message["type"] == "websocket.send", f"socket closed: {message}"
    return json.loads(message["text"])


def until_end(ws, timeout_s: float = 30) -> list[dict[str, Any]]:
    messages: list[dict[str, Any]] = []
    deadline = time.monotonic() + timeout_s
    while not messages or messages[-1]["type"] not in ("training_complete", "training_failed"):
        message = receive(ws, max(0.5, deadline - time.monotonic()))
        assert message is not None, f"no end within {timeout_s}s: {messages}"
        messages.append(message)
    return messages


def start_run(client) -> tuple[str, str]:
    run_id, file_id = new_id(), new_id()
    publish_all([
        (Topic.TRAINING_REQUESTED, TrainingRequested(run_id=run_id, file_id=file_id,
                                                     parquet_location=f"files/{file_id}/data.parquet",
                                                     config=TrainingConfig(epochs=3))),
        (Topic.TRAINING_STARTED, TrainingStarted(run_id=run_id, attempt=1, worker="test")),
        progress(run_id, 1),
    ], run_id)
    wait_recorded(client, Topic.TRAINING_PROGRESS, run_id)
    return run_id, file_id


def test_a_live_client_gets_the_late_epochs_before_the_end(gateway_client):
    run_id, file_id = start_run(gateway_client)
    with gateway_client.websocket_connect(f"/ws/training/{run_id}") as ws:
        publish_all([done(run_id, file_id)], run_id)  # consumed before epochs 2 and 3
        wait_recorded(gateway_client, Topic.TRAINING_DONE, run_id)
        publish_all([progress(run_id, 2), progress(run_id, 3)], run_id)
        messages = until_end(ws)
    assert [m["epoch"] for m in messages if m["type"] == "epoch_update"] == [1, 2, 3]
    assert messages[-1]["type"] == "training_complete"
    completed_log = next(i for i, m in enumerate(messages) if m["type"] == "log" and "완료되었습니다" in m["message"])
    assert completed_log > max(i for i, m in enumerate(messages) if m["type"] == "epoch_update")


def test_a_client_connecting_mid_catch_up_gets_the_history_then_the_missing_epochs_then_the_end(gateway_client):
    run_id, file_id = start_run(gateway_client)
    publish_all([done(run_id, file_id)], run_id)
    wait_recorded(gateway_client, Topic.TRAINING_DONE, run_id)
    with gateway_client.websocket_connect(f"/ws/training/{run_id}") as ws:
        first = receive(ws, 2)
        assert first["type"] == "log"  # the status at once, as always
        publish_all([progress(run_id, 2), progress(run_id, 3)], run_id)
        messages = [first, *until_end(ws)]
    assert [m["epoch"] for m in messages if m["type"] == "epoch_update"] == [1, 2, 3]
    assert messages[-1]["type"] == "training_complete"


def test_the_end_is_not_held_forever_when_epochs_never_arrive(gateway_client, monkeypatch):
    from ctrops_gateway import training_live

    monkeypatch.setattr(training_live, "FINAL_HOLD_S", 1.0)
    run_id, file_id = start_run(gateway_client)
    publish_all([progress(run_id, 2), done(run_id, file_id)], run_id)  # epoch 3's event was lost
    wait_recorded(gateway_client, Topic.TRAINING_DONE, run_id)
    with gateway_client.websocket_connect(f"/ws/training/{run_id}") as ws:
        started = time.monotonic()
        messages = until_end(ws, 10)
    assert 0.8 < time.monotonic() - started < 8
    assert [m["epoch"] for m in messages if m["type"] == "epoch_update"] == [1, 2]
    assert messages[-1]["type"] == "training_complete"
