"""Generated data in the training layout, for tests and benchmarks that need a training file
without running the ingest service (``files/<file_id>/data.parquet``: ``clicked`` int8,
``seq`` list<int32> oldest->newest, every other column float64), with the generator's truth
and, for the variants, each row's generating click probability (the oracle).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from .datagen import DEFAULT_VARIANT, VARIANTS, generate
from .dataset import SEQUENCE, TARGET


def csv_to_training_table(csv_path: Path) -> pa.Table:
    """A generated CSV -> the training layout (vectorised; seq parsed once)."""
    table = pacsv.read_csv(csv_path, convert_options=pacsv.ConvertOptions(column_types={SEQUENCE: pa.string()}))
    columns, names = [], []
    for name in table.column_names:
        column = table.column(name)
        if name == SEQUENCE:
            pieces = pc.split_pattern(column.fill_null(""), ",")
            column = pc.cast(pieces, pa.list_(pa.int32()))
        elif name == TARGET:
            column = column.cast(pa.int8())
        else:
            column = column.cast(pa.float64())
        columns.append(column)
        names.append(name)
    return pa.Table.from_arrays(columns, names=names)


def training_parquet(folder: Path, rows: int, seed: int = 42, ctr: float = 0.0192) -> tuple[Path, dict]:
    """Generate ``rows`` rows into ``folder`` (cached by rows/seed/ctr): (parquet path, truth)."""
    return _generated(folder, f"gen-{rows}-{seed}-{ctr:g}", rows, seed, ctr, DEFAULT_VARIANT)[:2]


def variant_parquet(folder: Path, variant: str, rows: int, seed: int = 42,
                    ctr: float = 0.02) -> tuple[Path, dict, np.ndarray]:
    """One generator variant (``ctrops_common.datagen.VARIANTS``) in the training layout, cached
    by variant/rows/seed/ctr: (parquet path, truth, oracle), where ``oracle[i]`` is row i's
    generating click probability (float64, the parquet's row order), so a benchmark can score
    the oracle on exactly its validation rows."""
    spec = VARIANTS[variant]  # the drivers and tokens in the name: a changed formula never reuses a stale file
    digest = hashlib.sha256(repr((spec.drivers, spec.tokens)).encode()).hexdigest()[:8]
    return _generated(folder, f"gen-{variant}-{digest}-{rows}-{seed}-{ctr:g}", rows, seed, ctr, variant)


def _generated(folder: Path, stem: str, rows: int, seed: int, ctr: float,
               variant: str) -> tuple[Path, dict, np.ndarray]:
    folder.mkdir(parents=True, exist_ok=True)
    parquet = folder / f"{stem}.parquet"
    csv_path = folder / f"{stem}.csv"
    truth_path = folder / f"{stem}.csv.truth.json"
    oracle_path = folder / f"{stem}.csv.oracle.npy"
    if not parquet.exists() or not truth_path.exists() or not oracle_path.exists():
        generate(csv_path, rows, seed=seed, ctr=ctr, variant=variant)
        tmp = folder / f"{stem}.parquet.part"
        pq.write_table(csv_to_training_table(csv_path), tmp)
        tmp.replace(parquet)
        csv_path.unlink()
    return parquet, json.loads(truth_path.read_text()), np.load(oracle_path)
