"""The training layout on disk: types, names, nulls, row groups; an aborted write leaves nothing."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from ctrops_ingest.conversion import ParquetSink, training_schema


def test_schema_types_follow_the_training_layout():
    schema = training_schema(["시간대", "seq", "clicked"])
    assert schema.field("시간대").type == pa.float64()
    assert schema.field("seq").type == pa.list_(pa.int32())
    assert schema.field("clicked").type == pa.int8()


def test_blocks_become_row_groups_with_nulls_for_missing(tmp_path):
    path = tmp_path / "data.parquet"
    sink = ParquetSink(path, ["시간대", "seq", "clicked"], row_group_rows=1024)
    for start in range(0, 3000, 500):
        n = 500
        values = np.arange(start, start + n, dtype=float)
        values[0] = np.nan
        seq = pa.array([[i, i + 1] for i in range(start, start + n)], type=pa.list_(pa.int32()))
        sink.add({"시간대": pa.array(values, mask=np.isnan(values))}, (np.arange(n) % 2).astype(np.int8), seq)
    assert sink.close() == 3000
    meta = pq.ParquetFile(path).metadata
    assert meta.num_rows == 3000
    assert [meta.row_group(i).num_rows for i in range(meta.num_row_groups)] == [1500, 1500]
    table = pq.read_table(path)
    assert table.column_names == ["시간대", "seq", "clicked"]
    assert table.column("시간대").null_count == 6
    assert table.column("seq")[2].as_py() == [2, 3]
    assert table.column("clicked").to_pylist()[:3] == [0, 1, 0]


def test_abort_removes_the_partial_file(tmp_path):
    path = tmp_path / "data.parquet"
    sink = ParquetSink(path, ["x", "seq", "clicked"], row_group_rows=1024)
    sink.add({"x": pa.array(np.ones(2000))}, np.zeros(2000, dtype=np.int8),
             pa.array([[1]] * 2000, type=pa.list_(pa.int32())))
    sink.abort()
    assert not path.exists()
