"""The bus in memory, for handler and read-model tests (FastStream's TestBroker idea).

``InMemoryBus`` is an ``EventBus`` like the Kafka ``Bus``: the same ``publish`` (the payload's type
checked against ``TOPIC_PAYLOADS``, the event serialised to bytes), the same ``subscribe`` and the
same delivery code (``EventBus._deliver``): each message is decoded from its bytes as the topic's
model, so a handler gets a fresh object exactly as it would from Kafka, never the one published; a
finished event id is recorded in the processed-events table and a second delivery of it is skipped;
a failing handler is retried with backoff, then dead-lettered to ``dead.letter`` (at once for a
``PermanentError``, or an undecodable message). Only the transport differs: an ``InMemoryBroker``
keeps every topic's log as a list, in publish order, and each consumer group's position in it.

What it leaves out, on purpose: partitions (one log, one global order, so tests are deterministic),
rebalances, a broker that restarts empty (``BrokerUnavailable`` can still be tried with
``InMemoryBroker.set_up(False)``). Those stay with the real-broker tests.

In a test::

    broker = InMemoryBroker()
    runtime = ServiceRuntime("reporter", settings, bus_factory=broker.bus_factory)
    handlers.register(runtime, settings)
    await runtime.bus.start()                     # or runtime.start(...): its consumer runs as a task
    producer = InMemoryBus(settings, "test", broker=broker)
    await producer.start()
    await producer.publish_and_settle(Topic.TRAINING_DONE, done, correlation_id=run_id)
    [ready] = broker.events(Topic.REPORT_READY)

``settle()`` runs until every message published so far, and every one the handlers publish
meanwhile, is settled (handled, skipped or dead-lettered) by every started consumer group that
subscribes to its topic; a bus whose ``consume()`` is not running as a task is driven by ``settle``
itself. ``redeliver(event)`` delivers a published event's bytes once more (a redelivery after a
crash between the effect and the commit); ``rewind(group)`` moves a group back to the start.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import Any

from .bus import BrokerUnavailable, EventBus
from .db import ProcessedEvents
from .events import Event, Payload, Topic, decode_event
from .settings import CommonSettings

log = logging.getLogger(__name__)

SETTLE_TIMEOUT_S = 10.0
IDLE_POLL_S = 0.05  # a consumer with nothing to read looks again this often (or when woken by a publish)


@dataclass(frozen=True)
class MemoryRecord:
    """One message in the in-memory log: what ``EventBus._deliver`` reads of aiokafka's ConsumerRecord."""

    topic: str  # the full topic name, with the prefix
    partition: int
    offset: int  # within its topic
    key: bytes | None
    value: bytes | None
    catalogue: str  # the catalogue's topic name (``Topic.value``), without the prefix
    index: int  # position in the broker's one log, across topics


async def _await(work: Awaitable[Any]) -> Any:
    """No consumer to keep alive in memory: just wait."""
    return await work


class InMemoryBroker:
    """Every topic's messages in one list, in publish order, and each consumer group's position."""

    def __init__(self) -> None:
        self.records: list[MemoryRecord] = []
        self.up = True
        self.buses: list[InMemoryBus] = []
        self._offsets: dict[str, int] = {}  # topic name -> next offset
        self._positions: dict[str, int] = {}  # group -> index of the next record it looks at
        self._locks: dict[str, asyncio.Lock] = {}  # one message at a time per group

    def bus_factory(
        self,
        settings: CommonSettings,
        service: str,
        *,
        group_id: str | None = None,
        processed: ProcessedEvents | None = None,
    ) -> InMemoryBus:
        """``ServiceRuntime(..., bus_factory=broker.bus_factory)``: the runtime's bus, on this broker."""
        return InMemoryBus(settings, service, group_id=group_id, processed=processed, broker=self)

    # -- the log -------------------------------------------------------------------

    def _append(self, name: str, catalogue: str, key: bytes | None, value: bytes | None) -> MemoryRecord:
        offset = self._offsets.get(name, 0)
        self._offsets[name] = offset + 1
        record = MemoryRecord(name, 0, offset, key, value, catalogue, len(self.records))
        self.records.append(record)
        for bus in self.buses:
            bus._wake()
        return record

    def events(self, topic: Topic) -> list[Event[Any]]:
        """Every event published on ``topic`` so far, in order, decoded as a consumer would."""
        return [decode_event(r.catalogue, r.value or b"") for r in self.records if r.catalogue == topic.value]

    def redeliver(self, event: Event[Any] | str) -> MemoryRecord:
        """Deliver a published event once more, byte for byte (same event id): what a consumer sees
        when it crashed after the effect but before committing. Returns the new record."""
        event_id = event if isinstance(event, str) else event.event_id
        for record in self.records:
            try:
                if json.loads(record.value or b"{}").get("event_id") == event_id:
                    return self._append(record.topic, record.catalogue, record.key, record.value)
            except ValueError:
                continue  # an undecodable message sent on purpose
        raise KeyError(f"no event {event_id} was published on this broker")

    def rewind(self, group: str, to: int = 0) -> None:
        """Move ``group`` back to the log's record ``to`` (default: the start): all later ones come again."""
        self._positions[group] = to

    def set_up(self, up: bool) -> None:
        """Take the broker away (publishing raises ``BrokerUnavailable``) or bring it back."""
        self.up = up
        for bus in self.buses:
            bus.broker_up = up
            bus.consuming = up and bus._consume_running

    # -- consumer groups -----------------------------------------------------------------

    def _lock(self, group: str) -> asyncio.Lock:
        return self._locks.setdefault(group, asyncio.Lock())

    def _next(self, group: str, names: dict[str, Any]) -> MemoryRecord | None:
        """The group's next record on one of ``names`` (its subscriptions); passes over the others."""
        position = self._positions.get(group, 0)  # a new group reads from the earliest
        while position < len(self.records) and self.records[position].topic not in names:
            position += 1
        self._positions[group] = position
        return self.records[position] if position < len(self.records) else None

    def _commit(self, group: str, record: MemoryRecord) -> None:
        self._positions[group] = max(self._positions.get(group, 0), record.index + 1)

    def position(self, group: str) -> int:
        return self._positions.get(group, 0)

    async def settle(self, timeout_s: float = SETTLE_TIMEOUT_S) -> None:
        """Until every started consumer has settled every message on its topics, including those its
        handlers publish meanwhile; a consumer whose ``consume()`` is not running is driven here."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while True:
            for bus in list(self.buses):
                if bus.started and bus._handlers and not bus._consume_running:
                    while await bus._step():
                        pass
            busy = [bus for bus in self.buses if bus.started and bus._handlers and not bus.idle]
            if not busy:
                return
            if loop.time() >= deadline:
                left = ", ".join(f"{b.service}/{b.group_id} at {self.position(b.group_id)} of {len(self.records)}"
                                 for b in busy)
                raise TimeoutError(f"not settled within {timeout_s}s: {left}")
            await asyncio.sleep(0.002)


class InMemoryBus(EventBus):
    """The ``EventBus`` over an ``InMemoryBroker`` (a new one of its own when none is given)."""

    def __init__(
        self,
        settings: CommonSettings,
        service: str,
        *,
        group_id: str | None = None,
        processed: ProcessedEvents | None = None,
        broker: InMemoryBroker | None = None,
    ) -> None:
        super().__init__(settings, service, group_id=group_id, processed=processed)
        self.broker = broker if broker is not None else InMemoryBroker()
        self.broker.buses.append(self)
        self.broker_up = self.broker.up
        self._started = False
        self._consume_running = False
        self._wakeup: asyncio.Event | None = None

    async def start(self) -> None:
        self._started = True

    async def stop(self) -> None:
        self._started = False

    @property
    def started(self) -> bool:
        return self._started

    async def _send(self, name: str, value: bytes, key: bytes | None) -> None:
        if not self.broker.up:
            raise BrokerUnavailable("the in-memory broker is down (InMemoryBroker.set_up(False))")
        self.broker._append(name, name.removeprefix(self.settings.topic_prefix), key, value)

    async def send_raw(self, topic: Topic, value: bytes, *, key: bytes | None = None) -> None:
        """Put bytes on ``topic`` as they are, unchecked (an undecodable message, say)."""
        await self._send(self.topic_name(topic), value, key)

    async def topic_log_empty(self, topic: Topic) -> bool:
        name = self.topic_name(topic)
        return not any(r.topic == name for r in self.broker.records)

    # -- consuming -------------------------------------------------------------------------

    def _wake(self) -> None:
        if self._wakeup is not None:
            self._wakeup.set()

    @property
    def idle(self) -> bool:
        """Nothing of this group's left to read and no message in hand."""
        return (not self.broker._lock(self.group_id).locked() and self.in_flight == 0
                and self.broker._next(self.group_id, self._handlers) is None)

    async def _step(self) -> bool:
        """Deliver the group's next message, if any; True when one was settled (then committed)."""
        async with self.broker._lock(self.group_id):
            record = self.broker._next(self.group_id, self._handlers)
            if record is None:
                return False
            if not await self._deliver(record, _await):
                return False  # neither handled nor dead-lettered (broker down): read again later
            self.broker._commit(self.group_id, record)
            return True

    async def consume(self, stop: asyncio.Event) -> None:
        """Run the consumer until ``stop`` is set; finishes the message in hand first."""
        if not self._handlers:
            await stop.wait()
            return
        self._wakeup = asyncio.Event()
        self._consume_running = True
        try:
            while not stop.is_set():
                self.consuming = self.broker_up
                self._wakeup.clear()  # before looking: a publish from now on wakes the wait below
                if await self._step():
                    continue
                try:
                    await asyncio.wait_for(self._wakeup.wait(), IDLE_POLL_S)
                except asyncio.TimeoutError:
                    pass
        finally:
            self.consuming = False
            self._consume_running = False
            self._wakeup = None

    # -- test helpers -------------------------------------------------------------------------

    async def publish_and_settle(
        self,
        topic: Topic,
        payload: Payload,
        *,
        correlation_id: str | None = None,
        key: str | None = None,
        timeout_s: float = SETTLE_TIMEOUT_S,
    ) -> Event[Any]:
        """``publish``, then ``settle``: returns once every consumer has handled it and what followed."""
        event = await self.publish(topic, payload, correlation_id=correlation_id, key=key)
        await self.broker.settle(timeout_s)
        return event

    async def drain(self, timeout_s: float = SETTLE_TIMEOUT_S) -> None:
        """Until everything published on this bus's broker is settled (``InMemoryBroker.settle``)."""
        await self.broker.settle(timeout_s)
