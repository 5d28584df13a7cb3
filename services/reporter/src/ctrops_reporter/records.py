"""What the reporter remembers between events: each run's inputs and its training curve.

The reporter cannot ask the gateway, and its inputs arrive on separate topics in no
guaranteed order (``training.done`` may be read after ``explanation.done``), so it keeps
them here and builds a run's report once both have arrived. Writes are upserts by
natural key (run id, epoch), so a redelivered event changes nothing.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from typing import Any

from sqlalchemy import Column, DateTime, Engine, Integer, MetaData, String, Table, Text, select, update
from sqlalchemy.exc import IntegrityError

from ctrops_common.events import ExplanationDone, TrainingDone
from ctrops_common.migrate import Schema, upgrade

# The tables as the queries see them; ctrops_reporter/migrations makes them (a test compares the two).
metadata = MetaData()

runs = Table(
    "reporter_runs",
    metadata,
    Column("run_id", String(64), primary_key=True),
    Column("training_done", Text),  # TrainingDone payload (JSON)
    Column("explanation_done", Text),  # ExplanationDone payload (JSON)
    Column("updated_at", DateTime(timezone=True), nullable=False),
)

epochs = Table(
    "reporter_epochs",
    metadata,
    Column("run_id", String(64), primary_key=True),
    Column("epoch", Integer, primary_key=True),
    Column("attempt", Integer, nullable=False),
    Column("total_epochs", Integer, nullable=False),
    Column("metrics", Text, nullable=False),
)


class Records:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        upgrade(engine, Schema.of_service("reporter"))  # ctrops_reporter/migrations

    # -- runs ---------------------------------------------------------------------

    def save_input(self, run_id: str, payload: TrainingDone | ExplanationDone) -> None:
        """Store a run's ``training.done`` or ``explanation.done`` payload (replacing an older copy)."""
        column = "training_done" if isinstance(payload, TrainingDone) else "explanation_done"
        values = {column: payload.model_dump_json(), "updated_at": datetime.now(timezone.utc)}
        with self.engine.begin() as conn:
            if conn.execute(update(runs).where(runs.c.run_id == run_id).values(**values)).rowcount:
                return
        try:
            with self.engine.begin() as conn:
                conn.execute(runs.insert().values(run_id=run_id, **values))
        except IntegrityError:  # inserted meanwhile by another replica: update instead
            with self.engine.begin() as conn:
                conn.execute(update(runs).where(runs.c.run_id == run_id).values(**values))

    def inputs(self, run_id: str) -> tuple[TrainingDone | None, ExplanationDone | None]:
        """(training.done, explanation.done) payloads of a run, read back as their models; None where not received."""
        with self.engine.connect() as conn:
            row = conn.execute(select(runs).where(runs.c.run_id == run_id)).first()
        if row is None:
            return None, None
        training = TrainingDone.model_validate_json(row.training_done) if row.training_done else None
        explanation = ExplanationDone.model_validate_json(row.explanation_done) if row.explanation_done else None
        return training, explanation

    # -- training curve ----------------------------------------------------------

    def save_epoch(self, run_id: str, epoch: int, attempt: int, total_epochs: int, metrics: dict[str, Any]) -> None:
        """Keep one row per (run, epoch); a later attempt of the run replaces an earlier one."""
        row = {"attempt": attempt, "total_epochs": total_epochs, "metrics": json.dumps(metrics)}
        key = (epochs.c.run_id == run_id, epochs.c.epoch == epoch)
        try:
            with self.engine.begin() as conn:
                conn.execute(epochs.insert().values(run_id=run_id, epoch=epoch, **row))
        except IntegrityError:  # already known: replace unless it came from an older attempt
            with self.engine.begin() as conn:
                conn.execute(update(epochs).where(*key, epochs.c.attempt <= attempt).values(**row))
        if attempt > 1:  # a retried run restarts its curve: drop epochs left from an older attempt
            with self.engine.begin() as conn:
                conn.execute(epochs.delete().where(epochs.c.run_id == run_id, epochs.c.attempt < attempt))

    def curve(self, run_id: str) -> list[dict[str, Any]]:
        """Per-epoch metrics of a run, epoch order, each with its 1-based ``epoch``."""
        with self.engine.connect() as conn:
            rows = conn.execute(select(epochs).where(epochs.c.run_id == run_id).order_by(epochs.c.epoch)).all()
        return [{"epoch": r.epoch, **json.loads(r.metrics)} for r in rows]
