"""The bus against the real embedded broker, across real processes."""

from __future__ import annotations

import time
from pathlib import Path

from ctrops_common.bus import Bus
import pytest

from ctrops_common.events import Event, Probe, ProbeReply, Topic, new_id
from ctrops_common.settings import CommonSettings
from ctrops_common.testing import read_events

PROBE_ENV = {"CTROPS_CONSUMER_MAX_ATTEMPTS": "3", "CTROPS_CONSUMER_BACKOFF_S": "0.05"}


async def _publisher() -> Bus:
    bus = Bus(CommonSettings(), "test")
    await bus.start()
    return bus


async def _all_replies(probe_id: str) -> list[Event]:
    """Every reply for ``probe_id`` on the topic so far (reads until a quiet second)."""
    try:
        return await read_events(Topic.PROBE_REPLY, count=10**6, timeout_s=3,
                                 predicate=lambda e: e.payload.probe_id == probe_id)
    except TimeoutError as exc:
        return exc.args[1]


def _attempts(data_dir: Path, probe_id: str) -> list[str]:
    path = data_dir / "probes" / f"{probe_id}.attempts"
    return path.read_text().split() if path.exists() else []


async def test_event_published_here_is_handled_by_another_process(start_service, data_dir):
    worker = start_service("probe", PROBE_ENV, module="ctrops_common.probe")
    bus = await _publisher()
    try:
        probe_id = new_id()
        sent: Event = await bus.publish(Topic.PROBE, Probe(probe_id=probe_id, sent_at=time.time()))
        [reply] = await read_events(Topic.PROBE_REPLY, predicate=lambda e: e.payload.probe_id == probe_id)
    finally:
        await bus.stop()
    assert reply.payload.handled_by.endswith(str(worker.process.pid))
    assert reply.correlation_id == probe_id and reply.producer == "probe"
    assert sent.event_id != reply.event_id
    assert (data_dir / "probes" / f"{probe_id}.json").exists()


async def test_kill_9_mid_handling_redelivers_and_the_effect_happens_once(start_service, data_dir):
    first = start_service("probe", PROBE_ENV, module="ctrops_common.probe")
    bus = await _publisher()
    try:
        probe_id = new_id()
        await bus.publish(Topic.PROBE, Probe(probe_id=probe_id, sent_at=time.time(), hold_s=3.0))
        deadline = time.monotonic() + 30
        while not _attempts(data_dir, probe_id):  # the handler has started and is holding
            assert time.monotonic() < deadline, first.log()
            time.sleep(0.1)
        first.kill9()
        assert not (data_dir / "probes" / f"{probe_id}.json").exists()

        second = start_service("probe", PROBE_ENV, module="ctrops_common.probe")
        await read_events(Topic.PROBE_REPLY, predicate=lambda e: e.payload.probe_id == probe_id, timeout_s=90)
        time.sleep(2)  # room for a duplicate reply to show up before counting
        replies = await _all_replies(probe_id)
    finally:
        await bus.stop()
    attempts = _attempts(data_dir, probe_id)
    assert attempts[0] == str(first.process.pid)
    assert attempts[-1] == str(second.process.pid), "the restarted consumer handled the event again"
    assert len(replies) == 1 and replies[0].payload.handled_by.endswith(str(second.process.pid))
    assert (data_dir / "probes" / f"{probe_id}.json").read_text().count("handled_by") == 1


async def test_poison_message_goes_to_dead_letter_and_the_consumer_keeps_going(start_service, data_dir):
    start_service("probe", PROBE_ENV, module="ctrops_common.probe")
    bus = await _publisher()
    try:
        poison, healthy = new_id(), new_id()
        await bus.publish(Topic.PROBE, Probe(probe_id=poison, sent_at=time.time(), fail=True))
        await bus.publish(Topic.PROBE, Probe(probe_id=healthy, sent_at=time.time()))
        [letter] = await read_events(Topic.DEAD_LETTER, predicate=lambda e: poison in e.payload.value)
        [reply] = await read_events(Topic.PROBE_REPLY, predicate=lambda e: e.payload.probe_id == healthy)
    finally:
        await bus.stop()
    assert letter.payload.attempts == 3
    assert "asked to fail" in letter.payload.error
    assert letter.payload.topic.endswith("bus.probe")
    assert Event[Probe].model_validate_json(letter.payload.value).payload.probe_id == poison  # kept whole
    assert len(_attempts(data_dir, poison)) == 3
    assert reply.payload.probe_id == healthy


async def test_undecodable_message_is_dead_lettered_not_retried(start_service, data_dir):
    start_service("probe", PROBE_ENV, module="ctrops_common.probe")
    bus = await _publisher()
    try:
        await bus._producer.send_and_wait(bus.topic_name(Topic.PROBE), b"\xff not json")
        [letter] = await read_events(Topic.DEAD_LETTER, predicate=lambda e: "not json" in e.payload.value)
    finally:
        await bus.stop()
    assert letter.payload.attempts == 1
    assert "undecodable" in letter.payload.error


async def test_publish_refuses_a_payload_of_the_wrong_type(platform_env):
    bus = await _publisher()
    try:
        with pytest.raises(TypeError, match="bus.probe carries Probe"):
            await bus.publish(Topic.PROBE, ProbeReply(probe_id="x", sent_at=0, handled_by="y"))
    finally:
        await bus.stop()


async def test_an_unknown_error_from_the_broker_is_sent_again_then_refused_as_unavailable(platform_env, caplog):
    """The embedded broker answers -1 (UnknownError) when two producers write a partition's first batch at
    once, just after it restarted empty (seen in a full run: POST /api/train answered 500). Nothing was
    written: the event is sent again and lands once; a broker that keeps answering so is unavailable (503)."""
    from aiokafka.errors import UnknownError

    from ctrops_common.bus import UNKNOWN_ERROR_TRIES, BrokerUnavailable

    bus = await _publisher()
    real_send = bus._producer.send_and_wait
    refusals = {"left": 2}

    async def refused_twice(*args, **kwargs):
        if refusals["left"] > 0:
            refusals["left"] -= 1
            raise UnknownError()
        return await real_send(*args, **kwargs)

    try:
        bus._producer.send_and_wait = refused_twice
        probe_id = new_id()
        await bus.publish(Topic.PROBE, Probe(probe_id=probe_id, sent_at=time.time()))
        landed = await read_events(Topic.PROBE, count=1, predicate=lambda e: e.payload.probe_id == probe_id)
        assert len(landed) == 1 and refusals["left"] == 0
        try:
            more = await read_events(Topic.PROBE, count=2, timeout_s=2, predicate=lambda e: e.payload.probe_id == probe_id)
        except TimeoutError as exc:
            more = exc.args[1]
        assert len(more) == 1, "the event landed once"

        calls = {"n": 0}

        async def always_refused(*args, **kwargs):
            calls["n"] += 1
            raise UnknownError()

        bus._producer.send_and_wait = always_refused
        with pytest.raises(BrokerUnavailable, match="UnknownError"):
            await bus.publish(Topic.PROBE, Probe(probe_id=new_id(), sent_at=time.time()))
        assert calls["n"] == UNKNOWN_ERROR_TRIES
    finally:
        bus._producer.send_and_wait = real_send
        await bus.stop()


async def test_the_same_service_under_another_topic_prefix_is_another_group(kafka_bootstrap, caplog):
    """Two platforms (tenants, or two tests) on one broker under different prefixes: the same service
    in each is its own consumer group, so one joining never makes the other rebalance. (Before, both
    were the group ``twin``: every start or stop of one re-joined the other.)"""
    import asyncio
    import logging

    first = Bus(CommonSettings(topic_prefix=f"a{new_id()[:8]}."), "twin")
    second = Bus(CommonSettings(topic_prefix=f"b{new_id()[:8]}."), "twin")
    assert first.kafka_group != second.kafka_group and first.kafka_group.endswith("twin")

    async def ignore(event) -> None:
        return None

    caplog.set_level(logging.INFO, logger="aiokafka.consumer.group_coordinator")
    stop = asyncio.Event()
    tasks = []
    try:
        for bus in (first, second):
            bus.subscribe(Topic.PROBE, ignore)
            await bus.start()
            tasks.append(asyncio.create_task(bus.consume(stop)))
            deadline = time.monotonic() + 60
            while not bus.consuming:
                assert time.monotonic() < deadline, f"{bus.kafka_group} did not join"
                await asyncio.sleep(0.1)
        await asyncio.sleep(3)  # room for a rebalance of the first group to show
    finally:
        stop.set()
        await asyncio.gather(*tasks, return_exceptions=True)
        for bus in (first, second):
            await bus.stop()
    joins = [r.getMessage() for r in caplog.records if r.getMessage().startswith("Joined group")]
    assert [m for m in joins if f"'{first.kafka_group}'" in m and "(generation" in m] == \
        [next(m for m in joins if f"'{first.kafka_group}'" in m)], joins  # joined once, never again
    assert any(f"'{second.kafka_group}'" in m for m in joins), joins
