"""Model inputs -> click probabilities: the one scoring path of online requests and batch jobs.

Both build ``ctrops_common.model_inputs.Rows`` (as the explainer and the trainer's retrain
comparison do) and score them as ``probability(logits(x_tab, encode(seq, lengths)))``: the
probability corrected back to the data's true click rate (the model may have been trained on
down-sampled rows). So a row scores the same online, in a batch file and offline.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from ctrops_common.model_inputs import DataFile, Rows
from ctrops_common.model_loading import LoadedModel


def probabilities(model: LoadedModel, rows: Rows, *, states: np.ndarray | None = None,
                  threads: int | None = None) -> np.ndarray:
    """(n,) float64 click probabilities of ``rows`` (blocking: call in a thread). ``states``: the
    rows' ``model.encode`` when already computed (a batch job encodes in its read stage);
    ``threads``: LightGBM prediction threads for this call."""
    if len(rows) == 0:
        return np.zeros(0)
    if states is None:
        states = model.encode(rows.seq, rows.lengths)
    return model.probability(model.logits(rows.x_tab, states, threads=threads))


def table_rows(model: LoadedModel, table: pa.Table) -> Rows:
    """A training-layout table (``rows.rows_table`` or a chunk of a Parquet file) -> the model's inputs."""
    data = DataFile.from_table(table, model.preprocess)
    return data.rows(np.arange(len(data)))


def score_table(model: LoadedModel, table: pa.Table) -> tuple[np.ndarray, Rows]:
    rows = table_rows(model, table)
    return probabilities(model, rows), rows
