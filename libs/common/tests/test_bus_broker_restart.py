"""The bus across a kill -9 and restart of the embedded (memory-only) broker on the same port:
publishing is refused at once while it is down, and once it is back empty the topics are
re-created and a running consumer re-joins and handles new events."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from ctrops_common.broker import EmbeddedBroker, free_port
from ctrops_common.bus import Bus, BrokerUnavailable
from ctrops_common.events import Probe, Topic, new_id
from ctrops_common.settings import CommonSettings


async def _publish_when_back(bus: Bus, probe_id: str, timeout_s: float) -> float:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            await bus.publish(Topic.PROBE, Probe(probe_id=probe_id, sent_at=time.time()))
            return time.monotonic()
        except BrokerUnavailable:
            assert time.monotonic() < deadline, "publishing still refused after the broker came back"
            await asyncio.sleep(0.2)


async def test_a_running_consumer_survives_a_broker_restart(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    port = free_port()
    monkeypatch.setenv("CTROPS_KAFKA_BOOTSTRAP_SERVERS", f"127.0.0.1:{port}")
    monkeypatch.setenv("CTROPS_TOPIC_PREFIX", f"r{new_id()[:8]}.")
    broker = EmbeddedBroker(port, log_file=tmp_path / "broker.log").start()
    settings = CommonSettings()
    handled: dict[str, float] = {}

    async def on_probe(event) -> None:
        handled[event.payload.probe_id] = time.monotonic()

    consumer = Bus(settings, "restart-consumer")
    consumer.subscribe(Topic.PROBE, on_probe)
    publisher = Bus(settings, "restart-publisher")
    stop = asyncio.Event()
    task = None
    try:
        await consumer.start()
        task = asyncio.create_task(consumer.consume(stop))
        await publisher.start()
        await _publish_when_back(publisher, "before", 10)
        for _ in range(300):
            if "before" in handled:
                break
            await asyncio.sleep(0.1)
        assert "before" in handled

        broker.process.kill()  # kill -9: the memory-only broker loses every topic and offset
        broker.process.wait()
        seen = time.monotonic() + 20
        while publisher.broker_up or consumer.consuming:  # the watcher has seen it (a real condition, not a sleep)
            assert time.monotonic() < seen, "the bus did not notice the broker was gone"
            await asyncio.sleep(0.1)
        started = time.monotonic()
        with pytest.raises(BrokerUnavailable) as refused:
            await publisher.publish(Topic.PROBE, Probe(probe_id="down", sent_at=time.time()))
        assert time.monotonic() - started < 1, "a publish while the broker is down must fail at once"
        assert refused.value.retry_after_s > 0
        assert not consumer.consuming and not publisher.broker_up

        broker = EmbeddedBroker(port, log_file=tmp_path / "broker.log").start()
        back = time.monotonic()
        await _publish_when_back(publisher, "after", 20)
        deadline = back + 30
        while "after" not in handled:
            assert time.monotonic() < deadline, "the consumer did not re-join within 30 s of the broker restart"
            assert not task.done(), task
            await asyncio.sleep(0.2)
        assert "down" not in handled
        assert consumer.broker_restarts >= 1 and publisher.broker_restarts >= 1
        # and keeps consuming afterwards (its commits land on the re-created topic)
        later = time.monotonic()
        await publisher.publish(Topic.PROBE, Probe(probe_id="later", sent_at=time.time()))
        while "later" not in handled:
            assert time.monotonic() - later < 45, "a second event after the restart was not consumed"
            await asyncio.sleep(0.1)
        print(f"after: {handled['after'] - back:.1f} s, later: {handled['later'] - later:.1f} s")
        assert consumer.consuming
    finally:
        stop.set()
        if task is not None:
            await asyncio.wait_for(task, 30)
        await publisher.stop()
        await consumer.stop()
        broker.stop()
