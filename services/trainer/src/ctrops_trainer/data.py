"""The input pipeline: the training Parquet file -> arrays the training loop slices by index.

Everything here is done once per run, vectorised, before the first epoch:
- ``seq`` arrives as ``list<int32>`` (ingest parsed the text once). We keep each row's
  most recent ``max_seq_len`` tokens (the end of the list), right-padded into one
  ``(rows, max_seq_len)`` int32 matrix plus a length per row. The window is the lever on
  cost: LSTM work grows linearly with steps and backward slows sharply past ~170 steps
  here, while the signal of a click sits in the user's recent behaviour (docs/training.md).
- every other numeric column is a float feature; missing values are filled with the
  training rows' medians (BatchNorm then scales them).
- the validation split is stratified and drawn from the original distribution; only the
  training part is down-sampled: every click, and twice as many non-clicks drawn afresh
  each epoch (``Split.epoch_rows``), cycling through a seeded permutation of all training
  non-clicks, so a run sees as many different non-clicks as its epochs allow instead of
  one fixed subset.

No torch here: the module is cheap to import and easy to test.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from ctrops_common.dataset import SEQUENCE, TARGET

MIN_CLASS_ROWS = 10  # clicks (and non-clicks) needed for a stratified split that measures anything
NEGATIVES_PER_POSITIVE = 2  # down-sampling keeps clicked=0 rows at this multiple of clicked=1 rows
_WINDOW_CHUNK_ROWS = 8_192  # bounds the temporary index matrices while windowing (a few MB each)


class DataError(Exception):
    """The training data cannot be used as it is; the message says what to fix."""


@dataclass
class TrainingData:
    """One file's rows, ready for training: row i of every array is the same impression."""

    features: np.ndarray  # (rows, n_features) float32, NaN where missing
    feature_columns: list[str]
    tokens: np.ndarray  # (rows, max_seq_len) int32, most recent tokens, right-padded with 0
    lengths: np.ndarray  # (rows,) int64, tokens kept per row (0 for an empty sequence)
    labels: np.ndarray  # (rows,) float32 0/1
    max_seq_len: int
    ignored_columns: list[str] = field(default_factory=list)  # non-numeric columns left out
    truncated_rows: int = 0  # rows whose sequence was longer than the window

    @property
    def rows(self) -> int:
        return int(self.labels.shape[0])


@dataclass
class Split:
    train: np.ndarray  # row indices fitted on in epoch 1 (down-sampled when asked), sorted
    val: np.ndarray  # row indices of the stratified validation part (original distribution), sorted
    base_rate: float  # click rate of the original training part
    train_rate: float  # click rate of the rows actually fitted on (the same every epoch)
    train_all: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))  # every training row, sorted
    # Down-sampling: every training click each epoch, plus ``negatives_per_epoch`` non-clicks
    # taken in turn from ``negative_order`` (a seeded permutation of all training non-clicks),
    # wrapping around at its end: each non-click is used once before any is used twice.
    train_positives: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    negative_order: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    negatives_per_epoch: int = 0  # 0: no down-sampling, every epoch fits on ``train_all``

    @property
    def rows_per_epoch(self) -> int:
        return len(self.train)

    def epoch_rows(self, epoch: int, fresh: bool = True) -> np.ndarray:
        """Sorted rows fitted on in ``epoch`` (1-based). ``fresh=False`` repeats epoch 1's rows
        (the fixed down-sample of earlier versions, kept to measure the difference)."""
        if not self.negatives_per_epoch or not fresh or epoch == 1:
            return self.train
        k, total = self.negatives_per_epoch, len(self.negative_order)
        taken = self.negative_order[((epoch - 1) * k + np.arange(k)) % total]
        return np.sort(np.concatenate([self.train_positives, taken]))


def check_training_file(path: Path) -> None:
    """Cheap checks from the file's footer (no rows read): raises DataError for a missing,
    unreadable or incomplete file, so such a run fails before a training process starts."""
    if not path.exists():
        raise DataError(
            f"the training file {path.name} is missing from the file store; upload the CSV again"
        )
    try:
        names = pq.ParquetFile(path).schema_arrow.names
    except (pa.ArrowException, OSError) as exc:
        raise DataError(f"the training file could not be read ({exc}); upload the CSV again") from exc
    missing = [c for c in (TARGET, SEQUENCE) if c not in names]
    if missing:
        raise DataError(f"the training data lacks the required column(s) {', '.join(missing)}")


def read_training_file(path: Path, max_seq_len: int) -> TrainingData:
    """Read the training Parquet file (``clicked``, ``seq`` and numeric features)."""
    if not path.exists():
        raise DataError(
            f"the training file {path.name} is missing from the file store; upload the CSV again"
        )
    try:
        table = pq.read_table(path)
    except (pa.ArrowException, OSError) as exc:
        raise DataError(f"the training file could not be read ({exc}); upload the CSV again") from exc
    data = table_to_training_data(table, max_seq_len)
    del table
    pa.default_memory_pool().release_unused()  # Arrow keeps freed buffers otherwise: peak RSS
    return data


def table_to_training_data(table: pa.Table, max_seq_len: int) -> TrainingData:
    missing = [c for c in (TARGET, SEQUENCE) if c not in table.column_names]
    if missing:
        raise DataError(f"the training data lacks the required column(s) {', '.join(missing)}")
    if table.num_rows == 0:
        raise DataError("the training data has no rows")

    labels = _labels(table.column(TARGET))
    tokens, lengths, truncated = window_sequences(table.column(SEQUENCE), max_seq_len)

    feature_columns: list[str] = []
    ignored: list[str] = []
    arrays: list[np.ndarray] = []
    for name in table.column_names:
        if name in (TARGET, SEQUENCE):
            continue
        column = table.column(name)
        if not (pa.types.is_integer(column.type) or pa.types.is_floating(column.type)
                or pa.types.is_boolean(column.type) or pa.types.is_null(column.type)):
            ignored.append(name)
            continue
        values = column.cast(pa.float64()).to_numpy(zero_copy_only=False).astype(np.float32)
        values[~np.isfinite(values)] = np.nan
        feature_columns.append(name)
        arrays.append(values)
    features = np.stack(arrays, axis=1) if arrays else np.zeros((table.num_rows, 0), dtype=np.float32)
    return TrainingData(
        features=np.ascontiguousarray(features),
        feature_columns=feature_columns,
        tokens=tokens,
        lengths=lengths,
        labels=labels,
        max_seq_len=max_seq_len,
        ignored_columns=ignored,
        truncated_rows=truncated,
    )


def _labels(column: pa.ChunkedArray) -> np.ndarray:
    if column.null_count:
        raise DataError(f"'{TARGET}' is empty in {column.null_count} row(s); every row needs 0 or 1")
    try:
        values = column.cast(pa.float64()).to_numpy(zero_copy_only=False)
    except pa.ArrowInvalid as exc:
        raise DataError(f"'{TARGET}' must hold 0 or 1 ({exc})") from exc
    bad = ~np.isin(values, (0.0, 1.0))
    if bad.any():
        raise DataError(f"'{TARGET}' must hold 0 or 1; {int(bad.sum())} row(s) hold other values")
    return values.astype(np.float32)


def window_sequences(column: pa.ChunkedArray | pa.Array, max_seq_len: int) -> tuple[np.ndarray, np.ndarray, int]:
    """The most recent ``max_seq_len`` tokens of each row, right-padded: (tokens, lengths, truncated rows)."""
    array = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    if pa.types.is_string(array.type) or pa.types.is_large_string(array.type):
        array = _parse_token_strings(array)
    if not (pa.types.is_list(array.type) or pa.types.is_large_list(array.type)):
        raise DataError(f"'{SEQUENCE}' must be a list of integer tokens, found {array.type}")
    if not pa.types.is_integer(array.type.value_type):
        try:
            array = array.cast(pa.list_(pa.int64()))
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
            raise DataError(f"'{SEQUENCE}' tokens must be integers ({exc})") from exc

    offsets = np.asarray(array.offsets, dtype=np.int64)
    starts, ends = offsets[:-1], offsets[1:]
    full_lengths = ends - starts
    if array.null_count:
        full_lengths = np.where(np.asarray(array.is_null()), 0, full_lengths)
    values = array.values.fill_null(0).to_numpy(zero_copy_only=False)
    if values.size and (values.min() < 0 or values.max() > np.iinfo(np.int32).max):
        raise DataError(f"'{SEQUENCE}' tokens must be non-negative integers below 2^31")
    values = values.astype(np.int32, copy=False)

    rows = len(array)
    kept = np.minimum(full_lengths, max_seq_len)
    first = ends - kept  # the window ends at the newest token
    tokens = np.zeros((rows, max_seq_len), dtype=np.int32)
    steps = np.arange(max_seq_len, dtype=np.int64)
    for lo in range(0, rows, _WINDOW_CHUNK_ROWS):  # bounded temporaries on large files
        hi = min(rows, lo + _WINDOW_CHUNK_ROWS)
        mask = steps[None, :] < kept[lo:hi, None]
        index = np.where(mask, first[lo:hi, None] + steps[None, :], 0)
        if values.size:
            tokens[lo:hi] = np.where(mask, values[index], 0)
    return tokens, kept.astype(np.int64), int((full_lengths > max_seq_len).sum())


def _parse_token_strings(array: pa.Array) -> pa.Array:
    """``"57,281,455"`` -> [57, 281, 455]; a fallback when the column was stored as text."""
    stripped = pc.utf8_trim_whitespace(array.fill_null(""))
    split = pc.split_pattern(stripped, ",")
    flat = pc.utf8_trim_whitespace(pc.list_flatten(split))
    nonempty = pc.not_equal(flat, "")
    try:
        numbers = pc.cast(pc.filter(flat, nonempty), pa.int64())
    except pa.ArrowInvalid as exc:
        raise DataError(f"'{SEQUENCE}' must be comma-separated integers ({exc})") from exc
    # Rebuild offsets after dropping empty pieces (an empty string is an empty sequence).
    counts = pc.list_value_length(split).to_numpy(zero_copy_only=False)
    keep = np.asarray(nonempty, dtype=bool)
    row_of_piece = np.repeat(np.arange(len(array)), counts)
    per_row = np.bincount(row_of_piece[keep], minlength=len(array))
    offsets = np.concatenate([[0], np.cumsum(per_row)]).astype(np.int32)
    return pa.ListArray.from_arrays(pa.array(offsets), numbers)


def split_rows(labels: np.ndarray, validation_split: float, downsampling: bool, seed: int,
               negatives_per_positive: int = NEGATIVES_PER_POSITIVE) -> Split:
    """Stratified validation split, then (optionally) down-sampling of the training negatives to
    ``negatives_per_positive`` non-clicks per training click in each epoch.

    The validation rows depend only on ``labels``, ``validation_split`` and ``seed`` (the
    same rows as before fresh negatives were introduced)."""
    positives = np.flatnonzero(labels == 1)
    negatives = np.flatnonzero(labels == 0)
    if len(positives) < MIN_CLASS_ROWS:
        raise DataError(
            f"only {len(positives)} clicked row(s) (clicked=1): at least {MIN_CLASS_ROWS} are needed to "
            "train and to validate on a stratified split; upload more data"
        )
    if len(negatives) < MIN_CLASS_ROWS:
        raise DataError(
            f"only {len(negatives)} non-clicked row(s) (clicked=0): at least {MIN_CLASS_ROWS} are needed; "
            "upload more data"
        )
    rng = np.random.default_rng(seed)

    def cut(indices: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        shuffled = rng.permutation(indices)
        n_val = min(len(indices) - 1, max(1, int(round(validation_split * len(indices)))))
        return shuffled[n_val:], shuffled[:n_val]

    train_pos, val_pos = cut(positives)  # the validation rows depend on these two draws only
    train_neg, val_neg = cut(negatives)
    base_rate = len(train_pos) / (len(train_pos) + len(train_neg))
    train_all = np.sort(np.concatenate([train_pos, train_neg]))
    val = np.sort(np.concatenate([val_pos, val_neg]))
    per_epoch = negatives_per_positive * len(train_pos)
    if downsampling and len(train_neg) > per_epoch:
        order = rng.permutation(np.sort(train_neg))
        train = np.sort(np.concatenate([train_pos, order[:per_epoch]]))
        return Split(train=train, val=val, base_rate=float(base_rate), train_rate=float(len(train_pos) / len(train)),
                     train_all=train_all, train_positives=np.sort(train_pos), negative_order=order,
                     negatives_per_epoch=per_epoch)
    return Split(train=train_all, val=val, base_rate=float(base_rate), train_rate=float(base_rate),
                 train_all=train_all, train_positives=np.sort(train_pos))


def fill_values(features: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """Per-feature median over ``rows`` (0 for a column with no value at all)."""
    if features.shape[1] == 0:
        return np.zeros(0, dtype=np.float32)
    subset = features[rows]
    with np.errstate(all="ignore"):
        all_missing = np.isnan(subset).all(axis=0)
        medians = np.zeros(features.shape[1], dtype=np.float32)
        if (~all_missing).any():
            medians[~all_missing] = np.nanmedian(subset[:, ~all_missing], axis=0)
    return medians


def apply_fill(features: np.ndarray, medians: np.ndarray) -> np.ndarray:
    missing = np.isnan(features)
    if not missing.any():
        return features
    filled = features.copy()
    filled[missing] = np.take(medians, np.nonzero(missing)[1])
    return filled
