"""A retried run is visible, and its epochs never go backwards for a client (issue 17, item 3).

When a run's training process (or its trainer) dies, the trainer starts attempt 2, which
trains from epoch 1 again. A client connected through that sees a Korean ``log`` saying a
retry began (attempt n of the maximum, and why), never an ``epoch_update`` whose number is
not beyond the last one it got, and the status shows the attempt. Unit tests of the stream
logic with typed events; then the real gateway app on the in-memory bus (marked inmemory).
"""

from __future__ import annotations

from typing import Any

import pytest

from ctrops_common.events import (
    ModelMetrics,
    Event,
    Topic,
    TrainingConfig,
    TrainingDone,
    TrainingProgress,
    TrainingRequested,
    TrainingStarted,
    new_id,
)
from ctrops_common.testing import ws_receive, ws_until_end
from ctrops_gateway.training_live import _Sent, epoch_log, epoch_messages, keyed, started_message

EPOCHS = 6
METRICS = ModelMetrics(train_loss=0.5, val_loss=0.1, train_accuracy=0.7, val_accuracy=0.97, auc=0.7)


def started(run_id: str, attempt: int, cause: str | None = None) -> TrainingStarted:
    return TrainingStarted(run_id=run_id, attempt=attempt, worker="test", max_attempts=3,
                           retry_cause=cause if attempt > 1 else None,
                           retry_reason="the training process of attempt 1 died (training process exited with code -9)"
                           if attempt > 1 else None)


def progress(run_id: str, attempt: int, epoch: int) -> TrainingProgress:
    return TrainingProgress(run_id=run_id, attempt=attempt, epoch=epoch, total_epochs=EPOCHS, metrics=METRICS)


def live(event: Event[Any]) -> list[tuple[str, dict[str, Any]]]:
    """What the fan-out puts on the run's channel for one event (keys and messages, as on_* do)."""
    payload = event.payload
    if event.type == Topic.TRAINING_STARTED:
        return keyed(event.event_id, [started_message(payload)])
    return keyed(event.event_id, [*epoch_messages(payload), epoch_log(payload)])


def stream(events: list[Event[Any]]) -> list[dict[str, Any]]:
    sent, out = _Sent(), []
    for event in events:
        for key, message in live(event):
            out += sent.screen(key, message)
    return out


def epochs_of(messages: list[dict[str, Any]]) -> list[tuple[int, int]]:
    return [(m["attempt"], m["epoch"]) for m in messages if m["type"] == "epoch_update"]


def test_the_retry_is_announced_and_replayed_epochs_are_not_sent_again():
    run_id = new_id()
    events = [
        Event(type=Topic.TRAINING_STARTED, payload=started(run_id, 1)),
        *[Event(type=Topic.TRAINING_PROGRESS, payload=progress(run_id, 1, e)) for e in (1, 2, 3)],
        Event(type=Topic.TRAINING_STARTED, payload=started(run_id, 2, "died")),
        *[Event(type=Topic.TRAINING_PROGRESS, payload=progress(run_id, 2, e)) for e in range(1, EPOCHS + 1)],
    ]
    messages = stream(events)
    assert epochs_of(messages) == [(1, 1), (1, 2), (1, 3), (2, 4), (2, 5), (2, 6)]  # never backwards
    logs = [m["message"] for m in messages if m["type"] == "log"]
    retry = next(text for text in logs if "다시 시작" in text)
    assert "시도 2/3" in retry and "학습 프로세스가 비정상 종료" in retry and "code -9" in retry
    replay = [text for text in logs if "다시 학습 중" in text]
    assert replay == ["시도 2: 에폭 1부터 다시 학습 중입니다. 이미 받은 에폭 3까지는 다시 보내지 않고, 에폭 4부터 이어서 보냅니다."]
    # The per-epoch log lines of the replayed epochs are not sent either ("에폭 1/6 완료" after "에폭 3/6 완료").
    done_lines = [int(text.split()[1].split("/")[0]) for text in logs if text.startswith("에폭 ")]
    assert done_lines == [1, 2, 3, 4, 5, 6]
    # The announcement comes after the retry's log and before epoch 4.
    order = [m.get("message", m["type"]) for m in messages]
    assert order.index(retry) < order.index(replay[0]) < order.index("epoch_update", order.index(replay[0]))


def test_a_client_that_joins_during_the_retry_gets_the_new_attempt_from_epoch_1():
    run_id = new_id()
    messages = stream([Event(type=Topic.TRAINING_STARTED, payload=started(run_id, 2, "lease_expired")),
                       *[Event(type=Topic.TRAINING_PROGRESS, payload=progress(run_id, 2, e)) for e in (1, 2)]])
    assert epochs_of(messages) == [(2, 1), (2, 2)]
    assert "응답하지 않습니다" in messages[0]["message"]
    assert not any("다시 학습 중" in m.get("message", "") for m in messages)


def test_a_repeated_epoch_event_is_still_sent_once_and_a_first_attempt_says_it_started():
    run_id = new_id()
    again = Event(type=Topic.TRAINING_PROGRESS, payload=progress(run_id, 1, 1))
    messages = stream([Event(type=Topic.TRAINING_STARTED, payload=started(run_id, 1)), again, again,
                       Event(type=Topic.TRAINING_PROGRESS, payload=progress(run_id, 1, 2))])
    assert epochs_of(messages) == [(1, 1), (1, 2)]
    assert messages[0]["message"] == "학습을 시작했습니다."
    assert not any("다시" in m.get("message", "") for m in messages)


# -- the real gateway app on the in-memory bus ----------------------------------------------------------


def publish_all(gateway, events: list[tuple[Topic, Any]], run_id: str) -> None:
    """Publish as the trainer would; returns once the gateway handled them."""
    gateway.publish(*[(topic, payload, run_id) for topic, payload in events])


def assert_recorded(gateway, topic: Topic, run_id: str, count: int = 1) -> None:
    """The gateway's read model holds ``count`` events of ``topic`` for the run."""
    found = gateway.state.views.events(topic, correlation_id=run_id)
    assert len(found) >= count, found






@pytest.mark.inmemory
def test_a_client_connected_through_a_retry_sees_epochs_in_order_a_retry_log_and_the_status_shows_the_attempt(
        memory_gateway):
    gateway_client = memory_gateway.client
    run_id, file_id = new_id(), new_id()
    config = TrainingConfig(epochs=EPOCHS)
    publish_all(memory_gateway, [
        (Topic.TRAINING_REQUESTED, TrainingRequested(run_id=run_id, file_id=file_id,
                                                     parquet_location=f"files/{file_id}/data.parquet", config=config)),
        (Topic.TRAINING_STARTED, started(run_id, 1)),
        (Topic.TRAINING_PROGRESS, progress(run_id, 1, 1)),
    ], run_id)
    assert_recorded(memory_gateway, Topic.TRAINING_PROGRESS, run_id)
    with gateway_client.websocket_connect(f"/ws/training/{run_id}") as ws:
        first = [ws_receive(ws, 5) for _ in range(3)]  # the status, "started", epoch 1 (history)
        assert [m["type"] for m in first] == ["log", "log", "epoch_update"]
        publish_all(memory_gateway, [(Topic.TRAINING_PROGRESS, progress(run_id, 1, e)) for e in (2, 3)], run_id)
        assert_recorded(memory_gateway, Topic.TRAINING_PROGRESS, run_id, 3)
        # The training process died: attempt 2 starts over from epoch 1.
        publish_all(memory_gateway, [(Topic.TRAINING_STARTED, started(run_id, 2, "died")),
                                     (Topic.TRAINING_PROGRESS, progress(run_id, 2, 1))], run_id)
        assert_recorded(memory_gateway, Topic.TRAINING_STARTED, run_id, 2)
        assert_recorded(memory_gateway, Topic.TRAINING_PROGRESS, run_id, 4)
        status = gateway_client.get(f"/api/train/status/{run_id}").json()
        assert (status["status"], status["attempt"], status["max_attempts"]) == ("training", 2, 3)
        assert status["retry"]["cause"] == "died" and "code -9" in status["retry"]["reason"]
        assert status["retry"]["reason_ko"]
        publish_all(memory_gateway, [
            *[(Topic.TRAINING_PROGRESS, progress(run_id, 2, e)) for e in range(2, EPOCHS + 1)],
            (Topic.TRAINING_DONE, TrainingDone(
                run_id=run_id, file_id=file_id, model_location=f"runs/{run_id}/model", metrics=METRICS,
                best_epoch=EPOCHS, epochs_run=EPOCHS, duration_s=4.2, experiment_name="retry", config=config)),
        ], run_id)
        messages = [*first, *ws_until_end(ws)]
    assert [m["epoch"] for m in messages if m["type"] == "epoch_update"] == list(range(1, EPOCHS + 1))
    assert [m["attempt"] for m in messages if m["type"] == "epoch_update"] == [1, 1, 1, 2, 2, 2]
    logs = [m["message"] for m in messages if m["type"] == "log"]
    assert any("학습을 다시 시작합니다 (시도 2/3)" in text for text in logs), logs
    assert any("이미 받은 에폭 3까지는 다시 보내지 않고" in text for text in logs), logs
    assert messages[-1]["type"] == "training_complete"
    # A client connecting now gets the attempt that completed, from epoch 1, in order.
    status = gateway_client.get(f"/api/train/status/{run_id}").json()
    assert (status["status"], status["attempt"]) == ("completed", 2)
    assert [h["epoch"] for h in status["history"]] == list(range(1, EPOCHS + 1))

