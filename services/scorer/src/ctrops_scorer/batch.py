"""A batch scoring job: a validated upload's Parquet file scored in chunks, with bounded memory.

``score_file`` reads ``chunk_rows`` rows at a time (pyarrow ``iter_batches``), builds the model's
inputs exactly as online requests do (``predict.table_rows``), appends ``row,probability``
lines to a temp file that becomes ``predictions_path(job_id)`` only when every row is scored,
feeds each chunk's raw features, probabilities and labels (when the file has ``clicked``) to
the monitoring period's accumulator, and reports progress after each chunk. The three steps
run as a pipeline (reading the next chunk, scoring this one, writing and counting the one
before), so they overlap on a second core. Memory is three chunks' worth whatever the file's
size: the period keeps histogram counts and a bounded sample.

A file whose Parquet copy has ``date`` (ingest's time column: each row's day in KST) and no
period asked for is split by ``split_by_date``: each row goes to the period of its day
(``period_label`` with the job's bucket), one accumulator per period, each chunk's rows handed
to their own period's accumulator. Only the date column is read for that (4 bytes a row, plus
a period index of 2); the sample each large period keeps shrinks as periods multiply
(``period_sample_rows``), so a file split into a year of days costs little more than one period.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from ctrops_common.dataset import SEQUENCE, TARGET, predictions_path
from ctrops_common.model_inputs import Rows
from ctrops_common.model_loading import LoadedModel
from ctrops_common.storage import FileStore
from ctrops_common.time_columns import DATE_COLUMN as DATE  # a file to score's time column: each row's day (KST)

from .drift import SMALL_SAMPLE, Reference
from .period import PERIOD_SAMPLE, PeriodAccumulator, period_label
from .predict import probabilities, table_rows

MAX_PERIODS = 400  # periods one file may feed (a year and a month of days)
SAMPLE_BUDGET = 200_000  # rows sampled for Wasserstein over all of a file's large periods together
MIN_SAMPLE = 500  # the least a large period samples however many periods share the budget


PREDICTIONS_SCHEMA = pa.schema([("row", pa.int64()), ("probability", pa.float64())])


def open_parquet(path: Path) -> pq.ParquetFile:
    """A Parquet file for reading in chunks. Without ``pre_buffer=False`` pyarrow's chunked reader
    buffers ahead without bound (measured on a 600k-row upload: RSS 1.1 GB for the read alone)."""
    return pq.ParquetFile(path, pre_buffer=False, buffer_size=1 << 20)


class BatchInputError(Exception):
    """The file cannot be scored; ``status_code`` is what the gateway answers (404 missing, 422 unusable)."""

    def __init__(self, message: str, status_code: int = 422) -> None:
        super().__init__(message)
        self.status_code = status_code


@dataclass
class DateSplit:
    """Each row's period, from the file's date column."""

    labels: list[str]  # the periods, in time order
    row_period: np.ndarray  # (rows,) index into ``labels``, in file order
    rows: list[int]  # rows per period

    def accumulators(self, reference: Reference) -> list[PeriodAccumulator]:
        """One accumulator per period, each sampling ``period_sample_rows`` rows."""
        return [PeriodAccumulator(reference, sample_rows=period_sample_rows(len(self.labels), rows))
                for rows in self.rows]


def period_sample_rows(periods: int, rows: int) -> int:
    """Rows a period of ``rows`` rows samples when a file feeds ``periods`` periods. A period of at
    most ``SMALL_SAMPLE`` rows keeps every row (its KS / chi-square p-values see them all, as for a
    file of its own); a larger one (Wasserstein on the sample) the full ``PERIOD_SAMPLE`` when few
    periods share ``SAMPLE_BUDGET``, down to ``MIN_SAMPLE`` when many do."""
    if rows <= SMALL_SAMPLE:
        return max(rows, 1)
    return int(min(PERIOD_SAMPLE, max(MIN_SAMPLE, SAMPLE_BUDGET // max(periods, 1))))


def split_by_date(parquet: Path, bucket: str, *, max_periods: int = MAX_PERIODS) -> DateSplit | None:
    """The file's rows by period of their ``date`` (None when the file has no date column)."""
    if not parquet.exists():
        raise BatchInputError(f"the file to score ({parquet.name}) is missing from the store", 404)
    source = open_parquet(parquet)
    if DATE not in source.schema_arrow.names:
        return None
    column = source.read(columns=[DATE]).column(DATE)
    if not pa.types.is_date32(column.type):
        raise BatchInputError(f"the file's '{DATE}' column holds {column.type}, not dates; upload the CSV again")
    if column.null_count:
        raise BatchInputError(f"{column.null_count} rows of the file have no date; every row needs one (or none)")
    days = column.combine_chunks().cast(pa.int32()).to_numpy(zero_copy_only=False)
    del column
    if days.size == 0:
        return DateSplit([], np.zeros(0, dtype=np.int16), [])
    unique_days, day_index = np.unique(days, return_inverse=True)
    epoch = date(1970, 1, 1).toordinal()
    day_labels = [period_label(datetime.fromordinal(epoch + int(d)), bucket) for d in unique_days]
    labels = sorted(set(day_labels))  # labels of one bucket sort in time order
    if len(labels) > max_periods:
        raise BatchInputError(
            f"the file's dates ({date.fromordinal(epoch + int(unique_days[0]))} to "
            f"{date.fromordinal(epoch + int(unique_days[-1]))}) span {len(labels)} {bucket}s, more than the "
            f"{max_periods} periods one file may feed: score it with a coarser bucket (week or month), split the "
            "file, or give one period")
    position = {label: i for i, label in enumerate(labels)}
    of_day = np.array([position[label] for label in day_labels], dtype=np.int16)
    row_period = of_day[day_index]
    return DateSplit(labels, row_period, np.bincount(row_period, minlength=len(labels)).tolist())


@dataclass
class BatchResult:
    rows: int
    labelled: bool
    seconds: float
    location: str


def score_file(store: FileStore, parquet: Path, job_id: str, model: LoadedModel, *,
               accumulator: PeriodAccumulator | None = None, chunk_rows: int = 25_000, threads: int | None = None,
               progress: Callable[[int, int], None] | None = None,
               periods: tuple[DateSplit, list[PeriodAccumulator]] | None = None) -> BatchResult:
    """Score every row of ``parquet`` into ``predictions_path(job_id)`` (blocking: call in a thread).

    ``periods`` (instead of one ``accumulator``): the file's date split and one accumulator per
    period label; each row feeds the accumulator of its period. ``threads``: LightGBM's
    prediction threads (None: the model's own)."""
    started = time.perf_counter()
    if not parquet.exists():
        raise BatchInputError(f"the file to score ({parquet.name}) is missing from the store", 404)
    source = open_parquet(parquet)
    names = source.schema_arrow.names
    if SEQUENCE not in names:
        raise BatchInputError(f"the file to score has no '{SEQUENCE}' column; it is not in the training layout")
    labelled = TARGET in names
    columns = [c for c in model.preprocess.feature_columns if c in names] + [SEQUENCE] + ([TARGET] if labelled else [])
    total = source.metadata.num_rows
    location = predictions_path(job_id)
    tmp = store.temp_path(location)
    done = 0
    try:
        with open(tmp, "wb") as out, ThreadPoolExecutor(1, thread_name_prefix="batch-read") as reader, \
                ThreadPoolExecutor(1, thread_name_prefix="batch-record") as recorder:
            out.write(b"row,probability\n")
            # Arrow's writer: the shortest text that reads back as the same float64, twice as fast as Python's.
            writer = pacsv.CSVWriter(out, PREDICTIONS_SCHEMA, write_options=pacsv.WriteOptions(include_header=False))
            batches = source.iter_batches(batch_size=chunk_rows, columns=columns)

            # Where each chunk's sequences are encoded: for the LSTM (almost all of its work) while the
            # next chunk is read, beside the MLP head scoring the one before; for the LightGBM in the
            # scoring stage, which the compiled forest left nearly idle while the read stage was the
            # slowest (per 600k rows: 2.4 s Parquet + 0.9 s inputs + 2.9 s seq features, 0.3 s of trees).
            encode_while_reading = model.kind != "gbdt"

            def read_next() -> tuple[Rows, np.ndarray | None] | None:
                batch = next(batches, None)
                if batch is None:
                    return None
                rows = table_rows(model, pa.Table.from_batches([batch]))
                return rows, model.encode(rows.seq, rows.lengths) if encode_while_reading else None

            def record(first: int, raw_tab: np.ndarray, clicked: np.ndarray, p: np.ndarray) -> None:
                writer.write_table(pa.table([pa.array(np.arange(first, first + len(p))), pa.array(p)],
                                            schema=PREDICTIONS_SCHEMA))
                labels = clicked.astype(np.int64) if labelled else None
                if accumulator is not None:
                    accumulator.add(raw_tab, p, labels)
                if periods is not None:
                    _feed_periods(periods, first, raw_tab, p, labels)
                if progress is not None:
                    progress(first + len(p), total)

            # Three chunks in flight, one per stage: chunk i+2 read and turned into model inputs, chunk
            # i+1 scored by the model (here), chunk i written and counted into the period. The stages
            # release the GIL for most of their work (Parquet decoding, numpy, the compiled forest,
            # torch), so they overlap on the second core; the period and the file still see the chunks
            # in file order.
            reading = reader.submit(read_next)
            recording = None
            while (read := reading.result()) is not None:
                reading = reader.submit(read_next)
                rows, states = read
                p = probabilities(model, rows, states=states, threads=threads)
                if recording is not None:
                    recording.result()
                recording = recorder.submit(record, done, rows.raw_tab, rows.clicked, p)
                done += len(p)
                del rows, states, read
            if recording is not None:
                recording.result()
            writer.close()
        store.commit_temp(tmp, location)
    finally:
        tmp.unlink(missing_ok=True)
    return BatchResult(rows=done, labelled=labelled, seconds=time.perf_counter() - started, location=location)


def _feed_periods(periods: tuple[DateSplit, list[PeriodAccumulator]], first: int, features: np.ndarray,
                  p: np.ndarray, labels: np.ndarray | None) -> None:
    """One chunk's rows, each to the accumulator of its period (rows in file order within each)."""
    split, accumulators = periods
    chunk = split.row_period[first:first + len(p)]
    if len(chunk) != len(p):
        raise BatchInputError("the file's date column does not have one date per row")
    present = np.unique(chunk)
    if present.size == 1:  # a file sorted by date: most chunks lie in one period
        accumulators[int(present[0])].add(features, p, labels)
        return
    for k in present:
        mask = chunk == k
        accumulators[int(k)].add(features[mask], p[mask], None if labels is None else labels[mask])
