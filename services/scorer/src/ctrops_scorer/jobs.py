"""Finished batch jobs, so a redelivered ``scoring.requested`` republishes its answer instead of scoring again.

One row per job: the ``ScoringDone`` payload as JSON, written after the predictions file and the
monitoring period are in the store and the period is published.
"""

from __future__ import annotations

from datetime import datetime, timezone

from sqlalchemy import Column, DateTime, Engine, MetaData, String, Table, Text, insert, select, update
from sqlalchemy.exc import IntegrityError

from ctrops_common.events import ScoringDone
from ctrops_common.migrate import Schema, upgrade

# The tables as the queries see them; ctrops_scorer/migrations makes them (a test compares the two).
metadata = MetaData()

jobs = Table(
    "scorer_jobs",
    metadata,
    Column("job_id", String(64), primary_key=True),
    Column("finished_at", DateTime(timezone=True), nullable=False),
    Column("payload", Text, nullable=False),  # ScoringDone as JSON
)


class FinishedJobs:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        upgrade(engine, Schema.of_service("scorer"))  # ctrops_scorer/migrations

    def get(self, job_id: str) -> ScoringDone | None:
        with self.engine.connect() as conn:
            row = conn.execute(select(jobs.c.payload).where(jobs.c.job_id == job_id)).first()
        return None if row is None else ScoringDone.model_validate_json(row.payload)

    def put(self, done: ScoringDone) -> None:
        values = {"finished_at": datetime.now(timezone.utc), "payload": done.model_dump_json()}
        try:
            with self.engine.begin() as conn:
                conn.execute(insert(jobs).values(job_id=done.job_id, **values))
        except IntegrityError:  # scored again (its files had gone): the newest answer stands
            with self.engine.begin() as conn:
                conn.execute(update(jobs).where(jobs.c.job_id == done.job_id).values(**values))
