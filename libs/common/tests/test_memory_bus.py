"""The in-memory bus keeps the real bus's delivery semantics: the catalogue's type check on publish,
each event decoded from its bytes as the topic's model, a duplicate skipped by the processed-events
record, retries with backoff then a dead letter, a PermanentError or an undecodable message straight
to the dead letter, a message neither handled nor dead-lettered read again. (The same code delivers
over Kafka: test_bus.py checks it against the real broker, across processes.)"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest
from prometheus_client import REGISTRY

from ctrops_common.bus import Bus, BrokerUnavailable, EventBus, PermanentError
from ctrops_common.db import ProcessedEvents, make_engine
from ctrops_common.events import DeadLetter, Event, Probe, ProbeReply, Topic, new_id
from ctrops_common.memory_bus import InMemoryBroker, InMemoryBus
from ctrops_common.observability import event_id_var, run_id_var
from ctrops_common.service import ServiceRuntime
from ctrops_common.settings import CommonSettings, ServiceSettings
from ctrops_common.testing import root_logging_kept

pytestmark = pytest.mark.inmemory


@pytest.fixture(autouse=True)
def logging_kept():
    """The ServiceRuntime built here sets up the process's logging: put the session's back after."""
    with root_logging_kept():
        yield


@pytest.fixture
def settings(tmp_path: Path) -> CommonSettings:
    return CommonSettings(topic_prefix=f"m{new_id()[:8]}.", consumer_max_attempts=3, consumer_backoff_s=0.02,
                          data_dir=tmp_path)


@pytest.fixture
def processed(tmp_path: Path) -> ProcessedEvents:
    return ProcessedEvents(make_engine(f"sqlite:///{tmp_path / 'processed.sqlite3'}"), "memtest")


def probe(**kwargs) -> Probe:
    return Probe(probe_id=new_id(), sent_at=time.time(), **kwargs)


def handled(service: str, outcome: str) -> float:
    return REGISTRY.get_sample_value("ctrops_events_handled_total",
                                     {"service": service, "topic": Topic.PROBE.value, "outcome": outcome}) or 0.0


async def started(bus: InMemoryBus) -> InMemoryBus:
    await bus.start()
    return bus


async def test_it_is_an_event_bus_like_the_kafka_one(settings):
    bus = InMemoryBus(settings, "memtest")
    assert isinstance(bus, EventBus) and issubclass(Bus, EventBus)
    public = {name for name in dir(Bus) if not name.startswith("_")}
    assert public <= set(dir(InMemoryBus)), public - set(dir(InMemoryBus))
    assert bus.topic_name(Topic.PROBE) == settings.topic_prefix + "bus.probe"


async def test_publish_refuses_a_payload_of_the_wrong_type_and_before_start(settings):
    bus = InMemoryBus(settings, "memtest")
    with pytest.raises(RuntimeError, match="start"):
        await bus.publish(Topic.PROBE, probe())
    await bus.start()
    with pytest.raises(TypeError, match="bus.probe carries Probe, not ProbeReply"):
        await bus.publish(Topic.PROBE, ProbeReply(probe_id="x", sent_at=0, handled_by="y"))
    assert bus.broker.records == []  # nothing went out


async def test_a_handler_gets_the_event_decoded_from_its_bytes_not_the_published_object(settings):
    broker = InMemoryBroker()
    seen: list[tuple[Event, str | None, str | None]] = []
    consumer = InMemoryBus(settings, "memtest", broker=broker)

    @consumer.subscriber(Topic.PROBE)
    async def on_probe(event: Event[Probe]) -> None:
        seen.append((event, run_id_var.get(), event_id_var.get()))

    await consumer.start()
    producer = await started(InMemoryBus(settings, "producer", broker=broker))
    sent = await producer.publish_and_settle(Topic.PROBE, probe(hold_s=1.5), correlation_id="run-1", key="k")

    [(received, run_id, event_id)] = seen
    assert received is not sent and received.payload is not sent.payload  # a fresh object, as from Kafka
    assert isinstance(received.payload, Probe) and received.payload == sent.payload
    assert received.model_dump() == sent.model_dump()  # envelope too: id, time, correlation, producer
    assert received.producer == "producer" and received.correlation_id == "run-1"
    assert (run_id, event_id) == ("run-1", sent.event_id)  # the log context of the handler
    assert run_id_var.get() is None  # and reset after it
    [record] = broker.records
    assert record.topic == settings.topic_prefix + "bus.probe" and record.key == b"k"
    assert record.value == sent.to_bytes()
    assert consumer.handled_total == 1 and consumer.errors_total == 0 and consumer.in_flight == 0


async def test_a_duplicate_delivery_is_skipped_by_the_processed_events_record(settings, processed):
    broker = InMemoryBroker()
    calls: list[str] = []
    consumer = InMemoryBus(settings, "memtest", processed=processed, broker=broker)
    consumer.subscribe(Topic.PROBE, lambda e: asyncio.sleep(0, calls.append(e.event_id)))
    await consumer.start()
    producer = await started(InMemoryBus(settings, "producer", broker=broker))
    duplicates_before = handled("memtest", "duplicate")

    sent = await producer.publish_and_settle(Topic.PROBE, probe())
    assert processed.seen("memtest", sent.event_id)
    broker.redeliver(sent)  # the same bytes again: a redelivery after a crash before the commit
    await broker.settle()
    assert calls == [sent.event_id]  # handled once
    assert len(broker.records) == 2 and broker.records[1].value == broker.records[0].value
    assert handled("memtest", "duplicate") == duplicates_before + 1

    broker.rewind(consumer.group_id)  # the whole log again: still nothing handled twice
    await broker.settle()
    assert calls == [sent.event_id]
    assert broker.position(consumer.group_id) == len(broker.records)


async def test_without_a_processed_events_record_a_redelivery_is_handled_again(settings):
    """What the record is for: the same redelivery, handled twice when there is none."""
    broker = InMemoryBroker()
    calls: list[str] = []
    consumer = InMemoryBus(settings, "memtest", broker=broker)
    consumer.subscribe(Topic.PROBE, lambda e: asyncio.sleep(0, calls.append(e.event_id)))
    await consumer.start()
    producer = await started(InMemoryBus(settings, "producer", broker=broker))
    sent = await producer.publish_and_settle(Topic.PROBE, probe())
    broker.redeliver(sent.event_id)
    await broker.settle()
    assert calls == [sent.event_id, sent.event_id]


async def test_a_topic_subscribed_with_remember_false_is_not_recorded_and_a_redelivery_reaches_its_handler(
    settings, processed
):
    """For handlers idempotent by themselves (the heartbeats'): no record is written or read for that
    topic, while the bus's other topics keep theirs."""
    broker = InMemoryBroker()
    calls: list[str] = []
    consumer = InMemoryBus(settings, "memtest", processed=processed, broker=broker)
    consumer.subscribe(Topic.PROBE, lambda e: asyncio.sleep(0, calls.append(e.event_id)), remember=False)

    @consumer.subscriber(Topic.PROBE_REPLY)
    async def on_reply(event: Event[ProbeReply]) -> None:
        calls.append(event.event_id)

    await consumer.start()
    producer = await started(InMemoryBus(settings, "producer", broker=broker))
    sample = await producer.publish_and_settle(Topic.PROBE, probe())
    reply = await producer.publish_and_settle(Topic.PROBE_REPLY, ProbeReply(probe_id="p", sent_at=0, handled_by="x"))
    assert not processed.seen("memtest", sample.event_id) and processed.seen("memtest", reply.event_id)
    broker.redeliver(sample)
    broker.redeliver(reply)
    await broker.settle()
    assert calls == [sample.event_id, reply.event_id, sample.event_id]  # the reply is still skipped once
    assert not processed.seen("memtest", sample.event_id)


async def test_a_failing_handler_is_retried_with_backoff_then_dead_lettered_and_the_next_event_handled(
    settings, processed
):
    broker = InMemoryBroker()
    attempts: dict[str, list[float]] = {}
    consumer = InMemoryBus(settings, "memtest", processed=processed, broker=broker)

    @consumer.subscriber(Topic.PROBE)
    async def on_probe(event: Event[Probe]) -> None:
        attempts.setdefault(event.payload.probe_id, []).append(time.monotonic())
        if event.payload.fail:
            raise RuntimeError("asked to fail")

    await consumer.start()
    producer = await started(InMemoryBus(settings, "producer", broker=broker))
    dead_before = REGISTRY.get_sample_value("ctrops_dead_letters_total",
                                            {"service": "memtest", "topic": "bus.probe"}) or 0.0
    poison = await producer.publish(Topic.PROBE, probe(fail=True), key="poison")
    healthy = await producer.publish(Topic.PROBE, probe())
    await broker.settle()

    tries = attempts[poison.payload.probe_id]
    assert len(tries) == 3  # consumer_max_attempts
    gaps = [b - a for a, b in zip(tries, tries[1:])]
    assert gaps[0] >= 0.02 and gaps[1] >= 0.04  # backoff, doubling
    [letter] = broker.events(Topic.DEAD_LETTER)
    assert isinstance(letter.payload, DeadLetter) and letter.producer == "memtest"
    assert letter.payload.attempts == 3 and letter.payload.error == "RuntimeError: asked to fail"
    assert letter.payload.topic == settings.topic_prefix + "bus.probe" and letter.payload.group == "memtest"
    assert letter.payload.key == "poison" and letter.payload.offset == 0
    assert Event[Probe].model_validate_json(letter.payload.value).event_id == poison.event_id  # kept whole
    assert not processed.seen("memtest", poison.event_id)  # dead-lettered, not handled
    assert attempts[healthy.payload.probe_id] and processed.seen("memtest", healthy.event_id)
    assert consumer.errors_total == 1 and consumer.handled_total == 1
    assert REGISTRY.get_sample_value("ctrops_dead_letters_total",
                                     {"service": "memtest", "topic": "bus.probe"}) == dead_before + 1


async def test_a_handler_that_recovers_on_a_retry_is_handled_once_with_no_dead_letter(settings, processed):
    broker = InMemoryBroker()
    tries: list[int] = []
    consumer = InMemoryBus(settings, "memtest", processed=processed, broker=broker)

    async def flaky(event: Event[Probe]) -> None:
        tries.append(1)
        if len(tries) < 3:
            raise ConnectionError("try again")

    consumer.subscribe(Topic.PROBE, flaky)
    await consumer.start()
    producer = await started(InMemoryBus(settings, "producer", broker=broker))
    sent = await producer.publish_and_settle(Topic.PROBE, probe())
    assert len(tries) == 3 and broker.events(Topic.DEAD_LETTER) == []
    assert processed.seen("memtest", sent.event_id) and consumer.handled_total == 1


async def test_a_permanent_error_goes_straight_to_the_dead_letter(settings):
    broker = InMemoryBroker()
    tries: list[int] = []
    consumer = InMemoryBus(settings, "memtest", broker=broker)

    async def refuse(event: Event[Probe]) -> None:
        tries.append(1)
        raise PermanentError("no such run")

    consumer.subscribe(Topic.PROBE, refuse)
    await consumer.start()
    producer = await started(InMemoryBus(settings, "producer", broker=broker))
    await producer.publish_and_settle(Topic.PROBE, probe())
    assert tries == [1]
    [letter] = broker.events(Topic.DEAD_LETTER)
    assert letter.payload.attempts == 1 and letter.payload.error == "PermanentError: no such run"


async def test_an_undecodable_message_is_dead_lettered_without_reaching_the_handler(settings):
    broker = InMemoryBroker()
    calls: list[Event] = []
    consumer = InMemoryBus(settings, "memtest", broker=broker)
    consumer.subscribe(Topic.PROBE, lambda e: asyncio.sleep(0, calls.append(e)))
    await consumer.start()
    producer = await started(InMemoryBus(settings, "producer", broker=broker))
    await producer.send_raw(Topic.PROBE, b"\xff not json")
    wrong_shape = Event(type=Topic.PROBE_REPLY, payload=ProbeReply(probe_id="x", sent_at=0, handled_by="y"))
    await producer.send_raw(Topic.PROBE, wrong_shape.to_bytes())  # valid JSON, not a Probe
    await broker.settle()
    assert calls == []
    letters = broker.events(Topic.DEAD_LETTER)
    assert [letter.payload.attempts for letter in letters] == [1, 1]
    assert all(letter.payload.error.startswith("undecodable event") for letter in letters)
    assert "not json" in letters[0].payload.value and letters[1].payload.offset == 1


async def test_a_message_neither_handled_nor_dead_lettered_is_read_again(settings, processed):
    """The broker goes away mid-handling: the dead letter cannot be published, the message stays
    uncommitted, and once the broker is back it is delivered again and handled."""
    broker = InMemoryBroker()
    outcomes: list[str] = []
    consumer = InMemoryBus(settings, "memtest", processed=processed, broker=broker)

    async def needs_the_broker(event: Event[Probe]) -> None:
        if not broker.up:
            outcomes.append("failed")
            raise BrokerUnavailable("broker gone")
        outcomes.append("ok")

    consumer.subscribe(Topic.PROBE, needs_the_broker)
    await consumer.start()
    producer = await started(InMemoryBus(settings, "producer", broker=broker))
    sent = await producer.publish(Topic.PROBE, probe())
    broker.set_up(False)
    with pytest.raises(BrokerUnavailable):
        await producer.publish(Topic.PROBE, probe())
    with pytest.raises(TimeoutError, match="memtest/memtest at 0 of 1"):
        await broker.settle(timeout_s=0.5)
    assert outcomes and set(outcomes) == {"failed"} and broker.events(Topic.DEAD_LETTER) == []
    assert broker.position("memtest") == 0  # not committed

    broker.set_up(True)
    await broker.settle()
    assert outcomes[-1] == "ok" and processed.seen("memtest", sent.event_id)
    assert broker.position("memtest") == 1


async def test_consume_runs_as_a_task_until_stopped_and_groups_keep_their_own_positions(settings):
    broker = InMemoryBroker()
    got: dict[str, list[str]] = {"a": [], "b": []}
    one = InMemoryBus(settings, "one", group_id="a", broker=broker)
    two = InMemoryBus(settings, "two", group_id="b", broker=broker)
    one.subscribe(Topic.PROBE, lambda e: asyncio.sleep(0, got["a"].append(e.payload.probe_id)))
    two.subscribe(Topic.PROBE, lambda e: asyncio.sleep(0, got["b"].append(e.payload.probe_id)))
    producer = await started(InMemoryBus(settings, "producer", broker=broker))
    early = await producer.publish(Topic.PROBE, probe())  # before anyone consumes: read from the earliest
    stop = asyncio.Event()
    for bus in (one, two):
        await bus.start()
    tasks = [asyncio.create_task(bus.consume(stop)) for bus in (one, two)]
    late = await producer.publish_and_settle(Topic.PROBE, probe())
    assert one.consuming and two.consuming
    ids = [early.payload.probe_id, late.payload.probe_id]
    assert got == {"a": ids, "b": ids}  # every group gets every event, in order
    stop.set()
    await asyncio.wait_for(asyncio.gather(*tasks), 2)
    assert not one.consuming and not two.consuming
    assert await producer.topic_log_empty(Topic.PROBE) is False
    assert await producer.topic_log_empty(Topic.TRAINING_REQUESTED) is True


async def test_a_service_runtime_runs_on_an_injected_in_memory_bus(tmp_path: Path, monkeypatch):
    monkeypatch.setenv("CTROPS_LOG_JSON", "false")
    settings = ServiceSettings(data_dir=tmp_path, topic_prefix="rt.", heartbeat_interval_s=0.1)
    broker = InMemoryBroker()
    runtime = ServiceRuntime("memtest", settings, bus_factory=broker.bus_factory)
    assert isinstance(runtime.bus, InMemoryBus) and runtime.bus.broker is broker
    assert runtime.bus.processed is runtime.processed  # the runtime's processed-events table, as with Kafka
    replies: list[str] = []

    @runtime.bus.subscriber(Topic.PROBE)
    async def on_probe(event: Event[Probe]) -> None:
        replies.append(event.payload.probe_id)
        await runtime.bus.publish(Topic.PROBE_REPLY, ProbeReply(probe_id=event.payload.probe_id,
                                                                sent_at=event.payload.sent_at, handled_by="memtest"))

    await runtime.start(serve_http=False, handle_signals=False)
    try:
        deadline = time.monotonic() + 5
        while not runtime.ready:
            assert time.monotonic() < deadline, "the runtime never became ready"
            await asyncio.sleep(0.01)
        producer = await started(InMemoryBus(settings, "producer", broker=broker))
        sent = await producer.publish_and_settle(Topic.PROBE, probe())
        [reply] = broker.events(Topic.PROBE_REPLY)
        assert reply.payload.probe_id == sent.payload.probe_id and reply.producer == "memtest"
        assert runtime.processed.seen("memtest", sent.event_id)
        while not [b for b in broker.events(Topic.SERVICE_HEARTBEAT) if b.payload.handled_total == 1]:
            assert time.monotonic() < deadline, "no heartbeat counting the handled event"
            await asyncio.sleep(0.02)
        assert {b.payload.service for b in broker.events(Topic.SERVICE_HEARTBEAT)} == {"memtest"}
    finally:
        await runtime.shutdown()
    assert not runtime.bus.started and not runtime.bus.consuming


async def test_a_service_whose_health_port_is_taken_fails_its_start_instead_of_running_without_it(tmp_path: Path,
                                                                                                 monkeypatch):
    """The probe server binds before the bus starts: a taken port is an OSError from start() (the service
    exits and its supervisor restarts it), never a service that says it is ready with no health port."""
    import socket

    monkeypatch.setenv("CTROPS_LOG_JSON", "false")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        runtime = ServiceRuntime("porttest", ServiceSettings(data_dir=tmp_path, topic_prefix="pt."),
                                 bus_factory=InMemoryBroker().bus_factory)
        runtime.http_port = taken.getsockname()[1]
        with pytest.raises(OSError):
            await runtime.start(handle_signals=False)
        assert not runtime.bus.started and not runtime.ready
