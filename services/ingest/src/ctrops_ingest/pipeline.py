"""One pass over an uploaded CSV: validate, profile and convert, in bounded memory.

``ingest_csv(source, parquet_out)`` sniffs the first megabyte (encoding, header), then
streams the file through Arrow's CSV reader in blocks of ``block_bytes``. Every cell is
read as text and turned into numbers here, so one bad cell costs a count and a warning
instead of failing the file. Each block feeds the checks (validation), the statistics
(profiling) and, while the data is still valid, the Parquet writer (conversion).
Memory holds a block or two, a Parquet row group, and 8 bytes per row for the duplicate
count: a 500 MB upload needs a few hundred MB whatever its row count.

Structural problems raise ``Rejected``; everything else ends in an ``IngestResult``.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from ctrops_common.dataset import SEQUENCE, TARGET, column_description
from ctrops_common.documents import Profile
from ctrops_common.events import PreviewRow
from ctrops_common.time_columns import DATE_COLUMN, TIME_COLUMN_NAMES

from .conversion import ParquetSink
from .profiling import ProfileBuilder, row_hashes, text_hashes
from .validation import (
    DATE_FORMS,
    Categories,
    Header,
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

log = logging.getLogger(__name__)

# Cells that mean "missing", as pandas reads them. The typed first attempt lets Arrow treat
# only empty cells as missing (a 17-entry lookup per cell costs a quarter of the parse); such a
# token in a feature column then fails the float parse and the text attempt uses this list.
NULL_TEXTS = ["", "#N/A", "#N/A N/A", "#NA", "-1.#IND", "-1.#QNAN", "-NaN", "-nan", "1.#IND", "1.#QNAN",
              "N/A", "NA", "NULL", "NaN", "n/a", "nan", "null", "None", "<NA>"]
_NULL_SET = pa.array(NULL_TEXTS[1:])
RAGGED_EXAMPLES = 5
FLOAT32_MAX = float(np.finfo(np.float32).max)  # the trainer's numbers: larger magnitudes become missing there
WARNED_COLUMNS = 10  # per-column warnings listed one by one; the rest are summarised


@dataclass(frozen=True)
class IngestOptions:
    block_bytes: int = 4 << 20  # small enough to stay in cache, large enough to amortise per-block work
    # ~18 MB per group for the 119-column layout: small enough that the last group's encoding,
    # which nothing overlaps, is short; large enough that readers see few groups.
    row_group_rows: int = 16_384
    preview_rows: int = 10
    max_categories: int = 10_000
    max_segment_values: int = 200
    use_threads: bool = True


@dataclass
class IngestResult:
    encoding: str
    rows: int
    columns: list[str]
    feature_columns: list[str]
    is_valid: bool
    errors: list[str]
    warnings: list[str]
    info: dict[str, Any]  # the fields of ctrops_common.events.DataInfo
    preview: list[PreviewRow]  # ctrops_common.events.FileUploaded.preview
    column_descriptions: dict[str, str]
    profile: Profile
    parquet_written: bool
    labelled: bool = True  # the file has a ``clicked`` column (always, unless labels were optional)
    time_column: str | None = None  # a file to score's time column (kept as ``date`` in the Parquet copy)
    first_date: str | None = None  # its earliest and latest day (ISO, KST)
    last_date: str | None = None


class _NotUtf8(Exception):
    """Arrow met invalid UTF-8 after a sniffed-UTF-8 start: the file may be CP949 throughout."""


class _NotCp949(Exception):
    """The CP949 decoder met bytes that are not CP949."""


class _NotNumeric(Exception):
    """A feature cell is not a number: read the file again with every cell as text."""


def ingest_csv(source: Path, parquet_out: Path | None, options: IngestOptions = IngestOptions(), *,
               labels_required: bool = True) -> IngestResult:
    """Validate, profile and (when valid and ``parquet_out`` is given) convert ``source``.

    ``labels_required=False`` is a file to score (``UploadReceived.purpose == "scoring"``): the
    same checks, except that ``clicked`` may be absent (an unlabelled batch: the Parquet copy has
    no ``clicked`` column) and may hold a single class. When present its values must still be 0/1.

    A time column (``TIME_COLUMN_NAMES``, any case) is never a feature. In a file to score every
    row must hold a date (``DATE_FORMS``; KST unless an offset is given) and the column is kept in
    the Parquet copy as ``date`` (date32, the row's day in KST); a training upload leaves it out
    of the copy with a warning.

    The first attempt lets Arrow parse the feature columns as float64 while it splits the
    file (in its own threads: the fast path for clean files). A cell that is not a number
    makes that attempt stop; the second reads every cell as text and coerces it here,
    counting what could not be coerced. Likewise a file that stops being UTF-8 after its
    first megabyte is read again as CP949.
    """
    header = sniff(source, labels_required=labels_required)
    typed = True
    retried_encoding = False
    while True:
        try:
            return _Run(source, header, parquet_out, options, typed, labels_required).execute()
        except _NotNumeric:
            log.info("%s: a feature cell is not a number, reading every cell as text", source.name)
            typed = False
        except (_NotUtf8, _NotCp949) as exc:
            if retried_encoding or header.encoding == "utf-8-sig":
                raise Rejected(400, "The file mixes encodings: it is neither UTF-8 nor CP949 throughout. "
                                    "Save it as 'CSV UTF-8' and upload it again.") from None
            if isinstance(exc, _NotCp949):
                raise Rejected(400, "The file is not valid CP949 text after its first megabyte. "
                                    "Save it as 'CSV UTF-8' and upload it again.") from None
            log.info("%s: invalid UTF-8 after the first megabyte, reading it again as CP949", source.name)
            header.encoding = "cp949"
            retried_encoding = True


def _read_ahead(reader: pacsv.CSVStreamingReader) -> Iterator[pa.RecordBatch]:
    """The reader's batches, the next one parsed on its own thread (Arrow releases the GIL)
    while the caller handles the current one: one more block in memory, the parse overlapped."""
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="csv") as pool:
        upcoming = pool.submit(next, reader, None)
        while (batch := upcoming.result()) is not None:
            upcoming = pool.submit(next, reader, None)
            yield batch


def _null_texts(column: pa.Array) -> pa.Array:
    spelled = pc.is_in(column, value_set=_NULL_SET)
    if not pc.any(spelled).as_py():
        return column
    return pc.if_else(spelled, pa.scalar(None, column.type), column)


def _iso_day(days: int | None) -> str | None:
    return None if days is None else str(np.datetime64(days, "D"))


def _json_number(value: float) -> int | float | None:
    if value != value:  # NaN
        return None
    return int(value) if value.is_integer() and abs(value) < 2**53 else value


@dataclass
class _Ragged:
    rows: int = 0
    examples: list[tuple[int | None, int, int]] = field(default_factory=list)  # (line, fields, expected)

    def handler(self, row: Any) -> str:
        self.rows += 1
        if len(self.examples) < RAGGED_EXAMPLES:
            self.examples.append((row.number, row.actual_columns, row.expected_columns))
        return "skip"


class _Run:
    def __init__(self, source: Path, header: Header, parquet_out: Path | None, options: IngestOptions,
                 typed: bool, labels_required: bool = True) -> None:
        self.source = source
        self.labels_required = labels_required
        self.typed = typed
        self.header = header
        self.options = options
        self.columns = header.columns
        self.labelled = TARGET in self.columns  # always, when labels are required (sniff checked it)
        # Time columns are never features; a file to score keeps its one time column as ``date``.
        self.time_columns = time_columns(self.columns)
        self.time_column = self.time_columns[0] if not labels_required and len(self.time_columns) == 1 else None
        self.features = [c for c in self.columns if c not in (TARGET, SEQUENCE) and c not in self.time_columns]
        self.internal = {name: f"c{pos}" for name, pos in zip(self.columns, header.kept_positions)}
        stored = [DATE_COLUMN if c == self.time_column else c for c in self.columns
                  if c not in self.time_columns or c == self.time_column]
        self.sink = ParquetSink(parquet_out, stored, options.row_group_rows) if parquet_out else None
        self.bad_dates = Problems()
        self.first_day: int | None = None  # days since 1970-01-01 (KST calendar)
        self.last_day: int | None = None
        self.profile = ProfileBuilder(self.features, options.max_segment_values)
        self.kinds: dict[str, str] = {}  # feature -> "numeric" | "categorical"
        self.categories: dict[str, Categories] = {}
        self.not_numbers = {name: Problems() for name in self.features}
        self.too_large = {name: Problems() for name in self.features}  # beyond float32: missing in training
        self.empty = {name: 0 for name in self.columns}
        self.bad_clicked = Problems()
        self.bad_seq = Problems()
        self.ragged = _Ragged()
        self.rows = 0
        self.clicks = 0
        self.non_clicks = 0
        self.preview: list[PreviewRow] = []
        self._seq_thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="seq")

    # -- reading ------------------------------------------------------------------

    def _reader(self, use_threads: bool, handler: Any) -> pacsv.CSVStreamingReader:
        names = [f"c{i}" for i in range(len(self.header.fields))]
        wanted = list(self.internal.values())
        encoding = "cp949" if self.header.encoding == "cp949" else "utf8"
        return pacsv.open_csv(
            self.source,
            read_options=pacsv.ReadOptions(
                use_threads=use_threads, block_size=self.options.block_bytes, skip_rows=1,
                column_names=names, encoding=encoding,
            ),
            parse_options=pacsv.ParseOptions(invalid_row_handler=handler, newlines_in_values=False),
            convert_options=pacsv.ConvertOptions(
                column_types={n: (pa.float64() if self.typed and name in self.features else pa.string())
                              for name, n in self.internal.items()},
                include_columns=wanted,
                null_values=[""] if self.typed else NULL_TEXTS,
                strings_can_be_null=True, quoted_strings_can_be_null=True, check_utf8=True,
            ),
        )

    def execute(self) -> IngestResult:
        try:
            try:
                reader = self._reader(self.options.use_threads, self.ragged.handler)
                # closing(): a failed block stops the read-ahead thread now, not when the generator is collected
                with closing(_read_ahead(reader)) as batches:
                    for batch in batches:
                        if batch.num_rows:
                            self._block(batch)
            except pa.ArrowInvalid as exc:
                text = str(exc)
                if "invalid UTF8" in text:
                    raise _NotUtf8() from exc
                if self.typed and "conversion error to double" in text:
                    raise _NotNumeric() from exc
                raise Rejected(400, f"The CSV could not be parsed after data row {self.rows}: "
                                    f"{text.splitlines()[0][:300]}") from None
            except UnicodeDecodeError as exc:
                raise _NotCp949() from exc
            if self.ragged.rows:
                raise Rejected(400, self._ragged_message())
            if self.rows == 0:
                raise Rejected(400, "The file has a header but no data rows. Upload a file with at least one data row.")
            return self._result()
        except BaseException:
            if self.sink is not None:
                self.sink.abort()
            raise
        finally:
            self._seq_thread.shutdown()

    def _block(self, batch: pa.RecordBatch) -> None:
        n = batch.num_rows
        first_row = self.rows + 1
        raw = {name: batch.column(self.internal[name]) for name in self.columns}
        if self.typed:  # the text columns still get the full list of missing-value spellings
            raw[SEQUENCE] = _null_texts(raw[SEQUENCE])
            if self.labelled:
                raw[TARGET] = _null_texts(raw[TARGET])
        for name, column in raw.items():
            self.empty[name] += column.null_count
        # seq is the biggest single job of a block; Arrow releases the GIL, so it runs on
        # a second thread while this one converts the features.
        seq_job = self._seq_thread.submit(parse_seq, raw[SEQUENCE], first_row, self.bad_seq)

        if self.labelled:
            clicked = parse_clicked(raw[TARGET], first_row, self.bad_clicked)
        else:  # an unlabelled file to score: no label in any row (-1, as a bad value is counted)
            clicked = np.full(n, -1, dtype=np.int8)
        self.clicks += int((clicked == 1).sum())
        self.non_clicks += int((clicked == 0).sum())
        arrays = [self._feature(name, raw[name], first_row) for name in self.features]
        dense = [a.to_numpy(zero_copy_only=False) for a in arrays]  # NaN for missing
        seq_hash = text_hashes(raw[SEQUENCE].to_pylist())
        time_hashes = [text_hashes(raw[name].to_pylist()) for name in self.time_columns]
        hashes = row_hashes(dense, [clicked.astype(np.int64).view(np.uint64), seq_hash, *time_hashes])
        dates = self._dates(raw[self.time_column], first_row) if self.time_column is not None else None

        seq, seq_bad = seq_job.result()
        lengths = pc.fill_null(pc.list_value_length(seq), 0).to_numpy(zero_copy_only=False)
        valid_lengths = (lengths[~seq_bad] if seq_bad.any() else lengths).astype(np.int64)
        self.profile.add_block(arrays, clicked, valid_lengths, hashes)

        if len(self.preview) < self.options.preview_rows:
            self._add_preview(raw, arrays, clicked, n)

        if self.sink is not None and not self.sink.closed:
            if self.bad_clicked.rows or self.bad_seq.rows or self.ragged.rows or self.bad_dates.rows:
                self.sink.abort()  # not training data: stop converting, keep counting
            else:
                self.sink.add(dict(zip(self.features, arrays)), clicked, seq, dates)
        self.rows += n

    def _dates(self, column: pa.Array, first_row: int) -> pa.Array:
        dates, bad = parse_dates(column, first_row, self.bad_dates)
        if not bad.all():
            low, high = pc.min_max(dates.cast(pa.int32())).values()
            self.first_day = low.as_py() if self.first_day is None else min(self.first_day, low.as_py())
            self.last_day = high.as_py() if self.last_day is None else max(self.last_day, high.as_py())
        return dates

    def _feature(self, name: str, column: pa.Array, first_row: int) -> pa.Array:
        kind = self.kinds.get(name)
        if kind is None:
            kind = self.kinds[name] = "categorical" if mostly_text(column) else "numeric"
            if kind == "categorical":
                self.categories[name] = Categories(self.options.max_categories)
        if kind == "categorical":
            return self.categories[name].encode(column)
        values, not_number = to_float(column)
        if not_number is not None and not_number.any():
            bad = np.flatnonzero(not_number)[:3]
            shown = column.take(pa.array(bad, type=pa.int64())).to_pylist()
            self.not_numbers[name].add(int(not_number.sum()),
                                       [f"data row {first_row + int(p)}: {v!r}" for p, v in zip(bad, shown)])
        magnitude = pc.abs(values)
        if (pc.max(magnitude).as_py() or 0.0) > FLOAT32_MAX:
            huge = np.flatnonzero(np.nan_to_num(magnitude.to_numpy(zero_copy_only=False)) > FLOAT32_MAX)
            self.too_large[name].add(int(len(huge)), [f"data row {first_row + int(p)}: {values[int(p)].as_py():g}"
                                                      for p in huge[:3]])
        return values

    def _add_preview(self, raw: dict[str, pa.Array], arrays: list[pa.Array], clicked: np.ndarray, n: int) -> None:
        take = min(n, self.options.preview_rows - len(self.preview))
        texts = {name: raw[name].slice(0, take).to_pylist() for name in self.columns
                 if name in (SEQUENCE, TARGET) or name in self.time_columns or self.kinds.get(name) == "categorical"}
        numbers = {name: array.slice(0, take).to_pylist() for name, array in zip(self.features, arrays)}
        for i in range(take):
            row: PreviewRow = {}
            for name in self.columns:
                if name == TARGET:
                    row[name] = int(clicked[i]) if clicked[i] >= 0 else texts[name][i]
                elif name in texts:
                    row[name] = texts[name][i]
                else:
                    value = numbers[name][i]
                    row[name] = None if value is None else _json_number(value)
            self.preview.append(row)

    # -- results ------------------------------------------------------------------

    def _ragged_message(self) -> str:
        examples = self.ragged.examples
        if examples and examples[0][0] is None:
            examples = self._ragged_lines() or examples
        expected = len(self.header.fields)
        shown = ", ".join(
            (f"line {line}" if line is not None else "a row") + f" has {fields}"
            for line, fields, _ in examples
        )
        return (f"{self.ragged.rows} row{'s' if self.ragged.rows != 1 else ''} do not have {expected} fields like "
                f"the header ({shown}). Every row needs exactly one value per column; check for stray commas "
                f"or a seq value without quotes.")

    def _ragged_lines(self) -> list[tuple[int | None, int, int]]:
        """Line numbers need a single-threaded parse; only a rejected file pays for it."""
        found = _Ragged()

        def handler(row: Any) -> str:
            found.handler(row)
            return "skip" if len(found.examples) < RAGGED_EXAMPLES else "error"

        try:
            for _ in self._reader(False, handler):
                pass
        except (pa.ArrowInvalid, UnicodeDecodeError):
            pass
        return found.examples

    def _result(self) -> IngestResult:
        errors: list[str] = []
        warnings: list[str] = []
        if self.bad_clicked.rows:
            errors.append(f"{TARGET}: {self.bad_clicked.rows} rows are not 0 or 1 "
                          f"({'; '.join(self.bad_clicked.examples)}). Fix or remove those rows.")
        if self.bad_seq.rows:
            errors.append(f"{SEQUENCE}: {self.bad_seq.rows} rows are empty or not comma-separated integers "
                          f"({'; '.join(self.bad_seq.examples)}). Fix or remove those rows.")
        errors += self._time_errors()
        if self.labels_required and not self.bad_clicked.rows and (self.clicks == 0 or self.non_clicks == 0):
            only = "0 (no clicks)" if self.clicks == 0 else "1 (no non-clicks)"
            errors.append(f"{TARGET}: all {self.rows} rows are {only}; the model needs both clicks and non-clicks.")
        elif self.labelled and not self.bad_clicked.rows and (self.clicks == 0 or self.non_clicks == 0):
            only = "0 (no clicks)" if self.clicks == 0 else "1 (no non-clicks)"
            warnings.append(f"{TARGET}: all {self.rows} rows are {only}: the file can be scored, but its period "
                            "has no AUC (it needs both clicks and non-clicks).")

        if self.labels_required and self.time_columns:
            names = ", ".join(self.time_columns)
            warnings.append(f"{names}: {'time columns' if len(self.time_columns) > 1 else 'a time column'} "
                            "(by its name), never a model feature: left out of the training copy (dates are "
                            "used when a file is scored, to put its rows in monitoring periods).")
        dropped = [repr(self.header.fields[i]) if self.header.fields[i] else f"column {i + 1} (no name)"
                   for i in self.header.index_positions]
        if dropped:
            warnings.append(f"Dropped {' and '.join(dropped)}: an unnamed row-index column, not data.")
        coerced = [(name, p) for name, p in self.not_numbers.items() if p.rows]
        for name, p in coerced[:WARNED_COLUMNS]:
            warnings.append(f"{name}: {p.rows} values are not numbers ({'; '.join(p.examples)}); "
                            f"they are treated as missing.")
        if len(coerced) > WARNED_COLUMNS:
            rest = coerced[WARNED_COLUMNS:]
            warnings.append(f"{len(rest)} more columns have values that are not numbers "
                            f"({sum(p.rows for _, p in rest)} values, in {', '.join(n for n, _ in rest[:10])}"
                            f"{', ...' if len(rest) > 10 else ''}); they are treated as missing.")
        for name, p in [(name, p) for name, p in self.too_large.items() if p.rows][:WARNED_COLUMNS]:
            warnings.append(f"{name}: {p.rows} values are larger than {FLOAT32_MAX:.4g} in magnitude "
                            f"({'; '.join(p.examples)}), beyond the model's 32-bit numbers; training treats them "
                            "as missing. Rescale the column (e.g. to thousands) to use them.")
        for name, cats in self.categories.items():
            warnings.append(f"{name}: text values, encoded as {len(cats.codes)} category codes"
                            + (f"; {cats.overflow} values beyond the first {cats.limit} categories are treated "
                               f"as missing" if cats.overflow else "") + ".")
        stats = self.profile.column_stats()
        all_missing = [n for n in self.features if stats[n]["missing"] == self.rows]
        if all_missing:
            warnings.append(f"{len(all_missing)} column{'s are' if len(all_missing) > 1 else ' is'} empty in every "
                            f"row and not used for training: {', '.join(all_missing[:10])}"
                            f"{', ...' if len(all_missing) > 10 else ''}.")
        mostly_missing = [n for n in self.features if self.rows / 2 < stats[n]["missing"] < self.rows]
        if mostly_missing:
            warnings.append(f"{len(mostly_missing)} column{'s are' if len(mostly_missing) > 1 else ' is'} more than "
                            f"half empty: {', '.join(mostly_missing[:10])}{', ...' if len(mostly_missing) > 10 else ''}.")
        duplicates = self.profile.duplicate_rows()
        if duplicates:
            warnings.append(f"{duplicates} rows repeat an earlier row exactly.")

        is_valid = not errors
        parquet_written = False
        if self.sink is not None:
            if is_valid and not self.sink.closed:
                self.sink.close()
                parquet_written = True
            else:
                self.sink.abort()

        labelled = self.clicks + self.non_clicks
        missing_values = sum(self.empty.values())
        cells = self.rows * len(self.columns)
        info = {
            "total_rows": self.rows,
            "total_columns": len(self.columns),
            "missing_values": missing_values,
            "missing_percentage": round(100 * missing_values / cells, 4) if cells else 0.0,
            "duplicate_rows": duplicates,
            "clicked_one": self.clicks,
            "clicked_zero": self.non_clicks,
            "ctr": round(100 * self.clicks / labelled, 4) if labelled else 0.0,
        }
        return IngestResult(
            encoding=self.header.encoding,
            rows=self.rows,
            columns=self.columns,
            feature_columns=[n for n in self.features if n not in all_missing],
            is_valid=is_valid,
            errors=errors,
            warnings=warnings,
            info=info,
            preview=self.preview,
            column_descriptions={c: column_description(c) for c in self.columns},
            profile=self.profile.profile(self._extra_column_stats()),
            parquet_written=parquet_written,
            labelled=self.labelled,
            time_column=self.time_column,
            first_date=_iso_day(self.first_day) if self.time_column else None,
            last_date=_iso_day(self.last_day) if self.time_column else None,
        )

    def _time_errors(self) -> list[str]:
        if self.labels_required or not self.time_columns:
            return []
        if len(self.time_columns) > 1:
            return [f"The file has {len(self.time_columns)} time columns ({', '.join(self.time_columns)}); the "
                    f"rows' dates must come from one: keep one of {', '.join(TIME_COLUMN_NAMES)} and remove "
                    "the others."]
        if self.bad_dates.rows:
            return [f"{self.time_column}: {self.bad_dates.rows} rows are empty or not dates "
                    f"({'; '.join(self.bad_dates.examples)}). Every row needs its date as {DATE_FORMS}; times "
                    "without an offset are Korean time (KST). Fix those rows, or remove the column to put the "
                    "whole file in one period."]
        return []

    def _extra_column_stats(self) -> dict[str, dict[str, Any]]:
        extra: dict[str, dict[str, Any]] = {}
        labelled = self.clicks + self.non_clicks
        rate = self.clicks / labelled if labelled else None
        if self.labelled:
            extra[TARGET] = self._target_stats(labelled, rate)
        extra[SEQUENCE] = {"kind": "sequence", "missing": self.empty[SEQUENCE], "invalid": self.bad_seq.rows,
                           "mean": None, "std": None, "min": None, "max": None}
        for name in self.time_columns:
            kept = name == self.time_column
            extra[name] = {"kind": "time", "missing": self.empty[name], "mean": None, "std": None, "min": None,
                           "max": None, "invalid": self.bad_dates.rows if kept else None,
                           "first": _iso_day(self.first_day) if kept else None,
                           "last": _iso_day(self.last_day) if kept else None}
        for name in self.features:
            if name in self.categories:
                cats = self.categories[name]
                extra[name] = {"kind": "categorical", "mean": None, "std": None, "min": None, "max": None,
                               "categories": list(cats.codes)[:50], "distinct": len(cats.codes)}
            else:
                extra[name] = {"kind": "numeric", "not_numeric": self.not_numbers[name].rows}
        return extra

    def _target_stats(self, labelled: int, rate: float | None) -> dict[str, Any]:
        return {
            "kind": "target", "missing": self.empty[TARGET], "invalid": self.bad_clicked.rows,
            "mean": rate,
            "std": (rate * (1 - rate) * labelled / (labelled - 1)) ** 0.5 if labelled > 1 and rate is not None else None,
            "min": (0.0 if self.non_clicks else 1.0) if labelled else None,
            "max": (1.0 if self.clicks else 0.0) if labelled else None,
        }
