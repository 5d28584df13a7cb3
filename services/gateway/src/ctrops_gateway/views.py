"""The read model the REST answers come from, built only from events.

Every event the gateway consumes is stored once by event id (redelivery is a no-op),
so the model survives a gateway restart (SQLite by default, PostgreSQL when configured)
and any replica can rebuild it from the topics. Heartbeats only keep the latest per
instance: they are many and only their freshness matters.

A training run's events are also kept in memory (``run_events``): GET /api/train/status and
the training WebSocket read them without SQL. The database stays the truth: a run not in
memory (after a restart, evicted, or first stored by another replica sharing the database)
is read from it once; every event this replica records, through its consumer or its own
routes, is added to the run's copy in the same call that stores it, so a status reflects an
event as soon as the consumer handled it. Each replica has its own consumer, so its own copy.

Heartbeats are kept in memory the same way (``heartbeats``, ``service_liveness``: /api/health and
the performance view read them without SQL): the latest of each instance, read from the database
once at start (a restarted gateway knows the heartbeats it stored) and replaced in the same call
that stores a new one.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any, TypeVar

from sqlalchemy import (
    Column,
    DateTime,
    Engine,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    and_,
    delete,
    insert,
    select,
)
from sqlalchemy.exc import IntegrityError

from ctrops_common.db import as_utc
from ctrops_common.events import (
    TOPIC_PAYLOADS,
    Event,
    FileUploaded,
    Payload,
    ServiceHeartbeat,
    Topic,
    TrainingRequested,
)
from ctrops_common.migrate import Schema, upgrade
from ctrops_common.storage import is_id

# The tables as the queries see them; ctrops_gateway/migrations makes them (a test compares the two).
metadata = MetaData()

event_log = Table(
    "gateway_event_log",
    metadata,
    Column("seq", Integer, primary_key=True, autoincrement=True),
    Column("event_id", String(64), nullable=False, unique=True),
    Column("topic", String(64), nullable=False),
    Column("correlation_id", String(64)),
    Column("time", DateTime(timezone=True), nullable=False),
    Column("payload", Text, nullable=False),
    Index("ix_gateway_event_log_topic_corr", "topic", "correlation_id"),
    # "Newest event of a topic" (latest snapshot, latest run) without sorting every row of the
    # topic: monitor snapshots alone add 8,640 rows a day (bench/monitor.py).
    Index("ix_gateway_event_log_topic_seq", "topic", "seq"),
)

heartbeats = Table(
    "gateway_heartbeats",
    metadata,
    Column("service", String(64), primary_key=True),
    Column("instance", String(200), primary_key=True),
    Column("seen_at", DateTime(timezone=True), nullable=False),
    Column("payload", Text, nullable=False),
)


P = TypeVar("P", bound=Payload)


class StoredEvent:
    """An event as the read model keeps it; ``payload`` is the topic's typed model (``TOPIC_PAYLOADS``),
    read back from the stored JSON as that model, never as a dict."""

    __slots__ = ("seq", "event_id", "topic", "correlation_id", "time", "payload")

    def __init__(self, row: Any) -> None:
        self.seq = row.seq
        self.event_id = row.event_id
        self.topic = row.topic
        self.correlation_id = row.correlation_id
        self.time = as_utc(row.time)
        payload = row.payload
        self.payload: Any = (TOPIC_PAYLOADS[Topic(row.topic)].model_validate_json(payload)
                             if isinstance(payload, (str, bytes)) else payload)

    def typed(self, cls: type[P]) -> P:
        """The payload as ``cls``, the model of the topic it was stored under (TypeError otherwise)."""
        if not isinstance(self.payload, cls):
            raise TypeError(f"a {self.topic} event carries {type(self.payload).__name__}, not {cls.__name__}")
        return self.payload


class _Row:
    """An event as its stored row reads back, for the in-memory copy (``StoredEvent(_Row(...))``)."""

    __slots__ = ("seq", "event_id", "topic", "correlation_id", "time", "payload")

    def __init__(self, seq: int | None, event: Event[Any]) -> None:
        self.seq = seq
        self.event_id = event.event_id
        self.topic = event.type.value
        self.correlation_id = event.correlation_id
        self.time = event.time
        self.payload = event.payload  # the typed payload itself: no JSON round trip


# The topics of a training run's view (training_live.build_view), kept in memory by run id.
RUN_TOPICS = [Topic.TRAINING_REQUESTED, Topic.TRAINING_STARTED, Topic.TRAINING_PROGRESS, Topic.TRAINING_DONE,
              Topic.TRAINING_FAILED, Topic.TRAINING_CANCEL_REQUESTED]
_RUN_TOPIC_VALUES = frozenset(t.value for t in RUN_TOPICS)
# Runs kept in memory (least recently read dropped first; a dropped run is read from the database again).
RUNS_IN_MEMORY = 2000


# A scoring job's events are stored under its job id whatever the envelope's correlation id (the
# scorer's convention is the job id too): GET /api/predict/jobs/{job_id} reads them by that key.
SCORING_TOPICS = [Topic.SCORING_REQUESTED, Topic.SCORING_PROGRESS, Topic.SCORING_DONE, Topic.SCORING_FAILED]
_SCORING_TOPIC_VALUES = frozenset(t.value for t in SCORING_TOPICS)


def stored_correlation(event: Event[Any]) -> str | None:
    """The key an event is stored under: the job id of scoring.*, else the envelope's correlation id
    (run id or file id)."""
    if event.type.value in _SCORING_TOPIC_VALUES:
        return event.payload.job_id
    return event.correlation_id


@dataclass(frozen=True)
class SeenHeartbeat:
    """The latest heartbeat of one service instance, and when it was sent."""

    seen_at: datetime
    beat: ServiceHeartbeat

    def fresh(self, now: datetime, timeout_s: float) -> bool:
        return now - self.seen_at <= timedelta(seconds=timeout_s)


class ReadModel:
    def __init__(self, engine: Engine, runs_in_memory: int = RUNS_IN_MEMORY) -> None:
        self.engine = engine
        upgrade(engine, Schema.of_service("gateway"))  # ctrops_gateway/migrations
        self.runs_in_memory = runs_in_memory
        self._runs: OrderedDict[str, list[StoredEvent]] = OrderedDict()  # run id -> its events, oldest first
        self._run_ids: dict[str, set[str]] = {}  # run id -> the event ids in _runs (a redelivery is added once)
        self._run_writes = 0  # run events recorded so far: a read from the database that raced one is not kept
        self._lock = threading.Lock()  # record() runs in worker threads, reads on the event loop
        # (service, instance) -> the latest heartbeat of each instance, read back typed from its stored row.
        self._beats: dict[tuple[str, str], SeenHeartbeat] = {}
        with self.engine.connect() as conn:
            for r in conn.execute(select(heartbeats)):
                self._beats[(r.service, r.instance)] = SeenHeartbeat(
                    as_utc(r.seen_at), ServiceHeartbeat.model_validate_json(r.payload))

    # -- writing (called from the gateway's consumer) --------------------------

    def record(self, event: Event[Any]) -> bool:
        """Store an event; False when it was already stored (a redelivery)."""
        payload = event.payload.model_dump_json()
        try:
            with self.engine.begin() as conn:
                result = conn.execute(
                    insert(event_log).values(
                        event_id=event.event_id,
                        topic=event.type.value,
                        correlation_id=stored_correlation(event),
                        time=event.time,
                        payload=payload,
                    )
                )
            seq = result.inserted_primary_key[0] if result.inserted_primary_key else None
            stored = True
        except IntegrityError:
            # Stored already: by this replica (a redelivery) or by another one sharing the database,
            # which this replica's copy may not have yet.
            seq, stored = None, False
        if event.type.value in _RUN_TOPIC_VALUES and event.correlation_id:
            self._remember(StoredEvent(_Row(seq, event)))
        return stored

    def _remember(self, stored: StoredEvent) -> None:
        run_id = stored.correlation_id
        with self._lock:
            self._run_writes += 1
            events = self._runs.get(run_id)
            if events is not None and stored.event_id not in self._run_ids[run_id]:
                events.append(stored)
                self._run_ids[run_id].add(stored.event_id)

    def cached_run_events(self, run_id: str) -> list[StoredEvent] | None:
        """The run's events (oldest first) when in memory, else None; never touches the database."""
        with self._lock:
            events = self._runs.get(run_id)
            if events is None:
                return None
            self._runs.move_to_end(run_id)
            return list(events)

    def run_events(self, run_id: str) -> list[StoredEvent]:
        """The run's events (RUN_TOPICS, oldest first): from memory, else from the database (then kept)."""
        cached = self.cached_run_events(run_id)
        if cached is not None:
            return cached
        with self._lock:
            mark = self._run_writes
        events = self.events(RUN_TOPICS, correlation_id=run_id)
        if events:
            with self._lock:
                if self._run_writes == mark and run_id not in self._runs:  # nothing recorded meanwhile
                    self._runs[run_id] = list(events)
                    self._run_ids[run_id] = {e.event_id for e in events}
                    while len(self._runs) > self.runs_in_memory:
                        dropped, _ = self._runs.popitem(last=False)
                        del self._run_ids[dropped]
        return events

    def prune(self, topic: Topic, keep: int) -> None:
        """Keep only the newest ``keep`` events of a topic whose history nobody reads (snapshots)."""
        with self.engine.begin() as conn:
            newest = conn.execute(
                select(event_log.c.seq).where(event_log.c.topic == topic.value)
                .order_by(event_log.c.seq.desc()).offset(keep).limit(1)
            ).scalar()
            if newest is not None:
                conn.execute(delete(event_log).where(event_log.c.topic == topic.value, event_log.c.seq <= newest))

    def record_heartbeat(self, event: Event[ServiceHeartbeat]) -> None:
        """Keep the newest heartbeat of each instance. One no newer than the kept one (a redelivery: the
        consumer does not remember heartbeats, ``consumers.register``) changes nothing."""
        hb = event.payload
        beat = SeenHeartbeat(as_utc(event.time), hb)
        with self._lock:
            known = self._beats.get((hb.service, hb.instance))
        if known is not None and known.seen_at >= beat.seen_at:
            return
        payload = hb.model_dump_json()
        with self.engine.begin() as conn:
            conn.execute(
                delete(heartbeats).where(and_(heartbeats.c.service == hb.service, heartbeats.c.instance == hb.instance))
            )
            conn.execute(
                insert(heartbeats).values(
                    service=hb.service, instance=hb.instance, seen_at=event.time, payload=payload
                )
            )
        with self._lock:
            self._beats[(hb.service, hb.instance)] = beat

    # -- reading -----------------------------------------------------------------

    def events(
        self, topics: list[Topic] | Topic, correlation_id: str | None = None, limit: int | None = None,
        newest_first: bool = False,
    ) -> list[StoredEvent]:
        topic_list = [topics] if isinstance(topics, Topic) else topics
        query = select(event_log).where(event_log.c.topic.in_([t.value for t in topic_list]))
        if correlation_id is not None:
            query = query.where(event_log.c.correlation_id == correlation_id)
        query = query.order_by(event_log.c.seq.desc() if newest_first else event_log.c.seq)
        if limit:
            query = query.limit(limit)
        with self.engine.connect() as conn:
            return [StoredEvent(r) for r in conn.execute(query)]

    def latest(self, topics: list[Topic] | Topic, correlation_id: str | None = None) -> StoredEvent | None:
        found = self.events(topics, correlation_id, limit=1, newest_first=True)
        return found[0] if found else None

    def heartbeats(self) -> list[SeenHeartbeat]:
        """The latest heartbeat of each instance, from memory."""
        with self._lock:
            return list(self._beats.values())

    def service_liveness(self, services: list[str], timeout_s: float) -> dict[str, dict[str, Any]]:
        """Per service: alive if any instance sent a heartbeat within ``timeout_s``. From memory, no SQL."""
        now = datetime.now(timezone.utc)
        result: dict[str, dict[str, Any]] = {
            s: {"status": "down", "instances": 0, "last_seen": None} for s in services
        }
        for seen in self.heartbeats():
            entry = result.setdefault(seen.beat.service, {"status": "down", "instances": 0, "last_seen": None})
            if seen.fresh(now, timeout_s):
                entry["status"] = "up"
                entry["instances"] += 1
            last = seen.seen_at.isoformat()
            if entry["last_seen"] is None or last > entry["last_seen"]:
                entry["last_seen"] = last
        return result

    # -- uploaded files (upload area) ---------------------------------------------

    def file_record(self, file_id: str) -> FileUploaded | None:
        """The ``file.uploaded`` payload of ``file_id`` (``parquet_location`` is None when the
        data is invalid), or None for an unknown, rejected or malformed id."""
        if not is_id(file_id):
            return None
        found = self.latest(Topic.FILE_UPLOADED, correlation_id=file_id)
        if found is None or found.payload.file_id != file_id:
            return None
        return found.payload

    # -- active training runs per client (hardening: limits.py) ---------------------------------

    def requested_runs(self, client_id: str, since: datetime) -> set[str]:
        """Run ids of ``training.requested`` events since ``since`` that carry ``client_id``."""
        query = select(event_log.c.payload).where(
            event_log.c.topic == Topic.TRAINING_REQUESTED.value, event_log.c.time >= since
        )
        with self.engine.connect() as conn:
            requests = [TrainingRequested.model_validate_json(r[0]) for r in conn.execute(query)]
        return {r.run_id for r in requests if r.client_id == client_id}

    def finished_runs(self, run_ids: set[str]) -> set[str]:
        """Those of ``run_ids`` with a ``training.done`` or ``training.failed`` (cancelled included) event."""
        if not run_ids:
            return set()
        query = select(event_log.c.correlation_id).where(
            event_log.c.topic.in_([Topic.TRAINING_DONE.value, Topic.TRAINING_FAILED.value]),
            event_log.c.correlation_id.in_(list(run_ids)),
        )
        with self.engine.connect() as conn:
            return {r[0] for r in conn.execute(query)}
