"""PostgreSQL works when configured: the same tables and behaviour as the SQLite default."""

from __future__ import annotations

import time

from ctrops_common.db import ProcessedEvents, make_engine
from ctrops_common.events import Event, Probe, Topic, new_id


def test_processed_events_on_postgres(postgres_url):
    engine = make_engine(postgres_url)
    store = ProcessedEvents(engine, "ingest")
    other_service = ProcessedEvents(engine, "trainer")  # same database, own table
    event_id = new_id()
    assert not store.seen("ingest", event_id)
    store.mark("ingest", event_id)
    store.mark("ingest", event_id)  # a second consumer finishing the same event is harmless
    assert store.seen("ingest", event_id)
    assert not other_service.seen("ingest", event_id)
    engine.dispose()


def test_gateway_read_model_on_postgres(postgres_url, monkeypatch, platform_env):
    from ctrops_gateway.views import ReadModel

    engine = make_engine(postgres_url)
    views = ReadModel(engine)
    event = Event(type=Topic.PROBE, payload=Probe(probe_id="p", sent_at=time.time()), correlation_id="run1")
    assert views.record(event) is True
    assert views.record(event) is False  # redelivery stored once
    [stored] = views.events(Topic.PROBE, "run1")
    assert isinstance(stored.payload, Probe)  # read back as the topic's model
    assert stored.payload.probe_id == "p" and stored.event_id == event.event_id
    engine.dispose()


def test_a_service_runs_on_postgres(start_service, postgres_url, data_dir):
    """A real probe service process with CTROPS_DATABASE_URL handles an event and records it there."""
    import asyncio

    from sqlalchemy import text

    from ctrops_common.bus import Bus
    from ctrops_common.settings import CommonSettings
    from ctrops_common.testing import read_events

    start_service("probe", {"CTROPS_DATABASE_URL": postgres_url}, module="ctrops_common.probe")

    async def round_trip() -> Event:
        bus = Bus(CommonSettings(), "test")
        await bus.start()
        try:
            sent = await bus.publish(Topic.PROBE, Probe(probe_id="pg", sent_at=time.time()))
            await read_events(Topic.PROBE_REPLY, predicate=lambda e: e.payload.probe_id == "pg")
            return sent
        finally:
            await bus.stop()

    sent = asyncio.run(round_trip())
    engine = make_engine(postgres_url)
    deadline = time.monotonic() + 10
    while True:  # the event id is recorded right after the handler, before the commit
        with engine.connect() as conn:
            ids = conn.execute(text("select event_id from probe_processed_events")).scalars().all()
        if sent.event_id in ids or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    engine.dispose()
    assert sent.event_id in ids
