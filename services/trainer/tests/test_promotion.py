"""A retrain's promotion check with real models on generated data: the replaced model is scored on
the new run's validation rows exactly as ``ctrops_common.model_inputs`` builds them; it wins
where the new run had nothing to learn from, loses where the click behaviour shifted; and a
replaced model that cannot be scored promotes the new one with the reason."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from ctrops_common.auc_stats import auc_ci
from ctrops_common.events import TrainingConfig
from ctrops_common.ml import Preprocess, TabularSeqModel, save_model
from ctrops_common.model_inputs import DataFile
from ctrops_common.model_loading import load_ctr_model
from ctrops_common.testdata import variant_parquet
from ctrops_trainer import promotion
from ctrops_trainer.challenger import train_challenger
from ctrops_trainer.data import read_training_file, split_rows
from ctrops_trainer.promotion import (METHOD, NOT_COMPARED, Replaced, check_promotion, read_rows,
                                      replaced_probability)

CONFIG = TrainingConfig(max_seq_len=16, seed=7)
OLD_RUN = "a" * 32
NEW_ROWS = 4000  # of each new file; 8% clicks: ~320, of which ~64 in the validation rows (conftest.NEW_ROWS)
MARGIN = 0.1  # AUC difference both decisions must clear (measured: 0.23 and 0.34)


def fit_new(path: Path):
    """The new run's champion (the challenger here; the service test covers both models): (val rows, labels, p)."""
    data = read_training_file(path, CONFIG.max_seq_len)
    split = split_rows(data.labels, CONFIG.validation_split, CONFIG.downsampling, CONFIG.seed)
    result = train_challenger(data, split, CONFIG, threads=1)
    return split.val, data.labels[split.val], result.val_probability


@pytest.fixture(scope="module")
def old_gbdt(generated, tmp_path_factory) -> Path:
    """The replaced run's champion: LightGBM fitted on the 8,000 'mixed' rows of the conftest file."""
    data = read_training_file(generated[0], CONFIG.max_seq_len)
    split = split_rows(data.labels, CONFIG.validation_split, CONFIG.downsampling, CONFIG.seed)
    folder = tmp_path_factory.mktemp("old") / "runs" / OLD_RUN / "model" / "gbdt"
    train_challenger(data, split, CONFIG, threads=1).model.save(folder)
    return folder


@pytest.fixture(scope="module")
def old_lstm(generated, tmp_path_factory) -> Path:
    """An (untrained) embedding LSTM: its inputs go through fill values and the seq window, unlike the GBDT's."""
    names = pq.read_schema(generated[0]).names
    features = [c for c in names if c not in ("clicked", "seq")][:20]
    torch.manual_seed(0)
    model = TabularSeqModel(len(features), 8, [16], 0.0, seq_encoding="embedding", seq_vocab=256,
                            seq_embedding_dim=4).eval()
    folder = tmp_path_factory.mktemp("old") / "lstm"
    save_model(folder, model, Preprocess(features, [0.5] * len(features), 16, 1.0, 8, [16], 0.0, base_rate=0.08,
                                         train_rate=0.3, kind="lstm", seq_encoding="embedding", seq_vocab=256,
                                         seq_embedding_dim=4))
    return folder


@pytest.fixture(scope="module")
def new_files(tmp_path_factory, without_signal_in_training_rows) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("new")
    same, _, _ = variant_parquet(folder, "mixed", NEW_ROWS, seed=7, ctr=0.08)
    shifted, _, _ = variant_parquet(folder, "hour", NEW_ROWS, seed=7, ctr=0.08)
    return {"weak": without_signal_in_training_rows(same, folder / "weak.parquet", CONFIG), "shifted": shifted}


@pytest.mark.parametrize("kind", ["gbdt", "lstm"])
def test_the_replaced_models_inputs_are_the_model_inputs_rows_of_the_new_file(
        kind, old_gbdt, old_lstm, generated, monkeypatch):
    """Read batch by batch (small batches here: rows from many of them) in any order, the rows score
    exactly as ``DataFile(path, preprocess).rows(index)`` of the whole file."""
    monkeypatch.setattr(promotion, "_READ_BATCH_ROWS", 700)
    folder = old_gbdt if kind == "gbdt" else old_lstm
    parquet = generated[0]
    rows = np.random.default_rng(1).choice(pq.ParquetFile(parquet).metadata.num_rows, 900, replace=False)
    labels = pq.read_table(parquet, columns=["clicked"]).column(0).to_numpy()[rows]
    got = replaced_probability(folder, parquet, rows, labels)

    old = load_ctr_model(folder)
    x = DataFile(parquet, old.preprocess).rows(rows)
    expected = old.probability(old.logits(x.x_tab, old.encode(x.seq, x.lengths)))
    assert got.shape == (900,) and np.array_equal(got, expected)
    assert np.ptp(got) > 0  # a real score, not a constant

    table = read_rows(parquet, ["clicked", "hour"], rows)
    whole = pq.read_table(parquet, columns=["clicked", "hour"]).take(pa.array(rows))
    assert table.equals(whole)


def test_a_retrain_on_data_it_cannot_learn_from_is_not_promoted(old_gbdt, new_files):
    val, labels, p_new = fit_new(new_files["weak"])
    check = check_promotion(Replaced(OLD_RUN, str(old_gbdt)), new_files["weak"], val, labels, p_new,
                            new_label="new champion (LightGBM)")
    print(f"\nweak retrain: new {check.auc_new:.4f} old {check.auc_old:.4f} p={check.p_value:.2g}")
    assert check.method == METHOD and check.replaced_run_id == OLD_RUN
    assert not check.promoted
    assert check.auc_old - check.auc_new > MARGIN and check.ci_high < 0  # not a close call
    assert check.auc_new == pytest.approx(auc_ci(labels, p_new).auc, abs=1e-12)
    p_old = replaced_probability(old_gbdt, new_files["weak"], val, labels)
    assert check.auc_old == pytest.approx(auc_ci(labels, p_old).auc, abs=1e-12)
    assert check.difference == pytest.approx(check.auc_new - check.auc_old, abs=1e-12)
    assert check.ci_low <= check.difference <= check.ci_high and check.p_value < 0.01
    assert (check.val_rows, check.val_clicks) == (len(val), int(labels.sum()))
    assert "worse" in check.reason and "LightGBM" in check.reason and "stays the champion" in check.reason
    assert f"{check.auc_new:.4f}" in check.reason and f"{check.auc_old:.4f}" in check.reason


def test_a_retrain_on_shifted_data_is_promoted(old_gbdt, new_files):
    val, labels, p_new = fit_new(new_files["shifted"])
    check = check_promotion(Replaced(OLD_RUN, str(old_gbdt)), new_files["shifted"], val, labels, p_new)
    print(f"\nshifted retrain: new {check.auc_new:.4f} old {check.auc_old:.4f} p={check.p_value:.2g}")
    assert check.method == METHOD and check.promoted
    assert check.auc_new - check.auc_old > MARGIN and check.ci_low > 0
    assert check.auc_old < 0.6  # the old relation says little about the new clicks
    assert "not worse" in check.reason


def test_a_replaced_model_that_cannot_be_scored_promotes_the_new_one_with_the_reason(
        old_gbdt, generated, tmp_path: Path):
    parquet = generated[0]
    labels_all = pq.read_table(parquet, columns=["clicked"]).column(0).to_numpy().astype(np.float32)
    val = np.arange(0, 8000, 5)
    labels = labels_all[val]
    p_new = np.random.default_rng(2).random(len(val))

    # The new file lacks two of the features the replaced model uses.
    lacking = tmp_path / "lacking.parquet"
    pq.write_table(pq.read_table(parquet).drop_columns(["hour", "history_a_1"]), lacking)
    check = check_promotion(Replaced(OLD_RUN, str(old_gbdt)), lacking, val, labels, p_new)
    assert check.method == NOT_COMPARED and check.promoted
    assert "lacks 2 of the" in check.reason and "hour" in check.reason and "history_a_1" in check.reason
    assert check.auc_new == pytest.approx(auc_ci(labels, p_new).auc, abs=1e-12)
    assert (check.val_rows, check.val_clicks) == (len(val), int(labels.sum()))

    # Its folder is gone (or damaged).
    gone = tmp_path / "gone"
    shutil.copytree(old_gbdt, gone)
    (gone / "model.txt").unlink()
    check = check_promotion(Replaced(OLD_RUN, str(gone)), parquet, val, labels, p_new)
    assert check.method == NOT_COMPARED and check.promoted and "could not be loaded" in check.reason
    check = check_promotion(Replaced(OLD_RUN, str(tmp_path / "nowhere")), parquet, val, labels, p_new)
    assert check.method == NOT_COMPARED and check.promoted and "could not be loaded" in check.reason

    # The handler found the location unusable before training.
    check = check_promotion(Replaced(OLD_RUN, problem="the replaced model's folder cannot be used (x)"), parquet,
                            val, labels, p_new)
    assert check.method == NOT_COMPARED and check.promoted and "cannot be used" in check.reason

    # Rows that are not the ones the labels belong to: refused, never compared on the wrong rows.
    check = check_promotion(Replaced(OLD_RUN, str(old_gbdt)), parquet, val, 1 - labels, p_new)
    assert check.method == NOT_COMPARED and "not the rows" in check.reason
