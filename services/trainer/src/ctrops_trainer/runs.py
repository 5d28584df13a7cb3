"""The run-state table ``trainer_runs``: who trains which run, and how it ended.

Kafka delivers at least once and several trainers share one consumer group, so the
same ``training.requested`` can reach a trainer twice: after a crash, after a rebalance,
or while another trainer still works on it. This table makes that safe:

- a run that completed (or failed) is never trained again; its final event is re-published;
- the trainer working on a run renews a lease (``updated_at``) every second or so; another
  trainer that receives the run waits while the lease is fresh and takes over once it is
  stale (the first trainer died, e.g. kill -9) - up to ``max_attempts`` attempts in total,
  then the run is failed with a reason;
- a cancel request is a flag here, seen by the running trainer at its next renewal and by
  a trainer that picks the run up later.

Every state change is one conditional UPDATE (compare-and-set on status and attempts), so
two trainers racing for the same run cannot both win. SQLite by default (shared by the
trainer processes of one host), PostgreSQL when CTROPS_DATABASE_URL is set.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any, Literal

from sqlalchemy import (
    Boolean,
    Column,
    DateTime,
    Engine,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    insert,
    select,
    update,
)
from sqlalchemy.exc import IntegrityError

from ctrops_common.db import as_utc
from ctrops_common.migrate import Schema, upgrade

# The tables as the queries see them; ctrops_trainer/migrations makes them (a test compares the two).
metadata = MetaData()

trainer_runs = Table(
    "trainer_runs",
    metadata,
    Column("run_id", String(64), primary_key=True),
    # pending (only a cancel seen so far) | running | interrupted | completed | failed
    Column("status", String(16), nullable=False),
    Column("attempts", Integer, nullable=False, default=0),
    Column("worker", String(200)),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    Column("cancel_requested", Boolean, nullable=False, default=False),
    Column("mlflow_run_id", String(64)),
    Column("result", Text),  # the final event's payload (JSON), re-published on redelivery
)

Action = Literal["train", "wait", "completed", "failed", "cancelled", "exhausted"]


@dataclass
class Claim:
    action: Action
    attempt: int = 0
    result: dict[str, Any] | None = None
    previous_mlflow_run_id: str | None = None
    # When taking over an earlier attempt: ``interrupted`` (given back) or ``running`` (its lease went stale).
    previous_status: str | None = None


def _now() -> datetime:
    return datetime.now(timezone.utc)


class RunStore:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        upgrade(engine, Schema.of_service("trainer"))  # ctrops_trainer/migrations

    def get(self, run_id: str) -> dict[str, Any] | None:
        with self.engine.connect() as conn:
            row = conn.execute(select(trainer_runs).where(trainer_runs.c.run_id == run_id)).mappings().first()
        return dict(row) if row else None

    def claim(self, run_id: str, worker: str, lease_s: float, max_attempts: int) -> Claim:
        """Decide what this worker does with a delivered run; takes the lease when the answer is ``train``."""
        while True:
            now = _now()
            row = self.get(run_id)
            if row is None:
                try:
                    with self.engine.begin() as conn:
                        conn.execute(insert(trainer_runs).values(
                            run_id=run_id, status="running", attempts=1, worker=worker, updated_at=now,
                            cancel_requested=False,
                        ))
                    return Claim("train", attempt=1)
                except IntegrityError:
                    continue  # another trainer inserted it first: look again
            status, attempts = row["status"], row["attempts"]
            result = json.loads(row["result"]) if row["result"] else None
            if status in ("completed", "failed"):
                return Claim(status, attempt=attempts, result=result)
            if row["cancel_requested"]:
                return Claim("cancelled", attempt=attempts)
            fresh = now - as_utc(row["updated_at"]) < timedelta(seconds=lease_s)
            if status == "running" and fresh and row["worker"] != worker:
                return Claim("wait", attempt=attempts)
            # pending (new), interrupted, or running under a lease nobody renews (its trainer died)
            if attempts >= max_attempts:
                return Claim("exhausted", attempt=attempts)
            with self.engine.begin() as conn:
                won = conn.execute(
                    update(trainer_runs)
                    .where(trainer_runs.c.run_id == run_id, trainer_runs.c.status == status,
                           trainer_runs.c.attempts == attempts)
                    .values(status="running", attempts=attempts + 1, worker=worker, updated_at=now)
                ).rowcount
            if won:
                return Claim("train", attempt=attempts + 1, previous_mlflow_run_id=row["mlflow_run_id"],
                             previous_status=status if attempts else None)

    def renew(self, run_id: str, worker: str) -> tuple[bool, bool]:
        """Renew our lease: (still ours, cancel requested)."""
        with self.engine.begin() as conn:
            ours = conn.execute(
                update(trainer_runs)
                .where(trainer_runs.c.run_id == run_id, trainer_runs.c.worker == worker,
                       trainer_runs.c.status == "running")
                .values(updated_at=_now())
            ).rowcount
            cancel = conn.execute(
                select(trainer_runs.c.cancel_requested).where(trainer_runs.c.run_id == run_id)
            ).scalar()
        return bool(ours), bool(cancel)

    def set_mlflow_run(self, run_id: str, mlflow_run_id: str) -> None:
        with self.engine.begin() as conn:
            conn.execute(update(trainer_runs).where(trainer_runs.c.run_id == run_id)
                         .values(mlflow_run_id=mlflow_run_id))

    def finish(self, run_id: str, worker: str | None, status: Literal["completed", "failed"],
               result: dict[str, Any]) -> bool:
        """Record the final state; False when another worker owns the run now (then publish nothing)."""
        condition = [trainer_runs.c.run_id == run_id, trainer_runs.c.status.in_(("pending", "running", "interrupted"))]
        if worker is not None:
            condition.append(trainer_runs.c.worker == worker)
        with self.engine.begin() as conn:
            done = conn.execute(
                update(trainer_runs).where(*condition)
                .values(status=status, result=json.dumps(result, allow_nan=False), updated_at=_now())
            ).rowcount
        return bool(done)

    def release(self, run_id: str, worker: str) -> None:
        """Give the run back without a result (stopping, or an error to retry): the next claim may start at once."""
        with self.engine.begin() as conn:
            conn.execute(
                update(trainer_runs)
                .where(trainer_runs.c.run_id == run_id, trainer_runs.c.worker == worker,
                       trainer_runs.c.status == "running")
                .values(status="interrupted", updated_at=_now())
            )

    def request_cancel(self, run_id: str) -> None:
        """Flag a cancel; a run not seen yet gets a ``pending`` row so its later delivery is cancelled."""
        with self.engine.begin() as conn:
            changed = conn.execute(
                update(trainer_runs).where(trainer_runs.c.run_id == run_id).values(cancel_requested=True)
            ).rowcount
        if changed:
            return
        try:
            with self.engine.begin() as conn:
                conn.execute(insert(trainer_runs).values(
                    run_id=run_id, status="pending", attempts=0, worker=None, updated_at=_now(),
                    cancel_requested=True,
                ))
        except IntegrityError:
            self.request_cancel(run_id)  # inserted by a claim meanwhile: flag that row
