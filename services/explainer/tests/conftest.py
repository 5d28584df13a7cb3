"""A small trained model on generated data with a planted signal, shared by the explainer's tests.

The trainer service builds the real model; these tests must not depend on it, so they
fit a tiny ``TabularSeqModel`` themselves: the generator's CSV is turned into the
training layout (``clicked`` int8, ``seq`` list<int32>, features float64), and the model
is trained for a few epochs on one thread. The click rate is raised to 30% and the
model sees the planted columns plus ten unrelated ones, so a few seconds of training on
2 shared cores learn the planted effects (including the ``seq`` tokens).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest
import torch

from ctrops_common.datagen import generate
from ctrops_common.gbdt import GbdtModel, SeqFeatureSpec, learn_vocab, seq_features
from ctrops_common.ml import Preprocess, TabularSeqModel, save_model
from ctrops_common.model_loading import LoadedModel
from ctrops_common.splits import training_rows
from ctrops_common.model_inputs import DataFile

ROWS = 16_000
UNRELATED = ["gender", "day_of_week", "inventory_id", "l_feat_1", "l_feat_3", "feat_a_1", "feat_b_2",
             "history_a_2", "history_b_1", "history_b_25", "feat_e_1"]


def csv_to_training_layout(csv: Path, out: Path) -> None:
    """What ingest does, minimally: seq text -> list<int32>, clicked -> int8, the rest -> float64."""
    table = pacsv.read_csv(csv, convert_options=pacsv.ConvertOptions(column_types={"seq": pa.string()}))
    columns = []
    for name in table.column_names:
        column = table.column(name)
        if name == "seq":
            column = pc.cast(pc.split_pattern(column, ","), pa.list_(pa.int32()))
        elif name == "clicked":
            column = column.cast(pa.int8())
        else:
            column = column.cast(pa.float64())
        columns.append(column)
    pq.write_table(pa.table(columns, names=table.column_names), out)


def fitted_rows(parquet: Path, features: list[str], rows: np.ndarray | None
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(feature values, clicked, row indices) of the rows a tiny model is fitted on (all when None)."""
    raw = pq.read_table(parquet, columns=features)
    values = np.column_stack([raw.column(c).to_numpy(zero_copy_only=False) for c in features])
    clicked = pq.read_table(parquet, columns=["clicked"]).column(0).to_numpy()
    rows_fitted = np.arange(len(clicked)) if rows is None else np.asarray(rows)
    return values[rows_fitted], clicked[rows_fitted], rows_fitted


def train_tiny_model(parquet: Path, features: list[str], folder: Path, epochs: int = 10, seed: int = 0,
                     rows: np.ndarray | None = None) -> tuple[TabularSeqModel, Preprocess]:
    """A small LSTM+MLP fitted on ``rows`` (all rows when None)."""
    torch.manual_seed(seed)
    values, clicked, rows_fitted = fitted_rows(parquet, features, rows)
    rate = float(clicked.mean())
    preprocess = Preprocess(
        feature_columns=features, fill_values=np.nan_to_num(np.nanmedian(values, axis=0)).tolist(),
        max_seq_len=16, seq_scale=500.0, lstm_hidden=8, mlp_hidden=[64, 32], dropout=0.1,
        base_rate=rate, train_rate=rate,
    )
    rows = DataFile(parquet, preprocess).rows(rows_fitted)
    model = TabularSeqModel(len(features), 8, [64, 32], 0.1)
    optimiser = torch.optim.Adam(model.parameters(), lr=5e-3)
    x, seq = torch.from_numpy(rows.x_tab), torch.from_numpy(rows.seq)
    lengths, y = torch.from_numpy(rows.lengths), torch.from_numpy(rows.clicked.astype(np.float32))
    generator = torch.Generator().manual_seed(seed)
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        model.train()
        for _ in range(epochs):
            order = torch.randperm(len(y), generator=generator)
            for start in range(0, len(y), 512):
                batch = order[start:start + 512]
                optimiser.zero_grad()
                loss = torch.nn.functional.binary_cross_entropy_with_logits(
                    model(x[batch], seq[batch], lengths[batch]), y[batch])
                loss.backward()
                optimiser.step()
    finally:
        torch.set_num_threads(previous_threads)
    model.eval()
    save_model(folder, model, preprocess)
    return model, preprocess


@dataclass
class PlantedModel:
    parquet: Path
    model_folder: Path
    model: TabularSeqModel
    preprocess: Preprocess
    truth: dict
    planted: list[str]  # every planted feature, ``seq`` included

    @property
    def loaded(self) -> LoadedModel:
        return LoadedModel(self.preprocess.kind, self.preprocess, self.model)


@pytest.fixture(scope="session")
def planted_model(tmp_path_factory: pytest.TempPathFactory) -> PlantedModel:
    root = tmp_path_factory.mktemp("planted")
    csv = root / "clicks.csv"
    truth = generate(csv, ROWS, seed=7, ctr=0.3)
    parquet = root / "data.parquet"
    csv_to_training_layout(csv, parquet)
    planted = [p["feature"] for p in truth["planted"]]
    features = [c for c in truth["columns"] if c in set(truth["planted_tabular"]) | set(UNRELATED)]
    clicked = pq.read_table(parquet, columns=["clicked"]).column(0).to_numpy()
    # Fitted on the training rows of the trainer's default split (0.2, seed 42): the explainer tests on the rest.
    model, preprocess = train_tiny_model(parquet, features, root / "model", rows=training_rows(clicked, 0.2, 42))
    return PlantedModel(parquet, root / "model", model, preprocess, truth, planted)


def train_tiny_gbdt(parquet: Path, features: list[str], folder: Path, rounds: int = 60,
                    rows: np.ndarray | None = None, params: dict | None = None) -> GbdtModel:
    """The challenger's kind of model on the same data: LightGBM over the features plus the seq features,
    fitted on ``rows`` (all rows when None)."""
    import lightgbm as lgb

    values, clicked, rows_fitted = fitted_rows(parquet, features, rows)
    rate = float(clicked.mean())
    preprocess = Preprocess(
        feature_columns=features, fill_values=np.nan_to_num(np.nanmedian(values, axis=0)).tolist(),
        max_seq_len=16, seq_scale=1.0, lstm_hidden=0, mlp_hidden=[], dropout=0.0, base_rate=rate, train_rate=rate,
        kind="gbdt",
    )
    rows = DataFile(parquet, preprocess).rows(rows_fitted)
    spec = SeqFeatureSpec(vocab=learn_vocab(rows.seq, rows.lengths, 16, 16))
    preprocess.extra = {"seq_features": spec.to_json()}
    booster = lgb.train({"objective": "binary", "learning_rate": 0.1, "num_leaves": 15, "verbose": -1,
                         "num_threads": 1, "seed": 0, **(params or {})},
                        lgb.Dataset(np.column_stack([rows.x_tab, seq_features(rows.seq, rows.lengths, spec)]),
                                    rows.clicked), rounds)
    model = GbdtModel(preprocess, booster, spec.names())
    model.save(folder)
    return model


@pytest.fixture(scope="session")
def planted_gbdt(planted_model: PlantedModel) -> PlantedModel:
    """A LightGBM on the planted model's data and features (saved beside it as ``gbdt/``)."""
    folder = planted_model.model_folder.parent / "gbdt"
    clicked = pq.read_table(planted_model.parquet, columns=["clicked"]).column(0).to_numpy()
    gbdt = train_tiny_gbdt(planted_model.parquet, planted_model.preprocess.feature_columns, folder,
                           rows=training_rows(clicked, 0.2, 42))
    return PlantedModel(planted_model.parquet, folder, gbdt, gbdt.preprocess, planted_model.truth,
                        planted_model.planted)


@pytest.fixture(scope="session")
def gbdt_trainer():
    """``train_tiny_gbdt`` for test modules (they cannot import conftest under --import-mode=importlib)."""
    return train_tiny_gbdt
