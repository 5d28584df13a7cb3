"""The trainer as a real process on the real broker: progress per epoch, done with a saved model
and an MLflow run, failure events a person can act on, cancel, redelivery, kill -9."""

from __future__ import annotations

import os
import time
from pathlib import Path

import psutil
import pytest

from ctrops_common.events import (
    Topic,
    TrainingCancelRequested,
    TrainingConfig,
    TrainingRequested,
    new_id,
)
from ctrops_common.ml import load_model

RUN_TOPICS = [Topic.TRAINING_STARTED, Topic.TRAINING_PROGRESS, Topic.TRAINING_DONE, Topic.TRAINING_FAILED]
# Tiny model and window: these tests are about the service, not about learning.
SMALL = {"batch_size": 512, "max_seq_len": 16, "lstm_hidden": 8, "mlp_hidden": "16", "learning_rate": 0.01,
         "early_stopping_patience": None}  # every epoch runs: the tests count them
NO_MLFLOW = {"CTROPS_TRAINER_MLFLOW_ENABLED": "false", "CTROPS_TRAINER_LEASE_TIMEOUT_S": "3"}


def of(events, topic):
    return [e for e in events if e.type == topic]


def ended(events) -> bool:
    return bool(of(events, Topic.TRAINING_DONE) or of(events, Topic.TRAINING_FAILED))


def request(place_training_file, epochs: int, **config) -> TrainingRequested:
    file_id = new_id()
    return TrainingRequested(run_id=new_id(), file_id=file_id, parquet_location=place_training_file(file_id),
                             config=TrainingConfig(epochs=epochs, experiment_name="trainer-tests",
                                                   **{**SMALL, **config}))


async def test_one_progress_event_per_epoch_then_done_with_model_and_mlflow_run(
        start_service, place_training_file, bus_tools, data_dir: Path):
    collect, publish = bus_tools
    start_service("trainer", {"CTROPS_TRAINER_LEASE_TIMEOUT_S": "3"})  # MLflow on: the local SQLite store
    req = request(place_training_file, epochs=3)
    await publish(Topic.TRAINING_REQUESTED, req, correlation_id=req.run_id)

    events = await collect(RUN_TOPICS, req.run_id, ended, timeout_s=240)
    progress = of(events, Topic.TRAINING_PROGRESS)
    assert [(p.payload.attempt, p.payload.epoch, p.payload.total_epochs) for p in progress] == [
        (1, 1, 3), (1, 2, 3), (1, 3, 3)]
    assert [s.payload.attempt for s in of(events, Topic.TRAINING_STARTED)] == [1]
    (done,) = of(events, Topic.TRAINING_DONE)
    assert done.payload.epochs_run == 3 and 1 <= done.payload.best_epoch <= 3
    # Both models, the champion the better on validation AUC, compared on the same rows.
    models = {m.kind: m for m in done.payload.models}
    assert set(models) == {"lstm", "gbdt"}
    lstm, gbdt = models["lstm"], models["gbdt"]
    assert lstm.metrics == progress[done.payload.best_epoch - 1].payload.metrics  # the LSTM's kept epoch
    assert lstm.best_iteration == done.payload.best_epoch and gbdt.best_iteration >= 1
    champion = "gbdt" if gbdt.metrics.auc > lstm.metrics.auc else "lstm"
    assert done.payload.champion == champion
    assert done.payload.metrics == models[champion].metrics
    assert done.payload.model_location == f"runs/{req.run_id}/model/{champion}"
    comparison = done.payload.comparison
    assert comparison.auc_lstm == pytest.approx(lstm.metrics.auc, abs=1e-12)  # DeLong's AUC = sklearn's
    assert comparison.auc_gbdt == pytest.approx(gbdt.metrics.auc, abs=1e-12)
    assert comparison.ci_low <= comparison.difference <= comparison.ci_high and 0 <= comparison.p_value <= 1
    assert lstm.auc_ci_low <= lstm.metrics.auc <= lstm.auc_ci_high and lstm.val_clicks == comparison.val_clicks
    assert done.payload.batch.requested == 512 and progress[0].payload.batch == done.payload.batch
    model, preprocess = load_model(data_dir / lstm.model_location)
    assert preprocess.max_seq_len == 16 and len(preprocess.feature_columns) == 117
    assert (data_dir / gbdt.model_location / "model.txt").exists()

    # MLflow: one run, tagged with the file and run ids, params, metrics per epoch (step), the model.
    from mlflow.tracking import MlflowClient

    assert done.payload.mlflow_run_id
    client = MlflowClient(f"sqlite:///{data_dir / 'mlflow' / 'mlflow.db'}")
    run = client.get_run(done.payload.mlflow_run_id)
    assert run.info.status == "FINISHED"
    assert run.data.tags["ctrops.file_id"] == req.file_id and run.data.tags["ctrops.run_id"] == req.run_id
    assert run.data.params["epochs"] == "3" and run.data.params["mlp_hidden"] == "16"
    assert run.data.params["data.features"] == "117"
    assert run.data.params["batch.requested"] == "512"
    assert run.data.params["batch.used"] == str(done.payload.batch.used)
    # Where it trained (CTROPS_TRAINER_DEVICE=auto: the GPU when this machine's torch sees one).
    import torch

    assert run.data.params["trainer.device"] == ("cuda" if torch.cuda.is_available() else "cpu")
    # The threads it trained on: the setting (the suite runs its trainers on one thread, conftest.py).
    assert run.data.params["trainer.threads"] == os.environ["CTROPS_TRAINER_THREADS"] and run.data.params["trainer.torch"] == torch.__version__
    assert [m.step for m in client.get_metric_history(run.info.run_id, "auc")] == [1, 2, 3]
    # Both models logged with their flavors, the data as the run's dataset, the champion registered.
    assert run.inputs.dataset_inputs[0].dataset.name == req.file_id
    assert lstm.model_uri.startswith("models:/m-") and gbdt.model_uri.startswith("models:/m-")
    assert done.payload.registered_model == "ctrops-ctr" and done.payload.registered_version == 1
    assert done.payload.model_uri == "models:/ctrops-ctr/1"
    version = client.get_model_version_by_alias("ctrops-ctr", "champion")
    assert int(version.version) == 1 and version.run_id == done.payload.mlflow_run_id
    assert client.get_experiment(run.info.experiment_id).name == "trainer-tests"

    # Redelivered (the same run requested again): the done event again, no second training.
    await publish(Topic.TRAINING_REQUESTED, req, correlation_id=req.run_id)
    events = await collect(RUN_TOPICS, req.run_id, lambda e: len(of(e, Topic.TRAINING_DONE)) == 2)
    assert len(of(events, Topic.TRAINING_PROGRESS)) == 3 and len(of(events, Topic.TRAINING_STARTED)) == 1


async def test_a_corrupt_or_missing_training_file_fails_at_once_with_a_reason(
        start_service, place_training_file, bus_tools, data_dir: Path):
    collect, publish = bus_tools
    start_service("trainer", NO_MLFLOW)
    corrupt = request(place_training_file, epochs=2)
    (data_dir / corrupt.parquet_location).write_bytes(b"PAR1 definitely not a parquet file")
    missing = request(place_training_file, epochs=2)
    (data_dir / missing.parquet_location).unlink()
    for req in (corrupt, missing):
        await publish(Topic.TRAINING_REQUESTED, req, correlation_id=req.run_id)

    for req, words in ((corrupt, "could not be read"), (missing, "missing")):
        events = await collect(RUN_TOPICS, req.run_id, ended)
        (failed,) = of(events, Topic.TRAINING_FAILED)
        assert words in failed.payload.reason and "upload" in failed.payload.reason
        assert not of(events, Topic.TRAINING_PROGRESS) and not of(events, Topic.TRAINING_DONE)


async def test_a_cancel_stops_the_run_as_failed_and_cancelled(start_service, place_training_file, bus_tools):
    collect, publish = bus_tools
    trainer = start_service("trainer", NO_MLFLOW)
    req = request(place_training_file, epochs=200)
    await publish(Topic.TRAINING_REQUESTED, req, correlation_id=req.run_id)
    await collect([Topic.TRAINING_PROGRESS], req.run_id, lambda e: len(e) >= 1)

    await publish(Topic.TRAINING_CANCEL_REQUESTED, TrainingCancelRequested(run_id=req.run_id),
                  correlation_id=req.run_id)
    events = await collect(RUN_TOPICS, req.run_id, ended, timeout_s=60)
    failures = of(events, Topic.TRAINING_FAILED)
    assert len(failures) == 1, trainer.log()[-3000:]
    failed = failures[0]
    assert failed.payload.cancelled and "cancelled" in failed.payload.reason
    assert len(of(events, Topic.TRAINING_PROGRESS)) < 200


def training_processes(trainer) -> list[psutil.Process]:
    """The trainer's training processes: the children of its fork server (``worker_imports``)."""
    servers = [c for c in psutil.Process(trainer.process.pid).children() if "forkserver" in " ".join(c.cmdline())]
    return [process for server in servers for process in server.children()]


async def test_kill_9_of_the_trainer_mid_run_never_leaves_the_run_stuck(
        start_service, place_training_file, bus_tools):
    collect, publish = bus_tools
    first = start_service("trainer", NO_MLFLOW)
    req = request(place_training_file, epochs=8)
    await publish(Topic.TRAINING_REQUESTED, req, correlation_id=req.run_id)
    await collect([Topic.TRAINING_PROGRESS], req.run_id, lambda e: len(e) >= 1)
    assert len(training_processes(first)) == 1, "training runs in a process of its own"
    children = psutil.Process(first.process.pid).children(recursive=True)  # the fork server's too

    first.kill9()
    # The training process dies with the trainer (its fork server ends, then it): nothing keeps training
    # an orphaned run.
    gone, alive = psutil.wait_procs(children, timeout=10)
    assert not alive

    started = time.monotonic()
    start_service("trainer", NO_MLFLOW)
    events = await collect(RUN_TOPICS, req.run_id, ended, timeout_s=240)
    print(f"run ended {time.monotonic() - started:.1f}s after the restart")
    attempts = [s.payload.attempt for s in of(events, Topic.TRAINING_STARTED)]
    assert attempts == [1, 2]  # taken over once the dead trainer's lease expired
    first_start, retry = of(events, Topic.TRAINING_STARTED)
    assert first_start.payload.retry_cause is None and retry.payload.retry_cause == "lease_expired"
    assert "lease" in retry.payload.retry_reason and retry.payload.max_attempts >= 2
    (done,) = of(events, Topic.TRAINING_DONE)
    retried = [p.payload.epoch for p in of(events, Topic.TRAINING_PROGRESS) if p.payload.attempt == 2]
    assert retried == list(range(1, 9))
    assert done.payload.epochs_run == 8


async def test_a_second_trainer_joining_the_group_mid_run_never_trains_the_run_twice(
        start_service, place_training_file, bus_tools):
    collect, publish = bus_tools
    start_service("trainer", NO_MLFLOW)
    req = request(place_training_file, epochs=6)
    await publish(Topic.TRAINING_REQUESTED, req, correlation_id=req.run_id)
    await collect([Topic.TRAINING_PROGRESS], req.run_id, lambda e: len(e) >= 1)

    start_service("trainer", NO_MLFLOW)  # joins the consumer group: partitions are rebalanced mid-run
    events = await collect(RUN_TOPICS, req.run_id, ended, timeout_s=240)
    time.sleep(2)  # a redelivery to the newcomer may still re-announce the result
    events = await collect(RUN_TOPICS, req.run_id, ended)
    assert [s.payload.attempt for s in of(events, Topic.TRAINING_STARTED)] == [1]
    assert [p.payload.epoch for p in of(events, Topic.TRAINING_PROGRESS)] == [1, 2, 3, 4, 5, 6]
    assert not of(events, Topic.TRAINING_FAILED)
    dones = of(events, Topic.TRAINING_DONE)
    assert dones and all(d.payload == dones[0].payload for d in dones)  # re-announced, never retrained


async def test_a_training_process_that_dies_is_retried_by_the_same_trainer(
        start_service, place_training_file, bus_tools):
    collect, publish = bus_tools
    trainer = start_service("trainer", NO_MLFLOW)
    req = request(place_training_file, epochs=8)  # seconds of training left after the first epoch to die in
    await publish(Topic.TRAINING_REQUESTED, req, correlation_id=req.run_id)
    await collect([Topic.TRAINING_PROGRESS], req.run_id, lambda e: len(e) >= 1)
    training = training_processes(trainer)
    assert len(training) == 1
    training[0].kill()  # as the kernel's OOM killer would

    events = await collect(RUN_TOPICS, req.run_id, ended, timeout_s=180)
    seen = [(e.type.value, getattr(e.payload, "attempt", None), getattr(e.payload, "epoch", None)) for e in events]
    assert [s.payload.attempt for s in of(events, Topic.TRAINING_STARTED)] == [1, 2], (seen, trainer.log()[-3000:])
    first_start, retry = of(events, Topic.TRAINING_STARTED)
    assert (first_start.payload.retry_cause, first_start.payload.retry_reason) == (None, None)
    assert retry.payload.retry_cause == "died" and "code -9" in retry.payload.retry_reason  # why, for the client
    assert retry.payload.max_attempts == first_start.payload.max_attempts >= 2
    assert [p.payload.epoch for p in of(events, Topic.TRAINING_PROGRESS) if p.payload.attempt == 2] == \
        list(range(1, 9))
    assert len(of(events, Topic.TRAINING_DONE)) == 1
    assert trainer.process.poll() is None  # the service itself lived on
