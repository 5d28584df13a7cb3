"""What makes an upload acceptable.

Two kinds of problems, answered differently:

- *Structural* problems mean the file cannot be read as the platform's CSV at all (empty,
  header only, binary, undecodable, no ``clicked``/``seq`` column, duplicate names, rows
  with the wrong number of fields). They raise ``Rejected`` with a 4xx status and a
  message that says what to fix; nothing about the upload is kept.
- *Data-quality* problems (``clicked`` values other than 0/1, malformed ``seq``, cells
  that are not numbers) are counted per column over the whole file and reported in the
  upload's ``validation`` block; the file is profiled but not converted for training
  when ``clicked`` or ``seq`` is bad.

A file to score (``UploadReceived.purpose == "scoring"``) gets the same checks except that
``clicked`` may be absent (an unlabelled batch) and may hold a single class.

This module reads the first megabyte (``sniff``) and checks one parsed block at a time
(``parse_clicked``, ``parse_seq``, ``to_float``); it imports nothing from Kafka or HTTP.
"""

from __future__ import annotations

import codecs
import csv
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ctrops_common.dataset import REQUIRED_COLUMNS, SEQUENCE, TARGET
from ctrops_common.time_columns import LOCAL_OFFSET_MINUTES, is_time_column

SNIFF_BYTES = 1 << 20
# Python's csv module refuses fields over 131,072 characters by default, and a long seq in the
# first data row is legitimate. What sniff() parses is at most SNIFF_BYTES, so a limit of that
# size bounds nothing it could not already hold: raised for this process (the module-wide setting).
csv.field_size_limit(max(csv.field_size_limit(), SNIFF_BYTES + 1))
_LINE_END = re.compile(r"\r\n|\r|\n")  # CRLF, LF and the old Mac CR-only endings, as Arrow splits rows
EXAMPLES = 3  # offending values quoted per message

# Magic numbers of the files people upload by mistake instead of a CSV export.
_SIGNATURES: list[tuple[bytes, str]] = [
    (b"PK\x03\x04", "a ZIP archive or an Excel .xlsx workbook"),
    (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1", "an old Excel .xls workbook"),
    (b"%PDF", "a PDF document"),
    (b"\x89PNG", "a PNG image"),
    (b"\xff\xd8\xff", "a JPEG image"),
    (b"GIF8", "a GIF image"),
    (b"\x1f\x8b", "a gzip archive"),
    (b"BZh", "a bzip2 archive"),
    (b"7z\xbc\xaf\x27\x1c", "a 7-Zip archive"),
    (b"PAR1", "a Parquet file"),
    (b"SQLite format 3", "an SQLite database"),
]
_UNNAMED = re.compile(r"^Unnamed: \d+$")  # what pandas calls a column without a header
_NUMBER = re.compile(r"^[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$")
_SEQ_OK = r"^-?\d{1,9}(,-?\d{1,9})*$"  # 9 digits at most: always fits int32


class Rejected(Exception):
    """A structural problem: the gateway answers ``status_code`` with ``message``."""

    def __init__(self, status_code: int, message: str) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.message = message


@dataclass
class Header:
    """What the first megabyte says about the file."""

    encoding: str  # "utf-8", "utf-8-sig" or "cp949"
    fields: list[str]  # every header field, as written (index columns included)
    index_positions: list[int] = field(default_factory=list)  # unnamed row-index columns, dropped

    @property
    def kept_positions(self) -> list[int]:
        return [i for i in range(len(self.fields)) if i not in self.index_positions]

    @property
    def columns(self) -> list[str]:
        return [self.fields[i] for i in self.kept_positions]


def _quote(value: str, limit: int = 40) -> str:
    return repr(value if len(value) <= limit else value[:limit] + "...")


def _name_list(names: list[str], limit: int = 12) -> str:
    shown = ", ".join(names[:limit])
    return shown + (f", ... ({len(names)} in all)" if len(names) > limit else "")


def detect_encoding(head: bytes, complete: bool) -> str:
    """UTF-8 (with or without BOM) first, then CP949; anything else is refused."""
    if head.startswith(codecs.BOM_UTF8):
        return "utf-8-sig"
    try:
        codecs.getincrementaldecoder("utf-8")().decode(head, final=complete)
        return "utf-8"
    except UnicodeDecodeError as utf8_error:
        try:
            codecs.getincrementaldecoder("cp949")().decode(head, final=complete)
            return "cp949"
        except UnicodeDecodeError:
            byte = head[utf8_error.start]
            raise Rejected(
                400,
                f"The file is neither UTF-8 nor CP949 text (undecodable byte 0x{byte:02x} at byte offset "
                f"{utf8_error.start}). Save it as 'CSV UTF-8' and upload it again.",
            ) from None


def _check_text(head: bytes) -> None:
    """Refuse binary content early, naming the format when it is a common one."""
    if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        raise Rejected(415, "The file is UTF-16 text. Save it as 'CSV UTF-8' (or CP949) and upload it again.")
    for magic, what in _SIGNATURES:
        if head.startswith(magic):
            raise Rejected(415, f"The file looks like {what}, not CSV text. Export the data as CSV and upload that.")
    sample = head[:65536]
    controls = sum(sample.count(bytes([b])) for b in range(32) if b not in (9, 10, 13))
    if b"\x00" in sample or controls > len(sample) // 100:
        raise Rejected(415, "The file contains binary data, not CSV text. Export the data as CSV and upload that.")


def sniff(path: Path, *, labels_required: bool = True) -> Header:
    """Read the first megabyte: refuse what is not a CSV with the required header.

    ``labels_required=False`` (a file to score): ``clicked`` may be absent, ``seq`` may not."""
    with open(path, "rb") as fh:
        head = fh.read(SNIFF_BYTES)
        complete = not fh.read(1)
    if not head.strip():
        raise Rejected(400, "The file is empty. Upload a CSV with a header line and at least one data row.")
    _check_text(head)
    encoding = detect_encoding(head, complete)
    text = codecs.getincrementaldecoder(encoding)(errors="replace").decode(head, final=complete).lstrip("\ufeff")
    line_end = _LINE_END.search(text)
    first_end = line_end.start() if line_end else -1
    if first_end < 0 and not complete:
        raise Rejected(400, "The first line is longer than 1 MB, so it is not a CSV header. "
                            "The first line must list the column names.")
    first_line = text if first_end < 0 else text[:first_end]
    if first_line.lstrip().startswith(("{", "[", "<")):
        raise Rejected(415, "The file looks like JSON, HTML or XML, not CSV. Export the data as CSV and upload that.")
    try:
        fields = [f.strip().lstrip("\ufeff") for f in next(csv.reader([first_line]), [])]
    except csv.Error as exc:
        raise Rejected(400, f"The header line could not be read as CSV ({exc}). "
                            "The first line must list the column names, separated by commas.") from None
    if len(fields) <= 1:
        for sep, what in (("\t", "tab"), (";", "semicolon"), ("|", "pipe")):
            if sep in first_line:
                raise Rejected(400, f"The file seems to be {what}-separated. Save it as comma-separated CSV "
                                    "(the header must list clicked, seq and the other columns separated by commas).")
        raise Rejected(400, f"The first line {_quote(first_line)} is not a comma-separated header. "
                            "The first line must list the column names, including clicked and seq.")

    header = Header(encoding=encoding, fields=fields)
    rest = text[line_end.end():] if line_end else ""
    first_row = next((line for line in _LINE_END.split(rest, 2)[:2] if line.strip()), None)
    if first_row is not None:
        try:
            width = len(next(csv.reader([first_row]), []))
        except csv.Error:  # e.g. a quoted field running past the sniffed megabyte: Arrow reports the row
            width = len(fields)
        if width == len(fields) + 1:
            # Rows one field wider than the header: an unnamed trailing row index.
            header.fields.append("")
    _check_names(header, labels_required)
    return header


def _check_names(header: Header, labels_required: bool = True) -> None:
    fields = header.fields
    last = len(fields) - 1
    for i in (0, last):
        if (fields[i] == "" or _UNNAMED.match(fields[i])) and i not in header.index_positions:
            header.index_positions.append(i)  # a row index written by pandas or a spreadsheet
    unnamed = [i + 1 for i, name in enumerate(fields) if name == "" and i not in header.index_positions]
    if unnamed:
        raise Rejected(400, f"Column {', '.join(map(str, unnamed))} of the header has no name. "
                            "Give every column a name in the first line.")
    columns = header.columns
    duplicates = {name: n for name, n in Counter(columns).items() if n > 1}
    if duplicates:
        listed = ", ".join(f"{name!r} ({n} times)" for name, n in duplicates.items())
        raise Rejected(400, f"Duplicate column names: {listed}. Each column needs a unique name.")
    required = REQUIRED_COLUMNS if labels_required else tuple(c for c in REQUIRED_COLUMNS if c != TARGET)
    missing = [c for c in required if c not in columns]
    if missing:
        hints = [f"found {n!r}" for c in missing for n in columns if n.lower() == c]
        hint = f" ({'; '.join(hints)}: names are case-sensitive)" if hints else ""
        needs = (f"The file needs '{TARGET}' (0/1) and '{SEQUENCE}' (comma-separated integer tokens)"
                 if labels_required else
                 f"A file to score needs '{SEQUENCE}' (comma-separated integer tokens); '{TARGET}' (0/1) is optional")
        raise Rejected(
            400,
            f"Required column{'s' if len(missing) > 1 else ''} missing: {', '.join(missing)}{hint}. "
            f"{needs}. Found {len(columns)} column{'s' if len(columns) != 1 else ''}: {_name_list(columns)}.",
        )


# --- per-block checks -------------------------------------------------------------


@dataclass
class Problems:
    """Rows of one column that failed a check, counted over the whole file."""

    rows: int = 0
    examples: list[str] = field(default_factory=list)  # "data row 12: '2'"

    def add(self, count: int, examples: list[str]) -> None:
        self.rows += count
        room = EXAMPLES - len(self.examples)
        if room > 0:
            self.examples += examples[:room]


def _examples(raw: pa.Array, bad: np.ndarray, first_row: int) -> list[str]:
    positions = np.flatnonzero(bad)[:EXAMPLES]
    values = raw.take(pa.array(positions, type=pa.int64())).to_pylist() if len(positions) else []
    return [f"data row {first_row + int(p)}: {'empty' if v is None else _quote(v)}" for p, v in zip(positions, values)]


def to_float(raw: pa.Array) -> tuple[pa.Array, np.ndarray | None]:
    """Cells as a float64 array (null where empty or not a finite number) and a mask of the
    non-empty cells that were not numbers (None when there were none).

    ``raw`` is text, or already float64 when Arrow's reader parsed it (the fast path: only
    non-finite values such as ``inf`` need cleaning then).
    """
    if raw.type == pa.float64():
        values = raw
    else:
        try:
            values = pc.cast(raw, pa.float64())
        except pa.ArrowInvalid:
            trimmed = pc.utf8_trim_whitespace(raw)
            looks_numeric = pc.fill_null(pc.match_substring_regex(trimmed, _NUMBER.pattern), True)
            try:
                values = pc.cast(pc.if_else(looks_numeric, trimmed, pa.scalar(None, pa.string())), pa.float64())
            except pa.ArrowInvalid:  # a spelling the regex allows but Arrow does not: ask Python
                values = pa.array([_py_float(v) for v in trimmed.to_pylist()], type=pa.float64())
    finite = pc.is_finite(values)
    if values.null_count == raw.null_count and pc.all(finite).as_py() is not False:
        return values, None
    not_number = (raw.is_valid().to_numpy(zero_copy_only=False)
                  & ~pc.fill_null(finite, False).to_numpy(zero_copy_only=False))
    return pc.if_else(finite, values, pa.scalar(None, pa.float64())), not_number


def _py_float(value: str | None) -> float | None:
    if value is None or not _NUMBER.match(value):
        return None
    try:
        return float(value)
    except ValueError:
        return None


def parse_clicked(raw: pa.Array, first_row: int, problems: Problems) -> np.ndarray:
    """``clicked`` as int8 0/1, -1 where the value is missing or anything else."""
    values = to_float(raw)[0].to_numpy(zero_copy_only=False)  # NaN for missing
    ok = (values == 0) | (values == 1)
    out = np.where(ok, values, -1).astype(np.int8)
    bad = ~ok
    if bad.any():
        problems.add(int(bad.sum()), _examples(raw, bad, first_row))
    return out


def parse_seq(raw: pa.Array, first_row: int, problems: Problems) -> tuple[pa.Array, np.ndarray]:
    """``seq`` as list<int32> (oldest token first) and a mask of the rows where it is missing or malformed.

    Fast path: split and cast in Arrow. Only a block that fails it pays for the regex that
    finds which rows are bad (and tolerates spaces around tokens).
    """
    list_type = pa.list_(pa.int32())
    if raw.null_count == 0:
        try:
            return pc.split_pattern(raw, ",").cast(list_type), np.zeros(len(raw), dtype=bool)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            pass
    compact = pc.replace_substring(raw, " ", "")
    ok = pc.fill_null(pc.match_substring_regex(compact, _SEQ_OK), False)
    kept = pc.if_else(ok, compact, pa.scalar(None, pa.string()))
    lists = pc.split_pattern(kept, ",").cast(list_type)
    bad = ~ok.to_numpy(zero_copy_only=False)
    if bad.any():
        problems.add(int(bad.sum()), _examples(raw, bad, first_row))
    return lists, bad


class Categories:
    """Stable codes for a text column (first seen, first coded), so the model gets numbers."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.codes: dict[str, int] = {}
        self.overflow = 0  # cells whose category came after the limit (stored as missing)

    def encode(self, raw: pa.Array) -> pa.Array:
        encoded = pc.dictionary_encode(raw)
        labels = encoded.dictionary.to_pylist()
        mapping = np.empty(len(labels), dtype=np.float64)
        for j, label in enumerate(labels):
            code = self.codes.get(label)
            if code is None and len(self.codes) < self.limit:
                code = self.codes[label] = len(self.codes)
            mapping[j] = np.nan if code is None else code
        mapping = np.append(mapping, np.nan)  # the last slot stands for an empty cell
        indices = pc.fill_null(encoded.indices, len(labels)).to_numpy(zero_copy_only=False)
        out = mapping[indices]
        missing = np.isnan(out)
        self.overflow += int(missing.sum() - raw.null_count)
        return pa.array(out, mask=missing)


def mostly_text(raw: pa.Array) -> bool:
    """A column whose first block is mostly non-numbers is categorical text, not a broken number column."""
    present = len(raw) - raw.null_count
    if present == 0 or pa.types.is_floating(raw.type):
        return False
    _, not_number = to_float(raw)
    return not_number is not None and int(not_number.sum()) * 2 > present


# --- the time column of a file to score ----------------------------------------------

# A column named one of TIME_COLUMN_NAMES (any case; ctrops_common.time_columns) holds each row's
# time: in a file to score it is read as dates and kept in the Parquet copy as DATE_COLUMN (date32),
# so the scorer can put each row in its monitoring period; it is never a model feature (a training
# upload leaves it out). Times without an offset are Korean time (KST, UTC+9, no daylight saving);
# a time with ``Z`` or an offset is converted to KST first, so every row's date is its day in Korea.
DATE_FORMS = "YYYY-MM-DD or YYYY-MM-DD HH:MM[:SS] (a 'T' may replace the space; optional Z or +09:00)"
_DATE = (r"^(?P<day>\d{4}-\d{2}-\d{2})(?:[T ](?P<hour>\d{2}):(?P<minute>\d{2})(?::(?P<second>\d{2})(?:\.\d{1,9})?)?"
         r" ?(?P<zone>Z|z|[+-]\d{2}(?::?\d{2})?)?)?$")
_YEARS = (1900, 2999)  # a period label has four digits; earlier or later years are typos


def time_columns(columns: list[str]) -> list[str]:
    """The columns whose names say they hold each row's time (case-insensitive)."""
    return [c for c in columns if is_time_column(c)]


def _int_field(parts: pa.StructArray, i: int) -> np.ndarray:
    """A regex group as integers (0 where the group is empty or the row did not match)."""
    text = parts.field(i)
    text = pc.if_else(pc.equal(text, ""), pa.scalar(None, pa.string()), text)
    return pc.fill_null(pc.cast(text, pa.int32()), 0).to_numpy(zero_copy_only=False).astype(np.int64)


def _offset_minutes(zone: pa.Array) -> np.ndarray:
    """``Z``/``+09:00``/``+0900``/``-05`` as minutes east of UTC; the local offset (KST) when empty."""
    digits = pc.replace_substring(zone, ":", "")
    hours = pc.utf8_slice_codeunits(digits, 1, 3)
    minutes = pc.utf8_slice_codeunits(digits, 3, 5)

    def number(part: pa.Array) -> np.ndarray:
        part = pc.if_else(pc.equal(part, ""), pa.scalar(None, pa.string()), part)
        return pc.fill_null(pc.cast(part, pa.int32()), 0).to_numpy(zero_copy_only=False).astype(np.int64)

    east = number(hours) * 60 + number(minutes)
    east = np.where(pc.starts_with(zone, "-").to_numpy(zero_copy_only=False), -east, east)
    empty = pc.equal(zone, "").to_numpy(zero_copy_only=False)
    return np.where(empty, LOCAL_OFFSET_MINUTES, east)  # "Z" has no digits: 0


def _days_slowly(day_text: list[str | None]) -> tuple[np.ndarray, np.ndarray]:
    """Per-row calendar check (only a block with an impossible date such as 2026-02-30 pays for it)."""
    from datetime import date

    epoch = date(1970, 1, 1).toordinal()
    days = np.zeros(len(day_text), dtype=np.int64)
    bad = np.zeros(len(day_text), dtype=bool)
    for i, text in enumerate(day_text):
        if text is None:
            bad[i] = True
            continue
        try:
            days[i] = date.fromisoformat(text).toordinal() - epoch
        except ValueError:
            bad[i] = True
    return days, bad


def parse_dates(raw: pa.Array, first_row: int, problems: Problems) -> tuple[pa.Array, np.ndarray]:
    """Each row's calendar day in KST as date32 (null where bad) and a mask of the bad rows.

    Accepted: ``DATE_FORMS``. A time without an offset is taken as KST; with ``Z`` or an offset it
    is moved to KST, which may change the day (``2026-02-28T20:00:00Z`` is 2026-03-01 in Korea).
    Empty cells, other spellings, impossible dates or times (2026-02-30, 24:00, +15:00) and years
    outside 1900-2999 are bad, each counted and quoted like the other columns' problems.
    """
    text = raw if pa.types.is_string(raw.type) or pa.types.is_large_string(raw.type) else pc.cast(raw, pa.string())
    text = pc.utf8_trim_whitespace(text)
    parts = pc.extract_regex(text, _DATE)
    matched = parts.is_valid().to_numpy(zero_copy_only=False)
    day_text = pc.if_else(parts.is_valid(), parts.field(0), pa.scalar(None, pa.string()))
    try:
        days = pc.cast(day_text, pa.date32()).cast(pa.int32()).fill_null(0).to_numpy(
            zero_copy_only=False).astype(np.int64)
        bad = ~matched
    except pa.ArrowInvalid:  # an impossible calendar day somewhere in the block
        days, impossible = _days_slowly(day_text.to_pylist())
        bad = ~matched | impossible
    hours, minutes, seconds = (_int_field(parts, i) for i in (1, 2, 3))
    zone = pc.fill_null(parts.field(4), "")
    offset = _offset_minutes(zone)
    bad |= (hours > 23) | (minutes > 59) | (seconds > 60) | (np.abs(offset) > 14 * 60)
    # Move each time to KST: the day changes when the time plus (KST - its offset) leaves 0..24h.
    days = days + np.floor_divide(hours * 60 + minutes + (LOCAL_OFFSET_MINUTES - offset), 24 * 60)
    low = (np.datetime64(f"{_YEARS[0]}-01-01") - np.datetime64("1970-01-01")).astype(np.int64)
    high = (np.datetime64(f"{_YEARS[1] + 1}-01-01") - np.datetime64("1970-01-01")).astype(np.int64)
    bad |= (days < low) | (days >= high)
    if bad.any():
        problems.add(int(bad.sum()), _examples(raw if raw.type == pa.string() else text, bad, first_row))
    return pa.array(days.astype(np.int32), type=pa.int32(), mask=bad).cast(pa.date32()), bad
