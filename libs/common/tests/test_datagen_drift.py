"""Monthly labelled files whose click behaviour shifts at a known month: each drift kind changes
what it says (a driver's distribution, a driver's effect, the base rate) from the shift month
on and nothing else; the months are Toss-layout CSVs, seeded, with the ground truth."""

from __future__ import annotations

import io
import json

import numpy as np
import pyarrow.csv as pacsv
import pytest

from ctrops_common.datagen import DRIFT_FEATURE, drift_sequence, roc_auc
from ctrops_common.dataset import toss_columns

ROWS = 8000


@pytest.fixture(scope="module")
def sequences():
    return {kind: drift_sequence(kind, months=4, shift_at=2, rows_per_month=ROWS, start="2025-11", seed=7)
            for kind in ("feature", "relation", "base_rate")}


def column(month, name: str) -> np.ndarray:
    return month.table.column(name).to_numpy(zero_copy_only=False).astype(float)


def ctr(month) -> float:
    return month.clicks / month.table.num_rows


def test_labels_shift_month_and_truth(sequences):
    s = sequences["feature"]
    assert s.labels == ["2025-11", "2025-12", "2026-01", "2026-02"]  # across the year
    assert s.shift_month == "2026-01" and s.feature == DRIFT_FEATURE
    assert [m.shifted for m in s.months] == [False, False, True, True]
    assert s.truth["expected_alert"] == "feature_drift"
    assert sequences["relation"].truth["expected_alert"] == "auc_drop"
    assert sequences["base_rate"].truth["expected_alert"] == "calibration"
    assert sequences["base_rate"].feature is None
    for month, row in zip(s.months, s.truth["per_month"]):
        assert row["month"] == month.label and row["rows"] == ROWS and row["clicks"] == month.clicks
        assert month.oracle.shape == (ROWS,)


def test_months_before_the_shift_are_the_same_whatever_the_kind(sequences):
    for kind in ("relation", "base_rate"):
        for a, b in zip(sequences["feature"].months[:2], sequences[kind].months[:2]):
            assert a.table.equals(b.table)


def test_feature_drift_moves_the_driver_and_its_clicks_only(sequences):
    before, after = sequences["feature"].months[1], sequences["feature"].months[2]
    assert column(before, DRIFT_FEATURE).mean() == pytest.approx(0.0, abs=0.05)
    assert column(after, DRIFT_FEATURE).mean() == pytest.approx(1.0, abs=0.05)
    assert column(after, DRIFT_FEATURE).std() == pytest.approx(1.0, abs=0.05)
    for other in ("feat_a_3", "history_a_2", "hour", "age_group"):
        assert column(after, other).mean() == pytest.approx(column(before, other).mean(),
                                                            abs=0.05 * column(before, other).std() + 1e-9), other
    assert ctr(after) > 1.5 * ctr(before)  # same effect, more of the driver: more clicks


def test_relation_drift_reverses_the_drivers_effect_at_the_same_distribution(sequences):
    months = sequences["relation"].months
    for month in months:
        assert column(month, DRIFT_FEATURE).mean() == pytest.approx(0.0, abs=0.05)
    y_before, y_after = column(months[1], "clicked"), column(months[2], "clicked")
    assert roc_auc(y_before, column(months[1], DRIFT_FEATURE)) > 0.6
    assert roc_auc(y_after, column(months[2], DRIFT_FEATURE)) < 0.4
    assert ctr(months[2]) == pytest.approx(ctr(months[1]), rel=0.3)  # the rate barely moves


def test_base_rate_drift_multiplies_the_clicks_and_keeps_the_features(sequences):
    months = sequences["base_rate"].months
    assert ctr(months[2]) / ctr(months[1]) == pytest.approx(2.3, abs=0.5)
    assert column(months[2], DRIFT_FEATURE).mean() == pytest.approx(0.0, abs=0.05)
    # The ranking is unchanged: the month's own oracle ranks as well as before.
    rows = sequences["base_rate"].truth["per_month"]
    assert abs(rows[2]["oracle_auc"] - rows[1]["oracle_auc"]) < 0.05


def test_months_are_toss_layout_csvs_and_seeded(sequences, tmp_path):
    month = sequences["feature"].months[2]
    parsed = pacsv.read_csv(io.BytesIO(month.csv_bytes()))
    assert parsed.column_names == toss_columns()
    assert parsed.num_rows == ROWS
    assert np.array_equal(parsed.column("clicked").to_numpy(), column(month, "clicked"))
    assert np.allclose(parsed.column(DRIFT_FEATURE).to_numpy(), column(month, DRIFT_FEATURE))
    assert month.csv_text().split("\n", 1)[0] == ",".join(toss_columns())
    paths = sequences["feature"].write(tmp_path)
    assert [p.name for p in paths] == ["2025-11.csv", "2025-12.csv", "2026-01.csv", "2026-02.csv"]
    assert json.loads((tmp_path / "drift.truth.json").read_text())["shift_month"] == "2026-01"
    again = drift_sequence("feature", months=4, shift_at=2, rows_per_month=ROWS, start="2025-11", seed=7)
    assert again.months[3].csv_bytes() == sequences["feature"].months[3].csv_bytes()
    other = drift_sequence("feature", months=2, shift_at=1, rows_per_month=500, seed=8)
    assert other.months[0].csv_bytes() != sequences["feature"].months[0].csv_bytes()


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError, match="unknown drift kind"):
        drift_sequence("season")
    with pytest.raises(ValueError, match="shift_at"):
        drift_sequence("feature", months=3, shift_at=3)
    with pytest.raises(ValueError, match="shift_at"):
        drift_sequence("feature", months=3, shift_at=0)
    with pytest.raises(ValueError, match="month like"):
        drift_sequence("feature", start="March", rows_per_month=10)


def test_the_months_as_one_csv_with_a_date_per_row_inside_its_month(sequences):
    s = sequences["base_rate"]
    data = s.combined_csv_bytes(["2025-12", "2026-01"])
    assert data == s.combined_csv_bytes(["2025-12", "2026-01"])  # seeded
    assert data != s.combined_csv_bytes(["2025-12", "2026-01"], seed=1)
    table = pacsv.read_csv(io.BytesIO(data), convert_options=pacsv.ConvertOptions(
        column_types={"seq": "string", "date": "string"}))
    assert table.column_names == ["date", *toss_columns()] and table.num_rows == 2 * ROWS
    dates = table.column("date").to_pylist()
    assert [d[:7] for d in dates] == ["2025-12"] * ROWS + ["2026-01"] * ROWS  # each row in its own month
    days = {int(d[8:]) for d in dates}
    assert min(days) == 1 and max(days) == 31 and len(days) == 31  # spread over the whole month
    assert dates[:ROWS] != sorted(dates[:ROWS])  # not sorted within a month, as a real export may be
    # Apart from the date, the rows are the months' own files, in order.
    for i, label in enumerate(["2025-12", "2026-01"]):
        month = next(m for m in s.months if m.label == label)
        own = pacsv.read_csv(io.BytesIO(month.csv_bytes()), convert_options=pacsv.ConvertOptions(
            column_types={"seq": "string"}))
        assert table.slice(i * ROWS, ROWS).drop_columns(["date"]).equals(own)
    assert s.combined_table().num_rows == 4 * ROWS
    with pytest.raises(ValueError, match="months must be some of"):
        s.combined_csv_bytes(["2027-01"])
