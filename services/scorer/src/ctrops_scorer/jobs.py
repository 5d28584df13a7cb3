"""Batch jobs the scorer keeps in its database.

- ``scorer_jobs``, finished jobs, so a redelivered ``scoring.requested`` republishes its answer
  instead of scoring again: one row per job, the ``ScoringDone`` payload as JSON, written after
  the predictions file and the monitoring period are in the store and the period is published.
- ``scorer_parked``, jobs for a run id the scorer has not recorded yet. Topics are consumed in
  no global order: the gateway accepts a job for a run as soon as it has read the run's
  ``training.done``, and the job's ``scoring.requested`` can reach the scorer before the same
  ``training.done`` does. Such a job waits here (the ``ScoringRequested`` as JSON and the
  request's time) until the run is recorded, or fails after the scorer's park timeout; the
  row goes only when the job has been answered, so a restart resumes it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone

from sqlalchemy import Column, DateTime, Engine, MetaData, String, Table, Text, delete, insert, select, update
from sqlalchemy.exc import IntegrityError

from ctrops_common.db import as_utc
from ctrops_common.events import ScoringDone, ScoringRequested
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

parked = Table(
    "scorer_parked",
    metadata,
    Column("job_id", String(64), primary_key=True),
    Column("run_id", String(64), nullable=False, index=True),
    Column("parked_at", DateTime(timezone=True), nullable=False),
    Column("requested_at", DateTime(timezone=True), nullable=False),
    Column("payload", Text, nullable=False),  # ScoringRequested as JSON
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


@dataclass(frozen=True)
class ParkedJob:
    request: ScoringRequested
    requested_at: datetime
    parked_at: datetime


class ParkedJobs:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        upgrade(engine, Schema.of_service("scorer"))

    def park(self, request: ScoringRequested, requested_at: datetime) -> bool:
        """Keep the job until its run is recorded; False when it is parked already (a redelivery)."""
        try:
            with self.engine.begin() as conn:
                conn.execute(insert(parked).values(job_id=request.job_id, run_id=request.run_id,
                                                   parked_at=datetime.now(timezone.utc), requested_at=requested_at,
                                                   payload=request.model_dump_json()))
        except IntegrityError:
            return False
        return True

    def waiting(self) -> list[ParkedJob]:
        """Every parked job, oldest first."""
        with self.engine.connect() as conn:
            rows = conn.execute(select(parked.c.payload, parked.c.requested_at, parked.c.parked_at)
                                .order_by(parked.c.parked_at, parked.c.job_id)).all()
        return [ParkedJob(ScoringRequested.model_validate_json(r.payload), as_utc(r.requested_at), as_utc(r.parked_at))
                for r in rows]

    def release(self, job_id: str) -> None:
        """The job has been answered (scored or failed): forget it."""
        with self.engine.begin() as conn:
            conn.execute(delete(parked).where(parked.c.job_id == job_id))
