"""A retrain's promotion check: its new champion against the model it replaces, on the same rows.

A retrain (``TrainingRequested.replaces``) trains a new run as usual; then, in the training
process (``worker.run``), the replaced run's champion is loaded from its model folder
(``ctrops_common.model_loading.load_ctr_model``) and scored on the NEW run's validation rows,
its inputs built by ``ctrops_common.model_inputs`` from the new file exactly as the explainer
and the scorer build them (its own ``Preprocess``: its columns, fill values, window). The
two models' AUCs on those rows are compared with the paired DeLong test: the new champion is
promoted when its AUC is not lower (``auc_new >= auc_old``).

Rows: the trainer indexes the Parquet file's rows in file order (``data.read_training_file``
reads the whole table); the validation rows are read back here batch by batch in that same
order, keeping only the wanted rows, so memory holds the validation part only (not a second
copy of the whole file beside the trainer's arrays). Their ``clicked`` must equal the
trainer's labels of the same rows, a check that the two readings agree.

When no comparison can be made (the replaced model's folder is missing or unreadable, the new
file lacks features it uses, scoring it fails) the new champion is promoted, because a model
that cannot be scored cannot be served either, and ``PromotionCheck.method`` is
``NOT_COMPARED``: then ``reason`` says why, and the numbers are placeholders (``auc_old`` =
``auc_new``, difference and interval 0, p-value 1) since the contract's fields are required.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from ctrops_common.auc_stats import auc_ci, delong_paired
from ctrops_common.dataset import SEQUENCE, TARGET
from ctrops_common.events import PromotionCheck

log = logging.getLogger(__name__)

METHOD = "DeLong paired"
NOT_COMPARED = "not compared"
_READ_BATCH_ROWS = 65_536  # rows per Parquet batch while picking out the validation rows
_NAMES_SHOWN = 5  # missing feature names listed in a reason


class ReplacedModelUnusable(Exception):
    """The replaced model cannot be scored on the new rows; the message says why, for a person."""


@dataclass(frozen=True)
class Replaced:
    """The run a retrain replaces, as the handler hands it to the training process."""

    run_id: str
    model_path: str | None = None  # absolute folder of its champion (None: see ``problem``)
    problem: str | None = None  # why the folder cannot be used, found before training

    @classmethod
    def from_job(cls, values: dict) -> Replaced:
        return cls(run_id=values["run_id"], model_path=values.get("model_path"), problem=values.get("problem"))


def read_rows(parquet_path: Path, columns: list[str], rows: np.ndarray) -> pa.Table:
    """Rows ``rows`` (indices in file order) of the file's ``columns``, in the order given, read batch by batch."""
    rows = np.asarray(rows, dtype=np.int64)
    order = np.argsort(rows, kind="stable")
    wanted = rows[order]
    file = pq.ParquetFile(parquet_path)
    total = file.metadata.num_rows
    if len(wanted) and (wanted[0] < 0 or wanted[-1] >= total):
        raise ValueError(f"row indices must be within the file's {total} rows")
    parts: list[pa.Table] = []
    offset = 0
    for batch in file.iter_batches(batch_size=_READ_BATCH_ROWS, columns=columns):
        end = offset + batch.num_rows
        lo, hi = np.searchsorted(wanted, [offset, end])
        if hi > lo:
            parts.append(pa.Table.from_batches([batch]).take(pa.array(wanted[lo:hi] - offset)))
        offset = end
    schema = file.schema_arrow
    picked = pa.concat_tables(parts) if parts else schema.empty_table().select(columns)
    inverse = np.empty_like(order)
    inverse[order] = np.arange(len(order))
    return picked.take(pa.array(inverse))  # back to the order asked for


def replaced_probability(model_path: Path, parquet_path: Path, rows: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Click probabilities of the model in ``model_path`` for rows ``rows`` of the new file; raises
    ``ReplacedModelUnusable`` when it cannot be loaded or the file lacks what it needs."""
    from ctrops_common.model_inputs import DataFile  # torch, through ctrops_common.ml: the training process only
    from ctrops_common.model_loading import load_ctr_model

    try:
        old = load_ctr_model(Path(model_path))
    except Exception as exc:  # noqa: BLE001 - a missing folder, a damaged file, an unknown kind: all say the same
        raise ReplacedModelUnusable(f"the replaced model could not be loaded ({type(exc).__name__}: {exc})") from exc
    pre = old.preprocess
    present = set(pq.read_schema(parquet_path).names)
    missing = [c for c in pre.feature_columns if c not in present]
    if missing:
        shown = ", ".join(missing[:_NAMES_SHOWN]) + (f" and {len(missing) - _NAMES_SHOWN} more"
                                                     if len(missing) > _NAMES_SHOWN else "")
        raise ReplacedModelUnusable(
            f"the new data lacks {len(missing)} of the {len(pre.feature_columns)} feature(s) the replaced "
            f"model uses ({shown})")
    columns = [*pre.feature_columns, TARGET, SEQUENCE]
    try:
        inputs = DataFile.from_table(read_rows(parquet_path, columns, rows), pre, require_labels=True)
        x = inputs.rows(np.arange(len(rows)))
        if not np.array_equal(x.clicked.astype(np.float64), np.asarray(labels, dtype=np.float64)):
            raise ReplacedModelUnusable("the validation rows read for the replaced model are not the rows the new "
                                        "run validated on (their clicks differ)")
        probability = old.probability(old.logits(x.x_tab, old.encode(x.seq, x.lengths)))
    except ReplacedModelUnusable:
        raise
    except Exception as exc:  # noqa: BLE001 - e.g. a column of another type than the model was trained on
        raise ReplacedModelUnusable(
            f"the replaced model could not score the new rows ({type(exc).__name__}: {exc})") from exc
    if not np.isfinite(probability).all():
        raise ReplacedModelUnusable("the replaced model gave non-finite probabilities on the new rows")
    return probability


def compare_with_replaced(replaced_run_id: str, labels: np.ndarray, p_new: np.ndarray, p_old: np.ndarray,
                          new_label: str = "new champion") -> PromotionCheck:
    """Paired DeLong test of the two models on the same rows; promoted when the new AUC is not lower."""
    y = np.asarray(labels, dtype=np.float64)
    test = delong_paired(y, p_old, p_new)  # difference = auc_b - auc_a = new - old
    auc_new, auc_old = test.auc_b, test.auc_a
    promoted = bool(auc_new >= auc_old)
    clicks = int(y.sum())
    evidence = (f"AUC {auc_new:.4f} against {auc_old:.4f} on the same {len(y):,} validation rows ({clicks:,} clicks), "
                f"difference {test.difference:+.4f}, 95% CI {test.ci_low:+.4f} to {test.ci_high:+.4f}, "
                f"p = {test.p_value:.3g}")
    noise = test.ci_low <= 0.0 <= test.ci_high
    if promoted:
        reason = (f"the {new_label} is not worse than run {replaced_run_id[:8]}'s model: {evidence}"
                  + ("; within noise, so the newer model, trained on the newer data, takes over" if noise else ""))
    else:
        reason = (f"the {new_label} is worse than run {replaced_run_id[:8]}'s model: {evidence}"
                  + ("; the difference is within noise, but a retrain must not lower the AUC" if noise else "")
                  + f"; run {replaced_run_id[:8]} stays the champion")
    return PromotionCheck(
        method=METHOD, replaced_run_id=replaced_run_id, auc_new=auc_new, auc_old=auc_old,
        difference=test.difference, ci_low=test.ci_low, ci_high=test.ci_high, p_value=test.p_value,
        val_rows=len(y), val_clicks=clicks, promoted=promoted, reason=reason,
    )


def not_compared(replaced_run_id: str, labels: np.ndarray, p_new: np.ndarray, why: str) -> PromotionCheck:
    """Promoted without a comparison: ``why`` no comparison could be made."""
    y = np.asarray(labels, dtype=np.float64)
    auc_new = auc_ci(y, p_new).auc
    return PromotionCheck(
        method=NOT_COMPARED, replaced_run_id=replaced_run_id, auc_new=auc_new, auc_old=auc_new, difference=0.0,
        ci_low=0.0, ci_high=0.0, p_value=1.0, val_rows=len(y), val_clicks=int(y.sum()), promoted=True,
        reason=f"promoted without a comparison: {why}; the model of run {replaced_run_id[:8]} cannot be scored, "
               "so it cannot stay the champion",
    )


def check_promotion(replaced: Replaced, parquet_path: Path, val_rows: np.ndarray, labels: np.ndarray,
                    p_new: np.ndarray, new_label: str = "new champion") -> PromotionCheck:
    """The whole check for the training process: score the replaced model on ``val_rows`` of the new
    file, compare with the new champion's probabilities ``p_new`` (same rows, same order)."""
    if replaced.problem or not replaced.model_path:
        return not_compared(replaced.run_id, labels, p_new,
                            replaced.problem or "the retrain request named no model folder of the replaced run")
    try:
        p_old = replaced_probability(Path(replaced.model_path), parquet_path, val_rows, labels)
    except ReplacedModelUnusable as exc:
        log.warning("retrain: run %s's model is not compared: %s", replaced.run_id, exc)
        return not_compared(replaced.run_id, labels, p_new, str(exc))
    return compare_with_replaced(replaced.run_id, labels, p_new, p_old, new_label)
