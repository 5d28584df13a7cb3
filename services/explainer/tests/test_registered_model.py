"""The explainer explains the model training.done names: the champion's registered version, loaded
through the MLflow store the trainer logged it in (the trainer's own tracking code, on a temp SQLite
store), or the file store's folder without one; either kind of model (LSTM+MLP, LightGBM)."""

from __future__ import annotations

import asyncio
import shutil
from dataclasses import replace
from pathlib import Path

import pytest

from ctrops_common.dataset import parquet_path
from ctrops_common.events import ModelMetrics, TrainingConfig, TrainingDone, new_id
from ctrops_common.storage import FileStore
from ctrops_explainer.handlers import explain_run
from ctrops_explainer.pipeline import ExplainConfig, explain
from ctrops_explainer.settings import ExplainerSettings

SMALL = ExplainConfig(sample_rows=24, lime_samples=400, background_rows=400, seq_bank_size=64, bootstrap=200,
                      permutation_repeats=1, eval_rows=1500, top_k=8, correlation_rows=3000, torch_threads=1)


def _done(run_id: str, file_id: str, kind: str, model_uri: str | None = None) -> TrainingDone:
    return TrainingDone(
        run_id=run_id, file_id=file_id, model_location=f"runs/{run_id}/model/{kind}",
        metrics=ModelMetrics(train_loss=0.5, val_loss=0.5, train_accuracy=0.7, val_accuracy=0.7),
        best_epoch=1, epochs_run=1, duration_s=1.0, experiment_name="explainer-tests", config=TrainingConfig(),
        champion=kind, model_uri=model_uri,
    )


@pytest.fixture
def stored_run(data_dir: Path, planted_model, planted_gbdt) -> tuple[FileStore, str, str]:
    """Both models of one run and its data where the trainer and ingest put them."""
    store = FileStore(data_dir)
    run_id, file_id = new_id(), new_id()
    data = store.path(parquet_path(file_id))
    data.parent.mkdir(parents=True)
    shutil.copy(planted_model.parquet, data)
    shutil.copytree(planted_model.model_folder, store.path(f"runs/{run_id}/model/lstm"))
    shutil.copytree(planted_gbdt.model_folder, store.path(f"runs/{run_id}/model/gbdt"))
    return store, run_id, file_id


def _register(data_dir: Path, store: FileStore, run_id: str, file_id: str, champion: str):
    """What the trainer does when a run completes: log both models, register the champion."""
    from ctrops_trainer.settings import TrainerSettings
    from ctrops_trainer.tracking import RunTracking, Tracking, TrainingDataset

    tracking = Tracking(TrainerSettings(data_dir=data_dir, mlflow_tracking_uri=None))
    try:
        tracker = RunTracking(tracking)
        tracker.begin(experiment="explainer-tests", run_id=run_id, file_id=file_id, attempt=1, config=TrainingConfig())
        tracker.complete(models={k: store.path(f"runs/{run_id}/model/{k}") for k in ("lstm", "gbdt")},
                         champion=champion, dataset=TrainingDataset(file_id, store.path(parquet_path(file_id))))
        asyncio.run(tracker.flush(120))
        return tracker
    finally:
        tracking.close()


def test_the_registered_champion_is_loaded_through_mlflow_and_its_version_recorded(
        data_dir: Path, stored_run, planted_model, monkeypatch):
    from mlflow import MlflowClient

    store, run_id, file_id = stored_run
    first = _register(data_dir, store, run_id, file_id, champion="gbdt")
    assert first.logged.model_uri == "models:/ctrops-ctr/1"
    # A second run of the same data, the LSTM its champion: version 2 takes the alias.
    second = _register(data_dir, store, run_id, file_id, champion="lstm")
    assert second.logged.model_uri == "models:/ctrops-ctr/2"

    # The explainer's own settings resolve the trainer's default store (DATA_DIR/mlflow).
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("CTROPS_MLFLOW_TRACKING_URI", raising=False)
    tracking_uri = ExplainerSettings().tracking_uri()
    # The folder the event names is removed: the model can only have come from MLflow.
    shutil.rmtree(store.path(f"runs/{run_id}/model/gbdt"))
    result = explain_run(store, _done(run_id, file_id, "gbdt", "models:/ctrops-ctr/1"), SMALL, tracking_uri)
    assert (result.model_uri, result.model_version, result.model_kind) == ("models:/ctrops-ctr/1", 1, "gbdt")
    assert result.model_note is None
    # The version the explainer recorded is the first run's registered GBDT.
    version = MlflowClient(tracking_uri).get_model_version("ctrops-ctr", str(result.model_version))
    assert version.run_id == first.mlflow_run_id and version.tags["ctrops.kind"] == "gbdt"
    ranking = [f.feature for f in result.features]
    assert ranking[0] == "history_a_1" and len(set(ranking[:6]) & set(planted_model.planted)) >= 5, ranking[:8]

    latest = explain_run(store, _done(run_id, file_id, "lstm", "models:/ctrops-ctr@champion"), SMALL, tracking_uri)
    assert (latest.model_uri, latest.model_version, latest.model_kind) == \
        ("models:/ctrops-ctr@champion", 2, "lstm")


def test_without_a_model_uri_or_when_mlflow_fails_the_file_store_folder_is_explained(data_dir: Path, stored_run):
    store, run_id, file_id = stored_run
    plain = explain_run(store, _done(run_id, file_id, "lstm"), SMALL, "sqlite:///" + str(data_dir / "none.db"))
    assert (plain.model_uri, plain.model_version, plain.model_kind) == (None, None, "lstm")
    assert plain.model_location == f"runs/{run_id}/model/lstm"
    # A registry without that model: the folder is explained, and the result says why.
    missing = explain_run(store, _done(run_id, file_id, "gbdt", "models:/ctrops-ctr/9"), SMALL,
                          "sqlite:///" + str(data_dir / "empty.db"))
    assert missing.model_uri is None and missing.model_kind == "gbdt"
    assert "models:/ctrops-ctr/9 could not be loaded through MLflow" in missing.model_note


def test_both_kinds_explain_the_planted_signal(planted_model, planted_gbdt):
    for model in (planted_model, planted_gbdt):
        result = explain(model.loaded, model.parquet, replace(SMALL, sample_rows=40, lime_samples=800))
        ranking = [f["feature"] for f in result["features"]]
        assert result["model_kind"] == model.preprocess.kind
        # The tiny LSTM learns age_group and l_feat_14 weakly (test_pipeline.py): the four it learns well lead.
        strong = set(model.planted) if model.preprocess.kind == "gbdt" else {"history_a_1", "feat_a_3", "hour", "seq"}
        assert strong <= set(ranking[:6]), (model.preprocess.kind, ranking[:8])
        assert result["permutation"]["features"][0]["feature"] == "history_a_1"
