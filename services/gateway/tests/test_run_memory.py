"""The in-memory copy of each training run's events (ReadModel.run_events): what GET /api/train/status and
the training WebSocket read without SQL must always equal what the database says."""

from __future__ import annotations

import pytest

from ctrops_common.db import make_engine
from ctrops_common.events import (
    ModelMetrics,
    Event,
    Topic,
    TrainingCancelRequested,
    TrainingConfig,
    TrainingDone,
    TrainingFailed,
    TrainingProgress,
    TrainingRequested,
    TrainingStarted,
    new_id,
)
from ctrops_gateway import training_live as live
from ctrops_gateway.views import RUN_TOPICS, ReadModel


def metrics(epoch: int) -> ModelMetrics:
    return ModelMetrics(train_loss=0.5 / epoch, val_loss=0.4 / epoch, train_accuracy=0.9, val_accuracy=0.9 + epoch / 100,
                        auc=0.7 + epoch / 100, ap=0.08, logloss=0.09, calibration=1.0, score=0.3, precision=0.1,
                        recall=0.3, f1=0.15, threshold=0.05)


def event(topic: Topic, payload) -> Event:
    return Event(type=topic, payload=payload, correlation_id=payload.run_id)


def from_database(engine, run_id: str) -> dict | None:
    """The status body as the database alone says it (a fresh model, nothing in memory)."""
    view = live.build_view(run_id, ReadModel(engine).events(RUN_TOPICS, correlation_id=run_id))
    return live.status_body(view) if view is not None else None


def from_memory(views: ReadModel, run_id: str) -> dict | None:
    view = live.cached_view(views, run_id)
    return live.status_body(view) if view is not None else None


@pytest.fixture
def engine(tmp_path):
    return make_engine(f"sqlite:///{tmp_path}/gw.sqlite3")


def test_the_memory_view_matches_the_database_after_every_event(engine):
    views = ReadModel(engine)
    other_replica = ReadModel(engine)  # shares the database, has its own memory
    run_id = new_id()
    requested = event(Topic.TRAINING_REQUESTED, TrainingRequested(
        run_id=run_id, file_id=new_id(), parquet_location="p.parquet", config=TrainingConfig(epochs=3),
        client_id="alice"))
    assert views.record(requested)
    assert live.cached_view(views, run_id) is None  # not read yet: nothing in memory
    assert live.run_view(views, run_id) is not None  # read once from the database, then kept
    assert from_memory(views, run_id) == from_database(engine, run_id)

    progress = [event(Topic.TRAINING_PROGRESS, TrainingProgress(run_id=run_id, epoch=e, total_epochs=3,
                                                                metrics=metrics(e))) for e in (1, 2, 3)]
    retry_progress = event(Topic.TRAINING_PROGRESS, TrainingProgress(run_id=run_id, attempt=2, epoch=1, total_epochs=3,
                                                                     metrics=metrics(1)))
    steps = [
        event(Topic.TRAINING_STARTED, TrainingStarted(run_id=run_id, attempt=1, worker="w1", max_attempts=3)),
        progress[0],
        progress[1],
        progress[1],  # a redelivery: stored once, shown once
        event(Topic.TRAINING_STARTED, TrainingStarted(run_id=run_id, attempt=2, worker="w2", max_attempts=3,
                                                      retry_cause="died", retry_reason="exit -9")),
        retry_progress,
        event(Topic.TRAINING_CANCEL_REQUESTED, TrainingCancelRequested(run_id=run_id)),
        event(Topic.TRAINING_FAILED, TrainingFailed(run_id=run_id, reason="cancelled by the user", cancelled=True)),
    ]
    for step in steps:
        views.record(step)
        assert from_memory(views, run_id) == from_database(engine, run_id), step.type
    body = from_memory(views, run_id)
    assert body["status"] == "failed" and body["attempt"] == 2 and body["cancelled"] is True
    assert [h["epoch"] for h in body["history"]] == [1]

    # An event another replica stored first: this replica's consumer gets it too (stored: False), and the
    # memory takes it all the same.
    late = event(Topic.TRAINING_PROGRESS, TrainingProgress(run_id=run_id, attempt=2, epoch=2, total_epochs=3,
                                                           metrics=metrics(2)))
    assert other_replica.record(late)
    assert not views.record(late)
    assert from_memory(views, run_id) == from_database(engine, run_id)
    assert [h["epoch"] for h in from_memory(views, run_id)["history"]] == [1, 2]


def test_a_completed_run_from_memory_equals_the_database(engine):
    views = ReadModel(engine)
    run_id = new_id()
    config = TrainingConfig(epochs=2)
    views.record(event(Topic.TRAINING_REQUESTED, TrainingRequested(
        run_id=run_id, file_id=new_id(), parquet_location="p.parquet", config=config)))
    live.run_view(views, run_id)
    for e in (1, 2):
        views.record(event(Topic.TRAINING_PROGRESS, TrainingProgress(run_id=run_id, epoch=e, total_epochs=2,
                                                                     metrics=metrics(e))))
    views.record(event(Topic.TRAINING_DONE, TrainingDone(
        run_id=run_id, file_id=new_id(), model_location="m", metrics=metrics(2), best_epoch=2, epochs_run=2,
        duration_s=3.5, experiment_name="x", config=config)))
    body = from_memory(views, run_id)
    assert body == from_database(engine, run_id)
    assert body["status"] == "completed" and body["current_epoch"] == 2 and body["completed_at"]


def test_a_database_read_that_races_a_write_is_not_kept(engine, monkeypatch):
    """The consumer stores an event while a request reads the run from the database (in another thread):
    that read may miss the event, so it is answered but not kept; the next read sees the event."""
    views = ReadModel(engine)
    run_id = new_id()
    views.record(event(Topic.TRAINING_REQUESTED, TrainingRequested(
        run_id=run_id, file_id=new_id(), parquet_location="p.parquet", config=TrainingConfig(epochs=3))))
    database_read = ReadModel.events

    def read_then_write(self, *args, **kwargs):
        found = database_read(self, *args, **kwargs)
        monkeypatch.setattr(ReadModel, "events", database_read)
        views.record(event(Topic.TRAINING_PROGRESS, TrainingProgress(run_id=run_id, epoch=1, total_epochs=3,
                                                                     metrics=metrics(1))))
        return found

    monkeypatch.setattr(ReadModel, "events", read_then_write)
    assert live.run_view(views, run_id).current_epoch == 0  # as the database was when read
    assert live.cached_view(views, run_id) is None  # ... so not kept
    assert live.run_view(views, run_id).current_epoch == 1
    assert from_memory(views, run_id) == from_database(engine, run_id)


def test_runs_in_memory_are_bounded_and_answer_without_the_database(engine, monkeypatch):
    views = ReadModel(engine, runs_in_memory=2)
    runs = [new_id() for _ in range(3)]
    for run_id in runs:
        views.record(event(Topic.TRAINING_REQUESTED, TrainingRequested(
            run_id=run_id, file_id=new_id(), parquet_location="p.parquet", config=TrainingConfig(epochs=3))))
        live.run_view(views, run_id)
    assert live.cached_view(views, runs[0]) is None  # the least recently read was dropped
    assert all(live.cached_view(views, r) is not None for r in runs[1:])

    def no_database(*_args, **_kwargs):
        raise AssertionError("a run in memory must not be read from the database")

    monkeypatch.setattr(ReadModel, "events", no_database)
    assert live.run_view(views, runs[2]).run_id == runs[2]
    monkeypatch.undo()
    assert live.run_view(views, runs[0]).run_id == runs[0]  # read again from the database
