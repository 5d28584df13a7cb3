"""The life of a worker service: settings -> bus -> handlers -> run until SIGTERM.

Each service's ``__main__`` builds a ``ServiceRuntime``, registers its handlers on
``runtime.bus`` and calls ``runtime.run()``. The runtime adds what every service needs:
the file store, the database, topic creation, heartbeats with CPU and memory use, the
/healthz /readyz /metrics server, error events, and a graceful stop.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
import traceback
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta, timezone

import psutil

from .bus import Bus, EventBus
from .db import ProcessedEvents, make_engine
from .events import ServiceError, ServiceHeartbeat, Topic
from .observability import SERVICE_READY, SERVICE_UP, open_health_server, serve_until, setup_logging
from .settings import ServiceSettings
from .storage import FileStore

log = logging.getLogger(__name__)

# Default health/metrics ports, one per service, so they can all run on one host.
DEFAULT_PORTS = {
    "gateway": 8000,
    "ingest": 8101,
    "trainer": 8102,
    "explainer": 8103,
    "reporter": 8104,
    "monitor": 8105,
    "scorer": 8106,  # health and metrics; its internal prediction API is CTROPS_SCORER_API_PORT (8090)
}
# Every service of the platform, in start order (the gateway, the public face, last): the one list
# the supervisor starts and the gateway's health and dashboards expect heartbeats from.
PLATFORM_SERVICES = ("ingest", "trainer", "explainer", "reporter", "monitor", "scorer", "gateway")
# How often each service forgets the processed events older than CTROPS_PROCESSED_EVENTS_RETENTION_DAYS.
PRUNE_INTERVAL_S = 3600.0


def instance_name(settings: ServiceSettings) -> str:
    return settings.instance_id or f"{socket.gethostname()}-{os.getpid()}"


class ErrorEventHandler(logging.Handler):
    """Publishes ERROR log records as ``service.error`` events (the dashboards' error log)."""

    def __init__(self, runtime: ServiceRuntime) -> None:
        super().__init__(level=logging.ERROR)
        self.runtime = runtime

    def emit(self, record: logging.LogRecord) -> None:
        if record.name.startswith(("aiokafka", __name__, "ctrops_common.bus")) and "giving up" not in record.getMessage():
            return  # broker chatter would loop back through the broker
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        stack = "".join(traceback.format_exception(*record.exc_info)) if record.exc_info else ""
        error = ServiceError(
            service=self.runtime.service,
            level=record.levelname if record.levelname in ("ERROR", "CRITICAL") else "ERROR",
            message=record.getMessage()[:2000],
            stack=stack[-8000:],
        )
        loop.create_task(self.runtime.publish_quietly(Topic.SERVICE_ERROR, error))


# Builds a runtime's bus: ``factory(settings, service, group_id=..., processed=...)``. ``Bus`` (Kafka) in
# production; tests of handlers pass ``memory_bus.InMemoryBroker().bus_factory``.
BusFactory = Callable[..., EventBus]


class ServiceRuntime:
    def __init__(self, service: str, settings: ServiceSettings, *, group_id: str | None = None,
                 bus_factory: BusFactory = Bus) -> None:
        self.service = service
        self.settings = settings
        setup_logging(service, settings.log_level, settings.log_json)
        self.instance = instance_name(settings)
        self.store = FileStore(settings.data_dir)
        self.engine = make_engine(settings.sqlalchemy_url(service))
        self.processed = ProcessedEvents(self.engine, service)
        self.bus_factory = bus_factory  # a service that needs a second consumer group builds it with this
        self.bus: EventBus = bus_factory(settings, service, group_id=group_id, processed=self.processed)
        self.stop_event = asyncio.Event()
        self.started_at = datetime.now(timezone.utc)
        self.ready = False
        self._process = psutil.Process()
        self._background: list[Callable[[], Awaitable[None]]] = []
        self._tasks: list[asyncio.Task[None]] = []
        self._error_handler = ErrorEventHandler(self)
        # Extra heartbeat fields (the gateway adds its API traffic figures).
        self.heartbeat_extras: Callable[[], dict[str, object]] = dict
        self.http_port = settings.http_port or DEFAULT_PORTS.get(service, 0)
        self.prune_interval_s = PRUNE_INTERVAL_S

    def add_background(self, job: Callable[[], Awaitable[None]]) -> None:
        """Run ``job()`` beside the consumer; it should return when ``stop_event`` is set."""
        self._background.append(job)

    async def publish_quietly(self, topic: Topic, payload) -> None:
        try:
            await self.bus.publish(topic, payload, key=self.service)
        except Exception:  # noqa: BLE001 - reporting must never take the service down
            pass

    def heartbeat(self) -> ServiceHeartbeat:
        mem = self._process.memory_info()
        return ServiceHeartbeat(
            service=self.service,
            instance=self.instance,
            started_at=self.started_at,
            cpu_percent=self._process.cpu_percent(None),
            memory_percent=psutil.virtual_memory().percent,
            host_cpu_percent=psutil.cpu_percent(None),
            rss_bytes=mem.rss,
            in_flight=self.bus.in_flight,
            handled_total=self.bus.handled_total,
            errors_total=self.bus.errors_total,
            **self.heartbeat_extras(),
        )

    async def _heartbeats(self) -> None:
        while not self.stop_event.is_set():
            await self.publish_quietly(Topic.SERVICE_HEARTBEAT, self.heartbeat())
            try:
                await asyncio.wait_for(self.stop_event.wait(), timeout=self.settings.heartbeat_interval_s)
            except asyncio.TimeoutError:
                pass

    def prune_processed(self) -> int:
        """Forget the finished events older than the retention (an event can be redelivered only
        while the broker still keeps it; docs/events.md)."""
        retention = timedelta(days=self.settings.processed_events_retention_days)
        return self.processed.prune(datetime.now(timezone.utc) - retention)

    async def _prune_processed_events(self) -> None:
        """At start-up, then every ``prune_interval_s``; every replica may do it (deletes are idempotent)."""
        while not self.stop_event.is_set():
            try:
                pruned = await asyncio.to_thread(self.prune_processed)
                if pruned:
                    log.info("forgot %d processed events older than %g days", pruned,
                             self.settings.processed_events_retention_days)
            except Exception as exc:  # noqa: BLE001 - the database may be away; the next round retries
                log.warning("pruning processed events failed: %r", exc)
            try:
                await asyncio.wait_for(self.stop_event.wait(), timeout=self.prune_interval_s)
            except asyncio.TimeoutError:
                pass

    async def _watch_ready(self) -> None:
        while not self.stop_event.is_set() and not (self.bus.consuming or not self.bus._handlers):
            await asyncio.sleep(0.1)
        self.ready = True
        SERVICE_READY.labels(self.service).set(1)
        log.info("%s ready (health on :%d)", self.service, self.http_port)

    async def start(self, *, serve_http: bool = True, handle_signals: bool = True) -> None:
        """Connect the bus and start consuming, heartbeats and background jobs."""
        if handle_signals:
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(sig, self.stop_event.set)
        SERVICE_UP.labels(self.service).set(1)
        if serve_http:  # bound before anything else: a taken port fails the start loudly (the supervisor restarts)
            server = await open_health_server(self.settings.http_host, self.http_port, lambda: self.ready)
            self._tasks.append(asyncio.create_task(serve_until(server, self.stop_event)))
        await self.bus.start()
        logging.getLogger().addHandler(self._error_handler)
        self._tasks += [
            asyncio.create_task(self.bus.consume(self.stop_event)),
            asyncio.create_task(self._heartbeats()),
            asyncio.create_task(self._watch_ready()),
            asyncio.create_task(self._prune_processed_events()),
            *(asyncio.create_task(job()) for job in self._background),
        ]

    async def wait(self) -> None:
        """Until stop is asked for; a crashed task (the consumer, say) is raised loudly."""
        stopper = asyncio.create_task(self.stop_event.wait())
        while not stopper.done():
            running = [t for t in self._tasks if not t.done()]
            done, _ = await asyncio.wait([*running, stopper], return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                # A task cancelled on purpose (a handler leaving its event uncommitted at stop) is no crash.
                if task is not stopper and not task.cancelled() and task.exception() is not None:
                    raise task.exception()

    async def shutdown(self) -> None:
        self.stop_event.set()
        self.ready = False
        SERVICE_READY.labels(self.service).set(0)
        logging.getLogger().removeHandler(self._error_handler)
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=30)
        await self.bus.stop()
        log.info("%s stopped", self.service)

    async def main(self) -> None:
        await self.start()
        try:
            await self.wait()
        finally:
            await self.shutdown()

    def run(self) -> None:
        asyncio.run(self.main())
