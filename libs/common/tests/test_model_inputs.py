"""The training-layout file -> model inputs, as Preprocess prescribes."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from ctrops_common.ml import Preprocess
from ctrops_common.model_inputs import DataFile, recent_tokens


def test_recent_tokens_keeps_the_most_recent_scaled_right_padded():
    column = pa.array([[1, 2, 3, 4, 5], [7], [], None, [10, 20, 30]], type=pa.list_(pa.int32()))
    seq, kept, full = recent_tokens(pa.chunked_array([column]), max_len=3, scale=10.0)
    assert full.tolist() == [5, 1, 0, 0, 3]
    assert kept.tolist() == [3, 1, 0, 0, 3]
    assert np.allclose(seq, [[0.3, 0.4, 0.5], [0.7, 0, 0], [0, 0, 0], [0, 0, 0], [1.0, 2.0, 3.0]])


def test_recent_tokens_on_a_slice_and_short_rows_pads_to_the_longest():
    column = pa.array([[9, 9, 9, 9], [1, 2], [3]], type=pa.list_(pa.int32())).slice(1)
    seq, kept, full = recent_tokens(column, max_len=8, scale=1.0)
    assert seq.shape == (2, 2) and kept.tolist() == [2, 1] and full.tolist() == [2, 1]
    assert seq.tolist() == [[1.0, 2.0], [3.0, 0.0]]


def test_rows_fill_missing_values_and_columns_the_file_lacks(tmp_path):
    path = tmp_path / "data.parquet"
    pq.write_table(pa.table({
        "clicked": pa.array([0, 1, 0], type=pa.int8()),
        "seq": pa.array([[1, 2], [3], [4, 5, 6]], type=pa.list_(pa.int32())),
        "hour": pa.array([1.0, None, 3.0]),
    }), path)
    pre = Preprocess(["hour", "age_group"], [2.5, 4.0], 2, 1.0, 4, [8], 0.0, 0.3, 0.3)
    data = DataFile(path, pre)
    assert data.missing_columns == ["age_group"]
    rows = data.rows(np.array([2, 1]))
    assert rows.x_tab.dtype == np.float32 and rows.x_tab.tolist() == [[3.0, 4.0], [2.5, 4.0]]
    assert np.isnan(rows.raw_tab[1, 0]) and np.isnan(rows.raw_tab[:, 1]).all()
    assert rows.clicked.tolist() == [0, 1]
    assert rows.seq.tolist() == [[5.0, 6.0], [3.0, 0.0]] and rows.seq_length.tolist() == [3.0, 1.0]


def test_a_file_without_seq_is_refused(tmp_path):
    path = tmp_path / "data.parquet"
    pq.write_table(pa.table({"clicked": pa.array([0, 1], type=pa.int8()), "hour": [1.0, 2.0]}), path)
    with pytest.raises(ValueError, match="'seq'"):
        DataFile(path, Preprocess(["hour"], [0.0], 2, 1.0, 4, [8], 0.0, 0.3, 0.3))


def test_rows_for_a_tree_model_keep_missing_values_as_the_model_was_fitted(tmp_path):
    """The LightGBM challenger trains on NaN (learned missing-value branches): a filled value would score as a value."""
    path = tmp_path / "data.parquet"
    pq.write_table(pa.table({
        "clicked": pa.array([0, 1], type=pa.int8()),
        "seq": pa.array([[1], [2]], type=pa.list_(pa.int32())),
        "hour": pa.array([None, 3.0]),
    }), path)
    pre = Preprocess(["hour"], [2.5], 2, 1.0, 0, [], 0.0, 0.3, 0.3, kind="gbdt")
    rows = DataFile(path, pre).rows(np.array([0, 1]))
    assert np.isnan(rows.x_tab[0, 0]) and rows.x_tab[1, 0] == 3.0


def test_every_row_in_order_reads_the_table_as_is_and_equals_taking_them(tmp_path):
    """A batch chunk asks for every row in order: no copy of the table, the same inputs as ``take``."""
    path = tmp_path / "data.parquet"
    pq.write_table(pa.table({
        "clicked": pa.array([0, 1, 0, 1], type=pa.int8()),
        "seq": pa.array([[1, 2], [3], [4, 5, 6], None], type=pa.list_(pa.int32())),
        "hour": pa.array([1.0, None, 3.0, 4.0]),
        "age_group": pa.array([2, 5, None, 1], type=pa.int64()),
    }), path)
    pre = Preprocess(["hour", "age_group"], [2.5, 4.0], 2, 1.0, 4, [8], 0.0, 0.3, 0.3)
    data = DataFile(path, pre)
    assert data.every_row(np.arange(4))
    assert not data.every_row(np.arange(3)) and not data.every_row(np.array([0, 2, 1, 3]))
    assert not data.every_row(np.array([1, 2, 3, 4]))
    whole = data.rows(np.arange(4))
    taken = data.rows(np.array([3, 2, 1, 0])).take(np.array([3, 2, 1, 0]))  # every row, through take
    for field in ("x_tab", "raw_tab", "seq", "lengths", "seq_length", "clicked"):
        np.testing.assert_array_equal(getattr(whole, field), getattr(taken, field))
    assert whole.raw_tab.dtype == np.float64 and np.isnan(whole.raw_tab[1, 0]) and np.isnan(whole.raw_tab[2, 1])
    assert whole.raw_tab[:, 1].tolist()[:2] == [2.0, 5.0] and whole.x_tab[2, 1] == 4.0
