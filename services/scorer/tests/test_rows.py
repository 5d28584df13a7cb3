"""JSON rows -> the training layout: values read as ingest reads the CSV, every bad value named."""

from __future__ import annotations

import math

import pyarrow as pa
import pytest

from ctrops_scorer.rows import MAX_PROBLEMS, RowsError, rows_table

FEATURES = ["age_group", "hour", "l_feat_1"]


def problems_of(rows, features=FEATURES):
    with pytest.raises(RowsError) as caught:
        rows_table(rows, features)
    return caught.value, [(p.row, p.column, p.message) for p in caught.value.problems]


def test_numbers_numeric_strings_and_missing_values_become_float64_with_nulls():
    table = rows_table([
        {"age_group": 3, "hour": "14", "l_feat_1": " 1e-3 ", "seq": "5,7,9", "clicked": 1},
        {"age_group": 2.5, "hour": None, "seq": [1, 2]},  # l_feat_1 absent, hour null
        {"age_group": "", "hour": "-0.5", "l_feat_1": 0, "seq": " 3 , 4 "},  # "" is an empty CSV cell
    ], FEATURES)
    assert table.column_names == [*FEATURES, "seq"]  # clicked is accepted and dropped
    assert table.schema.field("seq").type == pa.list_(pa.int32())
    assert all(table.schema.field(c).type == pa.float64() for c in FEATURES)
    assert table.column("age_group").to_pylist() == [3.0, 2.5, None]
    assert table.column("hour").to_pylist() == [14.0, None, -0.5]
    assert table.column("l_feat_1").to_pylist() == [0.001, None, 0.0]
    assert table.column("seq").to_pylist() == [[5, 7, 9], [1, 2], [3, 4]]


def test_unknown_columns_are_refused_by_name_with_the_first_row_using_them():
    error, problems = problems_of([{"hour": 1, "seq": "1"}, {"hour": 1, "seq": "1", "colour": "red", "zz": 1}])
    assert "'colour'" in error.detail and "'zz'" in error.detail and "does not know" in error.detail
    assert problems == [(1, "colour", "the model does not know the column 'colour'"),
                        (1, "zz", "the model does not know the column 'zz'")]


@pytest.mark.parametrize("value, message", [
    (True, "true is a boolean"),
    ("abc", "'abc' is not a number"),
    ("inf", "'inf' is not a number"),  # not a number ingest accepts either
    (float("nan"), "nan is not a finite number"),
    (float("inf"), "inf is not a finite number"),
    (10**400, "the number is too large"),
    ({"a": 1}, "a dict is not a number"),
    ([1], "a list is not a number"),
])
def test_bad_feature_values_are_named_by_row_and_column(value, message):
    error, problems = problems_of([{"hour": 1, "seq": "1"}, {"hour": value, "seq": "1"}])
    assert len(problems) == 1
    row, column, text = problems[0]
    assert (row, column) == (1, "hour") and text.startswith(message), text
    assert "row 1, column 'hour'" in error.detail


@pytest.mark.parametrize("value, message", [
    (None, "seq is missing"),
    ("", "seq is empty"),
    ([], "seq is empty"),
    ("1,,2", "'1,,2' is not comma-separated integers"),
    ("1.5,2", "'1.5,2' is not comma-separated integers"),
    ([1, 2.5], "seq holds 2.5"),
    ([1, True], "seq holds True"),
    ("2147483648", "token 2147483648 does not fit"),
    ([-2147483649], "token -2147483649 does not fit"),
    (12, "seq must be a comma-separated string or a list of integers, not a int"),
])
def test_bad_sequences_are_named(value, message):
    _, problems = problems_of([{"hour": 1, "seq": value}])
    assert problems[0][:2] == (0, "seq") and problems[0][2].startswith(message), problems


def test_int32_tokens_at_both_ends_are_kept():
    table = rows_table([{"seq": [0, 2**31 - 1]}, {"seq": "-2147483648,7"}], FEATURES)
    assert table.column("seq").to_pylist() == [[0, 2**31 - 1], [-(2**31), 7]]
    assert table.column("hour").null_count == 2


def test_problems_are_capped_with_the_total_counted():
    rows = [{"hour": "x", "age_group": True, "seq": "1"} for _ in range(30)]
    error, problems = problems_of(rows)
    assert len(problems) == MAX_PROBLEMS
    assert error.detail.startswith("60 problem(s)") and f"the first {MAX_PROBLEMS} are listed" in error.detail


@pytest.mark.parametrize("rows, message", [
    ([], "'rows' is empty"),
    ({"hour": 1}, "'rows' must be a list"),
    ([{"hour": 1, "seq": "1"}, 7], "1 problem(s) in the request's rows"),
])
def test_the_shape_of_rows_is_checked(rows, message):
    error, _ = problems_of(rows)
    assert message in error.detail


def test_a_fast_path_column_with_one_bad_value_still_names_it():
    """Plain JSON numbers go through numpy at once; a non-finite one among them is still found."""
    rows = [{"hour": float(i), "seq": "1"} for i in range(100)]
    rows[57]["hour"] = math.inf
    _, problems = problems_of(rows)
    assert problems == [(57, "hour", "inf is not a finite number")]


def test_a_time_column_is_accepted_and_ignored_as_in_a_csv_to_score():
    table = rows_table([{"hour": 1, "seq": "1", "date": "2026-03-01"}, {"hour": 2, "seq": "2", "Event_Time": "x"}],
                       FEATURES)
    assert table.column_names == [*FEATURES, "seq"] and table.column("hour").to_pylist() == [1.0, 2.0]
    error, problems = problems_of([{"hour": 1, "seq": "1", "dates": "2026-03-01"}])  # not a time column's name
    assert problems == [(0, "dates", "the model does not know the column 'dates'")]
