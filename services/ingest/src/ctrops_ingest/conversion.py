"""The training layout, written block by block: ``clicked`` int8, ``seq`` list<int32>, features float64.

A file to score may also carry ``date`` (date32): each row's day, from its time column.

Column names stay as in the upload (Korean included) and in file order; missing
feature values are nulls. Blocks are buffered into row groups of ``row_group_rows`` so
readers get few, large groups while memory stays bounded. Each row group is encoded and
compressed on one background thread (Arrow releases the GIL), overlapping the parsing of
the next blocks; at most one row group waits, so memory stays bounded. No dictionary
encoding: it costs a third of the write time on the ``seq`` lists and saves little.

The writer only ever writes to the path it is given (a temporary sibling of the final
file); the caller renames it into place once everything succeeded or calls ``abort``.
"""

from __future__ import annotations

from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import suppress
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from ctrops_common.dataset import SEQUENCE, TARGET
from ctrops_common.time_columns import DATE_COLUMN

SEQ_TYPE = pa.list_(pa.int32())


def training_schema(columns: list[str]) -> pa.Schema:
    """The Parquet schema for ``columns`` in file order."""
    fields = []
    for name in columns:
        if name == TARGET:
            fields.append(pa.field(name, pa.int8(), nullable=False))
        elif name == SEQUENCE:
            fields.append(pa.field(name, SEQ_TYPE))
        elif name == DATE_COLUMN:  # only a file to score's time column is written under this name
            fields.append(pa.field(name, pa.date32()))
        else:
            fields.append(pa.field(name, pa.float64()))
    return pa.schema(fields)


class ParquetSink:
    def __init__(self, path: Path, columns: list[str], row_group_rows: int = 16_384,
                 compression: str = "snappy") -> None:
        self.path = path
        self.columns = columns
        self.schema = training_schema(columns)
        self.row_group_rows = row_group_rows
        self._writer = pq.ParquetWriter(path, self.schema, compression=compression, use_dictionary=False)
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="parquet")
        self._writing: Future[None] | None = None
        self._pending: list[pa.Table] = []
        self._pending_rows = 0
        self.rows = 0
        self.closed = False

    def add(self, features: dict[str, pa.Array], clicked: np.ndarray, seq: pa.Array,
            dates: pa.Array | None = None) -> None:
        """One block: float64 feature arrays by column name (null for missing), clicked 0/1, seq lists,
        and the rows' days (date32) when the sink has a ``date`` column."""
        arrays = []
        for name in self.columns:
            if name == TARGET:
                arrays.append(pa.array(clicked.astype(np.int8, copy=False)))
            elif name == SEQUENCE:
                arrays.append(seq)
            elif name == DATE_COLUMN:
                arrays.append(dates)
            else:
                arrays.append(features[name])
        table = pa.Table.from_arrays(arrays, schema=self.schema)
        self._pending.append(table)
        self._pending_rows += table.num_rows
        if self._pending_rows >= self.row_group_rows:
            self._flush()

    def _wait(self) -> None:
        if self._writing is not None:
            writing, self._writing = self._writing, None
            writing.result()  # re-raises a write error here, in the caller's thread

    def _flush(self) -> None:
        if self._pending:
            table = pa.concat_tables(self._pending)
            self._pending = []
            self._pending_rows = 0
            self._wait()
            self._writing = self._thread.submit(
                self._writer.write_table, table, row_group_size=max(self.row_group_rows, table.num_rows)
            )
            self.rows += table.num_rows

    def close(self) -> int:
        """Flush and close; returns the rows written."""
        if not self.closed:
            try:
                self._flush()
                self._wait()
                self._writer.close()
            finally:
                self._thread.shutdown()
            self.closed = True
        return self.rows

    def abort(self) -> None:
        """Stop writing and remove the partial file."""
        if not self.closed:
            self._pending.clear()
            with suppress(Exception):
                self._wait()
            with suppress(Exception):
                self._writer.close()
            self._thread.shutdown()
            self.closed = True
        with suppress(OSError):
            self.path.unlink()
