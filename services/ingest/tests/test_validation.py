"""Structural checks on the first megabyte, and the per-block checks of clicked, seq and numbers."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pytest

from ctrops_ingest.validation import (
    Categories,
    Problems,
    Rejected,
    mostly_text,
    parse_clicked,
    parse_dates,
    parse_seq,
    sniff,
    time_columns,
    to_float,
)

GOOD = "hour,seq,clicked\n1,\"1,2,3\",0\n2,\"4,5\",1\n"


def write(tmp_path: Path, data: bytes | str, name: str = "up.csv") -> Path:
    path = tmp_path / name
    path.write_bytes(data.encode("utf-8") if isinstance(data, str) else data)
    return path


def rejected(path: Path) -> Rejected:
    with pytest.raises(Rejected) as info:
        sniff(path)
    return info.value


def test_plain_utf8_header_is_read_as_written(tmp_path):
    header = sniff(write(tmp_path, GOOD))
    assert header.encoding == "utf-8"
    assert header.columns == ["hour", "seq", "clicked"]
    assert header.index_positions == []


def test_bom_and_cp949_are_detected_and_korean_names_kept(tmp_path):
    bom = sniff(write(tmp_path, b"\xef\xbb\xbf" + GOOD.encode(), "bom.csv"))
    assert bom.encoding == "utf-8-sig" and bom.columns[0] == "hour"
    korean = "시간대,seq,clicked,광고_지면\n1,\"1,2\",0,3\n".encode("cp949")
    header = sniff(write(tmp_path, korean, "cp.csv"))
    assert header.encoding == "cp949"
    assert header.columns == ["시간대", "seq", "clicked", "광고_지면"]


@pytest.mark.parametrize("data", [b"", b"   \r\n\n"])
def test_empty_file_is_400(tmp_path, data):
    error = rejected(write(tmp_path, data))
    assert error.status_code == 400 and "empty" in error.message


@pytest.mark.parametrize(
    ("data", "words"),
    [
        (b"PK\x03\x04" + b"\x00" * 100, "Excel .xlsx"),
        (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\x00" * 100, "Excel .xls"),
        (b"%PDF-1.7\n" + bytes(range(256)), "PDF"),
        (bytes(range(256)) * 10, "binary data"),
        (b"\xff\xfeh\x00o\x00u\x00r\x00", "UTF-16"),
        (b'{"hour": 1, "seq": "1,2", "clicked": 0}\n', "JSON"),
    ],
)
def test_binary_and_non_csv_content_is_415_naming_what_it_is(tmp_path, data, words):
    error = rejected(write(tmp_path, data))
    assert error.status_code == 415
    assert words in error.message


def test_undecodable_text_is_400_with_the_offset(tmp_path):
    error = rejected(write(tmp_path, b"hour,seq,clicked\n1,\"1\",0\n\xff\xff\xff\n"))
    assert error.status_code == 400
    assert "neither UTF-8 nor CP949" in error.message and "0xff" in error.message


@pytest.mark.parametrize(
    ("header", "missing"),
    [("hour,seq\n1,2\n", "clicked"), ("hour,clicked\n1,0\n", "seq"), ("hour,minute\n1,2\n", "clicked, seq")],
)
def test_missing_required_columns_are_named(tmp_path, header, missing):
    error = rejected(write(tmp_path, header))
    assert error.status_code == 400
    assert f"missing: {missing}." in error.message
    assert "Found 2 columns" in error.message


def test_wrong_case_of_a_required_column_gets_a_hint(tmp_path):
    error = rejected(write(tmp_path, "hour,seq,Clicked\n1,\"1\",0\n"))
    assert "found 'Clicked'" in error.message


def test_duplicate_column_names_are_400_and_named(tmp_path):
    error = rejected(write(tmp_path, "hour,seq,hour,clicked,hour\n1,\"1\",2,0,3\n"))
    assert error.status_code == 400
    assert "Duplicate column names: 'hour' (3 times)" in error.message


def test_other_separators_are_named(tmp_path):
    assert "tab-separated" in rejected(write(tmp_path, "hour\tseq\tclicked\n1\t1\t0\n")).message
    assert "semicolon-separated" in rejected(write(tmp_path, "hour;seq;clicked\n1;1;0\n")).message


def test_unnamed_middle_column_is_refused(tmp_path):
    error = rejected(write(tmp_path, "hour,,seq,clicked\n1,2,\"1\",0\n"))
    assert error.status_code == 400 and "Column 2 of the header has no name" in error.message


@pytest.mark.parametrize(
    ("data", "positions", "columns"),
    [
        (",hour,seq,clicked\n0,1,\"1\",0\n", [0], ["hour", "seq", "clicked"]),
        ("Unnamed: 0,hour,seq,clicked\n0,1,\"1\",0\n", [0], ["hour", "seq", "clicked"]),
        ("hour,seq,clicked,\n1,\"1\",0,0\n", [3], ["hour", "seq", "clicked"]),
        ("hour,seq,clicked\n1,\"1\",0,0\n1,\"2\",1,1\n", [3], ["hour", "seq", "clicked"]),  # rows one wider
    ],
)
def test_row_index_columns_are_recognised(tmp_path, data, positions, columns):
    header = sniff(write(tmp_path, data))
    assert header.index_positions == positions
    assert header.columns == columns


# --- per-block checks ---------------------------------------------------------------


def test_to_float_counts_cells_that_are_not_numbers():
    raw = pa.array(["1.5", None, "abc", " 2 ", "inf", "1e3", "-0.5"])
    values, not_number = to_float(raw)
    assert values.type == pa.float64()
    assert values.to_pylist() == [1.5, None, None, 2.0, None, 1000.0, -0.5]
    assert not_number.tolist() == [False, False, True, False, True, False, False]


def test_to_float_clean_text_takes_the_fast_path():
    values, not_number = to_float(pa.array(["1", None, "2.5"]))
    assert values.to_pylist() == [1.0, None, 2.5] and not_number is None


def test_to_float_accepts_arrow_parsed_doubles():
    values, not_number = to_float(pa.array([1.0, None, float("inf"), float("nan")]))
    assert values.to_pylist() == [1.0, None, None, None]
    assert not_number.tolist() == [False, False, True, True]
    clean = pa.array([1.0, None])
    assert to_float(clean)[0] is clean and to_float(clean)[1] is None


def test_parse_clicked_marks_everything_but_0_and_1():
    problems = Problems()
    out = parse_clicked(pa.array(["0", "1", "1.0", "2", None, "yes", "0"]), first_row=11, problems=problems)
    assert out.tolist() == [0, 1, 1, -1, -1, -1, 0]
    assert problems.rows == 3
    assert problems.examples == ["data row 14: '2'", "data row 15: empty", "data row 16: 'yes'"]


def test_parse_seq_fast_path_keeps_token_order():
    problems = Problems()
    lists, bad = parse_seq(pa.array(["5,3,9", "7"]), 1, problems)
    assert lists.to_pylist() == [[5, 3, 9], [7]]
    assert lists.type == pa.list_(pa.int32())
    assert not bad.any() and problems.rows == 0


def test_parse_seq_tolerates_spaces_and_counts_malformed_rows():
    problems = Problems()
    raw = pa.array(["1, 2, 3", "1,,2", "a,b", None, "4", "1.5,2", "12345678901"])
    lists, bad = parse_seq(raw, 1, problems)
    assert bad.tolist() == [False, True, True, True, False, True, True]
    assert lists.to_pylist()[0] == [1, 2, 3] and lists.to_pylist()[4] == [4]
    assert problems.rows == 5
    assert problems.examples[0] == "data row 2: '1,,2'"


def test_categories_keep_their_codes_across_blocks_and_stop_at_the_limit():
    cats = Categories(limit=2)
    first = cats.encode(pa.array(["mobile", "desktop", None, "mobile"]))
    second = cats.encode(pa.array(["desktop", "tablet", "mobile"]))
    assert first.to_pylist() == [0.0, 1.0, None, 0.0]
    assert second.to_pylist() == [1.0, None, 0.0]
    assert cats.overflow == 1


def test_mostly_text_separates_text_columns_from_dirty_numbers():
    assert mostly_text(pa.array(["mobile", "desktop", "1"]))
    assert not mostly_text(pa.array(["1", "2", "oops"]))
    assert not mostly_text(pa.array([None, None], type=pa.string()))


def test_time_columns_are_found_by_name_in_any_case():
    assert time_columns(["hour", "Date", "seq", "EVENT_TIME", "dates", "timestamp_ms"]) == ["Date", "EVENT_TIME"]
    assert time_columns(["event_date", "timestamp"]) == ["event_date", "timestamp"]


def test_dates_are_the_rows_korean_calendar_days():
    from datetime import date

    problems = Problems()
    raw = pa.array([
        "2026-03-01",                   # a day
        " 2026-03-01 23:59 ",           # naive: KST, spaces trimmed
        "2026-03-01T23:59:59.5",        # fractions of a second allowed
        "2026-02-28T20:00:00Z",         # 05:00 on March 1st in Korea
        "2026-02-28 14:59:59Z",         # 23:59:59 on February 28th in Korea
        "2026-03-01 00:30:00+0900",
        "2026-03-31 23:30-01:00",       # 09:30 on April 1st in Korea
        "2026-03-01 08:00:00+09",
    ])
    days, bad = parse_dates(raw, 1, problems)
    assert not bad.any() and problems.rows == 0
    assert days.type == pa.date32()
    assert days.to_pylist() == [date(2026, 3, 1), date(2026, 3, 1), date(2026, 3, 1), date(2026, 3, 1),
                                date(2026, 2, 28), date(2026, 3, 1), date(2026, 4, 1), date(2026, 3, 1)]


def test_bad_dates_are_counted_and_named_by_row():
    problems = Problems()
    raw = pa.array(["2026-03-01", "2026-02-30", None, "03/01/2026", "2026-03-01 24:00", "2026-03-01 10:00+15:00",
                    "1850-01-01", "2026-03-01 10:61", "20260301"])
    days, bad = parse_dates(raw, 10, problems)
    assert bad.tolist() == [False] + [True] * 8
    assert days.null_count == 8 and days[0].as_py().isoformat() == "2026-03-01"
    assert problems.rows == 8
    assert problems.examples == ["data row 11: '2026-02-30'", "data row 12: empty", "data row 13: '03/01/2026'"]
