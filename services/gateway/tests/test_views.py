"""The read model: stored once per event id, newest-first queries, snapshot retention."""

from __future__ import annotations

from ctrops_common.db import make_engine
from ctrops_common.events import Event, MonitorSnapshot, ServiceHeartbeat, Topic
from ctrops_gateway.views import ReadModel


def _snapshot(i: int) -> Event:
    return Event(type=Topic.MONITOR_SNAPSHOT, payload=MonitorSnapshot(run_id=str(i)))


def test_prune_keeps_only_the_newest_snapshots(tmp_path):
    views = ReadModel(make_engine(f"sqlite:///{tmp_path}/gw.sqlite3"))
    for i in range(12):
        assert views.record(_snapshot(i))
    views.prune(Topic.MONITOR_SNAPSHOT, keep=5)
    kept = views.events(Topic.MONITOR_SNAPSHOT)
    assert [int(e.payload.run_id) for e in kept] == [7, 8, 9, 10, 11]
    assert all(isinstance(e.payload, MonitorSnapshot) for e in kept)  # read back as the topic's model
    assert views.latest(Topic.MONITOR_SNAPSHOT).payload.run_id == "11"
    views.prune(Topic.MONITOR_SNAPSHOT, keep=5)  # nothing more to drop
    assert len(views.events(Topic.MONITOR_SNAPSHOT)) == 5


# -- heartbeats: an in-memory view, seeded from the database ------------------------------------------------


def _beat(service: str, instance: str, seconds_ago: float, cpu: float = 1.0) -> Event:
    from datetime import datetime, timedelta, timezone

    from ctrops_common.events import ServiceHeartbeat

    now = datetime.now(timezone.utc)
    return Event(type=Topic.SERVICE_HEARTBEAT, time=now - timedelta(seconds=seconds_ago),
                 payload=ServiceHeartbeat(service=service, instance=instance, started_at=now, cpu_percent=cpu,
                                          memory_percent=2.0, rss_bytes=1))


def _liveness_from_sql(views: ReadModel, services: list[str], timeout_s: float) -> dict:
    """What service_liveness answered when it read the heartbeats table on every call."""
    import json
    from datetime import datetime, timedelta, timezone

    from sqlalchemy import select

    from ctrops_common.db import as_utc
    from ctrops_gateway.views import heartbeats

    now = datetime.now(timezone.utc)
    result = {s: {"status": "down", "instances": 0, "last_seen": None} for s in services}
    with views.engine.connect() as conn:
        rows = conn.execute(select(heartbeats)).all()
    for r in rows:
        hb = {"seen_at": as_utc(r.seen_at), **json.loads(r.payload)}
        entry = result.setdefault(hb["service"], {"status": "down", "instances": 0, "last_seen": None})
        if now - hb["seen_at"] <= timedelta(seconds=timeout_s):
            entry["status"] = "up"
            entry["instances"] += 1
        if entry["last_seen"] is None or hb["seen_at"].isoformat() > entry["last_seen"]:
            entry["last_seen"] = hb["seen_at"].isoformat()
    return result


def test_liveness_is_read_from_memory_and_equals_the_stored_heartbeats(tmp_path):
    from sqlalchemy import event as sa_event

    engine = make_engine(f"sqlite:///{tmp_path}/gw.sqlite3")
    views = ReadModel(engine)
    views.record_heartbeat(_beat("trainer", "t-1", 60))  # stale
    views.record_heartbeat(_beat("trainer", "t-2", 1))
    views.record_heartbeat(_beat("ingest", "i-1", 90))
    views.record_heartbeat(_beat("ingest", "i-1", 2, cpu=7.0))  # the same instance again: replaces
    views.record_heartbeat(_beat("elsewhere", "e-1", 1))  # a service not in the list still shows
    services = ["trainer", "ingest", "monitor"]

    statements: list[str] = []

    def seen(conn, cursor, statement, *rest) -> None:
        statements.append(statement)

    sa_event.listen(engine, "before_cursor_execute", seen)
    live = views.service_liveness(services, timeout_s=5)
    beats = views.heartbeats()
    sa_event.remove(engine, "before_cursor_execute", seen)
    assert statements == []  # no SQL on the request path

    assert live == _liveness_from_sql(views, services, 5)
    assert live["trainer"]["status"] == "up" and live["trainer"]["instances"] == 1
    assert live["ingest"]["status"] == "up" and live["ingest"]["instances"] == 1
    assert live["monitor"] == {"status": "down", "instances": 0, "last_seen": None}
    assert live["elsewhere"]["status"] == "up"
    assert len(beats) == 4 and {b.beat.instance for b in beats} == {"t-1", "t-2", "i-1", "e-1"}
    assert all(isinstance(b.beat, ServiceHeartbeat) for b in beats)
    assert next(b for b in beats if b.beat.instance == "i-1").beat.cpu_percent == 7.0


def test_a_restarted_gateway_knows_the_heartbeats_it_stored(tmp_path):
    url = f"sqlite:///{tmp_path}/gw.sqlite3"
    first = ReadModel(make_engine(url))
    first.record_heartbeat(_beat("scorer", "s-1", 1))
    first.record_heartbeat(_beat("reporter", "r-1", 120))
    again = ReadModel(make_engine(url))  # a new process on the same database
    services = ["scorer", "reporter"]
    assert again.service_liveness(services, 5) == first.service_liveness(services, 5)
    assert again.service_liveness(services, 5)["scorer"]["status"] == "up"
    assert again.service_liveness(services, 5)["reporter"]["status"] == "down"
    assert sorted(again.heartbeats(), key=lambda b: b.beat.instance) == sorted(first.heartbeats(),
                                                                                key=lambda b: b.beat.instance)


def test_the_serving_p95_is_the_worst_fresh_scorer_instance_read_from_typed_heartbeats(tmp_path):
    from ctrops_gateway.monitoring_view import serving_p95_ms

    views = ReadModel(make_engine(f"sqlite:///{tmp_path}/gw.sqlite3"))
    assert serving_p95_ms(views, 5) is None  # no scorer yet
    for service, instance, seconds_ago, p95 in [("scorer", "s-1", 1, 12.5), ("scorer", "s-2", 1, 30.25),
                                                ("scorer", "s-old", 120, 999.0), ("gateway", "g-1", 1, 500.0)]:
        beat = _beat(service, instance, seconds_ago)
        beat.payload.latency_p95_ms = p95
        views.record_heartbeat(beat)
    assert serving_p95_ms(views, 5) == 30.25  # the stale scorer and the gateway's own p95 are not the model's
    again = ReadModel(make_engine(f"sqlite:///{tmp_path}/gw.sqlite3"))  # read back from the stored rows
    assert serving_p95_ms(again, 5) == 30.25
