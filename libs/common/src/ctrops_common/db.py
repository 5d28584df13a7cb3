"""Database access: SQLite by default (one file per service), PostgreSQL when configured.

Services use SQLAlchemy Core with their own tables; every table name starts with the
service's name so several services can share one PostgreSQL database safely. The tables are
made by migrations (ctrops_common.migrate), never by ``create_all``.
"""

from __future__ import annotations

import sqlite3
import time
from datetime import datetime, timezone

from sqlalchemy import (
    Column,
    DateTime,
    Engine,
    MetaData,
    String,
    Table,
    create_engine,
    delete,
    event,
    insert,
    select,
)
from sqlalchemy.exc import IntegrityError

from .migrate import Schema, upgrade


def as_utc(value: datetime | None) -> datetime | None:
    """SQLite hands timezone-aware columns back naive; they were stored in UTC."""
    if value is None:
        return None
    return value if value.tzinfo else value.replace(tzinfo=timezone.utc)


BUSY_TIMEOUT_S = 30  # how long a SQLite connection waits for another's lock (and for the switch to WAL)


def make_engine(url: str) -> Engine:
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"timeout": BUSY_TIMEOUT_S, "check_same_thread": False})

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn, _record) -> None:  # several processes may share a file
            cur = dbapi_conn.cursor()
            cur.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_S * 1000}")
            _write_ahead_log(cur)
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.close()

        return engine
    return create_engine(url, pool_pre_ping=True)


def _write_ahead_log(cur: sqlite3.Cursor) -> None:
    """Put the file in WAL mode (readers never wait for the writer). WAL is a property of the file: the
    first connection switches it, later ones find it so. The switch needs the file to itself, and SQLite
    answers "database is locked" at once, without its busy timeout, while another connection holds a
    lock: four replicas opening one new file together failed so (20 of 300 starts). So the switch is
    retried until the other connection lets go, within the busy timeout."""
    deadline = time.monotonic() + BUSY_TIMEOUT_S
    pause = 0.01
    while True:
        try:
            if cur.execute("PRAGMA journal_mode").fetchone()[0].lower() != "wal":
                cur.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(pause)
            pause = min(pause * 2, 0.2)


class ProcessedEvents:
    """Remembers which event ids a consumer group finished, so redelivery is harmless.

    Rows older than the retention are pruned (``prune``; the service runtime does it hourly):
    an event can only be redelivered while it is still in the topic's log.
    """

    def __init__(self, engine: Engine, service: str) -> None:
        self.engine = engine
        self.metadata = MetaData()
        # Mirrors ctrops_common/migrations (tests compare the two).
        self.table = Table(
            f"{service}_processed_events",
            self.metadata,
            Column("group_id", String(200), primary_key=True),
            Column("event_id", String(64), primary_key=True),
            Column("processed_at", DateTime(timezone=True), nullable=False, index=True),
        )
        upgrade(engine, Schema.common(service))

    def seen(self, group_id: str, event_id: str) -> bool:
        with self.engine.connect() as conn:
            row = conn.execute(
                select(self.table.c.event_id).where(
                    self.table.c.group_id == group_id, self.table.c.event_id == event_id
                )
            ).first()
        return row is not None

    def mark(self, group_id: str, event_id: str) -> None:
        try:
            with self.engine.begin() as conn:
                conn.execute(
                    insert(self.table).values(
                        group_id=group_id, event_id=event_id, processed_at=datetime.now(timezone.utc)
                    )
                )
        except IntegrityError:
            pass  # another consumer of the group finished it first: same outcome

    def prune(self, before: datetime) -> int:
        """Forget the events finished before ``before``; returns how many were forgotten."""
        before = before.astimezone(timezone.utc)  # SQLite compares the stored UTC text
        with self.engine.begin() as conn:
            result = conn.execute(delete(self.table).where(self.table.c.processed_at < before))
        return result.rowcount or 0
