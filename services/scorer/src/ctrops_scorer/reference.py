"""The drift reference of one model: a seeded sample of its run's training file, scored by it.

Built once per (run, model kind) from at most ``rows`` rows of ``parquet_path(TrainingDone.file_id)``
(read in chunks, so a large training file never sits in memory whole), summarised by
``drift.build_reference`` and cached at ``monitoring/reference/<run_id>/<kind>.npz``.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pyarrow as pa

from ctrops_common.dataset import SEQUENCE, TARGET, parquet_path
from ctrops_common.events import TrainingDone
from ctrops_common.model_loading import LoadedModel
from ctrops_common.storage import FileStore, check_id

from .drift import Reference, build_reference
from .batch import open_parquet
from .predict import score_table

log = logging.getLogger(__name__)


def reference_path(run_id: str, kind: str) -> str:
    return f"monitoring/reference/{check_id(run_id)}/{kind}.npz"


class NoReference(Exception):
    """The run's training data is gone: no drift can be measured (the message says why)."""


def sample_rows(path: Path, rows: int, seed: int, columns: list[str], chunk_rows: int = 50_000) -> pa.Table:
    """A seeded uniform sample of at most ``rows`` rows of a Parquet file, in file order."""
    parquet = open_parquet(path)
    total = parquet.metadata.num_rows
    wanted = np.sort(np.random.default_rng(seed).choice(total, size=min(rows, total), replace=False))
    present = [c for c in columns if c in parquet.schema_arrow.names]
    parts, start = [], 0
    for batch in parquet.iter_batches(batch_size=chunk_rows, columns=present):
        lo, hi = np.searchsorted(wanted, [start, start + batch.num_rows])
        if hi > lo:
            parts.append(pa.Table.from_batches([batch]).take(pa.array(wanted[lo:hi] - start)))
        start += batch.num_rows
    if not parts:
        return pa.Table.from_batches([], schema=parquet.schema_arrow.remove_metadata()).select(present)
    return pa.concat_tables(parts)


def build_model_reference(store: FileStore, done: TrainingDone, model: LoadedModel, *, rows: int, seed: int
                          ) -> Reference:
    """Score the sample with ``model`` and summarise it (blocking: call in a thread)."""
    path = store.path(parquet_path(check_id(done.file_id)))
    if not path.exists():
        raise NoReference(f"the training data of run {done.run_id} ({parquet_path(done.file_id)}) is missing")
    columns = [*model.preprocess.feature_columns, SEQUENCE, TARGET]
    table = sample_rows(path, rows, seed, columns)
    probabilities, model_rows = score_table(model, table)
    categorical = set(model.preprocess.categorical_values or {}) or None
    return build_reference(model_rows.raw_tab, list(model.preprocess.feature_columns), probabilities, categorical,
                           base_rate=float(model.preprocess.base_rate), seed=seed)


def model_reference(store: FileStore, done: TrainingDone, kind: str, model: LoadedModel, *, rows: int, seed: int
                    ) -> Reference:
    """The cached reference, or a new one built and stored (blocking)."""
    location = reference_path(done.run_id, kind)
    target = store.path(location)
    if target.exists():
        try:
            reference = Reference.load(target)
            if list(reference.feature_columns) == list(model.preprocess.feature_columns):
                return reference
        except Exception as exc:  # noqa: BLE001 - a damaged cache is rebuilt
            log.warning("drift reference %s unreadable (%s); building it again", location, exc)
    reference = build_model_reference(store, done, model, rows=rows, seed=seed)
    tmp = store.temp_path(location)
    try:
        reference.save(tmp)
        store.commit_temp(tmp, location)
    finally:
        tmp.unlink(missing_ok=True)
    return reference
