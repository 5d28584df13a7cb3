"""A small trained run (both model kinds) on generated data, shared by the scorer's tests.

The trainer builds real models; these tests must not depend on it, so they fit a tiny
LSTM+MLP (a few hundred steps on one thread) and a small LightGBM on every feature column
of a 3,000-row generated CSV, and keep the CSV itself (its cells are the JSON values an
online request sends) beside its training-layout Parquet (what ingest writes for a batch).
``offline`` holds each model's predictions on the Parquet rows, computed the way the
explainer scores (``DataFile`` rows -> ``LoadedModel``), the reference every scoring path
must equal.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch

from ctrops_common.dataset import SEQUENCE, TARGET, parquet_path
from ctrops_common.datagen import generate
from ctrops_common.events import ModelMetrics, ModelResult, TrainingConfig, TrainingDone, new_id
from ctrops_common.gbdt import GbdtModel, SeqFeatureSpec, learn_vocab, seq_features
from ctrops_common.ml import Preprocess, TabularSeqModel, save_model
from ctrops_common.model_inputs import DataFile
from ctrops_common.model_loading import LoadedModel, load_ctr_model
from ctrops_common.storage import FileStore
from ctrops_common.testdata import csv_to_training_table

ROWS = 3000


@dataclass
class TrainedRun:
    csv: Path
    parquet: Path
    folders: dict[str, Path]  # kind -> model folder
    features: list[str]
    offline: dict[str, np.ndarray]  # kind -> probabilities of every Parquet row

    def loaded(self, kind: str) -> LoadedModel:
        return load_ctr_model(self.folders[kind])


def _tiny_lstm(parquet: Path, features: list[str], folder: Path) -> None:
    torch.manual_seed(0)
    table = pq.read_table(parquet, columns=features + [TARGET])
    values = np.column_stack([table.column(c).to_numpy(zero_copy_only=False) for c in features])
    rate = float(np.asarray(table.column(TARGET)).mean())
    preprocess = Preprocess(
        feature_columns=features, fill_values=np.nan_to_num(np.nanmedian(values, axis=0)).tolist(),
        max_seq_len=16, seq_scale=500.0, lstm_hidden=8, mlp_hidden=[32], dropout=0.1,
        base_rate=rate / 2, train_rate=rate,  # as if trained on down-sampled rows: the correction matters
    )
    rows = DataFile(parquet, preprocess).rows(np.arange(table.num_rows))
    model = TabularSeqModel(len(features), 8, [32], 0.1)
    optimiser = torch.optim.Adam(model.parameters(), lr=5e-3)
    x, seq = torch.from_numpy(rows.x_tab), torch.from_numpy(rows.seq)
    lengths, y = torch.from_numpy(rows.lengths), torch.from_numpy(rows.clicked.astype(np.float32))
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        model.train()
        for start in range(0, len(y), 256):
            optimiser.zero_grad()
            loss = torch.nn.functional.binary_cross_entropy_with_logits(
                model(x[start:start + 256], seq[start:start + 256], lengths[start:start + 256]), y[start:start + 256])
            loss.backward()
            optimiser.step()
    finally:
        torch.set_num_threads(previous)
    save_model(folder, model.eval(), preprocess)


def _tiny_gbdt(parquet: Path, features: list[str], folder: Path) -> None:
    import lightgbm as lgb

    table = pq.read_table(parquet, columns=features + [TARGET])
    values = np.column_stack([table.column(c).to_numpy(zero_copy_only=False) for c in features])
    rate = float(np.asarray(table.column(TARGET)).mean())
    preprocess = Preprocess(
        feature_columns=features, fill_values=np.nan_to_num(np.nanmedian(values, axis=0)).tolist(),
        max_seq_len=16, seq_scale=1.0, lstm_hidden=0, mlp_hidden=[], dropout=0.0, base_rate=rate, train_rate=rate,
        kind="gbdt",
    )
    rows = DataFile(parquet, preprocess).rows(np.arange(table.num_rows))
    spec = SeqFeatureSpec(vocab=learn_vocab(rows.seq, rows.lengths, 16, 16))
    preprocess.extra = {"seq_features": spec.to_json()}
    booster = lgb.train({"objective": "binary", "learning_rate": 0.1, "num_leaves": 15, "verbose": -1,
                         "num_threads": 1, "seed": 0},
                        lgb.Dataset(np.column_stack([rows.x_tab, seq_features(rows.seq, rows.lengths, spec)]),
                                    rows.clicked), 30)
    GbdtModel(preprocess, booster, spec.names()).save(folder)


def offline_predictions(folder: Path, parquet: Path) -> np.ndarray:
    """The explainer's way: the whole file's rows through ``LoadedModel`` (no scorer code)."""
    model = load_ctr_model(folder)
    data = DataFile(parquet, model.preprocess, require_labels=False)
    rows = data.rows(np.arange(len(data)))
    return model.probability(model.logits(rows.x_tab, model.encode(rows.seq, rows.lengths)))


@pytest.fixture(scope="session")
def trained(tmp_path_factory: pytest.TempPathFactory) -> TrainedRun:
    root = tmp_path_factory.mktemp("scorer-run")
    csv = root / "clicks.csv"
    generate(csv, ROWS, seed=11, ctr=0.2)
    parquet = root / "data.parquet"
    pq.write_table(csv_to_training_table(csv), parquet)
    features = [c for c in pq.read_schema(parquet).names if c not in (TARGET, SEQUENCE)]
    folders = {"lstm": root / "model" / "lstm", "gbdt": root / "model" / "gbdt"}
    _tiny_lstm(parquet, features, folders["lstm"])
    _tiny_gbdt(parquet, features, folders["gbdt"])
    offline = {kind: offline_predictions(folder, parquet) for kind, folder in folders.items()}
    return TrainedRun(csv, parquet, folders, features, offline)


def training_done(run_id: str, file_id: str, *, champion: str = "gbdt", promoted: bool = True,
                  kinds: tuple[str, ...] = ("lstm", "gbdt")) -> TrainingDone:
    labels = {"lstm": "LSTM+MLP", "gbdt": "LightGBM"}
    models = [
        ModelResult(kind=kind, label=labels[kind], model_location=f"runs/{run_id}/model/{kind}",
                    metrics=ModelMetrics(val_loss=0.4, val_accuracy=0.8, auc=0.7, threshold=0.3),
                    auc_ci_low=0.68, auc_ci_high=0.72, best_iteration=1, iterations_run=1, duration_s=1.0)
        for kind in kinds
    ]
    return TrainingDone(
        run_id=run_id, file_id=file_id, model_location=f"runs/{run_id}/model/{champion}",
        metrics=ModelMetrics(val_loss=0.4, val_accuracy=0.8, auc=0.7), best_epoch=1, epochs_run=1, duration_s=1.0,
        experiment_name="test", config=TrainingConfig(), champion=champion, models=models, promoted=promoted,
    )


@pytest.fixture
def place_run(trained: TrainedRun):
    """Factory: put the trained run where the trainer and ingest would have -> its TrainingDone."""

    def place(store: FileStore, *, champion: str = "gbdt", promoted: bool = True,
              kinds: tuple[str, ...] = ("lstm", "gbdt")) -> TrainingDone:
        run_id, file_id = new_id(), new_id()
        target = store.path(parquet_path(file_id))
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(trained.parquet, target)
        for kind in kinds:
            shutil.copytree(trained.folders[kind], store.path(f"runs/{run_id}/model/{kind}"))
        return training_done(run_id, file_id, champion=champion, promoted=promoted, kinds=kinds)

    return place


@pytest.fixture(scope="session")
def make_done():
    """``training_done`` for test modules (they cannot import conftest under --import-mode=importlib)."""
    return training_done
