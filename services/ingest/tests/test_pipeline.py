"""The whole pass over a file: counts against the generator's truth, the Parquet copy against
an independent parse, and every bad input's outcome."""

from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from pydantic import TypeAdapter, ValidationError

from ctrops_common.datagen import NAME_SETS, generate
from ctrops_common.dataset import toss_columns
from ctrops_common.documents import Profile
from ctrops_common.events import PreviewRow
from ctrops_ingest.pipeline import IngestOptions, ingest_csv
from ctrops_ingest.validation import Rejected

SMALL_BLOCKS = IngestOptions(block_bytes=256 * 1024, row_group_rows=2048)  # many blocks, several row groups


@pytest.fixture(scope="module")
def generated(tmp_path_factory) -> tuple[Path, dict]:
    path = tmp_path_factory.mktemp("gen") / "ctr.csv"
    truth = generate(path, 3000, seed=11)
    return path, truth


def run(path: Path, out: Path | None = None, options: IngestOptions = SMALL_BLOCKS):
    return ingest_csv(path, out, options)


def write(tmp_path: Path, text: str | bytes, name: str = "up.csv") -> Path:
    path = tmp_path / name
    path.write_bytes(text.encode() if isinstance(text, str) else text)
    return path


def test_generated_file_counts_match_the_truth(generated, tmp_path):
    path, truth = generated
    result = run(path, tmp_path / "out.parquet")
    assert result.is_valid and result.errors == [] and result.parquet_written
    assert result.rows == truth["rows"] == 3000
    assert result.info["clicked_one"] == truth["clicks"]
    assert result.info["clicked_zero"] == truth["non_clicks"]
    assert result.info["ctr"] == truth["ctr_percent"]
    assert result.columns == toss_columns() and len(result.columns) == 119
    assert len(result.feature_columns) == 117
    assert len(result.preview) == 10
    assert result.column_descriptions["hour"] == "시간대"
    assert result.encoding == "utf-8"


def test_block_size_does_not_change_any_number(generated, tmp_path):
    path, _ = generated
    small = run(path)
    whole = run(path, options=IngestOptions(block_bytes=64 << 20))
    assert small.info == whole.info
    assert small.preview == whole.preview
    assert small.profile.segments.model_dump_json() == whole.profile.segments.model_dump_json()
    assert small.profile.seq == whole.profile.seq
    for name, stats in whole.profile.columns.items():
        for key, value in stats.model_dump().items():
            assert getattr(small.profile.columns[name], key) == (pytest.approx(value) if isinstance(value, float)
                                                                  else value)


def test_parquet_copy_equals_an_independent_parse(generated, tmp_path):
    path, _ = generated
    out = tmp_path / "out.parquet"
    run(path, out)
    table = pq.read_table(out)
    assert table.schema.field("clicked").type == pa.int8()
    assert table.schema.field("seq").type == pa.list_(pa.int32())
    assert all(table.schema.field(c).type == pa.float64() for c in table.column_names if c not in ("seq", "clicked"))
    assert pq.ParquetFile(out).metadata.num_row_groups > 1
    rows = list(csv.DictReader(io.StringIO(path.read_text())))
    parsed = table.to_pylist()
    assert len(parsed) == len(rows)
    for mine, theirs in zip(parsed[::97], rows[::97]):
        assert mine["clicked"] == int(theirs["clicked"])
        assert mine["seq"] == [int(t) for t in theirs["seq"].split(",")]  # oldest first, as written
        for name in ("hour", "history_a_1", "feat_e_3", "l_feat_2"):
            assert mine[name] == (float(theirs[name]) if theirs[name] != "" else None)


def test_profile_is_the_typed_document_and_round_trips(generated):
    path, truth = generated
    profile = run(path).profile
    assert isinstance(profile, Profile)
    assert profile.seq.min_len >= 3 and profile.seq.max_len <= 3000
    hist = profile.columns["history_a_1"]
    assert hist.kind == "numeric" and hist.missing >= 0
    assert abs(hist.mean) < 0.1 and 0.9 < hist.std < 1.1
    assert profile.columns["clicked"].kind == "target"
    assert profile.columns["clicked"].mean == pytest.approx(truth["clicks"] / truth["rows"])
    hours = profile.segments.hour
    assert [h.value for h in hours] == list(range(24))
    assert sum(h.rows for h in hours) == truth["rows"]
    assert sum(h.clicks for h in hours) == truth["clicks"]
    assert profile.totals() == (truth["rows"], truth["clicks"])
    assert profile.segments.age_group_gender[0].rows > 0
    assert len(profile.segments.day_of_week) == 7
    written = profile.model_dump_json()
    json.loads(written, parse_constant=lambda c: pytest.fail(f"{c} in profile.json"))  # no NaN anywhere
    assert Profile.model_validate_json(written) == profile
    document = json.loads(written)
    assert set(document) == {"columns", "seq", "segments"}
    assert set(document["segments"]["age_group_gender"][0]) == {"age_group", "gender", "rows", "clicks", "ctr"}
    document["segments"]["hour"][0]["share"] = 0.5  # a key the model does not declare is an error
    with pytest.raises(ValidationError, match="extra_forbidden"):
        Profile.model_validate(document)


def test_cp949_file_with_korean_column_names(tmp_path):
    path = tmp_path / "korean.csv"
    truth = generate(path, 800, seed=3, encoding="cp949", rename=NAME_SETS["korean"])
    out = tmp_path / "out.parquet"
    result = run(path, out)
    assert result.encoding == "cp949" and result.is_valid
    assert result.info["clicked_one"] == truth["clicks"]
    assert "콘텐츠_카테고리" in result.columns and "콘텐츠_카테고리" in result.preview[0]
    assert result.column_descriptions["콘텐츠_카테고리"] == "콘텐츠_카테고리"
    assert "콘텐츠_카테고리" in pq.read_table(out).column_names


def test_bom_and_index_column_files(tmp_path):
    bom = tmp_path / "bom.csv"
    generate(bom, 300, seed=4, encoding="utf-8-sig", index_column=True)
    result = run(bom)
    assert result.encoding == "utf-8-sig"
    assert result.columns == toss_columns()
    assert any("row-index column" in w for w in result.warnings)


def test_korean_text_after_the_first_megabyte_is_read_as_cp949(tmp_path):
    rows = ["seq,clicked,device"] + [f"\"1,2,{i}\",{i % 2},{i}" for i in range(60_000)] + ["\"3\",1,5"]
    data = "\n".join(rows).encode("ascii") + "\n\"4\",0,7\n\"5\",0,\"모바일\"\n".encode("cp949")
    assert len(data) > (1 << 20)
    result = run(write(tmp_path, data))
    assert result.encoding == "cp949"
    assert result.rows == 60_003
    assert any("device: 1 values are not numbers" in w and "모바일" in w for w in result.warnings)


def test_mixed_encodings_are_refused(tmp_path):
    rows = ["seq,clicked"] + [f"\"1,{i}\",{i % 2}" for i in range(120_000)]
    data = "\n".join(rows).encode() + b"\n\"\xff\xff\",0\n"
    with pytest.raises(Rejected) as info:
        run(write(tmp_path, data))
    assert info.value.status_code == 400 and "neither UTF-8 nor CP949 throughout" in info.value.message


def test_header_only_is_rejected(tmp_path):
    with pytest.raises(Rejected) as info:
        run(write(tmp_path, "hour,seq,clicked\n\n"))
    assert info.value.status_code == 400 and "no data rows" in info.value.message


def test_ragged_rows_are_rejected_with_line_numbers_and_nothing_written(tmp_path):
    text = "hour,seq,clicked\n" + "".join(
        "1,2,3,\"4\",0\n" if i in (3, 7) else ("5,\"6\"\n" if i == 9 else f"{i % 24},\"1,2\",{i % 2}\n")
        for i in range(20)
    )
    out = tmp_path / "out.parquet"
    with pytest.raises(Rejected) as info:
        run(write(tmp_path, text), out)
    message = info.value.message
    assert info.value.status_code == 400
    assert message.startswith("3 rows do not have 3 fields like the header")
    assert "line 5 has 5" in message and "line 9 has 5" in message and "line 11 has 2" in message
    assert not out.exists()


def test_bad_clicked_and_seq_are_data_errors_and_stop_the_conversion(tmp_path):
    lines = ["hour,seq,clicked"] + [f"{i % 24},\"1,{i}\",{i % 2}" for i in range(1, 101)]
    lines[5] = "4,\"1,5\",2"
    lines[6] = "5,\"1,6\",yes"
    lines[8] = "7,\"1,,8\",0"
    lines[9] = "8,,1"
    out = tmp_path / "out.parquet"
    result = run(write(tmp_path, "\n".join(lines) + "\n"), out)
    assert not result.is_valid and not result.parquet_written and not out.exists()
    assert result.errors[0] == ("clicked: 2 rows are not 0 or 1 (data row 5: '2'; data row 6: 'yes'). "
                                "Fix or remove those rows.")
    assert result.errors[1].startswith("seq: 2 rows are empty or not comma-separated integers "
                                       "(data row 8: '1,,8'; data row 9: empty)")
    assert result.rows == 100 and result.info["clicked_one"] + result.info["clicked_zero"] == 98


def test_cells_that_are_not_numbers_are_counted_and_become_missing(tmp_path):
    lines = ["hour,seq,clicked,price"] + [f"{i % 24},\"1\",{i % 2},{i}.5" for i in range(50)]
    lines[3] = "2,\"1\",0,n/a?"
    lines[4] = "3,\"1\",1,abc"
    out = tmp_path / "out.parquet"
    result = run(write(tmp_path, "\n".join(lines) + "\n"), out)
    assert result.is_valid and result.parquet_written
    assert result.warnings == ["price: 2 values are not numbers (data row 3: 'n/a?'; data row 4: 'abc'); "
                               "they are treated as missing."]
    assert pq.read_table(out).column("price").null_count == 2
    assert result.profile.columns["price"].not_numeric == 2
    assert result.info["missing_values"] == 0  # empty cells only; unreadable ones are warned about


def test_text_columns_become_category_codes(tmp_path):
    lines = ["device,seq,clicked"] + [f"{['mobile', 'desktop', 'tablet'][i % 3]},\"1\",{i % 2}" for i in range(30)]
    out = tmp_path / "out.parquet"
    result = run(write(tmp_path, "\n".join(lines) + "\n"), out)
    assert pq.read_table(out).column("device").to_pylist()[:4] == [0.0, 1.0, 2.0, 0.0]
    assert result.profile.columns["device"].categories == ["mobile", "desktop", "tablet"]
    assert result.preview[0]["device"] == "mobile"
    assert any("device: text values, encoded as 3 category codes" in w for w in result.warnings)


def test_missing_duplicates_and_single_class_are_reported(tmp_path):
    lines = ["hour,seq,clicked,empty_col"] + ["1,\"1,2\",0,"] * 3 + ["2,\"3\",0,", "2,,0,"]
    result = run(write(tmp_path, "\n".join(lines) + "\n"))
    assert result.info["duplicate_rows"] == 2
    assert result.info["missing_values"] == 6  # five empty_col cells and one seq
    assert result.info["missing_percentage"] == pytest.approx(100 * 6 / 20)
    assert "empty_col" not in result.feature_columns
    assert any("clicked: all 5 rows are 0 (no clicks)" in e for e in result.errors)
    assert any("2 rows repeat an earlier row" in w for w in result.warnings)


def test_preview_is_json_safe_with_null_for_missing(generated):
    path, _ = generated
    preview = run(path).preview
    text = json.dumps(preview, allow_nan=False)
    assert "NaN" not in text
    assert all(isinstance(row["clicked"], int) for row in preview)
    assert all(not isinstance(v, float) or math.isfinite(v) for row in preview for v in row.values())
    assert list(preview[0]) == toss_columns()
    assert any(row["feat_e_1"] is None for row in preview)  # seed 11 has the feat_e block missing in the first rows
    assert all(isinstance(row["hour"], int) for row in preview)  # whole numbers read as numbers, not 22.0


def test_preview_rows_are_the_events_typed_rows_and_read_back_unchanged(tmp_path):
    """What FileUploaded.preview carries: per cell an int (whole numbers), a float, the text (seq, text
    and time columns) or None (empty), each read back from JSON as the same value of the same type."""
    lines = ["hour,seq,device,price,Event_Date,clicked"] + [
        f"{i % 24},\"1,{i}\",{['mobile', 'desktop'][i % 2]},{i}.25,2026-03-{i % 28 + 1:02d},{i % 2}" for i in range(20)]
    lines[2] = "1,\"1,1\",desktop,,2026-03-02,1"  # an empty price
    preview = run(write(tmp_path, "\n".join(lines) + "\n")).preview
    assert preview[0] == {"hour": 0, "seq": "1,0", "device": "mobile", "price": 0.25, "Event_Date": "2026-03-01",
                          "clicked": 0}
    assert preview[1]["price"] is None
    rows = TypeAdapter(list[PreviewRow]).validate_json(json.dumps(preview, allow_nan=False))
    assert rows == preview
    assert [[type(v) for v in row.values()] for row in rows] == [[type(v) for v in row.values()] for row in preview]
    assert {type(v) for row in preview for v in row.values()} == {int, float, str, type(None)}


def test_missing_value_spellings_are_missing_in_every_column(tmp_path):
    lines = ["hour,seq,clicked,price"] + [f"{i % 24},\"1,{i}\",{i % 2},{i}.5" for i in range(30)]
    lines[2] = "NA,\"1\",0,nan"
    lines[3] = "3,NULL,1,N/A"
    lines[4] = "4,\"1\",NA,2.0"
    result = run(write(tmp_path, "\n".join(lines) + "\n"))
    assert result.info["missing_values"] == 5  # NA, nan, NULL, N/A, NA: missing, not "not numbers"
    assert result.warnings == []
    assert result.profile.columns["hour"].missing == 1 and result.profile.columns["price"].missing == 2
    assert result.errors[0].startswith("clicked: 1 rows are not 0 or 1 (data row 4: empty)")
    assert result.errors[1].startswith("seq: 1 rows are empty or not comma-separated integers (data row 3: empty)")


def test_missing_value_spellings_in_text_columns_only_keep_the_fast_path(tmp_path):
    lines = ["hour,seq,clicked"] + [f"{i % 24},\"1,{i}\",{i % 2}" for i in range(30)] + ["5,NA,0", "6,\"2\",null"]
    result = run(write(tmp_path, "\n".join(lines) + "\n"))
    assert result.info["missing_values"] == 2
    assert result.profile.columns["seq"].missing == 1 and result.profile.columns["clicked"].missing == 1


# -- time columns (date, event_date, timestamp, event_time) ------------------------------------------


def test_a_time_column_in_a_training_upload_is_never_a_feature(tmp_path):
    lines = ["hour,seq,clicked,Event_Date"] + [f"{i % 24},\"1,{i}\",{i % 2},2026-03-{i % 28 + 1:02d}"
                                                for i in range(40)]
    out = tmp_path / "out.parquet"
    result = run(write(tmp_path, "\n".join(lines) + "\n"), out)
    # Before, the text column became category codes, a feature the model trained on.
    assert result.is_valid and result.errors == []
    assert result.feature_columns == ["hour"] and "Event_Date" in result.columns
    assert pq.read_table(out).column_names == ["hour", "seq", "clicked"]
    assert any(w.startswith("Event_Date: a time column") and "never a model feature" in w
               for w in result.warnings), result.warnings
    assert not any("category codes" in w for w in result.warnings)
    assert result.time_column is None and result.preview[0]["Event_Date"] == "2026-03-01"
    assert result.profile.columns["Event_Date"].kind == "time"
    # Even unreadable values are no error there: the column is not used.
    bad = run(write(tmp_path, "hour,seq,clicked,timestamp\n1,\"1\",0,yesterday\n2,\"2\",1,1700000000\n",
                    "t.csv"), tmp_path / "t.parquet")
    assert bad.is_valid and bad.feature_columns == ["hour"]


def test_a_file_to_score_keeps_its_dates_as_a_date_column(tmp_path):
    from datetime import date

    lines = ["timestamp,hour,seq"] + [f"2026-0{2 + i % 3}-{i % 28 + 1:02d} 12:00:00,{i % 24},\"1,{i}\""
                                      for i in range(30)]
    lines.append("2026-01-31T20:00:00Z,5,\"7\"")  # February 1st in Korea
    out = tmp_path / "score.parquet"
    result = ingest_csv(write(tmp_path, "\n".join(lines) + "\n"), out, SMALL_BLOCKS, labels_required=False)
    assert result.is_valid, result.errors
    assert result.time_column == "timestamp" and result.feature_columns == ["hour"]
    assert (result.first_date, result.last_date) == ("2026-02-01", "2026-04-27")
    table = pq.read_table(out)
    assert table.column_names == ["date", "hour", "seq"] and table.schema.field("date").type == pa.date32()
    days = table.column("date").to_pylist()
    assert days[:3] == [date(2026, 2, 1), date(2026, 3, 2), date(2026, 4, 3)] and days[-1] == date(2026, 2, 1)
    assert result.profile.columns["timestamp"].first == "2026-02-01"


def test_bad_or_missing_dates_in_a_file_to_score_are_errors_naming_the_rows(tmp_path):
    text = "hour,seq,date\n1,\"1\",2026-03-01\n2,\"2\",\n3,\"3\",2026-13-01\n4,\"4\",2026-03-02\n"
    out = tmp_path / "bad.parquet"
    result = ingest_csv(write(tmp_path, text), out, SMALL_BLOCKS, labels_required=False)
    assert not result.is_valid and not result.parquet_written and not out.exists()
    [error] = result.errors
    assert error.startswith("date: 2 rows are empty or not dates (data row 2: empty; data row 3: '2026-13-01')")
    assert "YYYY-MM-DD" in error and "KST" in error

    two = ingest_csv(write(tmp_path, "seq,date,event_time\n\"1\",2026-03-01,2026-03-01\n", "two.csv"), None,
                     SMALL_BLOCKS, labels_required=False)
    assert not two.is_valid and "2 time columns (date, event_time)" in two.errors[0]
