"""The input pipeline: recent-token window, stratified split, fresh down-sampled negatives each epoch,
clear data errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from ctrops_trainer.data import (
    DataError,
    apply_fill,
    check_training_file,
    fill_values,
    read_training_file,
    split_rows,
    table_to_training_data,
    window_sequences,
)


def test_window_keeps_the_most_recent_tokens_right_padded():
    seq = pa.array([[1, 2, 3, 4, 5], [7], [], None, [9, 8]], type=pa.list_(pa.int32()))
    tokens, lengths, truncated = window_sequences(seq, 3)
    assert tokens.tolist() == [[3, 4, 5], [7, 0, 0], [0, 0, 0], [0, 0, 0], [9, 8, 0]]
    assert lengths.tolist() == [3, 1, 0, 0, 2]
    assert truncated == 1


def test_window_of_a_sliced_chunked_column_uses_the_right_rows():
    seq = pa.chunked_array([pa.array([[1, 2], [3, 4, 5]]), pa.array([[6, 7, 8, 9]])])
    tokens, lengths, _ = window_sequences(seq, 2)
    assert tokens.tolist() == [[1, 2], [4, 5], [8, 9]]
    assert lengths.tolist() == [2, 2, 2]


def test_sequences_stored_as_text_are_parsed_once():
    tokens, lengths, _ = window_sequences(pa.array(["5,6,7", "", " 8 , 9", None]), 4)
    assert tokens.tolist() == [[5, 6, 7, 0], [0, 0, 0, 0], [8, 9, 0, 0], [0, 0, 0, 0]]
    assert lengths.tolist() == [3, 0, 2, 0]


def test_table_becomes_features_labels_and_tokens():
    table = pa.table({
        "clicked": pa.array([0, 1, 0], type=pa.int8()),
        "seq": pa.array([[1], [2, 3], [4]], type=pa.list_(pa.int32())),
        "hour": pa.array([1.0, None, float("inf")]),
        "label": pa.array(["a", "b", "c"]),
    })
    data = table_to_training_data(table, 8)
    assert data.feature_columns == ["hour"]
    assert data.ignored_columns == ["label"]
    assert data.labels.tolist() == [0.0, 1.0, 0.0]
    assert np.isnan(data.features[1:, 0]).all()  # missing and infinite values are both "missing"


@pytest.mark.parametrize(
    ("table", "message"),
    [
        (pa.table({"clicked": [0, 1]}), "lacks the required column(s) seq"),
        (pa.table({"clicked": [0, 2], "seq": [[1], [2]]}), "must hold 0 or 1"),
        (pa.table({"clicked": pa.array([0, None]), "seq": [[1], [2]]}), "'clicked' is empty in 1 row"),
        (pa.table({"clicked": [0, 1], "seq": [[1], [-4]]}), "non-negative integers"),
        (pa.table({"clicked": [0, 1], "seq": ["1,x", "2"]}), "comma-separated integers"),
    ],
)
def test_unusable_tables_are_refused_with_what_to_fix(table, message):
    with pytest.raises(DataError, match=message.replace("(", r"\(").replace(")", r"\)")):
        table_to_training_data(table, 4)


@pytest.mark.parametrize("read", [lambda p: read_training_file(p, 8), check_training_file])
def test_missing_corrupt_and_incomplete_files_are_data_errors(tmp_path: Path, read):
    with pytest.raises(DataError, match="missing"):
        read(tmp_path / "nope.parquet")
    corrupt = tmp_path / "data.parquet"
    corrupt.write_bytes(b"PAR1 this is not parquet")
    with pytest.raises(DataError, match="could not be read"):
        read(corrupt)
    no_seq = tmp_path / "no_seq.parquet"
    pq.write_table(pa.table({"clicked": [0, 1]}), no_seq)
    with pytest.raises(DataError, match="lacks the required column"):
        read(no_seq)


def test_split_is_stratified_then_only_training_negatives_are_down_sampled():
    rng = np.random.default_rng(0)
    labels = (rng.random(20_000) < 0.02).astype(np.float32)
    split = split_rows(labels, 0.2, downsampling=True, seed=7)
    assert not set(split.train) & set(split.val)
    # Validation keeps the original click rate (stratified), within one row per class.
    assert abs(labels[split.val].mean() - labels.mean()) < 0.001
    assert len(split.val) == pytest.approx(0.2 * len(labels), abs=2)
    train_pos = int(labels[split.train].sum())
    assert len(split.train) - train_pos == 2 * train_pos  # negatives at exactly 2x positives
    assert split.train_rate == pytest.approx(1 / 3)
    assert split.base_rate == pytest.approx(labels.mean(), abs=0.002)
    again = split_rows(labels, 0.2, downsampling=True, seed=7)
    assert np.array_equal(split.train, again.train) and np.array_equal(split.val, again.val)
    other = split_rows(labels, 0.2, downsampling=True, seed=8)
    assert not np.array_equal(split.train, other.train)
    # Every training row, never down-sampled, beside the validation rows: the challenger fits on it.
    assert np.array_equal(split.train_all, np.setdiff1d(np.arange(len(labels)), split.val))
    assert set(split.train) <= set(split.train_all)


def test_validation_rows_are_the_same_as_before_fresh_negatives():
    """The validation rows of a seed are what they were when down-sampling drew one fixed subset
    (the algorithm as it was, written out here), so runs stay comparable across versions."""
    rng = np.random.default_rng(3)
    labels = (rng.random(5_000) < 0.05).astype(np.float32)
    for seed, fraction in ((42, 0.2), (7, 0.35)):
        before = np.random.default_rng(seed)
        val = []
        for indices in (np.flatnonzero(labels == 1), np.flatnonzero(labels == 0)):
            shuffled = before.permutation(indices)
            val.append(shuffled[:min(len(indices) - 1, max(1, int(round(fraction * len(indices)))))])
        for downsampling in (True, False):
            split = split_rows(labels, fraction, downsampling=downsampling, seed=seed)
            assert np.array_equal(split.val, np.sort(np.concatenate(val)))


def test_down_sampling_draws_fresh_negatives_every_epoch_and_uses_them_all():
    rng = np.random.default_rng(1)
    labels = (rng.random(6_000) < 0.04).astype(np.float32)
    split = split_rows(labels, 0.2, downsampling=True, seed=5)
    positives = split.train_all[labels[split.train_all] == 1]
    negatives = split.train_all[labels[split.train_all] == 0]
    k = 2 * len(positives)
    assert split.negatives_per_epoch == k and split.rows_per_epoch == 3 * len(positives)
    epochs = [split.epoch_rows(e) for e in range(1, 30)]
    assert np.array_equal(epochs[0], split.train)  # epoch 1 is ``train``
    seen: list[np.ndarray] = []
    for rows in epochs:
        assert np.array_equal(rows, np.unique(rows))  # sorted, no row twice in one epoch
        assert np.array_equal(rows[labels[rows] == 1], positives)  # every click, every epoch
        assert len(rows) == 3 * len(positives)  # 1:2 every epoch: the same training click rate
        seen.append(rows[labels[rows] == 0])
    assert not np.array_equal(seen[0], seen[1])  # fresh non-clicks, not one fixed subset
    assert len(np.intersect1d(seen[0], seen[1])) == 0  # the next ones in turn, not a redraw
    # Each non-click is used once before any is used twice: all of them within ceil(N / k) epochs.
    cover = -(-len(negatives) // k)
    assert np.array_equal(np.unique(np.concatenate(seen[:cover])), negatives)
    assert len(np.unique(np.concatenate(seen[:cover - 1]))) == (cover - 1) * k
    # Seeded: the same seed draws the same epochs, another seed others.
    again = split_rows(labels, 0.2, downsampling=True, seed=5)
    assert all(np.array_equal(again.epoch_rows(e), epochs[e - 1]) for e in (1, 2, 7))
    other = split_rows(labels, 0.2, downsampling=True, seed=6)
    assert not np.array_equal(other.epoch_rows(2), epochs[1])
    # fresh=False repeats epoch 1's rows (the fixed subset of earlier versions, for measuring).
    assert np.array_equal(split.epoch_rows(4, fresh=False), split.train)


def test_the_non_clicks_per_click_of_an_epoch_can_be_set_without_moving_the_validation_rows():
    rng = np.random.default_rng(2)
    labels = (rng.random(6_000) < 0.04).astype(np.float32)
    two = split_rows(labels, 0.2, downsampling=True, seed=5)
    four = split_rows(labels, 0.2, downsampling=True, seed=5, negatives_per_positive=4)
    clicks = int(labels[four.train_all].sum())
    assert np.array_equal(four.val, two.val) and np.array_equal(four.train_all, two.train_all)
    assert four.negatives_per_epoch == 4 * clicks and len(four.epoch_rows(3)) == 5 * clicks
    assert four.train_rate == clicks / (5 * clicks) and four.base_rate == two.base_rate


def test_without_down_sampling_every_training_row_is_used():
    labels = np.array([1] * 20 + [0] * 180, dtype=np.float32)
    split = split_rows(labels, 0.25, downsampling=False, seed=1)
    assert len(split.train) + len(split.val) == 200
    assert split.train_rate == pytest.approx(split.base_rate)
    assert np.array_equal(split.train, split.train_all)
    assert all(np.array_equal(split.epoch_rows(e), split.train_all) for e in (1, 2, 3))


def test_too_few_clicks_for_a_stratified_split_is_a_clear_error():
    labels = np.array([1] * 3 + [0] * 500, dtype=np.float32)
    with pytest.raises(DataError, match="only 3 clicked row"):
        split_rows(labels, 0.2, downsampling=True, seed=1)


def test_missing_values_are_filled_with_training_medians():
    features = np.array([[1.0, np.nan], [3.0, np.nan], [np.nan, np.nan], [100.0, np.nan]], dtype=np.float32)
    medians = fill_values(features, np.array([0, 1, 2]))  # row 3 is not a training row
    assert medians.tolist() == [2.0, 0.0]
    assert apply_fill(features, medians).tolist() == [[1, 0], [3, 0], [2, 0], [100, 0]]


def test_generated_file_reads_every_row_window_right(generated, monkeypatch):
    import ctrops_trainer.data as data_module

    monkeypatch.setattr(data_module, "_WINDOW_CHUNK_ROWS", 999)  # several windowing chunks, one ragged
    path, truth = generated
    data = read_training_file(path, 128)
    assert data.rows == truth["rows"]
    assert int(data.labels.sum()) == truth["clicks"]
    assert len(data.feature_columns) == 117  # 119 columns minus seq and clicked
    raw = pq.read_table(path, columns=["seq"]).column("seq").to_pylist()
    for row, tokens in enumerate(raw):
        recent = tokens[-128:]
        assert data.lengths[row] == len(recent)
        assert data.tokens[row, : len(recent)].tolist() == recent
    assert data.truncated_rows == sum(len(t) > 128 for t in raw)
