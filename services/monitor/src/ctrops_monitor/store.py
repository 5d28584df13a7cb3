"""What the monitor must remember across restarts.

- ``monitor_alerts``: one row per incident (open or resolved), so a restarted monitor
  neither re-fires an open incident nor forgets to resolve it; its ``metrics`` column is the
  alert's evidence as JSON, read back as the ``MonitorAlert`` it fired with (``OpenIncident``).
- ``monitor_alert_outbox``: alert messages written in the same transaction as the
  incident change and deleted once published, so a crash between "decide" and
  "publish" loses no alert (at-least-once; consumers dedupe by alert_id + state).
- ``monitor_runs``: the quality of each finished run (the latest one feeds snapshots).
- ``monitor_instances``: the newest heartbeat per service instance (liveness survives
  a restart: a service that died while the monitor was down is still reported).
- ``monitor_periods``: every monitoring period received (the deployed model's life), so a
  restarted monitor knows the newest period (an older one arriving late changes no incident)
  and exports the newest period's gauges again.
- ``monitor_run_events``: per run and topic (training.requested, training.started,
  explanation.done, report.requested, report.ready), the time of its newest event: the
  latest run's pipeline stages in each snapshot (pipeline.py). Writing the same event again
  changes nothing, so a redelivery is harmless.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import (
    Column,
    DateTime,
    Engine,
    Float,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    delete,
    func,
    insert,
    select,
    update,
)

from ctrops_common.db import as_utc
from ctrops_common.events import MonitorAlert
from ctrops_common.migrate import Schema, upgrade

# The tables as the queries see them; ctrops_monitor/migrations makes them (a test compares the two).
metadata = MetaData()

alerts = Table(
    "monitor_alerts",
    metadata,
    Column("alert_id", String(200), primary_key=True),
    Column("kind", String(40), nullable=False, index=True),
    Column("subject", String(120), nullable=False, index=True),
    Column("state", String(10), nullable=False),  # firing / resolved
    Column("severity", String(10), nullable=False),
    Column("message", Text, nullable=False),
    Column("metrics", Text, nullable=False),
    Column("opened_at", DateTime(timezone=True), nullable=False),
    Column("resolved_at", DateTime(timezone=True)),
)

outbox = Table(
    "monitor_alert_outbox",
    metadata,
    Column("seq", Integer, primary_key=True, autoincrement=True),
    Column("payload", Text, nullable=False),
)

runs = Table(
    "monitor_runs",
    metadata,
    Column("run_id", String(64), primary_key=True),
    Column("finished_at", DateTime(timezone=True), nullable=False),
    Column("payload", Text, nullable=False),  # the TrainingDone payload as JSON
)

instances = Table(
    "monitor_instances",
    metadata,
    Column("service", String(64), primary_key=True),
    Column("instance", String(200), primary_key=True),
    Column("seen_at", DateTime(timezone=True), nullable=False),
    Column("payload", Text, nullable=False),
)

watched = Table(
    "monitor_watched_services",
    metadata,
    Column("service", String(64), primary_key=True),
    Column("first_seen", DateTime(timezone=True), nullable=False),
    Column("last_seen", Float, nullable=False),  # unix seconds of the newest heartbeat
)

periods = Table(
    "monitor_periods",
    metadata,
    Column("period_id", String(200), primary_key=True),
    Column("period", String(20), nullable=False),
    Column("bucket", String(10), nullable=False, index=True),
    Column("run_id", String(64), nullable=False),
    Column("model_kind", String(20), nullable=False),
    Column("received_at", DateTime(timezone=True), nullable=False),
    Column("payload", Text, nullable=False),  # the MonitoringPeriod as JSON
)

run_events = Table(
    "monitor_run_events",
    metadata,
    Column("run_id", String(64), primary_key=True),
    Column("topic", String(64), primary_key=True),
    Column("event_id", String(64), nullable=False),
    Column("time", DateTime(timezone=True), nullable=False),  # the event's own time (its envelope's)
)


@dataclass(frozen=True)
class OpenIncident:
    """A firing incident as stored: the alert it fired with (typed evidence included) and when."""

    alert: MonitorAlert
    opened_at: datetime


class MonitorStore:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        upgrade(engine, Schema.of_service("monitor"))  # ctrops_monitor/migrations

    # -- alerts -----------------------------------------------------------------

    def open_alerts(self) -> list[OpenIncident]:
        """The firing incidents, each read back as the ``MonitorAlert`` it fired with."""
        with self.engine.connect() as conn:
            rows = conn.execute(select(alerts).where(alerts.c.state == "firing")).all()
        return [self._incident(r) for r in rows]

    def incidents(self, kind: str, subject: str) -> int:
        with self.engine.connect() as conn:
            return conn.execute(
                select(func.count()).select_from(alerts).where(alerts.c.kind == kind, alerts.c.subject == subject)
            ).scalar_one()

    def open_incident(self, alert: MonitorAlert, opened_at: datetime, message: dict[str, Any]) -> None:
        """Store a firing ``alert`` (its evidence as JSON) and its outgoing message, in one transaction."""
        with self.engine.begin() as conn:
            conn.execute(insert(alerts).values(
                alert_id=alert.alert_id, kind=alert.kind, subject=alert.subject, state="firing",
                severity=alert.severity, message=alert.message,
                metrics=json.dumps(alert.metrics.model_dump(), default=str),
                opened_at=opened_at, resolved_at=None,
            ))
            conn.execute(insert(outbox).values(payload=json.dumps(message, default=str)))

    def resolve_incident(self, alert_id: str, when: datetime, message: dict[str, Any]) -> None:
        with self.engine.begin() as conn:
            conn.execute(update(alerts).where(alerts.c.alert_id == alert_id).values(state="resolved", resolved_at=when))
            conn.execute(insert(outbox).values(payload=json.dumps(message, default=str)))

    def pending_messages(self) -> list[tuple[int, dict[str, Any]]]:
        with self.engine.connect() as conn:
            rows = conn.execute(select(outbox).order_by(outbox.c.seq)).all()
        return [(r.seq, json.loads(r.payload)) for r in rows]

    def message_sent(self, seq: int) -> None:
        with self.engine.begin() as conn:
            conn.execute(delete(outbox).where(outbox.c.seq == seq))

    @staticmethod
    def _incident(row: Any) -> OpenIncident:
        alert = MonitorAlert.model_validate({
            "alert_id": row.alert_id, "kind": row.kind, "subject": row.subject, "state": row.state,
            "severity": row.severity, "message": row.message, "metrics": json.loads(row.metrics),
        })
        return OpenIncident(alert=alert, opened_at=as_utc(row.opened_at))

    # -- runs ---------------------------------------------------------------------

    def save_run(self, run_id: str, finished_at: datetime, payload: dict[str, Any]) -> None:
        with self.engine.begin() as conn:
            conn.execute(delete(runs).where(runs.c.run_id == run_id))
            conn.execute(insert(runs).values(run_id=run_id, finished_at=finished_at, payload=json.dumps(payload)))

    def latest_run(self) -> tuple[datetime, dict[str, Any]] | None:
        with self.engine.connect() as conn:
            row = conn.execute(select(runs).order_by(runs.c.finished_at.desc()).limit(1)).first()
        return (as_utc(row.finished_at), json.loads(row.payload)) if row else None

    # -- the times of a run's pipeline events ------------------------------------------------

    def save_run_event(self, run_id: str, topic: str, event_id: str, time: datetime) -> bool:
        """Keep ``time`` as the run's ``topic`` time unless a newer (or the same) one is stored; True
        when it changed (the first event of its topic for the run, or a newer one)."""
        with self.engine.begin() as conn:
            row = conn.execute(select(run_events.c.time).where(
                run_events.c.run_id == run_id, run_events.c.topic == topic)).first()
            if row is None:
                conn.execute(insert(run_events).values(run_id=run_id, topic=topic, event_id=event_id, time=time))
                return True
            if as_utc(row.time) >= time:
                return False  # the same event again, or an older one arriving late
            conn.execute(update(run_events).where(run_events.c.run_id == run_id, run_events.c.topic == topic)
                         .values(event_id=event_id, time=time))
            return True

    def run_event_times(self, run_id: str) -> dict[str, datetime]:
        """topic -> the time of the run's newest event of it."""
        with self.engine.connect() as conn:
            rows = conn.execute(select(run_events).where(run_events.c.run_id == run_id)).all()
        return {r.topic: as_utc(r.time) for r in rows}

    # -- heartbeats -----------------------------------------------------------------

    def save_heartbeat(self, service: str, instance: str, seen_at: datetime, payload: dict[str, Any]) -> None:
        with self.engine.begin() as conn:
            conn.execute(delete(instances).where(instances.c.service == service, instances.c.instance == instance))
            conn.execute(
                insert(instances).values(service=service, instance=instance, seen_at=seen_at, payload=json.dumps(payload))
            )
            known = conn.execute(select(watched.c.service).where(watched.c.service == service)).first()
            if known is None:
                conn.execute(insert(watched).values(service=service, first_seen=seen_at, last_seen=seen_at.timestamp()))
            else:
                conn.execute(
                    update(watched)
                    .where(watched.c.service == service, watched.c.last_seen < seen_at.timestamp())
                    .values(last_seen=seen_at.timestamp())
                )

    def forget_instance(self, service: str, instance: str) -> None:
        with self.engine.begin() as conn:
            conn.execute(delete(instances).where(instances.c.service == service, instances.c.instance == instance))

    def heartbeats(self) -> list[tuple[str, str, datetime, dict[str, Any]]]:
        with self.engine.connect() as conn:
            rows = conn.execute(select(instances)).all()
        return [(r.service, r.instance, as_utc(r.seen_at), json.loads(r.payload)) for r in rows]

    def watched_services(self) -> dict[str, float]:
        with self.engine.connect() as conn:
            return {r.service: r.last_seen for r in conn.execute(select(watched)).all()}

    # -- monitoring periods ------------------------------------------------------------

    def save_period(self, period_id: str, period: str, bucket: str, run_id: str, model_kind: str,
                    received_at: datetime, payload: dict[str, Any]) -> None:
        """Store (or, for a re-scored period, replace) one period."""
        with self.engine.begin() as conn:
            conn.execute(delete(periods).where(periods.c.period_id == period_id))
            conn.execute(insert(periods).values(
                period_id=period_id, period=period, bucket=bucket, run_id=run_id, model_kind=model_kind,
                received_at=received_at, payload=json.dumps(payload),
            ))

    def newest_period(self, bucket: str, run_id: str, model_kind: str) -> str | None:
        """The latest period label one model (run and kind) was scored in, of a bucket (labels of one
        bucket sort in time order). Per model: a newly trained model starts its own months, which
        must count even when an earlier model was already scored in later ones."""
        with self.engine.connect() as conn:
            return conn.execute(select(func.max(periods.c.period)).where(
                periods.c.bucket == bucket, periods.c.run_id == run_id, periods.c.model_kind == model_kind,
            )).scalar_one()

    def latest_periods(self) -> list[dict[str, Any]]:
        """Per model kind, its newest period (then its newest labelled one, when older): gauges on restart."""
        found: dict[tuple[str, bool], dict[str, Any]] = {}
        with self.engine.connect() as conn:
            rows = conn.execute(select(periods).order_by(periods.c.period, periods.c.received_at)).all()
        for row in rows:
            payload = json.loads(row.payload)
            found[(row.model_kind, False)] = payload
            if payload.get("labelled"):
                found[(row.model_kind, True)] = payload
        ordered = [found[k] for k in sorted(found, key=lambda k: (k[0], not k[1]))]  # labelled first, newest last
        return ordered
