"""MLflow logging of a completed run, on a temp SQLite store: both models with their flavors,
signature and input example, the training file as the dataset, the champion registered as a
new version with the alias moved, and failures that never stop the run from finishing."""

from __future__ import annotations

import asyncio
import hashlib
import json
from pathlib import Path

import lightgbm as lgb
import numpy as np
import pyarrow.parquet as pq
import pytest
import torch

from ctrops_common.events import TrainingConfig
from ctrops_common.gbdt import GbdtModel, SeqFeatureSpec, seq_features
from ctrops_common.ml import Preprocess, TabularSeqModel, save_model
from ctrops_common.model_loading import METADATA_KEY, load_ctr_model, load_ctr_model_uri
from ctrops_trainer.settings import TrainerSettings
from ctrops_trainer.tracking import RunTracking, Tracking, TrainingDataset, example_inputs

WINDOW = 16


def _windows(parquet: Path) -> tuple[np.ndarray, np.ndarray]:
    sequences = pq.read_table(parquet, columns=["seq"]).column(0).to_pylist()
    tokens = np.zeros((len(sequences), WINDOW))
    lengths = np.zeros(len(sequences), dtype=np.int64)
    for i, seq in enumerate(sequences):
        recent = (seq or [])[-WINDOW:]
        tokens[i, :len(recent)] = recent
        lengths[i] = len(recent)
    return tokens, lengths


@pytest.fixture(scope="module")
def models(generated, tmp_path_factory) -> dict[str, Path]:
    """A run's two model folders (an untrained embedding LSTM and a small fitted LightGBM) on the generated file."""
    parquet = generated[0]
    table = pq.read_table(parquet)
    features = [c for c in table.column_names if c not in ("clicked", "seq")][:12]
    x = np.column_stack([table.column(c).to_numpy(zero_copy_only=False) for c in features]).astype(np.float64)
    fill = np.nan_to_num(np.nanmedian(x, axis=0)).tolist()
    y = table.column("clicked").to_numpy()
    root = tmp_path_factory.mktemp("run") / "model"
    torch.manual_seed(0)
    lstm = TabularSeqModel(len(features), 8, [16], 0.0, seq_encoding="embedding", seq_vocab=256,
                           seq_embedding_dim=4).eval()
    save_model(root / "lstm", lstm, Preprocess(features, fill, WINDOW, 1.0, 8, [16], 0.0, base_rate=float(y.mean()),
                                              train_rate=0.3, kind="lstm", seq_encoding="embedding", seq_vocab=256,
                                              seq_embedding_dim=4))
    spec = SeqFeatureSpec(buckets=8, bigram_buckets=8, vocab=(1, 2))
    tokens, lengths = _windows(parquet)
    booster = lgb.train({"objective": "binary", "verbose": -1, "num_threads": 1, "num_leaves": 7},
                        lgb.Dataset(np.column_stack([x, seq_features(tokens, lengths, spec)]), y), 8)
    gbdt_pre = Preprocess(features, fill, WINDOW, 1.0, 0, [], 0.0, base_rate=float(y.mean()),
                          train_rate=float(y.mean()), kind="gbdt", extra={"seq_features": spec.to_json()})
    GbdtModel(gbdt_pre, booster, spec.names()).save(root / "gbdt")
    return {"lstm": root / "lstm", "gbdt": root / "gbdt"}


def _settings(data_dir: Path) -> TrainerSettings:
    return TrainerSettings(data_dir=data_dir, mlflow_tracking_uri=None)


def _run(tracking: Tracking, run_id: str, **complete) -> RunTracking:
    tracker = RunTracking(tracking)
    tracker.begin(experiment="tracking-tests", run_id=run_id, file_id="file-1", attempt=1,
                  config=TrainingConfig(epochs=1))
    tracker.complete(**complete)
    assert asyncio.run(tracker.flush(120)) is not None
    return tracker


def test_a_completed_run_logs_both_flavors_the_dataset_and_registers_the_champion(
        models, generated, data_dir: Path):
    from mlflow import MlflowClient
    from mlflow.models import get_model_info

    parquet = generated[0]
    tracking = Tracking(_settings(data_dir))
    dataset = TrainingDataset("file-1", parquet)
    first = _run(tracking, "run-1", models=models, champion="gbdt", dataset=dataset,
                 metrics={"lstm": {"auc": 0.61, "log_loss": 0.3}, "gbdt": {"auc": 0.71, "ap": None}})
    logged = first.logged
    assert logged.model_uris.keys() == {"lstm", "gbdt"}
    assert logged.registered_model == "ctrops-ctr" and logged.registered_version == 1
    assert logged.model_uri == "models:/ctrops-ctr/1"
    print(f"\nMLflow logging of one run (2 models, dataset, registration): {logged.seconds:.2f} s")

    client = MlflowClient(tracking.uri)
    run = client.get_run(first.mlflow_run_id)
    assert run.info.status == "FINISHED"
    assert run.data.tags["ctrops.champion"] == "gbdt" and run.data.tags["ctrops.model_uri"] == logged.model_uri

    # The dataset: named by the file id, the digest of its bytes, its rows.
    (dataset_input,) = run.inputs.dataset_inputs
    with open(parquet, "rb") as fh:
        assert dataset_input.dataset.digest == hashlib.file_digest(fh, "sha256").hexdigest()[:32]
    assert dataset_input.dataset.name == "file-1"
    assert json.loads(dataset_input.dataset.profile)["num_rows"] == pq.ParquetFile(parquet).metadata.num_rows == 8000
    assert {t.key: t.value for t in dataset_input.tags}["mlflow.data.context"] == "training"

    # Each model: its flavor, a signature naming its inputs, an input example, preprocess.json in the metadata.
    for kind, flavor in (("lstm", "pytorch"), ("gbdt", "lightgbm")):
        info = get_model_info(logged.model_uris[kind])
        assert flavor in info.flavors and info.run_id == first.mlflow_run_id
        names = info.signature.inputs.input_names()
        preprocess = json.loads((models[kind] / "preprocess.json").read_text())
        assert names[:12] == preprocess["feature_columns"]
        assert info.saved_input_example_info["type"] == "dataframe"
        assert info.metadata[METADATA_KEY]["kind"] == kind
        assert info.metadata[METADATA_KEY]["preprocess"] == preprocess
    assert get_model_info(logged.model_uris["lstm"]).signature.inputs.input_names()[-2:] == ["seq_16", "seq_len"]
    gbdt_inputs = get_model_info(logged.model_uris["gbdt"]).signature.inputs
    assert "seq_length" in gbdt_inputs.input_names() and not any(c.required for c in gbdt_inputs.inputs)  # NaN ok
    # As an MLflow user would: pyfunc scores the logged example rows (click probabilities).
    import mlflow.pyfunc

    for uri in logged.model_uris.values():
        pyfunc = mlflow.pyfunc.load_model(uri)
        p = np.asarray(pyfunc.predict(pyfunc.input_example)).ravel()
        assert p.shape == (5,) and np.all((p > 0) & (p < 1))
    gbdt_metrics = {m.key: m for m in client.get_logged_model(logged.model_uris["gbdt"].split("/")[-1]).metrics}
    assert gbdt_metrics["gbdt.auc"].value == 0.71 and "gbdt.ap" not in gbdt_metrics

    # The registered version is the GBDT's logged model, alias champion on it; it loads back whole.
    version = client.get_model_version("ctrops-ctr", "1")
    assert version.run_id == first.mlflow_run_id and version.tags["ctrops.run_id"] == "run-1"
    assert int(client.get_model_version_by_alias("ctrops-ctr", "champion").version) == 1
    loaded = load_ctr_model_uri("models:/ctrops-ctr@champion", tracking.uri)
    local = load_ctr_model(models["gbdt"])
    x_tab, tokens, lengths = example_inputs(parquet, local.preprocess)
    assert loaded.kind == "gbdt" and loaded.version == 1
    assert np.array_equal(loaded.logits(x_tab.astype(np.float32), loaded.encode(tokens, lengths)),
                          local.logits(x_tab.astype(np.float32), local.encode(tokens, lengths)))

    # A second run whose champion is the LSTM: version 2, the alias moves, version 1 stays as it was.
    second = _run(tracking, "run-2", models=models, champion="lstm", dataset=dataset)
    assert second.logged.registered_version == 2 and second.logged.model_uri == "models:/ctrops-ctr/2"
    assert int(client.get_model_version_by_alias("ctrops-ctr", "champion").version) == 2
    kept = client.get_model_version("ctrops-ctr", "1")
    assert kept.run_id == first.mlflow_run_id and kept.tags["ctrops.kind"] == "gbdt"
    assert sorted(int(v.version) for v in client.search_model_versions("name='ctrops-ctr'")) == [1, 2]
    assert load_ctr_model_uri("models:/ctrops-ctr/2", tracking.uri).kind == "lstm"
    # Both runs' models are in the run's experiment, under the store's artifact root (not ./mlruns).
    assert len(list((data_dir / "mlflow" / "artifacts").rglob("MLmodel"))) == 4
    tracking.close()


def test_a_model_that_cannot_be_logged_leaves_the_run_finished_without_a_registered_version(
        models, generated, data_dir: Path, tmp_path: Path):
    from mlflow import MlflowClient

    broken = tmp_path / "gbdt"
    broken.mkdir()
    (broken / "preprocess.json").write_text(models["gbdt"].joinpath("preprocess.json").read_text())  # no model.txt
    tracking = Tracking(_settings(data_dir))
    tracker = _run(tracking, "run-3", models={"lstm": models["lstm"], "gbdt": broken}, champion="gbdt",
                   dataset=TrainingDataset("file-1", generated[0]))
    assert tracker.logged.model_uris.keys() == {"lstm"}  # the LSTM was still logged
    assert tracker.logged.model_uri is None and tracker.logged.registered_version is None
    client = MlflowClient(tracking.uri)
    assert client.get_run(tracker.mlflow_run_id).info.status == "FINISHED"
    assert client.search_registered_models() == []
    tracking.close()


def test_example_rows_are_the_files_first_rows_in_model_form(generated, models):
    preprocess = load_ctr_model(models["lstm"]).preprocess
    x_tab, tokens, lengths = example_inputs(generated[0], preprocess, rows=3)
    table = pq.read_table(generated[0]).slice(0, 3)
    first = table.column(preprocess.feature_columns[0]).to_numpy(zero_copy_only=False)
    expected = np.where(np.isfinite(first), first, preprocess.fill_values[0])
    assert x_tab.shape == (3, 12) and np.allclose(x_tab[:, 0], expected) and np.isfinite(x_tab).all()
    for i, seq in enumerate(table.column("seq").to_pylist()):
        recent = seq[-WINDOW:]
        assert lengths[i] == len(recent) and tokens[i, :len(recent)].tolist() == recent
        assert not tokens[i, len(recent):].any()


def test_a_retrain_that_is_not_promoted_is_registered_but_leaves_the_alias_where_it_was(
        models, generated, data_dir: Path):
    from mlflow import MlflowClient

    tracking = Tracking(_settings(data_dir))
    dataset = TrainingDataset("file-1", generated[0])
    first = _run(tracking, "run-1", models=models, champion="gbdt", dataset=dataset)
    # A retrain of run-1 whose champion lost: version 2 exists, tagged, but the alias stays on 1.
    tracker = RunTracking(tracking)
    tracker.begin(experiment="tracking-tests", run_id="run-2", file_id="file-2", attempt=1,
                  config=TrainingConfig(epochs=1), replaces="run-1")
    tracker.complete(models=models, champion="lstm", dataset=dataset, tags={"ctrops.replaces": "run-1"},
                     promote=False)
    assert asyncio.run(tracker.flush(120)) is not None
    assert tracker.logged.registered_version == 2 and tracker.logged.model_uri == "models:/ctrops-ctr/2"
    assert tracker.logged.promoted is False

    client = MlflowClient(tracking.uri)
    assert int(client.get_model_version_by_alias("ctrops-ctr", "champion").version) == 1
    lost = client.get_model_version("ctrops-ctr", "2")
    assert lost.tags["ctrops.promoted"] == "false" and lost.tags["ctrops.replaces"] == "run-1"
    assert lost.tags["ctrops.run_id"] == "run-2" and lost.aliases == []
    assert client.get_model_version("ctrops-ctr", "1").tags["ctrops.promoted"] == "true"
    run = client.get_run(tracker.mlflow_run_id)
    assert run.data.tags["ctrops.replaces"] == "run-1" and run.data.tags["ctrops.promoted"] == "false"
    assert run.info.status == "FINISHED"
    assert "ctrops.replaces" not in client.get_run(first.mlflow_run_id).data.tags

    # A retrain of run-1 that won: the alias moves to its version.
    third = RunTracking(tracking)
    third.begin(experiment="tracking-tests", run_id="run-3", file_id="file-3", attempt=1,
                config=TrainingConfig(epochs=1), replaces="run-1")
    third.complete(models=models, champion="gbdt", dataset=dataset, tags={"ctrops.replaces": "run-1"}, promote=True)
    assert asyncio.run(third.flush(120)) is not None
    assert third.logged.registered_version == 3
    assert int(client.get_model_version_by_alias("ctrops-ctr", "champion").version) == 3
    assert client.get_model_version("ctrops-ctr", "3").tags["ctrops.promoted"] == "true"
    tracking.close()
