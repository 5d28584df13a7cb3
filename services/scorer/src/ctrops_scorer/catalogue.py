"""The runs the scorer can use, kept in its database so a restart (or a broker that comes back
empty) still knows them.

- ``scorer_runs``: one row per completed run: the ``TrainingDone`` payload as JSON (read back as
  that model), its ``promoted`` flag and when it finished (the event's time);
- ``scorer_importance``: the explainer's feature order for a run (``ExplanationDone.top_features``,
  most important first), which ranks the features of a monitoring period.

A run reference is a run id, ``latest`` (the newest completed run) or ``champion`` (the newest
completed run whose ``TrainingDone.promoted`` is true). Recording is idempotent: a redelivered
``training.done`` keeps the first time and takes the newest payload.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import Boolean, Column, DateTime, Engine, MetaData, String, Table, Text, insert, select, update
from sqlalchemy.exc import IntegrityError

from ctrops_common.db import as_utc
from ctrops_common.events import TrainingDone
from ctrops_common.migrate import Schema, upgrade
from ctrops_common.storage import is_id

# The tables as the queries see them; ctrops_scorer/migrations makes them (a test compares the two).
metadata = MetaData()

runs = Table(
    "scorer_runs",
    metadata,
    Column("run_id", String(64), primary_key=True),
    Column("finished_at", DateTime(timezone=True), nullable=False, index=True),
    Column("promoted", Boolean, nullable=False, index=True),
    Column("payload", Text, nullable=False),  # the TrainingDone payload as JSON
)

importance = Table(
    "scorer_importance",
    metadata,
    Column("run_id", String(64), primary_key=True),
    Column("features", Text, nullable=False),  # JSON list of feature names, most important first
)

ALIASES = ("latest", "champion")


@dataclass
class RunEntry:
    done: TrainingDone
    promoted: bool
    finished_at: datetime
    importance: list[str] = field(default_factory=list)

    @property
    def run_id(self) -> str:
        return self.done.run_id

    def importance_ranks(self) -> dict[str, int] | None:
        return {name: rank for rank, name in enumerate(self.importance, start=1)} or None


def is_run_ref(value: str) -> bool:
    return value in ALIASES or is_id(value)


class RunCatalogue:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        upgrade(engine, Schema.of_service("scorer"))  # ctrops_scorer/migrations

    def record_done(self, done: TrainingDone, finished_at: datetime) -> None:
        values = {"promoted": bool(done.promoted), "payload": done.model_dump_json()}
        try:
            with self.engine.begin() as conn:
                conn.execute(insert(runs).values(run_id=done.run_id, finished_at=finished_at, **values))
        except IntegrityError:  # seen before (a redelivery or a re-report): the first time stands
            with self.engine.begin() as conn:
                conn.execute(update(runs).where(runs.c.run_id == done.run_id).values(**values))

    def record_importance(self, run_id: str, features: list[str]) -> None:
        text = json.dumps(features)
        try:
            with self.engine.begin() as conn:
                conn.execute(insert(importance).values(run_id=run_id, features=text))
        except IntegrityError:
            with self.engine.begin() as conn:
                conn.execute(update(importance).where(importance.c.run_id == run_id).values(features=text))

    def resolve(self, run_ref: str) -> RunEntry | None:
        """The run a reference names, or None (unknown id, or no run of that kind yet)."""
        query = select(runs.c.run_id, runs.c.finished_at, runs.c.promoted, runs.c.payload,
                       importance.c.features).select_from(runs.outerjoin(importance, importance.c.run_id == runs.c.run_id))
        if run_ref == "latest":
            query = query.order_by(runs.c.finished_at.desc(), runs.c.run_id.desc()).limit(1)
        elif run_ref == "champion":
            query = query.where(runs.c.promoted.is_(True)).order_by(
                runs.c.finished_at.desc(), runs.c.run_id.desc()).limit(1)
        else:
            query = query.where(runs.c.run_id == run_ref)
        with self.engine.connect() as conn:
            row = conn.execute(query).first()
        if row is None:
            return None
        return RunEntry(
            done=TrainingDone.model_validate_json(row.payload),
            promoted=bool(row.promoted),
            finished_at=as_utc(row.finished_at),
            importance=json.loads(row.features) if row.features else [],
        )
