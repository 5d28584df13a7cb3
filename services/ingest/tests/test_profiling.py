"""Block-wise statistics equal the whole-column ones; duplicates and segments are exact."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from ctrops_ingest.profiling import ProfileBuilder, row_hashes, text_hashes


def blocks(matrix: np.ndarray, sizes: list[int]):
    start = 0
    for size in sizes:
        yield matrix[start:start + size]
        start += size


def arrays(matrix: np.ndarray) -> list[pa.Array]:
    """Columns as the pipeline hands them over: float64 with nulls for missing."""
    return [pa.array(matrix[:, j], mask=np.isnan(matrix[:, j])) for j in range(matrix.shape[1])]


def add(builder: ProfileBuilder, matrix: np.ndarray, clicked: np.ndarray | None = None, lengths=None) -> None:
    n = len(matrix)
    clicked = np.zeros(n, dtype=np.int8) if clicked is None else clicked
    builder.add_block(arrays(matrix), clicked, lengths, np.arange(n, dtype=np.uint64))


def test_moments_merged_over_blocks_match_numpy():
    rng = np.random.default_rng(0)
    matrix = rng.normal(5, 3, size=(1000, 2))
    matrix[rng.random(1000) < 0.2, 1] = np.nan
    builder = ProfileBuilder(["a", "b"])
    for part in blocks(matrix, [1, 299, 400, 300]):
        add(builder, part)
    stats = builder.column_stats()
    for j, name in enumerate(["a", "b"]):
        col = matrix[:, j]
        assert stats[name]["missing"] == int(np.isnan(col).sum())
        assert stats[name]["mean"] == pytest.approx(np.nanmean(col), rel=1e-12)
        assert stats[name]["std"] == pytest.approx(np.nanstd(col, ddof=1), rel=1e-12)
        assert stats[name]["min"] == np.nanmin(col) and stats[name]["max"] == np.nanmax(col)


def test_all_missing_column_has_null_statistics():
    builder = ProfileBuilder(["a"])
    add(builder, np.full((3, 1), np.nan))
    assert builder.column_stats()["a"] == {"missing": 3, "mean": None, "std": None, "min": None, "max": None}


@pytest.mark.parametrize("lengths", [[5, 1, 9, 3], [5, 1, 9, 3, 7], [2, 2, 2]])
def test_seq_length_median_is_exact(lengths):
    builder = ProfileBuilder([])
    half = len(lengths) // 2
    for part in (lengths[:half], lengths[half:]):
        add(builder, np.empty((len(part), 0)), lengths=np.array(part))
    stats = builder.seq_stats()
    assert stats["median_len"] == float(np.median(lengths))
    assert stats["min_len"] == min(lengths) and stats["max_len"] == max(lengths)
    assert stats["mean_len"] == pytest.approx(np.mean(lengths))


def test_duplicate_rows_compare_parsed_values_across_blocks():
    matrix = np.array([[1.0, np.nan], [1.0, np.nan], [0.0, 2.0], [-0.0, 2.0], [1.0, 3.0]])
    seq = text_hashes(["1,2", "1,2", "3", "3", "1,2"])
    hashes = row_hashes([matrix[:, 0], matrix[:, 1]], [seq])
    builder = ProfileBuilder(["a", "b"])
    builder.add_block(arrays(matrix[:2]), np.zeros(2, dtype=np.int8), None, hashes[:2])
    builder.add_block(arrays(matrix[2:]), np.zeros(3, dtype=np.int8), None, hashes[2:])
    assert builder.duplicate_rows() == 2  # row 2 repeats row 1 (NaN equal NaN); row 4 repeats row 3 (-0 == 0)


def test_row_hash_depends_on_column_order_and_every_column():
    one, two = np.array([1.0]), np.array([2.0])
    a = row_hashes([one, two], [])
    assert a[0] != row_hashes([two, one], [])[0]
    assert a[0] != row_hashes([one, two], [text_hashes(["x"])])[0]
    assert a[0] == row_hashes([one.copy(), two.copy()], [])[0]


def test_segments_count_rows_clicks_and_ctr_and_skip_bad_labels():
    features = ["hour", "age_group", "gender", "inventory_id"]
    matrix = np.array([
        [20, 4, 1, 7],
        [20, 4, 1, 7],
        [21, 5, 2, 7],
        [np.nan, 5, 2, 9],
        [21, 5, 2, 9],
    ], dtype=float)
    clicked = np.array([1, 0, 0, 1, -1], dtype=np.int8)  # the last row's label is invalid
    builder = ProfileBuilder(features)
    add(builder, matrix, clicked)
    tables = builder.segment_tables()
    assert tables["hour"] == [
        {"value": 20, "rows": 2, "clicks": 1, "ctr": 50.0},
        {"value": 21, "rows": 1, "clicks": 0, "ctr": 0.0},
    ]
    assert tables["day_of_week"] == []  # column absent
    assert tables["inventory_id"][0] == {"value": 7, "rows": 3, "clicks": 1, "ctr": 33.3333}
    assert tables["age_group_gender"] == [
        {"age_group": 4.0, "gender": 1.0, "rows": 2, "clicks": 1, "ctr": 50.0},
        {"age_group": 5.0, "gender": 2.0, "rows": 2, "clicks": 1, "ctr": 50.0},
    ]


def test_inventory_table_keeps_the_busiest_values():
    builder = ProfileBuilder(["inventory_id"], max_segment_values=2)
    ids = np.array([[1.0]] * 5 + [[2.0]] * 3 + [[3.0]] * 4)
    add(builder, ids)
    assert [row["value"] for row in builder.segment_tables()["inventory_id"]] == [1, 3]
