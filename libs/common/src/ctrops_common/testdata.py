"""Generated data in the training layout, for tests and benchmarks that need a training file
without running the ingest service (``files/<file_id>/data.parquet``: ``clicked`` int8,
``seq`` list<int32> oldest->newest, every other column float64).
"""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from .datagen import generate
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
    folder.mkdir(parents=True, exist_ok=True)
    stem = f"gen-{rows}-{seed}-{ctr:g}"
    parquet = folder / f"{stem}.parquet"
    csv_path = folder / f"{stem}.csv"
    truth_path = folder / f"{stem}.csv.truth.json"
    if not parquet.exists() or not truth_path.exists():
        generate(csv_path, rows, seed=seed, ctr=ctr)
        tmp = folder / f"{stem}.parquet.part"
        pq.write_table(csv_to_training_table(csv_path), tmp)
        tmp.replace(parquet)
        csv_path.unlink()
    return parquet, json.loads(truth_path.read_text())
