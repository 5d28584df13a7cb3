"""POST /api/train/{run_id}/retrain on the in-memory bus: what it publishes, and what it refuses."""

from __future__ import annotations

import pytest

from ctrops_common.events import (
    DataInfo,
    ModelMetrics,
    FileUploaded,
    ModelResult,
    Topic,
    TrainingConfig,
    TrainingDone,
    TrainingRequested,
    Validation,
    new_id,
)

pytestmark = pytest.mark.inmemory


def champion_run(run_id: str) -> TrainingDone:
    metrics = ModelMetrics(val_loss=0.09, val_accuracy=0.93, auc=0.74, logloss=0.088, f1=0.2)
    gbdt = ModelResult(kind="gbdt", label="LightGBM", metrics=metrics, model_location=f"runs/{run_id}/model/gbdt",
                       best_iteration=1, iterations_run=1, duration_s=1.0)
    return TrainingDone(run_id=run_id, file_id=new_id(), model_location=f"runs/{run_id}/model/gbdt", metrics=metrics,
                        best_epoch=1, epochs_run=1, duration_s=5.0, experiment_name="exp-retrain",
                        config=TrainingConfig(epochs=2, learning_rate=0.003, dropout=0.3), champion="gbdt",
                        models=[gbdt])


def uploaded(file_id: str, *, labelled: bool = True, valid: bool = True, clicks: int = 40,
             purpose: str = "training") -> FileUploaded:
    return FileUploaded(
        file_id=file_id, filename=f"{file_id[:6]}.csv", location=f"uploads/{file_id}/original.csv",
        parquet_location=f"files/{file_id}/data.parquet" if valid else None, encoding="utf-8", rows=2000,
        columns=["clicked", "seq"] if labelled else ["seq"], validation=Validation(is_valid=valid),
        info=DataInfo(total_rows=2000, total_columns=2, missing_values=0, missing_percentage=0.0, duplicate_rows=0,
                      clicked_one=clicks if labelled else 0, clicked_zero=2000 - clicks if labelled else 0,
                      ctr=2.0 if labelled else 0.0),
        preview=[], column_descriptions={}, purpose=purpose, labelled=labelled,
    )


def requested(gateway, run_id: str) -> TrainingRequested:
    """The ``training.requested`` the gateway published for ``run_id`` (one, keyed by the run)."""
    [event] = [e for e in gateway.events(Topic.TRAINING_REQUESTED) if e.payload.run_id == run_id]
    assert event.correlation_id == run_id
    return event.payload


def test_retrain_publishes_the_same_config_on_the_newest_labelled_upload_linked_to_the_old_run(memory_gateway):
    gateway_client, publish = memory_gateway.client, memory_gateway.publish
    views = memory_gateway.state.views
    old_run, training_file, march, single_class, unlabelled = (new_id() for _ in range(5))
    done: TrainingDone = champion_run(old_run)
    publish(
        (Topic.FILE_UPLOADED, uploaded(training_file), training_file),
        (Topic.TRAINING_DONE, done, old_run),
    )
    assert gateway_client.get(f"/api/train/status/{old_run}").status_code == 200
    # Newer uploads, in order: a labelled monthly file scored for monitoring (the one to use), then two that
    # cannot be trained on (one class only; no labels at all).
    publish((Topic.FILE_UPLOADED, uploaded(march, purpose="scoring"), march))
    assert views.file_record(march) is not None
    publish((Topic.FILE_UPLOADED, uploaded(single_class, clicks=0, purpose="scoring"), single_class))
    assert views.file_record(single_class) is not None
    publish((Topic.FILE_UPLOADED, uploaded(unlabelled, labelled=False, purpose="scoring"), unlabelled))
    assert views.file_record(unlabelled) is not None

    response = gateway_client.post("/api/train/latest/retrain")  # no body at all: the frontend's button
    assert response.status_code == 200, response.text
    body = response.json()
    new_run = body["run_id"]
    assert body["runId"] == new_run != old_run and body["status"] == "training"
    assert (body["file_id"], body["fileId"], body["replaces"]) == (march, march, old_run)
    assert body["total_epochs"] == done.config.epochs
    sent = requested(memory_gateway, new_run)
    assert (sent.replaces, sent.replaces_model_location) == (old_run, done.model_location)
    assert sent.config == done.config and sent.file_id == march
    assert sent.parquet_location == f"files/{march}/data.parquet"
    status = gateway_client.get(f"/api/train/status/{new_run}").json()  # readable at once, linked
    assert status["status"] == "training" and status["replaces"] == old_run

    chosen = gateway_client.post(f"/api/train/{old_run}/retrain", json={"fileId": training_file})
    assert chosen.status_code == 200, chosen.text
    assert requested(memory_gateway, chosen.json()["run_id"]).file_id == training_file


@pytest.fixture
def unlimited_trainings(monkeypatch):
    """More retrain calls than CTROPS_RATE_LIMIT_TRAININGS_PER_MIN allows (retrains count as trainings)."""
    monkeypatch.setenv("CTROPS_RATE_LIMIT_TRAININGS_PER_MIN", "0")


def test_retrain_refusals_say_what_is_wrong(unlimited_trainings, memory_gateway):
    gateway_client, publish = memory_gateway.client, memory_gateway.publish
    old_run, running, unlabelled = new_id(), new_id(), new_id()
    assert gateway_client.post("/api/train/latest/retrain").status_code == 404
    assert "demo-run" in gateway_client.post("/api/train/demo-run/retrain").json()["detail"]
    unknown = gateway_client.post(f"/api/train/{new_id()}/retrain")
    assert unknown.status_code == 404 and "unknown run id" in unknown.json()["detail"]

    publish((Topic.TRAINING_DONE, champion_run(old_run), old_run),
            (Topic.TRAINING_REQUESTED, TrainingRequested(run_id=running, file_id=new_id(), parquet_location="x",
                                                         config=TrainingConfig()), running),
            (Topic.FILE_UPLOADED, uploaded(unlabelled, labelled=False, purpose="scoring"), unlabelled))
    assert gateway_client.get(f"/api/train/status/{running}").status_code == 200
    assert gateway_client.get(f"/api/train/status/{old_run}").status_code == 200
    assert memory_gateway.state.views.file_record(unlabelled) is not None
    not_done = gateway_client.post(f"/api/train/{running}/retrain")
    assert not_done.status_code == 409 and "still training" in not_done.json()["detail"]
    nothing = gateway_client.post(f"/api/train/{old_run}/retrain")
    assert nothing.status_code == 409 and "no valid labelled upload" in nothing.json()["detail"]
    given = gateway_client.post(f"/api/train/{old_run}/retrain", json={"fileId": unlabelled})
    assert given.status_code == 422 and "no 'clicked' column" in given.json()["detail"]
    missing = gateway_client.post(f"/api/train/{old_run}/retrain", json={"file_id": new_id()})
    assert missing.status_code == 404 and "unknown fileId" in missing.json()["detail"]
