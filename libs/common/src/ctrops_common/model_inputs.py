"""The training-layout Parquet file (or table) -> the model's inputs, exactly as ``Preprocess`` says.

The trainer has its own (faster, streaming) pipeline; the explainer (a few thousand rows at a
time), the scorer (uploads and JSON rows, in chunks) and the trainer's retrain comparison (an
earlier model on the new validation rows) build the same tensors here with plain numpy:
features in ``preprocess.feature_columns`` order, missing values replaced by
``fill_values`` (for the LSTM+MLP; a LightGBM was fitted on NaN and learned where missing
values go, so its rows keep them), ``seq`` cut to its ``max_seq_len`` most recent tokens, divided by
``seq_scale`` and right-padded.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from ctrops_common.dataset import SEQUENCE, TARGET
from ctrops_common.preprocess import Preprocess


@dataclass
class Rows:
    """Some rows of a data file in model form, plus what the explanation reports beside them."""

    x_tab: np.ndarray  # (n, F) float32, missing values filled (kept as NaN for a LightGBM)
    raw_tab: np.ndarray  # (n, F) float64 column-major, missing values kept as NaN (drift counts, correlations)
    seq: np.ndarray  # (n, L) float32, right-padded scaled tokens, most recent last
    lengths: np.ndarray  # (n,) int64, tokens kept (<= max_seq_len)
    seq_length: np.ndarray  # (n,) float64, tokens in the full sequence (a summary feature)
    clicked: np.ndarray  # (n,) int8

    def __len__(self) -> int:
        return len(self.clicked)

    def take(self, index: np.ndarray) -> Rows:
        return Rows(self.x_tab[index], self.raw_tab[index], self.seq[index], self.lengths[index],
                    self.seq_length[index], self.clicked[index])


class DataFile:
    """One data file opened once; rows are materialised on demand by index."""

    def __init__(self, path: Path, preprocess: Preprocess, *, require_labels: bool = True) -> None:
        schema = pq.read_schema(path)
        wanted = [c for c in preprocess.feature_columns if c in schema.names]
        wanted += [c for c in (TARGET, SEQUENCE) if c in schema.names]
        self._open(pq.read_table(path, columns=wanted), preprocess, path.name, require_labels)

    @classmethod
    def from_table(cls, table: pa.Table, preprocess: Preprocess, *, require_labels: bool = False) -> DataFile:
        """Rows already in memory in the training layout (``seq`` as list<int32>, features float64)."""
        data = cls.__new__(cls)
        data._open(table, preprocess, "the rows", require_labels)
        return data

    def _open(self, table: pa.Table, preprocess: Preprocess, name: str, require_labels: bool) -> None:
        self.preprocess = preprocess
        present = set(table.column_names)
        for required in ((TARGET, SEQUENCE) if require_labels else (SEQUENCE,)):
            if required not in present:
                raise ValueError(f"{name} has no '{required}' column; it is not in the training layout")
        self.missing_columns = [c for c in preprocess.feature_columns if c not in present]
        self.labelled = TARGET in present
        self.table = table
        if self.labelled:
            clicked = table.column(TARGET).to_numpy(zero_copy_only=False)
            self.clicked = np.nan_to_num(clicked.astype(np.float64)).astype(np.int8)
        else:  # an unlabelled scoring file: zeros stand in, ``labelled`` says they mean nothing
            self.clicked = np.zeros(table.num_rows, dtype=np.int8)

    def __len__(self) -> int:
        return self.table.num_rows

    def every_row(self, index: np.ndarray) -> bool:
        """Whether ``index`` is every row in file order (0, 1, ..., n-1): nothing to take."""
        n = self.table.num_rows
        return len(index) == n and (n == 0 or (index[0] == 0 and bool(np.all(np.diff(index) == 1))))

    def rows(self, index: np.ndarray) -> Rows:
        pre = self.preprocess
        index = np.asarray(index, dtype=np.int64)
        # Every row in order (a batch chunk, a request): read the table as it is, no copy of it.
        part = self.table if self.every_row(index) else self.table.take(pa.array(index))
        n = len(index)
        # Column-major: each feature is one contiguous column, written once here and read column by
        # column by the drift counts and the explainer (a row-major array made both strided passes).
        raw = np.full((n, len(pre.feature_columns)), np.nan, dtype=np.float64, order="F")
        for j, name in enumerate(pre.feature_columns):
            if name not in self.missing_columns:
                raw[:, j] = part.column(name).to_numpy(zero_copy_only=False)  # the assignment casts to float64
        fill = np.asarray(pre.fill_values, dtype=np.float64)
        fill = np.where(np.isfinite(fill), fill, 0.0)
        filled = raw if pre.kind == "gbdt" else np.where(np.isfinite(raw), raw, fill)
        seq, lengths, full_lengths = recent_tokens(part.column(SEQUENCE), pre.max_seq_len, pre.seq_scale)
        return Rows(
            x_tab=np.ascontiguousarray(filled, dtype=np.float32),  # row-major, as the models read rows
            raw_tab=raw,
            seq=seq,
            lengths=lengths,
            seq_length=full_lengths.astype(np.float64),
            clicked=self.clicked[index],
        )


_GATHER_ROWS = 8192  # rows gathered at a time (bounds the index temporaries: 8 MB at 128 tokens)


def recent_tokens(column: pa.ChunkedArray | pa.Array, max_len: int, scale: float
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """list<int> column -> ((n, L) right-padded scaled most-recent tokens, kept lengths, full lengths)."""
    array = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    full = pc.fill_null(pc.list_value_length(array), 0).to_numpy(zero_copy_only=False).astype(np.int64)
    flat = pc.list_flatten(array).to_numpy(zero_copy_only=False).astype(np.float32)  # nulls contribute nothing
    n = len(full)
    kept = np.minimum(full, max_len)
    width = max(int(kept.max()) if n else 0, 1)
    out = np.zeros((n, width), dtype=np.float32)
    if len(flat):
        # Each row's kept tokens are one slice of ``flat``: gathered a block of rows at a time, the
        # positions past a row's length zeroed (a 600k-row file: 0.3 s, against 0.6-1.8 s scattering).
        starts = np.cumsum(full) - kept  # each row's oldest kept token in ``flat``
        step = np.arange(width)
        last = len(flat) - 1
        for lo in range(0, n, _GATHER_ROWS):
            hi = min(n, lo + _GATHER_ROWS)
            np.take(flat, np.minimum(starts[lo:hi, None] + step, last), out=out[lo:hi])
            out[lo:hi][step >= kept[lo:hi, None]] = 0
        if scale and scale != 1.0:
            out /= np.float32(scale)
    return out, kept, full
