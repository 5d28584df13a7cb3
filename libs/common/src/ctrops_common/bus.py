"""Publish and subscribe on Kafka (aiokafka) with at-least-once delivery.

- Producer: acks=all. No idempotent producer: the embedded tansu broker lacks it, so
  duplicates are handled on the consumer side instead.
- Consumer: one message at a time per service, committed only after its handler
  succeeded. While a handler runs, the consumer keeps polling with its partitions paused,
  so a long job (a 10-minute training run) never exceeds ``max.poll.interval`` and never
  triggers a rebalance.
- Failures: retried with exponential backoff; after ``consumer_max_attempts`` the message
  goes whole to ``dead.letter`` and the consumer moves on.
- Duplicates: each finished event id is recorded per consumer group; a redelivered
  event is skipped. Handlers still make their effects idempotent, because a crash can
  fall between the effect and the record.
- Broker down or restarted empty (the embedded broker keeps nothing): a watcher checks the
  broker every second. While it is unreachable ``publish`` raises ``BrokerUnavailable`` at
  once (never a 40 s hang in aiokafka); when it is back, or when its topics are gone, the
  watcher re-creates the topics before this service publishes again (a publish first would
  let the broker auto-create a topic with its own partition count), and the consumer's group
  coordinator re-joins. Commits are bounded: aiokafka retries one on a vanished topic forever.

What happens to one message once it is read (decode, duplicate check, retries, dead letter) is in
``EventBus``, apart from the transport: ``Bus`` carries it over Kafka, ``memory_bus.InMemoryBus``
over lists in memory for handler and read-model tests, so both deliver the same way.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.client import AIOKafkaClient
from aiokafka.errors import (
    CommitFailedError,
    IllegalStateError,
    KafkaConnectionError,
    KafkaError,
    KafkaTimeoutError,
    NodeNotReadyError,
    TopicAlreadyExistsError,
    UnknownError,
    UnknownTopicOrPartitionError,
)
from aiokafka.protocol.metadata import MetadataRequest
from pydantic import ValidationError

from .broker import port_open
from .db import ProcessedEvents
from .events import TOPIC_PAYLOADS, DeadLetter, Event, Payload, Topic, decode_event
from .observability import (
    DEAD_LETTERS,
    EVENT_HANDLE_SECONDS,
    EVENTS_HANDLED,
    EVENTS_IN_FLIGHT,
    EVENTS_PUBLISHED,
    event_id_var,
    init_consumer_metrics,
    run_id_var,
)
from .settings import CommonSettings

log = logging.getLogger(__name__)

Handler = Callable[[Event[Any]], Awaitable[None]]


class PermanentError(Exception):
    """A handler error that retrying cannot fix: dead-letter at once."""


BROKER_CHECK_S = 1.0  # how often the watcher looks at the broker
TOPIC_CHECK_EVERY = 5  # ...and every this many checks, whether its topics still exist
PUBLISH_TIMEOUT_S = 10.0  # a publish that the broker does not acknowledge by then fails
UNKNOWN_ERROR_TRIES = 5  # sends of one event the broker answers with an unknown error (-1) before giving up
COMMIT_TIMEOUT_S = 10.0  # aiokafka retries a commit on a vanished topic forever: bound it
RETRY_AFTER_S = 5


class BrokerUnavailable(Exception):
    """The broker cannot take the event now (down, restarting, or its topics not yet re-created).

    Raised by ``Bus.publish`` instead of aiokafka's connection, timeout and not-ready errors,
    so callers handle one type (the gateway answers 503 with Retry-After)."""

    def __init__(self, message: str, retry_after_s: int = RETRY_AFTER_S) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


def bootstrap_reachable(bootstrap: str) -> bool:
    """True when any of the bootstrap servers accepts a TCP connection."""
    for server in bootstrap.split(","):
        host, _, port = server.strip().rpartition(":")
        if host and port.isdigit() and port_open(host.strip("[]"), int(port)):
            return True
    return False


class TopicCheck:
    """Which of ``wanted`` the broker lacks, asked about those topics only, on one client kept open.

    A broker's full topic list grows with everything on it (a test session's broker holds thousands of
    topics): listing it, or opening a client (whose bootstrap reads all of it), every few seconds in
    every service cost more CPU than the service's own idle work (docs/benchmarks.md). The metadata
    request names our topics and forbids auto-creation, so a missing topic is reported, never created
    with the broker's own partition count. Any error closes the client; the next check opens a new one.
    """

    def __init__(self, settings: CommonSettings, wanted: list[str] | None = None) -> None:
        self.settings = settings
        self.wanted = wanted or [settings.topic_prefix + t.value for t in Topic]
        self._client: AIOKafkaClient | None = None

    async def missing(self) -> list[str]:
        try:
            if self._client is None:
                self._client = AIOKafkaClient(bootstrap_servers=self.settings.kafka_bootstrap_servers)
                await self._client.bootstrap()
            response = await self._client.send(
                self._client.get_random_node(), MetadataRequest(self.wanted, allow_auto_topic_creation=False))
        except BaseException:
            await self.close()
            raise
        topics = response.to_object()["topics"]
        unknown = {t["topic"] for t in topics if t["error_code"] == UnknownTopicOrPartitionError.errno}
        return [t for t in self.wanted if t in unknown]

    async def ensure(self, timeout_s: float = 30) -> list[str]:
        """Create the missing topics (idempotent); returns those it created. Retries an unreachable
        broker until ``timeout_s``."""
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                missing = await self.missing()
                if missing:
                    await create_topics(self.settings, missing)
                return missing
            except (KafkaError, OSError) as exc:
                if time.monotonic() > deadline:
                    raise RuntimeError(
                        f"Kafka at {self.settings.kafka_bootstrap_servers} is not reachable: {exc!r}. "
                        "Start the broker or set CTROPS_KAFKA_BOOTSTRAP_SERVERS."
                    ) from exc
                await asyncio.sleep(0.5)

    async def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            await client.close()


async def create_topics(settings: CommonSettings, names: list[str]) -> None:
    """Create ``names`` with the settings' partitions and replication; one that exists meanwhile is fine."""
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap_servers)
    try:
        await admin.start()
        await admin.create_topics([NewTopic(t, settings.topic_partitions, settings.topic_replication) for t in names])
    except TopicAlreadyExistsError:
        pass  # another service created it a moment ago
    finally:
        await admin.close()


async def ensure_topics(settings: CommonSettings, topics: list[str] | None = None, timeout_s: float = 30) -> list[str]:
    """Create every catalogue topic (or ``topics``) that does not exist yet (idempotent); returns those it
    created. One call, one client; the bus keeps its ``TopicCheck`` open instead."""
    check = TopicCheck(settings, topics)
    try:
        return await check.ensure(timeout_s)
    finally:
        await check.close()


async def topic_log_empty(settings: CommonSettings, topic: Topic) -> bool:
    """True when no event was ever written to ``topic`` on this broker (every partition's end offset
    is 0): a memory-only broker that restarted. Apache Kafka keeps its offsets past retention, so a
    topic written to once never reads as empty there."""
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.kafka_bootstrap_servers, enable_auto_commit=False)
    await consumer.start()
    try:
        name = settings.topic_prefix + topic.value
        await consumer.topics()  # metadata, so the topic's partitions are known
        partitions = [TopicPartition(name, p) for p in sorted(consumer.partitions_for_topic(name) or ())]
        if not partitions:
            return True
        ends = await consumer.end_offsets(partitions)
        return all(offset == 0 for offset in ends.values())
    finally:
        await consumer.stop()


class Record(Protocol):
    """What the delivery logic reads of one message: aiokafka's ``ConsumerRecord`` has it, and so
    does the in-memory bus's record (``memory_bus.MemoryRecord``)."""

    topic: str  # the full topic name (with the prefix)
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None


KeepAlive = Callable[[Awaitable[Any]], Awaitable[Any]]


class EventBus:
    """The bus without its transport: the catalogue's type check on publish, subscriptions, and what
    happens to one delivered message (decode as the topic's model, skip a duplicate by the processed-
    events record, run the handler with retries and backoff, dead-letter, count). ``Bus`` carries it
    over Kafka; ``memory_bus.InMemoryBus`` over lists in memory for handler tests, with the same
    semantics because it is this same code.

    A transport supplies ``start``, ``stop``, ``started``, ``_send`` (one message out, or
    ``BrokerUnavailable``), ``consume`` (hand each message to ``_deliver``, commit it when that returns
    True, read it again when False) and ``topic_log_empty``."""

    def __init__(
        self,
        settings: CommonSettings,
        service: str,
        *,
        group_id: str | None = None,
        processed: ProcessedEvents | None = None,
    ) -> None:
        self.settings = settings
        self.service = service
        self.group_id = group_id or service
        self.processed = processed
        self._handlers: dict[str, Handler] = {}
        self._unremembered: set[str] = set()  # topics whose handlers are idempotent by themselves
        self.consuming = False  # true once the consumer joined its group
        self.in_flight = 0
        self.handled_total = 0
        self.errors_total = 0
        self.broker_up = True  # the watcher's view: false while the broker is unreachable
        self.broker_restarts = 0  # times the broker came back (or lost its topics) under us
        EVENTS_IN_FLIGHT.labels(service)  # exported at 0 from the start

    # -- the transport's part -----------------------------------------------------

    async def start(self) -> None:
        raise NotImplementedError

    async def stop(self) -> None:
        raise NotImplementedError

    @property
    def started(self) -> bool:
        """Between ``start`` and ``stop``: publishing is possible."""
        raise NotImplementedError

    async def _send(self, name: str, value: bytes, key: bytes | None) -> None:
        """Hand one message to the broker and wait for its acknowledgement (``BrokerUnavailable``)."""
        raise NotImplementedError

    async def consume(self, stop: asyncio.Event) -> None:
        raise NotImplementedError

    async def topic_log_empty(self, topic: Topic) -> bool:
        """True when no event was ever written to ``topic`` on this broker."""
        raise NotImplementedError

    # -- producing ------------------------------------------------------------

    async def publish(
        self,
        topic: Topic,
        payload: Payload,
        *,
        correlation_id: str | None = None,
        key: str | None = None,
    ) -> Event[Any]:
        """Send one event and wait for the broker's acknowledgement."""
        expected = TOPIC_PAYLOADS[topic]
        if not isinstance(payload, expected):
            raise TypeError(f"{topic} carries {expected.__name__}, not {type(payload).__name__}")
        if not self.started:
            raise RuntimeError("Bus.start() must run before publish()")
        if not self.broker_up:
            raise BrokerUnavailable(
                f"the message broker ({self.settings.kafka_bootstrap_servers}) is unavailable or restarting"
            )
        event: Event[Any] = Event(type=topic, payload=payload, correlation_id=correlation_id, producer=self.service)
        partition_key = key or correlation_id
        await self._send(self.topic_name(topic), event.to_bytes(), partition_key.encode() if partition_key else None)
        EVENTS_PUBLISHED.labels(self.service, topic.value).inc()
        return event

    # -- consuming ------------------------------------------------------------

    def subscriber(self, topic: Topic, *, remember: bool = True) -> Callable[[Handler], Handler]:
        """Decorator: ``@bus.subscriber(Topic.FILE_UPLOADED) async def on_file(event): ...``."""

        def register(handler: Handler) -> Handler:
            self.subscribe(topic, handler, remember=remember)
            return handler

        return register

    def topic_name(self, topic: Topic) -> str:
        return self.settings.topic_prefix + topic.value

    @property
    def kafka_group(self) -> str:
        """The consumer group's name on the broker: the topic prefix, then the group. Platforms (tenants,
        tests) that share a broker under different prefixes then share no group either: a service joining
        or leaving in one never makes the same service of another rebalance. With the default empty
        prefix it is the group itself. The processed-events table keys on ``group_id``."""
        return self.settings.topic_prefix + self.group_id

    def subscribe(self, topic: Topic, handler: Handler, *, remember: bool = True) -> None:
        """``handler`` gets every event of ``topic``. ``remember=False`` leaves its events out of the
        processed-events record: only for a handler that is idempotent by itself, such as one that keeps
        the newest sample of a stream and ignores an older or equal one (the heartbeats). Recording
        those would cost two database round trips per sample and fill the table with rows that protect
        nothing: at the default 5 s beat, 7 services seen by 2 groups write 2.8 rows a second."""
        name = self.topic_name(topic)
        if name in self._handlers:
            raise ValueError(f"{self.service} already handles {topic}")
        self._handlers[name] = handler
        if not remember:
            self._unremembered.add(name)
        init_consumer_metrics(self.service, topic.value)

    async def _deliver(self, record: Record, keep_alive: KeepAlive) -> bool:
        """Handle one message; True when it is settled (handled, skipped as a duplicate or dead-lettered:
        the transport commits it), False when it could be neither handled nor dead-lettered (broker
        gone: the transport reads it again). ``keep_alive(work)`` awaits ``work`` while the transport
        keeps its consumer alive."""
        handler = self._handlers[record.topic]
        topic = record.topic.removeprefix(self.settings.topic_prefix)  # catalogue name: bounded labels
        try:
            event = decode_event(topic, record.value)
        except (ValidationError, ValueError) as exc:
            return await self._dead_letter(record, f"undecodable event: {exc}", attempts=1)

        processed = None if record.topic in self._unremembered else self.processed
        if processed is not None and await asyncio.to_thread(processed.seen, self.group_id, event.event_id):
            EVENTS_HANDLED.labels(self.service, topic, "duplicate").inc()
            return True

        run_token = run_id_var.set(event.correlation_id)
        event_token = event_id_var.set(event.event_id)
        self.in_flight += 1
        EVENTS_IN_FLIGHT.labels(self.service).inc()
        started = time.perf_counter()
        try:
            outcome = await self._run_with_retries(handler, event, record, keep_alive)
        finally:
            self.in_flight -= 1
            EVENTS_IN_FLIGHT.labels(self.service).dec()
            EVENT_HANDLE_SECONDS.labels(self.service, topic).observe(time.perf_counter() - started)
            run_id_var.reset(run_token)
            event_id_var.reset(event_token)
        EVENTS_HANDLED.labels(self.service, topic, outcome).inc()
        if outcome == "ok" and processed is not None:
            await asyncio.to_thread(processed.mark, self.group_id, event.event_id)
        return outcome != "undelivered"  # neither handled nor dead-lettered: not committed, read again

    async def _run_with_retries(
        self, handler: Handler, event: Event[Any], record: Record, keep_alive: KeepAlive
    ) -> str:
        attempts = self.settings.consumer_max_attempts
        delay = self.settings.consumer_backoff_s
        last_error = ""
        for attempt in range(1, attempts + 1):
            try:
                await keep_alive(handler(event))
                self.handled_total += 1
                return "ok"
            except asyncio.CancelledError:
                raise
            except PermanentError as exc:
                last_error = f"{type(exc).__name__}: {exc}"
                log.error("permanent failure handling %s: %s", record.topic, exc)
                break
            except Exception as exc:  # noqa: BLE001 - any handler error is retried, then dead-lettered
                last_error = f"{type(exc).__name__}: {exc}"
                log.warning("attempt %d/%d failed for %s: %s", attempt, attempts, record.topic, last_error)
                if attempt < attempts:
                    await keep_alive(asyncio.sleep(delay))
                    delay *= 2
        self.errors_total += 1
        log.error("giving up on %s after %d attempts: %s", record.topic, attempt, last_error)
        if not await self._dead_letter(record, last_error, attempts=attempt):
            return "undelivered"
        return "dead_letter"

    async def _dead_letter(self, record: Record, error: str, attempts: int) -> bool:
        letter = DeadLetter(
            topic=record.topic,
            partition=record.partition,
            offset=record.offset,
            key=record.key.decode("utf-8", "replace") if record.key else None,
            value=(record.value or b"").decode("utf-8", "replace"),
            error=error[:4000],
            attempts=attempts,
            group=self.group_id,
        )
        try:
            await self.publish(Topic.DEAD_LETTER, letter, key=letter.key)
        except BrokerUnavailable as exc:
            # A handler that failed because the broker went away cannot dead-letter either; the
            # consumer must not die of it. Not committed: a broker that kept its log redelivers it.
            log.error("dead letter for %s@%d not published, broker unavailable: %s", record.topic, record.offset, exc)
            return False
        DEAD_LETTERS.labels(self.service, record.topic.removeprefix(self.settings.topic_prefix)).inc()
        return True


class Bus(EventBus):
    """The bus over Kafka (aiokafka): see the module's docstring."""

    def __init__(
        self,
        settings: CommonSettings,
        service: str,
        *,
        group_id: str | None = None,
        processed: ProcessedEvents | None = None,
    ) -> None:
        super().__init__(settings, service, group_id=group_id, processed=processed)
        self._producer: AIOKafkaProducer | None = None
        self._watcher: asyncio.Task[None] | None = None
        self._topics = TopicCheck(settings)

    # -- producing ------------------------------------------------------------

    async def start(self) -> None:
        await self._topics.ensure()
        self._producer = AIOKafkaProducer(
            bootstrap_servers=self.settings.kafka_bootstrap_servers,
            acks="all",
            enable_idempotence=False,
            linger_ms=0,
            max_request_size=8 * 1024 * 1024,
        )
        await self._producer.start()
        self._watcher = asyncio.create_task(self._watch_broker(), name=f"{self.service}-broker-watch")

    async def stop(self) -> None:
        if self._watcher is not None:
            self._watcher.cancel()
            await asyncio.gather(self._watcher, return_exceptions=True)
            self._watcher = None
        if self._producer is not None:
            await self._producer.stop()
            self._producer = None
        await self._topics.close()

    @property
    def started(self) -> bool:
        return self._producer is not None

    async def _send(self, name: str, value: bytes, key: bytes | None) -> None:
        producer = self._producer
        if producer is None:
            raise RuntimeError("Bus.start() must run before publish()")
        deadline = time.monotonic() + PUBLISH_TIMEOUT_S
        for attempt in range(1, UNKNOWN_ERROR_TRIES + 1):
            try:
                await asyncio.wait_for(producer.send_and_wait(name, value, key=key),
                                       max(0.1, deadline - time.monotonic()))
                return
            except (asyncio.TimeoutError, KafkaConnectionError, KafkaTimeoutError, NodeNotReadyError) as exc:
                raise BrokerUnavailable(f"the message broker did not take the event: {type(exc).__name__}") from exc
            except UnknownError as exc:
                # The embedded broker answers -1 when two producers write a partition's first batch at once
                # (its store's "AlreadyExists", seen just after it restarted empty): nothing was written, so
                # send again; still refused, the broker is not taking events now (503, never a 500).
                if attempt == UNKNOWN_ERROR_TRIES or time.monotonic() >= deadline:
                    raise BrokerUnavailable(f"the message broker did not take the event: {exc!r}") from exc
                log.warning("%s: the broker refused an event on %s with an unknown error (try %d of %d); sending "
                            "it again", self.service, name, attempt, UNKNOWN_ERROR_TRIES)
                await asyncio.sleep(0.1 * attempt)
            except KafkaError as exc:
                if not exc.retriable:
                    raise
                raise BrokerUnavailable(f"the message broker did not take the event: {exc!r}") from exc

    async def topic_log_empty(self, topic: Topic) -> bool:
        return await topic_log_empty(self.settings, topic)

    # -- consuming ------------------------------------------------------------

    async def _watch_broker(self) -> None:
        """Follow the broker: refuse publishing while it is down; when it comes back (empty, for the
        memory-only embedded broker) re-create the topics, then allow publishing again."""
        checks = 0
        while True:
            await asyncio.sleep(BROKER_CHECK_S)
            try:
                up = await asyncio.to_thread(bootstrap_reachable, self.settings.kafka_bootstrap_servers)
                if not up:
                    if self.broker_up:
                        log.error("%s: the broker %s is unreachable; publishing is refused until it is back",
                                  self.service, self.settings.kafka_bootstrap_servers)
                    self.broker_up = False
                    self.consuming = False
                    continue
                checks += 1
                if self.broker_up and checks % TOPIC_CHECK_EVERY:
                    continue
                created = await self._topics.ensure(timeout_s=5)
                if not self.broker_up or created:
                    self.broker_restarts += 1
                    log.warning("%s: the broker is back (%d topics re-created); publishing again, the consumer "
                                "re-joins its group", self.service, len(created))
                self.broker_up = True
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - still unreachable or half-started: look again
                log.warning("%s: broker check failed: %r", self.service, exc)

    def _new_consumer(self) -> AIOKafkaConsumer:
        return AIOKafkaConsumer(
            *self._handlers,
            bootstrap_servers=self.settings.kafka_bootstrap_servers,
            group_id=self.kafka_group,
            client_id=f"{self.service}-{self.group_id}",
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            session_timeout_ms=int(self.settings.consumer_session_timeout_s * 1000),
            heartbeat_interval_ms=max(1000, int(self.settings.consumer_session_timeout_s * 1000) // 4),
            max_poll_interval_ms=300000,
            fetch_max_wait_ms=self.settings.consumer_fetch_max_wait_ms,
            fetch_max_bytes=16 * 1024 * 1024,
            max_partition_fetch_bytes=8 * 1024 * 1024,
        )

    async def consume(self, stop: asyncio.Event) -> None:
        """Run the consumer until ``stop`` is set; finishes the message in hand first.

        A broker that comes back empty is re-joined by aiokafka's own group coordinator once the
        watcher has re-created the topics (measured: about 5 s); the group's committed offsets
        went with the broker, so it starts from the earliest of the new, empty log. (Closing
        and re-creating the consumer instead was slower, about 23 s: the old member's leave
        times out and the group waits for its session to expire.)"""
        if not self._handlers:
            await stop.wait()
            return
        consumer = self._new_consumer()
        await consumer.start()
        try:
            while not stop.is_set():
                batch = await consumer.getmany(timeout_ms=500, max_records=50)
                self.consuming = self.broker_up
                for tp, records in batch.items():
                    for record in records:
                        if stop.is_set() or tp not in consumer.assignment():
                            break  # left uncommitted: redelivered to whoever owns it
                        if not await self._process(consumer, tp, record):
                            if tp in consumer.assignment():  # neither handled nor dead-lettered: again
                                consumer.seek(tp, record.offset)
                            break
        finally:
            self.consuming = False
            await _close(consumer)

    async def _process(self, consumer: AIOKafkaConsumer, tp: TopicPartition, record: ConsumerRecord) -> bool:
        """Handle one record; False when it could be neither handled nor dead-lettered (broker gone)."""
        if not await self._deliver(record, lambda work: self._keep_polling_while(consumer, work)):
            return False
        await self._commit(consumer, tp, record)
        return True

    async def _keep_polling_while(self, consumer: AIOKafkaConsumer, work: Awaitable[Any]) -> Any:
        """Await ``work`` while polling with paused partitions, so the group sees us alive."""
        task = asyncio.ensure_future(work)
        try:
            while True:
                done, _ = await asyncio.wait({task}, timeout=1.0)
                if done:
                    return task.result()
                assigned = consumer.assignment()
                if assigned:
                    consumer.pause(*assigned)
                    leaked = await consumer.getmany(timeout_ms=0)
                    for tp, records in leaked.items():  # fetched before the pause: rewind
                        consumer.seek(tp, records[0].offset)
        finally:
            if not task.done():
                task.cancel()
            assigned = consumer.assignment()
            if assigned:
                consumer.resume(*assigned)

    async def _commit(self, consumer: AIOKafkaConsumer, tp: TopicPartition, record: ConsumerRecord) -> None:
        try:
            await asyncio.wait_for(consumer.commit({tp: record.offset + 1}), COMMIT_TIMEOUT_S)
        except (CommitFailedError, IllegalStateError) as exc:
            # The partition moved to another member during a rebalance; it will redeliver,
            # and the processed-events record turns that into a no-op.
            log.warning("commit of %s@%d skipped after rebalance: %s", tp, record.offset, exc)
        except (asyncio.TimeoutError, KafkaError) as exc:
            # The broker went away (or came back without the topic): the offset is not stored.
            # A broker that kept its log redelivers and the processed-events record skips it;
            # an empty one has nothing left to redeliver.
            log.warning("commit of %s@%d failed, broker unavailable: %r", tp, record.offset, exc)


async def _close(consumer: AIOKafkaConsumer) -> None:
    try:
        await asyncio.wait_for(consumer.stop(), 15)
    except Exception as exc:  # noqa: BLE001 - a consumer of a dead broker may not leave cleanly
        log.warning("consumer did not stop cleanly: %r", exc)

